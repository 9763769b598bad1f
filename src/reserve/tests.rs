//! Reserve tests over a real SQLite index and a real local object store.

use std::sync::Arc;

use super::*;
use crate::{
    domain::{ZoneId, ZoneName},
    jobs::{ReclaimConfig, Reclaimer},
    storage::{ControlStore, NewZone, local_bodies::LocalBodies, sqlite::SqliteStore},
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    reserve: Reserve,
    reclaimer: Reclaimer,
    objects_dir: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("control.db")).await.unwrap();
    let objects_dir = dir.path().join("objects");
    std::fs::create_dir_all(&objects_dir).unwrap();
    let blobs: Arc<dyn ObjectStore> = Arc::new(LocalBodies::new(&objects_dir).unwrap());
    let index: Arc<dyn ObjectIndex> = Arc::new(store.clone());
    let reserve = Reserve::new(index.clone(), blobs.clone());
    let reclaimer = Reclaimer::new(index, blobs, ReclaimConfig { batch_size: 3, ..Default::default() });
    Fixture { _dir: dir, store, reserve, reclaimer, objects_dir }
}

/// A zone with its reserve on (the index records writes only then).
async fn new_zone(f: &Fixture) -> ZoneId {
    let id = ZoneId::generate();
    f.store
        .create_zone(NewZone {
            id: id.clone(),
            name: ZoneName::parse("example.com").unwrap(),
            origin: None,
            now: Timestamp::now(),
        })
        .await
        .unwrap();
    set_reserve(f, &id, true).await;
    id
}

async fn set_reserve(f: &Fixture, zone: &ZoneId, on: bool) {
    let outcome = f.store.set_reserve(zone, on, Timestamp::now()).await.unwrap();
    assert!(matches!(outcome, crate::storage::SetReserveOutcome::Changed(_)));
}

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { files_under(&e.path()) } else { 1 }
        })
        .sum()
}

#[tokio::test]
async fn put_get_replace_delete_and_usage() {
    let f = fixture().await;
    let z = new_zone(&f).await;
    assert_eq!(f.reserve.put(&z, "k", b"m1".to_vec(), Bytes::from_static(b"one")).await.unwrap(), PutOutcome::Stored);
    f.reserve.put(&z, "k", b"m2".to_vec(), Bytes::from_static(b"second")).await.unwrap();
    let got = f.reserve.get(&z, "k").await.unwrap().unwrap();
    assert_eq!((got.meta.as_slice(), got.body.as_ref()), (&b"m2"[..], &b"second"[..]));
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 6 });
    assert_eq!(files_under(&f.objects_dir), 1, "the replaced body is deleted");
    assert!(f.reserve.delete(&z, "k").await.unwrap());
    assert!(f.reserve.get(&z, "k").await.unwrap().is_none());
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage::default());
    assert_eq!(files_under(&f.objects_dir), 0);
}

#[tokio::test]
async fn clear_hides_at_once_and_reclaim_deletes_everything_old_and_nothing_new() {
    let f = fixture().await;
    let z = new_zone(&f).await;
    for i in 0..10 {
        f.reserve.put(&z, &format!("old{i}"), vec![], Bytes::from(vec![1u8; 100])).await.unwrap();
    }
    // An unindexed body in the old generation, as a crash between body write and index record leaves.
    let orphan = layout::blob_path(&z, 1, &layout::key_hash("orphan"));
    std::fs::create_dir_all(f.objects_dir.join(orphan.to_string()).parent().unwrap()).unwrap();
    std::fs::write(f.objects_dir.join(orphan.to_string()), b"x").unwrap();

    set_reserve(&f, &z, false).await;
    let crate::storage::StartClearOutcome::Started(op) = f.store.start_clear(&z, Timestamp::now()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(op.progress.objects_total, 10);
    for i in 0..10 {
        assert!(f.reserve.get(&z, &format!("old{i}")).await.unwrap().is_none());
    }
    // The reserve is off while a Clear runs: nothing is written.
    let late = f.reserve.put(&z, "late", vec![], Bytes::from_static(b"late")).await.unwrap();
    assert_eq!(late, PutOutcome::ReserveOff);

    let mut steps = 0;
    while f.store.latest_clear(&z).await.unwrap().unwrap().end_ts.is_none() {
        f.reclaimer.step().await.unwrap();
        steps += 1;
        assert!(steps < 100);
    }
    assert!(steps >= 4, "batches of 3 over 10 objects, then completion: {steps}");
    let done = f.store.latest_clear(&z).await.unwrap().unwrap();
    assert_eq!((done.progress.objects_deleted(), done.progress.objects_remaining), (10, 0));
    assert_eq!(files_under(&f.objects_dir), 0, "every old body is gone, the orphan included");
    set_reserve(&f, &z, true).await;
    f.reserve.put(&z, "new", vec![], Bytes::from_static(b"fresh")).await.unwrap();
    assert_eq!(f.reserve.get(&z, "new").await.unwrap().unwrap().body.as_ref(), b"fresh");
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 5 });
}

#[tokio::test]
async fn put_many_records_a_batch_and_the_last_write_of_a_key_wins() {
    let f = fixture().await;
    let z = new_zone(&f).await;
    let objects = (0..20)
        .map(|i| NewObject { key: format!("k{}", i % 10), meta: vec![], body: Bytes::from(format!("body{i}")) })
        .collect();
    let outcomes = f.reserve.put_many(&z, objects).await.unwrap();
    assert_eq!(outcomes, vec![PutOutcome::Stored; 20]);
    for i in 0..10 {
        let got = f.reserve.get(&z, &format!("k{i}")).await.unwrap().unwrap();
        assert_eq!(got.body, Bytes::from(format!("body{}", i + 10)));
    }
    assert_eq!(f.reserve.usage(&z).await.unwrap().objects, 10);
    assert_eq!(files_under(&f.objects_dir), 10, "replaced bodies are deleted");
    assert!(matches!(f.reserve.put_many(&ZoneId::generate(), vec![]).await, Err(ReserveError::NoZone)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streamed_uploads_are_recorded_together_and_whole() {
    let f = fixture().await;
    let zone = new_zone(&f).await;
    // Small (buffered) and large (multipart) bodies, written in chunks from many tasks at once.
    let sizes = [10usize, 3000, 2 * 1024 * 1024 + 17];
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (reserve, zone) = (f.reserve.clone(), zone.clone());
            let size = sizes[i % sizes.len()];
            tokio::spawn(async move {
                let body: Vec<u8> = (0..size).map(|b| (b % 251) as u8 ^ i as u8).collect();
                let mut up =
                    reserve.begin_upload(&zone, 1, &format!("k{i}"), vec![i as u8], size as u64).await.unwrap();
                for chunk in body.chunks(64 * 1024) {
                    up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
                }
                assert_eq!(up.finish().await.unwrap(), PutOutcome::Stored);
                body
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let body = t.await.unwrap();
        let got = f.reserve.get(&zone, &format!("k{i}")).await.unwrap().expect("stored");
        assert_eq!((got.meta, got.body.as_ref()), (vec![i as u8], body.as_slice()));
    }
    assert_eq!(f.reserve.usage(&zone).await.unwrap().objects, 30);
}

#[tokio::test]
async fn nothing_is_recorded_once_the_reserve_is_off_and_a_missing_or_damaged_body_heals_the_index() {
    let f = fixture().await;
    let z = new_zone(&f).await;
    // A write that began while on and finishes after `off` committed: refused by the store itself.
    let mut up = f.reserve.begin_upload(&z, 1, "racing", vec![], 5).await.unwrap();
    up.write(Bytes::from_static(b"hello")).await.unwrap();
    set_reserve(&f, &z, false).await;
    assert_eq!(up.finish().await.unwrap(), PutOutcome::ReserveOff);
    assert_eq!(files_under(&f.objects_dir), 0);
    set_reserve(&f, &z, true).await;

    for (key, damage) in [("gone", None), ("short", Some(&b"hel"[..]))] {
        f.reserve.put(&z, key, vec![], Bytes::from_static(b"hello")).await.unwrap();
        let entry = f.reserve.find(&z, key).await.unwrap().unwrap();
        let path = f.objects_dir.join(&entry.blob);
        match damage {
            None => std::fs::remove_file(&path).unwrap(),
            Some(bytes) => std::fs::write(&path, bytes).unwrap(),
        }
        assert!(f.reserve.open(&entry).await.unwrap().is_none(), "{key}");
        assert!(f.reserve.find(&z, key).await.unwrap().is_none(), "{key}: the index still names it");
    }
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage::default());
    assert_eq!(files_under(&f.objects_dir), 0, "the damaged body is deleted");
}

#[tokio::test]
async fn a_short_upload_commits_nothing() {
    let f = fixture().await;
    let zone = new_zone(&f).await;
    let mut up = f.reserve.begin_upload(&zone, 1, "short", vec![], 100).await.unwrap();
    up.write(Bytes::from_static(b"only part")).await.unwrap();
    assert!(matches!(up.finish().await, Err(ReserveError::Incomplete { expected: 100, got: 9 })));
    assert!(f.reserve.get(&zone, "short").await.unwrap().is_none());
    assert_eq!(files_under(&f.objects_dir), 0);
}

/// An index whose record commits but then reports an error, as when the connection fails after COMMIT.
struct LostAck(SqliteStore);

#[async_trait::async_trait]
impl ObjectIndex for LostAck {
    async fn current_generation(&self, zone: &ZoneId) -> crate::storage::StoreResult<Option<i64>> {
        self.0.current_generation(zone).await
    }
    async fn record_batch(&self, entries: &[IndexEntry]) -> crate::storage::StoreResult<Vec<RecordOutcome>> {
        self.0.record_batch(entries).await?;
        Err(StoreError::Backend("the connection failed after the commit".into()))
    }
    async fn lookup(&self, zone: &ZoneId, key_hash: &str) -> crate::storage::StoreResult<Option<IndexEntry>> {
        self.0.lookup(zone, key_hash).await
    }
    async fn remove(&self, zone: &ZoneId, key_hash: &str) -> crate::storage::StoreResult<Option<IndexEntry>> {
        self.0.remove(zone, key_hash).await
    }
    async fn remove_if_blob(&self, z: &ZoneId, g: i64, k: &str, b: &str) -> crate::storage::StoreResult<bool> {
        self.0.remove_if_blob(z, g, k, b).await
    }
    async fn usage(&self, zone: &ZoneId) -> crate::storage::StoreResult<Usage> {
        self.0.usage(zone).await
    }
    async fn update_meta(&self, z: &ZoneId, g: i64, k: &str, b: &str, m: &[u8]) -> crate::storage::StoreResult<bool> {
        self.0.update_meta(z, g, k, b, m).await
    }
    async fn record_access(&self, accesses: &[Access]) -> crate::storage::StoreResult<()> {
        self.0.record_access(accesses).await
    }
    async fn evict_idle(&self, before: Timestamp, limit: u32) -> crate::storage::StoreResult<Vec<IndexEntry>> {
        self.0.evict_idle(before, limit).await
    }
    async fn pending_clears(&self) -> crate::storage::StoreResult<Vec<crate::storage::PendingClear>> {
        self.0.pending_clears().await
    }
    async fn bodies_below(
        &self,
        z: &ZoneId,
        below: i64,
        limit: u32,
    ) -> crate::storage::StoreResult<Vec<crate::storage::BodyRef>> {
        self.0.bodies_below(z, below, limit).await
    }
    async fn forget_through(
        &self,
        z: &ZoneId,
        below: i64,
        last: &crate::storage::BodyRef,
    ) -> crate::storage::StoreResult<()> {
        self.0.forget_through(z, below, last).await
    }
    async fn complete_clear(
        &self,
        c: &crate::storage::PendingClear,
        now: Timestamp,
    ) -> crate::storage::StoreResult<()> {
        self.0.complete_clear(c, now).await
    }
}

#[tokio::test]
async fn a_record_whose_outcome_is_unknown_keeps_its_body() {
    let f = fixture().await;
    let z = new_zone(&f).await;
    let blobs: Arc<dyn ObjectStore> = Arc::new(LocalBodies::new(&f.objects_dir).unwrap());
    let lossy = Reserve::new(Arc::new(LostAck(f.store.clone())), blobs);
    assert!(lossy.put(&z, "k", vec![], Bytes::from_static(b"committed")).await.is_err());
    // The commit landed: the index names the body, and the body must still be there to serve.
    let got = f.reserve.get(&z, "k").await.unwrap().expect("the index entry");
    assert_eq!(got.body.as_ref(), b"committed");
}
