//! Purge and invalidation in the store (SPEC §10), on both backends: rules at the call's revision, the
//! feed that carries them, `purge_everything` as a generation, and writes filled before a purge refused.

use super::*;
use crate::{
    domain::{Invalidation, PurgeAction, PurgeTarget},
    storage::PurgeIndex,
};

conformance!(
    a_purge_takes_a_revision_and_its_rules_ride_the_feed,
    purge_everything_moves_to_a_new_generation_without_showing_as_a_clear,
    writes_filled_before_a_purge_are_refused,
    invalidations_are_written_into_entries_still_as_read,
    worked_rules_retire_once_every_live_node_has_swept,
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
    // A revalidation that began before the purge refreshes the metadata but not the fill revision (its 304
    // may predate the purge, which must still apply); a later one raises it.
    let stored = s.lookup(&z, &crate::reserve::key_hash("new")).await.unwrap().unwrap();
    assert_eq!(s.update_meta(&z, 1, &stored.key_hash, &stored.blob, b"m1", r - 5).await.unwrap(), Some(r));
    let after = s.lookup(&z, &stored.key_hash).await.unwrap().unwrap();
    assert_eq!((after.fill_revision, after.meta.as_slice()), (r, &b"m1"[..]));
    assert_eq!(s.update_meta(&z, 1, &stored.key_hash, &stored.blob, b"m", r + 5).await.unwrap(), Some(r + 5));
    assert_eq!(s.lookup(&z, &stored.key_hash).await.unwrap().unwrap().fill_revision, r + 5);
}

async fn invalidations_are_written_into_entries_still_as_read(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "marks.example").await;
    set_reserve(s, &z, true).await;
    for key in ["a", "b"] {
        assert!(matches!(record(s, &entry(&z, 1, key, 10)).await, RecordOutcome::Recorded { .. }));
    }
    let hash = |k: &str| crate::reserve::key_hash(k);
    let (a, b) = (s.lookup(&z, &hash("a")).await.unwrap().unwrap(), s.lookup(&z, &hash("b")).await.unwrap().unwrap());
    let out = s.purge(&z, PurgeAction::Invalidate, &[PurgeTarget::Tag("t".into())]).await.unwrap();
    let r = out.zone.purge_revision;
    let pending = s.pending_purges(100).await.unwrap();
    assert!(pending.iter().any(|p| p.rule == out.rules[0]), "invalidations are worked too");
    // `b` is filled again after the rule, before the marking: it is newer content and is left alone.
    let refilled = IndexEntry { fill_revision: r, blob: "marks/b2".into(), ..entry(&z, 1, "b", 10) };
    assert!(matches!(record(s, &refilled).await, RecordOutcome::Recorded { .. }));
    let inv = Invalidation { revision: r, at: out.rules[0].created_on };
    assert_eq!(s.mark_invalidated(&[(a.clone(), inv), (b, inv)]).await.unwrap(), 1);
    assert_eq!(s.mark_invalidated(&[(a.clone(), inv)]).await.unwrap(), 0, "once");
    let marked = s.lookup(&z, &hash("a")).await.unwrap().unwrap();
    assert_eq!(marked.invalidation, Some(inv));
    assert!(inv.applies_to(marked.fill_revision));
    assert_eq!(s.lookup(&z, &hash("b")).await.unwrap().unwrap().invalidation, None);
    // A revalidation that began after the rule lifts it: the fill revision passes the invalidation's.
    assert_eq!(s.update_meta(&z, 1, &a.key_hash, &a.blob, b"m", r).await.unwrap(), Some(r));
    let revalidated = s.lookup(&z, &hash("a")).await.unwrap().unwrap();
    assert!(!revalidated.invalidation.unwrap().applies_to(revalidated.fill_revision));
}

async fn worked_rules_retire_once_every_live_node_has_swept(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "retire.example").await;
    let live = Duration::from_secs(60);
    let out = s.purge(&z, PurgeAction::Purge, &[PurgeTarget::Host("retire.example".into())]).await.unwrap();
    let r = out.zone.purge_revision;
    assert_eq!(s.purges_done_through().await.unwrap(), r - 1, "not worked yet");
    assert_eq!(s.record_sync("a", r, r).await.unwrap(), 0);
    assert_eq!(s.retire_purges(live).await.unwrap(), r - 1, "a rule not worked stays");
    assert_eq!(s.purge_rules(0, i64::MAX).await.unwrap(), out.rules);
    let ids: Vec<i64> = s.pending_purges(100).await.unwrap().iter().map(|p| p.id).collect();
    s.finish_purges(&ids).await.unwrap();
    assert!(s.purges_done_through().await.unwrap() >= r);
    assert_eq!(s.record_sync("b", r, r - 1).await.unwrap(), r - 1);
    assert_eq!(s.retire_purges(live).await.unwrap(), r - 1, "node b has not swept for it");
    assert_eq!(s.purge_rules(0, i64::MAX).await.unwrap(), out.rules);
    assert_eq!(s.record_sync("b", r, r).await.unwrap(), r - 1, "a sync reads what is retired");
    assert_eq!(s.retire_purges(live).await.unwrap(), r);
    assert!(s.purge_rules(0, i64::MAX).await.unwrap().is_empty(), "retired rules are deleted");
    assert_eq!(s.record_sync("a", r, r).await.unwrap(), r);
    // A node silent for longer than the window does not hold retirement back.
    let out = s.purge(&z, PurgeAction::Invalidate, &[PurgeTarget::Tag("t".into())]).await.unwrap();
    let ids: Vec<i64> = s.pending_purges(100).await.unwrap().iter().map(|p| p.id).collect();
    s.finish_purges(&ids).await.unwrap();
    let r2 = out.zone.purge_revision;
    for node in ["a", "b"] {
        s.record_sync(node, r2, r2).await.unwrap();
    }
    s.record_sync("c", r2, 0).await.unwrap();
    assert_eq!(s.retire_purges(live).await.unwrap(), r, "node c holds it back while live");
    tokio::time::sleep(Duration::from_millis(20)).await;
    for node in ["a", "b"] {
        s.record_sync(node, r2, r2).await.unwrap();
    }
    assert!(s.retire_purges(Duration::from_millis(10)).await.unwrap() >= r2, "node c is no longer live");
    assert!(s.record_sync("c", r2, 0).await.unwrap() >= r2, "and is told so when it syncs again");
}
