//! Purge and invalidation in the store (SPEC §10), on both backends: rules at the call's revision, the
//! feed that carries them, `purge_everything` as a generation, and writes filled before a purge refused.

use super::*;
use crate::domain::{PurgeAction, PurgeTarget};

conformance!(
    a_purge_takes_a_revision_and_its_rules_ride_the_feed,
    purge_everything_moves_to_a_new_generation_without_showing_as_a_clear,
    writes_filled_before_a_purge_are_refused,
);

async fn a_purge_takes_a_revision_and_its_rules_ride_the_feed(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "rules.example").await;
    let before = s.zone(&z).await.unwrap().unwrap().revision;
    let targets = [
        PurgeTarget::Tag("a".into()),
        PurgeTarget::File { url: "rules.example/x".into(), headers: vec![("origin".into(), "https://o".into())] },
    ];
    let out = s.purge(&z, PurgeAction::Invalidate, &targets).await.unwrap();
    assert!(out.zone.revision > before);
    assert_eq!(out.zone.purge_revision, out.zone.revision);
    assert_eq!(out.rules.len(), 2);
    let fed = s.purge_rules(before, out.zone.revision).await.unwrap();
    assert_eq!(fed, out.rules, "the feed returns what was recorded");
    assert!(s.purge_rules(out.zone.revision, i64::MAX).await.unwrap().is_empty());
    // The zone is in the change feed at that revision, so a node that has synced it holds the rules.
    let changed = s.zone_changes(before, 100).await.unwrap();
    assert!(changed.iter().any(|c| c.id == z && c.revision == out.zone.revision));
}

async fn purge_everything_moves_to_a_new_generation_without_showing_as_a_clear(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "everything.example").await;
    set_reserve(s, &z, true).await;
    assert!(matches!(record(s, &entry(&z, 1, "k", 10)).await, RecordOutcome::Recorded { .. }));
    let out = s.purge(&z, PurgeAction::Purge, &[PurgeTarget::Everything]).await.unwrap();
    assert!(out.rules.is_empty());
    assert_eq!(out.zone.generation, 2);
    assert!(out.zone.reserve_on, "a purge leaves the setting alone");
    assert_eq!(s.usage(&z).await.unwrap(), Usage::default(), "counted out at once");
    assert!(s.latest_clear(&z).await.unwrap().is_none(), "not a Clear");
    let lease = s.claim_clear("n", Duration::from_secs(30)).await.unwrap().expect("its reclaim is pending");
    assert_eq!((lease.clear.zone_id, lease.clear.target_generation), (z.clone(), 2));
    // Turning the reserve on again is not refused by it (it is not a Clear).
    set_reserve(s, &z, false).await;
    set_reserve(s, &z, true).await;
}

async fn writes_filled_before_a_purge_are_refused(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "refused.example").await;
    set_reserve(s, &z, true).await;
    let out = s.purge(&z, PurgeAction::Purge, &[PurgeTarget::Host("refused.example".into())]).await.unwrap();
    let r = out.zone.purge_revision;
    let old = IndexEntry { fill_revision: r - 1, ..entry(&z, 1, "old", 10) };
    let new = IndexEntry { fill_revision: r, ..entry(&z, 1, "new", 10) };
    let outcomes = s.record_batch(&[old, new]).await.unwrap();
    assert_eq!(outcomes[0], RecordOutcome::Purged);
    assert!(matches!(outcomes[1], RecordOutcome::Recorded { .. }));
    assert_eq!(s.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 10 });
    // A revalidation raises the fill revision, never lowers it.
    let stored = s.lookup(&z, &crate::reserve::key_hash("new")).await.unwrap().unwrap();
    assert!(s.update_meta(&z, 1, &stored.key_hash, &stored.blob, b"m", r - 5).await.unwrap());
    assert_eq!(s.lookup(&z, &stored.key_hash).await.unwrap().unwrap().fill_revision, r);
    assert!(s.update_meta(&z, 1, &stored.key_hash, &stored.blob, b"m", r + 5).await.unwrap());
    assert_eq!(s.lookup(&z, &stored.key_hash).await.unwrap().unwrap().fill_revision, r + 5);
}
