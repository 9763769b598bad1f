//! The storage conformance suite: every case runs on SQLite (a real file) and on PostgreSQL (a fresh
//! database on the server named by `CACHE_RESERVE_TEST_POSTGRES`; skipped when it is not set, a failure in
//! CI). Isolation cases open two handles on one database, as two nodes do.

use std::time::Duration;

use super::*;
use crate::{
    domain::{Timestamp, ZoneId, ZoneName},
    storage::{
        ClearLease, ControlStore, IndexEntry, NewZone, ObjectIndex, RecordOutcome, SetReserveOutcome,
        StartClearOutcome, StoreError, Usage,
        testing::{SharedEnv, shared_required},
    },
};

/// A fresh store, and a way to open a second handle on it (another node).
struct Fixture {
    _dir: tempfile::TempDir,
    store: SqlStore,
    url: Option<String>,
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(&dir.path().join("control.db")).await.unwrap();
        Self { _dir: dir, store, url: None }
    }

    async fn postgres() -> Option<Self> {
        let Some(env) = SharedEnv::from_env() else {
            assert!(!shared_required(), "CACHE_RESERVE_TEST_POSTGRES is not set");
            eprintln!("skipped: CACHE_RESERVE_TEST_POSTGRES is not set (bash scripts/services.sh start)");
            return None;
        };
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).unwrap();
        let url = env.fresh_database(&format!("u_{}", hex::encode(name))).await.unwrap();
        let store = SqlStore::open_postgres(&url, 8, Duration::from_secs(5), true).await.unwrap();
        Some(Self { _dir: tempfile::tempdir().unwrap(), store, url: Some(url) })
    }

    /// Another node's handle on the same database (SQLite: the same handle, as one process is one node).
    async fn other_node(&self) -> SqlStore {
        match &self.url {
            Some(url) => SqlStore::open_postgres(url, 8, Duration::from_secs(5), false).await.unwrap(),
            None => self.store.clone(),
        }
    }
}

/// Generates each case twice: on SQLite, and on PostgreSQL.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::sqlite().await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(f) = super::Fixture::postgres().await {
                        super::$case(f).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    duplicate_zone_name_is_already_exists,
    clear_bumps_generation_and_counts_what_it_must_delete,
    forget_updates_progress_and_replays_harmlessly,
    reserve_on_is_refused_while_clearing_and_clear_refused_while_on,
    concurrent_on_and_clear_exactly_one_wins,
    writes_racing_a_clear_never_land_in_a_cleared_generation,
    concurrent_writes_of_one_key_count_one_object,
    concurrent_access_flushes_in_any_order_finish,
    the_change_feed_lists_changes_in_revision_order,
    lagging_nodes_are_those_heard_from_recently_that_have_not_applied_a_revision,
    a_clear_is_worked_by_one_node_and_a_stale_lease_can_neither_forget_nor_complete,
    a_released_clear_backs_off_and_others_go_first,
    completion_time_never_precedes_the_start,
    installation_values_have_one_winner,
);

async fn zone(s: &SqlStore, name: &str) -> ZoneId {
    let id = ZoneId::generate();
    s.create_zone(NewZone { id: id.clone(), name: ZoneName::parse(name).unwrap(), origin: None }).await.unwrap();
    id
}

async fn set_reserve(s: &SqlStore, z: &ZoneId, on: bool) {
    assert!(matches!(s.set_reserve(z, on).await.unwrap(), SetReserveOutcome::Changed(_)));
}

async fn record(s: &SqlStore, e: &IndexEntry) -> RecordOutcome {
    s.record_batch(std::slice::from_ref(e)).await.unwrap().remove(0)
}

async fn start(s: &SqlStore, z: &ZoneId) -> crate::domain::ClearOperation {
    match s.start_clear(z).await.unwrap() {
        StartClearOutcome::Started { op, .. } => op,
        other => panic!("{other:?}"),
    }
}

fn entry(zone: &ZoneId, generation: i64, key: &str, size: u64) -> IndexEntry {
    IndexEntry {
        zone_id: zone.clone(),
        generation,
        key_hash: crate::reserve::key_hash(key),
        key: key.into(),
        blob: format!("{zone}/g{generation}/{key}"),
        size,
        meta: vec![],
        stored_on: Timestamp::now(),
        fill_revision: 0,
        invalidation: None,
    }
}

/// Objects and bytes of the zone's generations below `below`, counted from the rows themselves (of every
/// partition that exists, whether or not a `generations` row names it).
async fn rows_below(s: &SqlStore, z: &ZoneId, below: i64) -> (i64, i64) {
    let (mut n, mut b) = (0, 0);
    for g in 0..below {
        let r = sqlx::query(sql(format!(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS b FROM {}",
            super::objects_table(z, g)
        )))
        .fetch_one(&s.read)
        .await;
        match r {
            Ok(r) => {
                n += sqlx::Row::get::<i64, _>(&r, "n");
                b += sqlx::Row::get::<i64, _>(&r, "b");
            }
            Err(e) if super::partitions::is_missing_table(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    (n, b)
}

async fn duplicate_zone_name_is_already_exists(f: Fixture) {
    let s = &f.store;
    zone(s, "example.com").await;
    let again = s
        .create_zone(NewZone { id: ZoneId::generate(), name: ZoneName::parse("example.com").unwrap(), origin: None })
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyExists(_))), "{again:?}");
}

async fn clear_bumps_generation_and_counts_what_it_must_delete(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "example.com").await;
    assert_eq!(s.current_generation(&z).await.unwrap(), Some(1));
    assert_eq!(record(s, &entry(&z, 1, "a", 10)).await, RecordOutcome::ReserveOff, "recorded only while on");
    set_reserve(s, &z, true).await;
    for (k, n) in [("a", 10), ("b", 20)] {
        assert!(matches!(record(s, &entry(&z, 1, k, n)).await, RecordOutcome::Recorded { .. }));
    }
    set_reserve(s, &z, false).await;
    let op = start(s, &z).await;
    assert_eq!(op.target_generation, 2);
    assert_eq!((op.progress.objects_total, op.progress.bytes_total), (2, 30));
    assert_eq!((op.progress.objects_remaining, op.progress.bytes_remaining), (2, 30));
    assert_eq!(s.current_generation(&z).await.unwrap(), Some(2));
    // Old entries are invisible at once; a late write for the old generation is refused.
    assert!(s.lookup(&z, &entry(&z, 1, "a", 0).key_hash).await.unwrap().is_none());
    assert_eq!(record(s, &entry(&z, 1, "c", 5)).await, RecordOutcome::Superseded);
    // A second start while running returns the same operation.
    let StartClearOutcome::AlreadyRunning(same) = s.start_clear(&z).await.unwrap() else { panic!() };
    assert_eq!(same.id, op.id);
}

async fn forget_updates_progress_and_replays_harmlessly(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "example.com").await;
    let (a, b) = (entry(&z, 1, "a", 10), entry(&z, 1, "b", 20));
    set_reserve(s, &z, true).await;
    record(s, &a).await;
    record(s, &b).await;
    set_reserve(s, &z, false).await;
    start(s, &z).await;
    // A new-generation entry sorts after the cleared ones and must never be forgotten. (The reserve is off
    // while the Clear runs, so none can be recorded through the API: put one in place directly.)
    let c = entry(&z, 2, "c", 5);
    let mut tx = s.begin_write().await.unwrap();
    sqlx::query(sql(format!(
        "INSERT INTO {} (key_hash, cache_key, blob, size, meta, stored_on, last_access) VALUES ($1, 'c', $2, 5, $3, 0, 0)",
        super::objects_table(&z, 2)
    )))
    .bind(&c.key_hash)
    .bind(&c.blob)
    .bind(Vec::<u8>::new())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE generations SET objects = 1, bytes = 5 WHERE zone_id = $1 AND generation = 2")
        .bind(z.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let lease = s.claim_clear("node-a", Duration::from_secs(30)).await.unwrap().unwrap();
    let (first, second) = if a.key_hash < b.key_hash { (&a, &b) } else { (&b, &a) };
    let batch = s.bodies_below(&z, 2, 1).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].key_hash.as_str(), batch[0].blob.as_str()), (first.key_hash.as_str(), first.blob.as_str()));
    s.forget_through(&lease, &batch[0], Duration::from_secs(30)).await.unwrap();
    s.forget_through(&lease, &batch[0], Duration::from_secs(30)).await.unwrap();
    let op = s.latest_clear(&z).await.unwrap().unwrap();
    assert_eq!((op.progress.objects_deleted(), op.progress.bytes_deleted()), (1, first.size));
    assert_eq!((op.progress.objects_remaining, op.progress.bytes_remaining), (1, second.size));
    let rest = s.bodies_below(&z, 2, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    s.forget_through(&lease, &rest[0], Duration::from_secs(30)).await.unwrap();
    assert!(s.bodies_below(&z, 2, 10).await.unwrap().is_empty());
    assert_eq!(s.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 5 });
}

async fn reserve_on_is_refused_while_clearing_and_clear_refused_while_on(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "example.com").await;
    set_reserve(s, &z, true).await;
    assert!(matches!(s.start_clear(&z).await.unwrap(), StartClearOutcome::ReserveOn));
    set_reserve(s, &z, false).await;
    start(s, &z).await;
    assert!(matches!(s.set_reserve(&z, true).await.unwrap(), SetReserveOutcome::ClearInProgress));
}

/// `on` on one node and a Clear on another, at the same moment, many times: exactly one succeeds, and the
/// zone never ends up on with a Clear running.
async fn concurrent_on_and_clear_exactly_one_wins(f: Fixture) {
    let (a, b) = (f.store.clone(), f.other_node().await);
    for round in 0..30 {
        let z = zone(&a, &format!("race{round}.example.com")).await;
        let (on, clear) = tokio::join!(
            tokio::spawn({
                let (a, z) = (a.clone(), z.clone());
                async move { a.set_reserve(&z, true).await.unwrap() }
            }),
            tokio::spawn({
                let (b, z) = (b.clone(), z.clone());
                async move { b.start_clear(&z).await.unwrap() }
            }),
        );
        let (on, clear) = (on.unwrap(), clear.unwrap());
        match (&on, &clear) {
            (SetReserveOutcome::Changed(_), StartClearOutcome::ReserveOn) => {}
            (SetReserveOutcome::ClearInProgress, StartClearOutcome::Started { .. }) => {}
            other => panic!("round {round}: both or neither won: {other:?}"),
        }
        let zone = a.zone(&z).await.unwrap().unwrap();
        let running = a.latest_clear(&z).await.unwrap().is_some_and(|c| c.end_ts.is_none());
        assert!(!(zone.reserve_on && running), "round {round}: on with a Clear running");
    }
}

/// Writes of the old generation from two nodes while a Clear starts: none is recorded after the Clear
/// counted its objects, so what the Clear must delete is exactly what it counted.
async fn writes_racing_a_clear_never_land_in_a_cleared_generation(f: Fixture) {
    let (a, b) = (f.store.clone(), f.other_node().await);
    for round in 0..10 {
        let z = zone(&a, &format!("w{round}.example.com")).await;
        set_reserve(&a, &z, true).await;
        record(&a, &entry(&z, 1, "seed", 1)).await;
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (s, z) = (if w % 2 == 0 { a.clone() } else { b.clone() }, z.clone());
                tokio::spawn(async move {
                    let mut recorded = 0;
                    for i in 0..10 {
                        let batch: Vec<_> = (0..3).map(|j| entry(&z, 1, &format!("k{w}-{i}-{j}"), 7)).collect();
                        let outcomes = s.record_batch(&batch).await.unwrap();
                        recorded += outcomes.iter().filter(|o| matches!(o, RecordOutcome::Recorded { .. })).count();
                    }
                    recorded
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(2)).await;
        set_reserve(&b, &z, false).await;
        let op = start(&b, &z).await;
        let mut recorded = 1;
        for w in writers {
            recorded += w.await.unwrap();
        }
        let (rows, bytes) = rows_below(&a, &z, op.target_generation).await;
        assert_eq!(rows as u64, op.progress.objects_total, "round {round}: a write landed after the Clear counted");
        assert_eq!(rows as usize, recorded, "round {round}");
        assert_eq!(bytes as u64, op.progress.bytes_total, "round {round}");
    }
}

/// Two nodes writing the same keys at once: each key is one object in the counts.
async fn concurrent_writes_of_one_key_count_one_object(f: Fixture) {
    let (a, b) = (f.store.clone(), f.other_node().await);
    let z = zone(&a, "example.com").await;
    set_reserve(&a, &z, true).await;
    let tasks: Vec<_> = (0..6)
        .map(|w| {
            let (s, z) = (if w % 2 == 0 { a.clone() } else { b.clone() }, z.clone());
            tokio::spawn(async move {
                for round in 0..10 {
                    let mut e = entry(&z, 1, &format!("k{}", round % 4), 10 + w);
                    e.blob = format!("{}-{w}-{round}", e.blob);
                    s.record_batch(&[e]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (rows, bytes) = rows_below(&a, &z, 2).await;
    assert_eq!(rows, 4);
    assert_eq!(a.usage(&z).await.unwrap(), Usage { objects: 4, bytes: bytes as u64 });
}

/// Two nodes flushing read times for overlapping keys (listed in opposite orders) finish: rows are locked
/// in one order.
async fn concurrent_access_flushes_in_any_order_finish(f: Fixture) {
    let (a, b) = (f.store.clone(), f.other_node().await);
    let z = zone(&a, "example.com").await;
    set_reserve(&a, &z, true).await;
    let entries: Vec<_> = (0..200).map(|i| entry(&z, 1, &format!("k{i}"), 1)).collect();
    a.record_batch(&entries).await.unwrap();
    let accesses = |rev: bool, at: i64| {
        let mut v: Vec<_> = entries
            .iter()
            .map(|e| crate::storage::Access {
                zone_id: z.clone(),
                generation: 1,
                key_hash: e.key_hash.clone(),
                at: Timestamp::from_micros(at),
            })
            .collect();
        if rev {
            v.reverse();
        }
        v
    };
    for round in 0..5 {
        let now = Timestamp::now().as_micros() + round;
        let (x, y) = (accesses(false, now), accesses(true, now + 1));
        let run = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::try_join!(a.record_access(&x), b.record_access(&y))
        });
        run.await.expect("the flushes deadlocked").unwrap();
    }
}

async fn the_change_feed_lists_changes_in_revision_order(f: Fixture) {
    let s = &f.store;
    let all = s.zone_changes(0, 100).await.unwrap();
    assert!(all.is_empty());
    let a = zone(s, "a.example.com").await;
    let b = zone(s, "b.example.com").await;
    let seen = s.zone_changes(0, 100).await.unwrap();
    assert_eq!(seen.iter().map(|z| z.id.clone()).collect::<Vec<_>>(), vec![a.clone(), b.clone()]);
    let last = seen.last().unwrap().revision;
    assert!(s.zone_changes(last, 100).await.unwrap().is_empty());
    set_reserve(s, &a, true).await;
    let changed = s.zone_changes(last, 100).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].id == a && changed[0].reserve_on && changed[0].revision > last);
    assert_eq!(s.zone_changes(0, 1).await.unwrap().len(), 1, "paged");
}

async fn lagging_nodes_are_those_heard_from_recently_that_have_not_applied_a_revision(f: Fixture) {
    let s = &f.store;
    let window = Duration::from_secs(5);
    assert_eq!(s.lagging_nodes("me", 1, window).await.unwrap(), 0);
    s.record_sync("me", 0, 0).await.unwrap();
    s.record_sync("other", 3, 0).await.unwrap();
    assert_eq!(s.lagging_nodes("me", 3, window).await.unwrap(), 0, "itself does not count");
    assert_eq!(s.lagging_nodes("me", 4, window).await.unwrap(), 1);
    s.record_sync("other", 4, 0).await.unwrap();
    assert_eq!(s.lagging_nodes("me", 4, window).await.unwrap(), 0);
    assert_eq!(s.lagging_nodes("me", 5, window).await.unwrap(), 1);
    s.forget_node("other").await.unwrap();
    assert_eq!(s.lagging_nodes("me", 5, window).await.unwrap(), 0, "a node that left is not waited for");
    s.record_sync("other", 4, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.lagging_nodes("me", 9, Duration::from_millis(10)).await.unwrap(), 0, "silent nodes do not count");
}

async fn cleared_zone(s: &SqlStore, name: &str, objects: usize) -> ZoneId {
    let z = zone(s, name).await;
    set_reserve(s, &z, true).await;
    let batch: Vec<_> = (0..objects).map(|i| entry(&z, 1, &format!("k{i}"), 3)).collect();
    s.record_batch(&batch).await.unwrap();
    set_reserve(s, &z, false).await;
    start(s, &z).await;
    z
}

async fn a_clear_is_worked_by_one_node_and_a_stale_lease_can_neither_forget_nor_complete(f: Fixture) {
    let (a, b) = (f.store.clone(), f.other_node().await);
    let z1 = cleared_zone(&a, "one.example.com", 4).await;
    let z2 = cleared_zone(&a, "two.example.com", 4).await;
    let short = Duration::from_millis(300);
    let la = a.claim_clear("node-a", short).await.unwrap().unwrap();
    assert_eq!(la.clear.zone_id, z1, "oldest first");
    let lb = b.claim_clear("node-b", short).await.unwrap().unwrap();
    assert_eq!(lb.clear.zone_id, z2, "another node takes another Clear");
    assert!(b.claim_clear("node-c", short).await.unwrap().is_none(), "both are held");
    // node-a stalls past its lease; node-c takes the Clear over.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let lc = b.claim_clear("node-c", Duration::from_secs(30)).await.unwrap().unwrap();
    assert!(lc.clear.zone_id == z1 || lc.clear.zone_id == z2);
    let stale: &ClearLease = if lc.clear.zone_id == z1 { &la } else { &lb };
    assert!(lc.token > stale.token);
    let batch = a.bodies_below(&lc.clear.zone_id, lc.clear.target_generation, 2).await.unwrap();
    assert!(matches!(a.forget_through(stale, &batch[1], short).await, Err(StoreError::LeaseLost)));
    assert!(matches!(a.complete_clear(stale).await, Err(StoreError::LeaseLost)));
    let before = a.latest_clear(&lc.clear.zone_id).await.unwrap().unwrap();
    assert_eq!(before.progress.objects_remaining, 4, "the stale holder changed nothing");
    // The live holder works it to the end.
    b.forget_through(&lc, &batch[1], Duration::from_secs(30)).await.unwrap();
    let rest = b.bodies_below(&lc.clear.zone_id, lc.clear.target_generation, 10).await.unwrap();
    b.forget_through(&lc, rest.last().unwrap(), Duration::from_secs(30)).await.unwrap();
    b.complete_clear(&lc).await.unwrap();
    b.complete_clear(&lc).await.unwrap();
    let done = a.latest_clear(&lc.clear.zone_id).await.unwrap().unwrap();
    assert!(done.end_ts.is_some());
    assert_eq!((done.progress.objects_deleted(), done.progress.objects_remaining), (4, 0));
}

async fn a_released_clear_backs_off_and_others_go_first(f: Fixture) {
    let s = &f.store;
    let z1 = cleared_zone(s, "stuck.example.com", 2).await;
    let z2 = cleared_zone(s, "fine.example.com", 2).await;
    let stuck = s.claim_clear("n", Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(stuck.clear.zone_id, z1);
    s.release_clear(&stuck, Duration::from_secs(3600), "a body could not be deleted").await.unwrap();
    let next = s.claim_clear("n", Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(next.clear.zone_id, z2, "the stuck Clear waits; the other goes first");
    // The same node renews what it holds.
    let again = s.claim_clear("n", Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(again.clear.zone_id, z2);
    assert!(again.token > next.token);
    let r = sqlx::query("SELECT attempts, last_error FROM clears WHERE zone_id = $1")
        .bind(z1.as_str())
        .fetch_one(&s.read)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&r, "attempts"), 1);
    assert_eq!(sqlx::Row::get::<String, _>(&r, "last_error"), "a body could not be deleted");
}

async fn completion_time_never_precedes_the_start(f: Fixture) {
    let s = &f.store;
    let z = cleared_zone(s, "t.example.com", 0).await;
    // Another node's clock is not consulted: pretend the start was stamped far in the future.
    sqlx::query("UPDATE clears SET start_ts = start_ts + 3600000000 WHERE zone_id = $1")
        .bind(z.as_str())
        .execute(&s.write)
        .await
        .unwrap();
    let lease = s.claim_clear("n", Duration::from_secs(30)).await.unwrap().unwrap();
    s.complete_clear(&lease).await.unwrap();
    let op = s.latest_clear(&z).await.unwrap().unwrap();
    assert!(op.end_ts.unwrap() >= op.start_ts);
}

async fn installation_values_have_one_winner(f: Fixture) {
    let (a, b) = (f.store.clone(), f.other_node().await);
    let (x, y) = tokio::join!(a.installation_value("k", "from-a"), b.installation_value("k", "from-b"));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y);
    assert_eq!(a.installation_value("k", "later").await.unwrap(), x);
}

/// A data directory from before scale-out (migrations 1 and 2, zones with per-zone revisions) upgrades to
/// distinct store-wide revisions, and the counter continues after them.
#[tokio::test]
async fn an_embedded_store_from_before_scale_out_upgrades_its_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    for m in ["0001_initial.sql", "0002_proxy.sql"] {
        std::fs::copy(format!("{}/migrations/sqlite/{m}", env!("CARGO_MANIFEST_DIR")), old.join(m)).unwrap();
    }
    let path = dir.path().join("control.db");
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
        for (i, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            sqlx::query(
                "INSERT INTO zones (id, name, reserve_on, generation, revision, created_on, modified_on)
                 VALUES ($1, $2, 0, 1, 3, $3, $3)",
            )
            .bind(ZoneId::generate().as_str())
            .bind(*name)
            .bind(i as i64)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let s = SqlStore::open_sqlite(&path).await.unwrap();
    let zones = s.zone_changes(0, 100).await.unwrap();
    let revisions: Vec<i64> = zones.iter().map(|z| z.revision).collect();
    assert_eq!(revisions, vec![1, 2, 3]);
    assert_eq!(zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(), ["a.example", "b.example", "c.example"]);
    let d = zone(&s, "d.example").await;
    assert_eq!(s.zone(&d).await.unwrap().unwrap().revision, 4);
}

mod partitions;
mod purge;
