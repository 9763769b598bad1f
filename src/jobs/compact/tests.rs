use bytes::Bytes;

use super::*;
use crate::{
    domain::{PurgeAction, PurgeTarget, ZoneName},
    reserve::{NewObject, Reserve},
    storage::{
        ControlStore, NewZone, PurgeIndex,
        open::{ControlBackend, StoreConfig, Stores},
        testing::{SharedEnv, shared_required},
    },
};

/// Small segments, so a few hundred objects fill many.
const SEGMENT_BYTES: u64 = 64 << 10;

struct Fixture {
    _dir: tempfile::TempDir,
    stores: Stores,
    reserve: Reserve,
    compactor: Compactor,
    zone: ZoneId,
}

impl Fixture {
    /// Local segments, with the index in SQLite or (`postgres`) in a fresh PostgreSQL database.
    async fn new(postgres: bool) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::embedded(dir.path());
        config.segment_bytes = SEGMENT_BYTES;
        if postgres {
            let Some(env) = SharedEnv::from_env() else {
                assert!(!shared_required(), "the shared test backends are not set up");
                return None;
            };
            let name = format!("t_compact_{}", ZoneId::generate().as_str());
            config.control = ControlBackend::Postgres { url: env.fresh_database(&name).await.unwrap() };
        }
        let stores = Stores::open(&config).await.unwrap();
        let zone = ZoneId::generate();
        let name = ZoneName::parse(&format!("{zone}.example.com")).unwrap();
        stores.sql.create_zone(NewZone { id: zone.clone(), name, origin: None }).await.unwrap();
        stores.sql.set_reserve(&zone, true).await.unwrap();
        let reserve = Reserve::over(&stores);
        let compactor = Compactor::new(
            stores.index(),
            stores.compaction_index(),
            stores.segments.clone().unwrap(),
            CompactConfig::default(),
        );
        Some(Self { _dir: dir, stores, reserve, compactor, zone })
    }

    async fn put(&self, keys: impl Iterator<Item = usize>, version: u8) {
        let objects = keys
            .map(|i| NewObject { key: format!("k{i}"), meta: vec![], body: body(i, version), fill_revision: 0 })
            .collect();
        self.reserve.put_many(&self.zone, objects).await.unwrap();
    }

    /// Bytes in the zone's segment files, and live record bytes (headers included) by the index.
    async fn space(&self) -> (u64, u64) {
        let segments = self.stores.segments.as_ref().unwrap();
        let files: u64 = segments.segments_of(&self.zone, 1).unwrap().iter().map(|(_, len)| len).sum();
        let usage = self.reserve.usage(&self.zone).await.unwrap();
        (files, usage.bytes + usage.objects * HEADER_LEN)
    }
}

fn body(i: usize, version: u8) -> Bytes {
    Bytes::from(vec![(i as u8) ^ version; 4000 + i % 97])
}

async fn churn_then_compaction_bounds_space_and_keeps_every_live_object(f: Fixture) {
    f.put(0..400, 0).await;
    // Replace half, twice; delete a quarter: three quarters of what was written is dead.
    f.put((0..400).filter(|i| i % 2 == 0), 1).await;
    f.put((0..400).filter(|i| i % 4 == 0), 2).await;
    for i in (0..400).filter(|i| i % 4 == 1) {
        assert!(f.reserve.delete(&f.zone, &format!("k{i}")).await.unwrap());
    }
    let (before, live) = f.space().await;
    assert!(before as f64 > 1.5 * live as f64, "the churn left little dead: {before} vs {live}");
    let done = f.compactor.pass(true).await.unwrap();
    assert!(done.segments_removed > 0 && done.records_moved > 0, "{done:?}");
    let (after, live) = f.space().await;
    assert!(
        after as f64 <= 1.5 * live as f64 + (2 * SEGMENT_BYTES) as f64,
        "{after} bytes in segments for {live} live ({done:?})"
    );
    for i in 0..400 {
        let got = f.reserve.get(&f.zone, &format!("k{i}")).await.unwrap();
        let want = match i % 4 {
            0 => Some(body(i, 2)),
            1 => None,
            2 => Some(body(i, 1)),
            _ => Some(body(i, 0)),
        };
        assert_eq!(got.map(|o| o.body), want, "k{i}");
    }
    assert_eq!(f.stores.bodies.count(Some(&f.zone)).await.unwrap(), 300, "live records after compaction");
    // Nothing left to do: another pass moves nothing.
    assert_eq!(f.compactor.pass(true).await.unwrap().records_moved, 0);
}

async fn a_rule_being_worked_defers_relocation_until_it_is_done(f: Fixture) {
    f.put(0..200, 0).await;
    f.put((0..200).filter(|i| i % 2 == 0), 1).await;
    f.stores.sql.purge(&f.zone, PurgeAction::Purge, &[PurgeTarget::Prefix("nothing/".into())]).await.unwrap();
    // Half-dead segments need their live records moved: refused while the rule is being worked (a segment
    // with no live record at all may still go: no entry names it).
    let done = f.compactor.pass(true).await.unwrap();
    assert_eq!((done.records_moved, done.deferred), (0, 1), "{done:?}");
    let pending: Vec<i64> = f.stores.sql.pending_purges(10).await.unwrap().iter().map(|p| p.id).collect();
    f.stores.sql.finish_purges(&pending).await.unwrap();
    let done = f.compactor.pass(true).await.unwrap();
    assert!(done.records_moved > 0 && done.segments_removed > 0, "{done:?}");
    for i in 0..200 {
        let want = body(i, if i % 2 == 0 { 1 } else { 0 });
        assert_eq!(f.reserve.get(&f.zone, &format!("k{i}")).await.unwrap().unwrap().body, want, "k{i}");
    }
}

async fn a_relocation_of_an_entry_changed_meanwhile_is_not_made(f: Fixture) {
    f.put(0..2, 0).await;
    let index = f.stores.compaction_index();
    let first = f.reserve.find(&f.zone, "k0").await.unwrap().unwrap();
    let second = f.reserve.find(&f.zone, "k1").await.unwrap().unwrap();
    // k1 is replaced after its location was read.
    f.put(1..2, 1).await;
    let moves = [
        Relocation { key_hash: first.key_hash.clone(), from: first.blob.clone(), to: "elsewhere-0".into() },
        Relocation { key_hash: second.key_hash.clone(), from: second.blob.clone(), to: "elsewhere-1".into() },
    ];
    assert_eq!(index.relocate(&f.zone, 1, &moves).await.unwrap(), Some(vec![true, false]));
    assert_eq!(f.reserve.find(&f.zone, "k0").await.unwrap().unwrap().blob, "elsewhere-0");
    assert_eq!(f.reserve.get(&f.zone, "k1").await.unwrap().unwrap().body, body(1, 1), "the newer body stays");
}

async fn deletions_seen_here_add_up_across_passes_until_a_pass_compacts(f: Fixture) {
    f.put(0..400, 0).await;
    let delete = |range: std::ops::Range<usize>| {
        let f = &f;
        async move {
            for i in range.filter(|i| i % 2 == 0) {
                assert!(f.reserve.delete(&f.zone, &format!("k{i}")).await.unwrap());
            }
        }
    };
    // A tenth of the bytes deleted: below the trigger (15 %), so a pass that is not full does nothing.
    delete(0..80).await;
    assert_eq!(f.compactor.pass(false).await.unwrap(), Compacted::default());
    // Another tenth: together above it.
    delete(80..160).await;
    let done = f.compactor.pass(false).await.unwrap();
    assert!(done.segments_removed > 0, "{done:?}");
    for i in 0..400 {
        let got = f.reserve.get(&f.zone, &format!("k{i}")).await.unwrap().map(|o| o.body);
        assert_eq!(got, (i >= 160 || i % 2 == 1).then(|| body(i, 0)), "k{i}");
    }
}

macro_rules! on_both_indexes {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::new(false).await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(f) = super::Fixture::new(true).await {
                        super::$case(f).await;
                    }
                }
            )*
        }
    };
}

on_both_indexes!(
    churn_then_compaction_bounds_space_and_keeps_every_live_object,
    a_rule_being_worked_defers_relocation_until_it_is_done,
    a_relocation_of_an_entry_changed_meanwhile_is_not_made,
    deletions_seen_here_add_up_across_passes_until_a_pass_compacts,
);
