//! Reserve tests over real backends: SQLite and local disk, and (when the test servers are set up, see
//! [`crate::storage::testing`]) PostgreSQL and S3.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{
    group::{GROUP_MAX, Waiting},
    *,
};
use crate::{
    domain::{ZoneId, ZoneName},
    jobs::{ReclaimConfig, Reclaimer},
    storage::{
        ControlStore, NewZone,
        open::Stores,
        sql::SqlStore,
        testing::{Backend, SharedEnv, shared_required},
    },
};

struct Fixture {
    _dir: tempfile::TempDir,
    config: crate::storage::open::StoreConfig,
    stores: Stores,
    store: SqlStore,
    reserve: Reserve,
    reclaimer: Reclaimer,
}

impl Fixture {
    async fn new(backend: Backend) -> Option<Self> {
        if backend == Backend::Shared && SharedEnv::from_env().is_none() {
            assert!(!shared_required(), "the shared test backends are not set up");
            eprintln!("skipped: the shared test backends are not set up (bash scripts/services.sh start)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = backend.fresh(dir.path()).await.unwrap();
        let stores = Stores::open(&config).await.unwrap();
        let reserve = Reserve::over(&stores);
        let reclaimer = Reclaimer::new(
            stores.index(),
            stores.bodies.clone(),
            ReclaimConfig { batch_size: Some(3), ..Default::default() },
            "test-node".into(),
        );
        Some(Self { _dir: dir, config, store: stores.sql.clone(), stores, reserve, reclaimer })
    }

    async fn bodies(&self) -> u64 {
        self.stores.bodies.count(None).await.unwrap()
    }
}

/// Generates each case on the embedded and on the shared backends.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::new(super::Backend::Embedded).await.unwrap()).await;
                }
            )*
        }
        mod shared {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(f) = super::Fixture::new(super::Backend::Shared).await {
                        super::$case(f).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    put_get_replace_delete_and_usage,
    a_range_of_a_body_reads_those_bytes,
    clear_hides_at_once_and_reclaim_deletes_everything_old_and_nothing_new,
    put_many_records_a_batch_and_the_last_write_of_a_key_wins,
    concurrent_streamed_uploads_are_recorded_together_and_whole,
    more_writers_than_a_group_holds_all_land_in_groups_of_at_most_group_max,
    nothing_is_recorded_once_the_reserve_is_off_and_a_missing_or_damaged_body_heals_the_index,
    a_short_upload_commits_nothing,
    a_record_whose_outcome_is_unknown_keeps_its_body,
    a_clear_whose_bodies_cannot_be_deleted_backs_off_without_blocking_another,
);

/// A zone with its reserve on (the index records writes only then).
async fn new_zone(f: &Fixture) -> ZoneId {
    let id = ZoneId::generate();
    f.store
        .create_zone(NewZone {
            id: id.clone(),
            name: ZoneName::parse(&format!("{id}.example.com")).unwrap(),
            origin: None,
        })
        .await
        .unwrap();
    set_reserve(f, &id, true).await;
    id
}

async fn set_reserve(f: &Fixture, zone: &ZoneId, on: bool) {
    let outcome = f.store.set_reserve(zone, on).await.unwrap();
    assert!(matches!(outcome, crate::storage::SetReserveOutcome::Changed(_)));
}

async fn put_get_replace_delete_and_usage(f: Fixture) {
    let z = new_zone(&f).await;
    assert_eq!(f.reserve.put(&z, "k", b"m1".to_vec(), Bytes::from_static(b"one")).await.unwrap(), PutOutcome::Stored);
    f.reserve.put(&z, "k", b"m2".to_vec(), Bytes::from_static(b"second")).await.unwrap();
    let got = f.reserve.get(&z, "k").await.unwrap().unwrap();
    assert_eq!((got.meta.as_slice(), got.body.as_ref()), (&b"m2"[..], &b"second"[..]));
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 6 });
    assert_eq!(f.bodies().await, 1, "the replaced body is deleted");
    assert!(f.reserve.delete(&z, "k").await.unwrap());
    assert!(f.reserve.get(&z, "k").await.unwrap().is_none());
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage::default());
    assert_eq!(f.bodies().await, 0);
}

/// A range request's read (issue #12 A1): a body in a segment record and one in its own file or S3 object.
async fn a_range_of_a_body_reads_those_bytes(f: Fixture) {
    let z = new_zone(&f).await;
    let body = |n: usize| Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for (key, whole) in [("small", body(1000)), ("large", body((2 << 20) + 7))] {
        f.reserve.put(&z, key, vec![], whole.clone()).await.unwrap();
        let entry = f.reserve.find(&z, key).await.unwrap().unwrap();
        for part in [0..1, 100..200, (whole.len() as u64 - 7)..whole.len() as u64] {
            let got = f.reserve.open_part(&entry, Some(part.clone())).await.unwrap().unwrap();
            assert_eq!((got.meta.size, got.range.clone()), (whole.len() as u64, part.clone()), "{key}");
            let bytes = got.bytes().await.unwrap();
            assert_eq!(bytes, whole.slice(part.start as usize..part.end as usize), "{key} {part:?}");
        }
    }
}

/// A ranged read of a body cut short on disk heals the entry, as a whole read does, and is not an outage
/// (which would close the reserve and fail readiness on every such request).
#[tokio::test]
async fn a_range_past_a_body_cut_short_heals_it_without_an_outage() {
    let f = Fixture::new(Backend::Embedded).await.unwrap();
    let z = new_zone(&f).await;
    let whole = Bytes::from(vec![7u8; (2 << 20) + 7]);
    f.reserve.put(&z, "cut", vec![], whole.clone()).await.unwrap();
    let entry = f.reserve.find(&z, "cut").await.unwrap().unwrap();
    let file = f.config.data_dir.join("objects").join(&entry.blob);
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(1 << 20).unwrap();
    let tail = (whole.len() as u64 - 10)..whole.len() as u64;
    assert!(f.reserve.open_part(&entry, Some(tail)).await.unwrap().is_none());
    assert!(f.reserve.available(), "a damaged body is not an outage");
    assert!(f.reserve.find(&z, "cut").await.unwrap().is_none(), "the entry is healed");
}

async fn clear_hides_at_once_and_reclaim_deletes_everything_old_and_nothing_new(f: Fixture) {
    let z = new_zone(&f).await;
    for i in 0..10 {
        f.reserve.put(&z, &format!("old{i}"), vec![], Bytes::from(vec![1u8; 100])).await.unwrap();
    }
    // An unindexed body in the old generation, as a crash between body write and index record leaves.
    drop(f.stores.bodies.put(&z, 1, &key_hash("orphan"), Bytes::from_static(b"x")).await.unwrap());

    set_reserve(&f, &z, false).await;
    let crate::storage::StartClearOutcome::Started { op, .. } = f.store.start_clear(&z).await.unwrap() else {
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
    if f.stores.bodies.drops_generations() {
        // Segments: one step sweeps the generation's files, the next drops its index partition.
        assert_eq!(steps, 2, "a Clear of segments is two steps, whatever its size");
    } else {
        assert!(steps >= 4, "batches of 3 over 10 objects, then completion: {steps}");
    }
    let done = f.store.latest_clear(&z).await.unwrap().unwrap();
    assert_eq!((done.progress.objects_deleted(), done.progress.objects_remaining), (10, 0));
    assert_eq!(f.bodies().await, 0, "every old body is gone, the orphan included");
    set_reserve(&f, &z, true).await;
    f.reserve.put(&z, "new", vec![], Bytes::from_static(b"fresh")).await.unwrap();
    assert_eq!(f.reserve.get(&z, "new").await.unwrap().unwrap().body.as_ref(), b"fresh");
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 5 });
}

async fn put_many_records_a_batch_and_the_last_write_of_a_key_wins(f: Fixture) {
    let z = new_zone(&f).await;
    let objects = (0..20)
        .map(|i| NewObject {
            key: format!("k{}", i % 10),
            meta: vec![],
            body: Bytes::from(format!("body{i}")),
            fill_revision: 0,
        })
        .collect();
    let outcomes = f.reserve.put_many(&z, objects).await.unwrap();
    assert_eq!(outcomes, vec![PutOutcome::Stored; 20]);
    for i in 0..10 {
        let got = f.reserve.get(&z, &format!("k{i}")).await.unwrap().unwrap();
        assert_eq!(got.body, Bytes::from(format!("body{}", i + 10)));
    }
    assert_eq!(f.reserve.usage(&z).await.unwrap().objects, 10);
    assert_eq!(f.bodies().await, 10, "replaced bodies are deleted");
    assert!(matches!(f.reserve.put_many(&ZoneId::generate(), vec![]).await, Err(ReserveError::NoZone)));
}

async fn concurrent_streamed_uploads_are_recorded_together_and_whole(f: Fixture) {
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
                    reserve.begin_upload(&zone, 1, 0, &format!("k{i}"), vec![i as u8], size as u64).await.unwrap();
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

async fn more_writers_than_a_group_holds_all_land_in_groups_of_at_most_group_max(f: Fixture) {
    let zone = new_zone(&f).await;
    let n = 3 * GROUP_MAX + 7;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (reserve, zone) = (f.reserve.clone(), zone.clone());
            tokio::spawn(async move {
                let mut up = reserve.begin_upload(&zone, 1, 0, &format!("k{i}"), vec![], 4).await.unwrap();
                up.write(Bytes::from(format!("{:04}", i % 10_000))).await.unwrap();
                up.finish().await.unwrap()
            })
        })
        .collect();
    // Every writer returns (none waits for a group that left its entry out), each one stored.
    let all = tokio::time::timeout(std::time::Duration::from_secs(120), futures::future::join_all(tasks));
    for outcome in all.await.expect("a writer never returned") {
        assert_eq!(outcome.unwrap(), PutOutcome::Stored);
    }
    assert_eq!(f.reserve.usage(&zone).await.unwrap().objects, n as u64);

    // One commit takes the oldest GROUP_MAX waiting, no more.
    let entry = f.reserve.find(&zone, "k0").await.unwrap().unwrap();
    let waiting: Vec<_> = (0..GROUP_MAX + 10)
        .map(|i| {
            let key = format!("g{i}");
            let entry = IndexEntry { key_hash: key_hash(&key), key, ..entry.clone() };
            Waiting { entry, hold: Written::at(String::new()), tx: oneshot::channel().0 }
        })
        .collect();
    f.reserve.group.pending.lock().unwrap().extend(waiting);
    f.reserve.commit_group().await;
    assert_eq!(f.reserve.group.pending.lock().unwrap().len(), 10);
    f.reserve.group.pending.lock().unwrap().clear();

    // A writer whose entry was taken by a commit that then stopped (its task dropped) learns that the
    // outcome is unknown, instead of committing empty groups for ever.
    let turn = f.reserve.group.commit.lock().await;
    let writer = tokio::spawn({
        let (reserve, zone) = (f.reserve.clone(), zone.clone());
        async move {
            let mut up = reserve.begin_upload(&zone, 1, 0, "orphan", vec![], 1).await.unwrap();
            up.write(Bytes::from_static(b"x")).await.unwrap();
            up.finish().await
        }
    });
    while f.reserve.group.pending.lock().unwrap().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(f.reserve.group.pending.lock().unwrap().drain(..).collect::<Vec<_>>());
    drop(turn);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), writer).await.expect("the writer spun");
    assert!(matches!(outcome.unwrap(), Err(ReserveError::BatchFailed)));
}

async fn nothing_is_recorded_once_the_reserve_is_off_and_a_missing_or_damaged_body_heals_the_index(f: Fixture) {
    let z = new_zone(&f).await;
    // A write that began while on and finishes after `off` committed: refused by the store itself.
    let mut up = f.reserve.begin_upload(&z, 1, 0, "racing", vec![], 5).await.unwrap();
    up.write(Bytes::from_static(b"hello")).await.unwrap();
    set_reserve(&f, &z, false).await;
    assert_eq!(up.finish().await.unwrap(), PutOutcome::ReserveOff);
    assert_eq!(f.bodies().await, 0);
    set_reserve(&f, &z, true).await;

    for (key, damage) in [("gone", None), ("damaged", Some(&b"HEL"[..]))] {
        f.reserve.put(&z, key, vec![], Bytes::from_static(b"hello")).await.unwrap();
        let entry = f.reserve.find(&z, key).await.unwrap().unwrap();
        match damage {
            None => f.stores.bodies.delete_many(vec![entry.blob.clone()]).await.unwrap(),
            Some(bytes) => crate::storage::testing::damage_body(&f.config, &entry.blob, bytes).await.unwrap(),
        }
        assert!(f.reserve.open(&entry).await.unwrap().is_none(), "{key}");
        assert!(f.reserve.find(&z, key).await.unwrap().is_none(), "{key}: the index still names it");
    }
    assert_eq!(f.reserve.usage(&z).await.unwrap(), Usage::default());
    assert_eq!(f.bodies().await, 0, "the damaged body is deleted");
}

async fn a_short_upload_commits_nothing(f: Fixture) {
    let zone = new_zone(&f).await;
    let mut up = f.reserve.begin_upload(&zone, 1, 0, "short", vec![], 100).await.unwrap();
    up.write(Bytes::from_static(b"only part")).await.unwrap();
    assert!(matches!(up.finish().await, Err(ReserveError::Incomplete { expected: 100, got: 9 })));
    assert!(f.reserve.get(&zone, "short").await.unwrap().is_none());
    assert_eq!(f.bodies().await, 0);
}

/// An index whose record commits but then reports an error, as when the connection fails after COMMIT.
struct LostAck(SqlStore);

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
    async fn update_meta(
        &self,
        z: &ZoneId,
        g: i64,
        k: &str,
        b: &str,
        m: &[u8],
        r: i64,
    ) -> crate::storage::StoreResult<Option<i64>> {
        self.0.update_meta(z, g, k, b, m, r).await
    }
    async fn record_access(&self, accesses: &[Access]) -> crate::storage::StoreResult<()> {
        self.0.record_access(accesses).await
    }
    async fn evict_idle(&self, before: Timestamp, limit: u32) -> crate::storage::StoreResult<Vec<IndexEntry>> {
        self.0.evict_idle(before, limit).await
    }
    async fn claim_clear(
        &self,
        node: &str,
        lease: std::time::Duration,
    ) -> crate::storage::StoreResult<Option<crate::storage::ClearLease>> {
        self.0.claim_clear(node, lease).await
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
        lease: &crate::storage::ClearLease,
        last: &crate::storage::BodyRef,
        extend: std::time::Duration,
    ) -> crate::storage::StoreResult<()> {
        self.0.forget_through(lease, last, extend).await
    }
    async fn complete_clear(&self, lease: &crate::storage::ClearLease) -> crate::storage::StoreResult<u64> {
        self.0.complete_clear(lease).await
    }
    async fn release_clear(
        &self,
        lease: &crate::storage::ClearLease,
        retry_after: std::time::Duration,
        error: &str,
    ) -> crate::storage::StoreResult<()> {
        self.0.release_clear(lease, retry_after, error).await
    }
}

async fn a_record_whose_outcome_is_unknown_keeps_its_body(f: Fixture) {
    let z = new_zone(&f).await;
    let lossy = Reserve::new(Arc::new(LostAck(f.store.clone())), f.stores.bodies.clone());
    assert!(lossy.put(&z, "k", vec![], Bytes::from_static(b"committed")).await.is_err());
    // The commit landed: the index names the body, and the body must still be there to serve.
    let got = f.reserve.get(&z, "k").await.unwrap().expect("the index entry");
    assert_eq!(got.body.as_ref(), b"committed");
}

/// A body store whose deletes (and sweeps) fail for one zone: that zone's Clear cannot finish.
struct UndeletableFor(Arc<dyn crate::storage::bodies::BodyStore>, ZoneId);

#[async_trait::async_trait]
impl crate::storage::bodies::BodyStore for UndeletableFor {
    async fn put(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
        body: Bytes,
    ) -> Result<crate::storage::bodies::Written, object_store::Error> {
        self.0.put(zone, generation, key_hash, body).await
    }
    async fn put_multipart(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
    ) -> Result<(String, Box<dyn object_store::MultipartUpload>), object_store::Error> {
        self.0.put_multipart(zone, generation, key_hash).await
    }
    async fn open(&self, location: &str) -> Result<Option<GetResult>, object_store::Error> {
        self.0.open(location).await
    }
    async fn open_range(
        &self,
        location: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Option<GetResult>, object_store::Error> {
        self.0.open_range(location, range).await
    }
    async fn delete_many(&self, locations: Vec<String>) -> Result<(), object_store::Error> {
        if locations.iter().any(|l| l.starts_with(self.1.as_str())) {
            return Err(object_store::Error::Generic { store: "test", source: "permission denied".into() });
        }
        self.0.delete_many(locations).await
    }
    fn drops_generations(&self) -> bool {
        self.0.drops_generations()
    }
    async fn sweep_below(&self, zone: &ZoneId, below: i64) -> Result<u64, object_store::Error> {
        if zone == &self.1 {
            return Err(object_store::Error::Generic { store: "test", source: "permission denied".into() });
        }
        self.0.sweep_below(zone, below).await
    }
    async fn recover(&self, before: std::time::SystemTime) -> Result<u64, object_store::Error> {
        self.0.recover(before).await
    }
    async fn count(&self, zone: Option<&ZoneId>) -> Result<u64, object_store::Error> {
        self.0.count(zone).await
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// One Clear whose bodies cannot be deleted (verified to stop every zone's Clear before leases and
/// per-Clear backoff): it is released to back off, and a younger Clear of another zone completes.
async fn a_clear_whose_bodies_cannot_be_deleted_backs_off_without_blocking_another(f: Fixture) {
    let stuck = new_zone(&f).await;
    let fine = new_zone(&f).await;
    for z in [&stuck, &fine] {
        f.reserve.put(z, "k", vec![], Bytes::from_static(b"body")).await.unwrap();
        set_reserve(&f, z, false).await;
        f.store.start_clear(z).await.unwrap();
    }
    let bodies = Arc::new(UndeletableFor(f.stores.bodies.clone(), stuck.clone()));
    let reclaimer = Reclaimer::new(f.stores.index(), bodies, ReclaimConfig::default(), "n".into());
    for _ in 0..10 {
        if f.store.latest_clear(&fine).await.unwrap().unwrap().end_ts.is_some() {
            break;
        }
        reclaimer.step().await.unwrap();
    }
    assert!(f.store.latest_clear(&fine).await.unwrap().unwrap().end_ts.is_some(), "the other zone's Clear finished");
    let held = f.store.latest_clear(&stuck).await.unwrap().unwrap();
    assert!(held.end_ts.is_none() && held.progress.objects_remaining == 1);
    assert_eq!(reclaimer.step().await.unwrap(), crate::jobs::reclaim::Step::Idle, "the stuck one is backing off");
}
