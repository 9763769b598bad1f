//! Unit tests of the zone table: parent-domain candidates and install ordering.

use super::*;

#[test]
fn a_host_is_served_by_its_own_zone_or_the_nearest_parent() {
    assert_eq!(
        candidates("a.b.example.com").collect::<Vec<_>>(),
        ["a.b.example.com", "b.example.com", "example.com", "com"]
    );
    assert_eq!(candidates("localhost").collect::<Vec<_>>(), ["localhost"]);
}

#[test]
fn a_late_older_read_never_replaces_a_newer_one() {
    let mut table = HashMap::new();
    install(&mut table, Zone::example(3, 2, false));
    // A poll that read before the change finishes after the API installed it.
    let kept = install(&mut table, Zone::example(2, 1, true));
    assert_eq!((kept.revision, kept.generation, kept.reserve_on), (3, 2, false));
    let newer = install(&mut table, Zone::example(4, 2, true));
    assert!(newer.reserve_on);
}

#[test]
fn a_generation_raised_in_memory_stays_raised() {
    let mut table = HashMap::new();
    install(&mut table, Zone::example(1, 1, false));
    let slot = table.get_mut("example.com").unwrap();
    *slot = Arc::new(Zone { generation: 2, ..(**slot).clone() });
    // A newer revision read before the Clear's bump committed.
    let z = install(&mut table, Zone::example(2, 1, false));
    assert_eq!((z.revision, z.generation), (2, 2));
}

#[test]
fn a_deletion_stays_until_a_newer_zone_of_its_name() {
    let mut table = HashMap::new();
    install(&mut table, Zone::example(1, 1, true));
    let tombstone = Zone { deleted_on: Some(crate::domain::Timestamp::from_micros(1)), ..Zone::example(2, 2, false) };
    install(&mut table, tombstone);
    // A read from before the deletion, finishing late, does not bring the zone back.
    let kept = install(&mut table, Zone::example(1, 1, true));
    assert!(kept.deleted_on.is_some());
    // A zone created later with the name (another id) takes the slot; a late tombstone does not undo it.
    let other = crate::domain::ZoneId::generate();
    let reborn = install(&mut table, Zone { id: other.clone(), ..Zone::example(3, 1, false) });
    assert_eq!((reborn.id.clone(), reborn.deleted_on), (other.clone(), None));
    let late = Zone { deleted_on: Some(crate::domain::Timestamp::from_micros(1)), ..Zone::example(2, 2, false) };
    assert_eq!(install(&mut table, late).id, other);
}
