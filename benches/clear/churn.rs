//! `churn`: space amplification of the local segment store after churn (issue #11: ≤ 1.5× after
//! compaction). N objects are stored in one zone, their keys interleaved in write order so that every
//! segment loses its share; then a quarter is purged by prefix (the purge job), a quarter is evicted by
//! retention (not read since before the sweep), and half is read (kept). The bytes of the zone's segment
//! files are compared with the live bytes before and after one full compaction pass.

use std::time::Instant;

use cache_reserve::{
    domain::{PurgeAction, PurgeTarget},
    jobs::{CompactConfig, Compactor, PurgeReclaimer},
    reserve::key_hash,
    storage::{Access, bodies::segment::format::HEADER_LEN},
};

use super::*;

/// Which quarter an object is in, by its number: purged, idle (evicted), or kept.
fn key(i: usize) -> String {
    let group = match i % 4 {
        0 => "purged",
        1 => "idle",
        _ => "kept",
    };
    format!("churn.example/{group}/{i}")
}

/// Bytes in the zone's segment files: their lengths, and what every file under `objects` (segments and
/// their `.dead` files; the zone is the only one) occupies on disk.
fn segment_bytes(data: &Stores, objects: &Path, zone: &ZoneId) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let segments = data.segments.as_ref().expect("local segments");
    let length = segments.segments_of(zone, 1).unwrap().iter().map(|(_, len)| len).sum();
    let mut on_disk = 0;
    let mut stack = vec![objects.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let m = std::fs::metadata(entry.path()).unwrap();
            if m.is_dir() {
                stack.push(entry.path());
            } else {
                on_disk += m.blocks() * 512;
            }
        }
    }
    (length, on_disk)
}

pub async fn churn(a: &Args) {
    let n = if a.objects == 0 { 100_000 } else { a.objects };
    let config = StoreConfig::embedded(fresh_dir(&a.dir, "churn", a.objects_dir.as_deref()));
    let data = Stores::open(&config).await.unwrap();
    let zone = zone(&data, "churn.example").await;
    data.sql.set_reserve(&zone, true).await.unwrap();
    let reserve = Reserve::over(&data);
    let meta = purge::tagged_meta();

    // 1–8 KiB bodies, 4.5 KiB on average.
    let size = |i: usize| 1024 + (i * 7919) % (7 * 1024);
    let started = Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(1000) {
        let objects = batch
            .iter()
            .map(|&i| NewObject {
                key: key(i),
                meta: meta.clone(),
                body: Bytes::from(vec![(i % 251) as u8; size(i)]),
                fill_revision: 0,
            })
            .collect();
        reserve.put_many(&zone, objects).await.unwrap();
    }
    eprintln!("stored {n} objects in {:.1?}", started.elapsed());
    let objects_dir = config.data_dir.join("objects");
    let live = |u: cache_reserve::storage::Usage| u.bytes + u.objects * HEADER_LEN as u64;
    let stored = live(reserve.usage(&zone).await.unwrap());

    // A quarter purged by prefix, worked by the purge job.
    let idle_before = Timestamp::now();
    data.sql.purge(&zone, PurgeAction::Purge, &[PurgeTarget::Prefix("churn.example/purged/".into())]).await.unwrap();
    let purges = PurgeReclaimer::new(data.purge_index(), data.bodies.clone(), Duration::from_secs(1), Duration::ZERO);
    let (_, purged) = purges.round().await.unwrap();
    // Half read after `idle_before`; the quarter left unread is evicted by retention.
    let at = Timestamp::now();
    let reads: Vec<Access> = (0..n)
        .filter(|i| i % 4 >= 2)
        .map(|i| Access { zone_id: zone.clone(), generation: 1, key_hash: key_hash(&key(i)), at })
        .collect();
    for chunk in reads.chunks(1000) {
        reserve.record_access(chunk).await.unwrap();
    }
    let mut evicted = 0;
    loop {
        let batch = reserve.evict_idle(idle_before, 1000).await.unwrap().len();
        evicted += batch;
        if batch < 1000 {
            break;
        }
    }
    let usage = reserve.usage(&zone).await.unwrap();
    let kept = live(usage);
    let (before, before_disk) = segment_bytes(&data, &objects_dir, &zone);

    let compactor = Compactor::new(
        data.index(),
        data.compaction_index(),
        data.segments.clone().expect("local segments"),
        CompactConfig::default(),
    );
    let started = Instant::now();
    let done = compactor.pass(true).await.unwrap();
    let took = started.elapsed();
    let (after, after_disk) = segment_bytes(&data, &objects_dir, &zone);
    assert_eq!(usage.objects as usize, n / 2, "purged {purged}, evicted {evicted}");

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "| objects | live before churn | purged, evicted | live after | segment bytes (on disk) | amplification | compaction | segment bytes after (on disk) | amplification after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    println!(
        "| {n} | {:.0} MiB | {purged}, {evicted} | {:.0} MiB | {:.0} MiB ({:.0} MiB) | {:.2}× | {took:.1?}: {} segments removed, {} records ({:.0} MiB) moved | {:.0} MiB ({:.0} MiB) | **{:.2}×** |",
        mib(stored),
        mib(kept),
        mib(before),
        mib(before_disk),
        before as f64 / kept as f64,
        done.segments_removed,
        done.records_moved,
        mib(done.bytes_moved),
        mib(after),
        mib(after_disk),
        after as f64 / kept as f64,
    );
    // Every kept object still reads back whole.
    for i in (0..n).filter(|i| i % 4 >= 2).step_by(97) {
        let got = reserve.get(&zone, &key(i)).await.unwrap().expect("a kept object");
        assert_eq!(got.body.len(), size(i), "{}", key(i));
    }
}
