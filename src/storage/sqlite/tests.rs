//! Tests of the SQLite backend against a real database file.

use super::*;
use crate::{
    domain::{Timestamp, ZoneId, ZoneName},
    storage::{ControlStore, IndexEntry, NewZone, ObjectIndex, RecordOutcome, StartClearOutcome},
};

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("control.db")).await.unwrap();
    (dir, s)
}

async fn zone(s: &SqliteStore, name: &str) -> ZoneId {
    let id = ZoneId::generate();
    s.create_zone(NewZone {
        id: id.clone(),
        name: ZoneName::parse(name).unwrap(),
        origin: None,
        now: Timestamp::now(),
    })
    .await
    .unwrap();
    id
}

async fn set_reserve(s: &SqliteStore, z: &ZoneId, on: bool) {
    assert!(matches!(
        s.set_reserve(z, on, Timestamp::now()).await.unwrap(),
        crate::storage::SetReserveOutcome::Changed(_)
    ));
}

async fn record(s: &SqliteStore, e: &IndexEntry) -> RecordOutcome {
    s.record_batch(std::slice::from_ref(e)).await.unwrap().remove(0)
}

fn entry(zone: &ZoneId, generation: i64, key: &str, size: u64) -> IndexEntry {
    IndexEntry {
        zone_id: zone.clone(),
        generation,
        key_hash: crate::reserve::layout::key_hash(key),
        key: key.into(),
        blob: format!("{zone}/g{generation}/{key}"),
        size,
        meta: vec![],
        stored_on: Timestamp::now(),
    }
}

#[tokio::test]
async fn duplicate_zone_name_is_already_exists() {
    let (_d, s) = store().await;
    zone(&s, "example.com").await;
    let again = s
        .create_zone(NewZone {
            id: ZoneId::generate(),
            name: ZoneName::parse("example.com").unwrap(),
            origin: None,
            now: Timestamp::now(),
        })
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyExists(_))), "{again:?}");
}

#[tokio::test]
async fn clear_bumps_generation_and_counts_what_it_must_delete() {
    let (_d, s) = store().await;
    let z = zone(&s, "example.com").await;
    assert_eq!(s.current_generation(&z).await.unwrap(), Some(1));
    assert_eq!(record(&s, &entry(&z, 1, "a", 10)).await, RecordOutcome::ReserveOff, "recorded only while on");
    set_reserve(&s, &z, true).await;
    for (k, n) in [("a", 10), ("b", 20)] {
        assert!(matches!(record(&s, &entry(&z, 1, k, n)).await, RecordOutcome::Recorded { .. }));
    }
    set_reserve(&s, &z, false).await;
    let StartClearOutcome::Started(op) = s.start_clear(&z, Timestamp::now()).await.unwrap() else { panic!() };
    assert_eq!(op.target_generation, 2);
    assert_eq!((op.progress.objects_total, op.progress.bytes_total), (2, 30));
    assert_eq!((op.progress.objects_remaining, op.progress.bytes_remaining), (2, 30));
    assert_eq!(s.current_generation(&z).await.unwrap(), Some(2));
    // Old entries are invisible at once; a late write for the old generation is refused.
    assert!(s.lookup(&z, &entry(&z, 1, "a", 0).key_hash).await.unwrap().is_none());
    assert_eq!(record(&s, &entry(&z, 1, "c", 5)).await, RecordOutcome::Superseded);
    // A second start while running returns the same operation.
    let StartClearOutcome::AlreadyRunning(same) = s.start_clear(&z, Timestamp::now()).await.unwrap() else { panic!() };
    assert_eq!(same.id, op.id);
}

#[tokio::test]
async fn forget_updates_progress_and_replays_harmlessly() {
    let (_d, s) = store().await;
    let z = zone(&s, "example.com").await;
    let (a, b) = (entry(&z, 1, "a", 10), entry(&z, 1, "b", 20));
    set_reserve(&s, &z, true).await;
    record(&s, &a).await;
    record(&s, &b).await;
    set_reserve(&s, &z, false).await;
    s.start_clear(&z, Timestamp::now()).await.unwrap();
    // A new-generation entry sorts after the cleared ones and must never be forgotten. (The reserve is off
    // while the Clear runs, so none can be recorded through the API: put one in place directly.)
    let c = entry(&z, 2, "c", 5);
    let mut tx = s.begin_write().await.unwrap();
    sqlx::query(
        "INSERT INTO objects (zone_id, generation, key_hash, cache_key, blob, size, meta, stored_on, last_access)
         VALUES ($1, 2, $2, 'c', $3, 5, x'', 0, 0)",
    )
    .bind(z.as_str())
    .bind(&c.key_hash)
    .bind(&c.blob)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ($1, 2, 1, 5)")
        .bind(z.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (first, second) = if a.key_hash < b.key_hash { (&a, &b) } else { (&b, &a) };
    let batch = s.bodies_below(&z, 2, 1).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].key_hash.as_str(), batch[0].blob.as_str()), (first.key_hash.as_str(), first.blob.as_str()));
    s.forget_through(&z, 2, &batch[0]).await.unwrap();
    s.forget_through(&z, 2, &batch[0]).await.unwrap();
    let op = s.latest_clear(&z).await.unwrap().unwrap();
    assert_eq!((op.progress.objects_deleted(), op.progress.bytes_deleted()), (1, first.size));
    assert_eq!((op.progress.objects_remaining, op.progress.bytes_remaining), (1, second.size));
    let rest = s.bodies_below(&z, 2, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    s.forget_through(&z, 2, &rest[0]).await.unwrap();
    assert!(s.bodies_below(&z, 2, 10).await.unwrap().is_empty());
    assert_eq!(s.usage(&z).await.unwrap(), crate::storage::Usage { objects: 1, bytes: 5 });
}

#[tokio::test]
async fn reserve_on_is_refused_while_clearing_and_clear_refused_while_on() {
    let (_d, s) = store().await;
    let z = zone(&s, "example.com").await;
    s.set_reserve(&z, true, Timestamp::now()).await.unwrap();
    assert!(matches!(s.start_clear(&z, Timestamp::now()).await.unwrap(), StartClearOutcome::ReserveOn));
    s.set_reserve(&z, false, Timestamp::now()).await.unwrap();
    assert!(matches!(s.start_clear(&z, Timestamp::now()).await.unwrap(), StartClearOutcome::Started(_)));
    assert!(matches!(
        s.set_reserve(&z, true, Timestamp::now()).await.unwrap(),
        crate::storage::SetReserveOutcome::ClearInProgress
    ));
}
