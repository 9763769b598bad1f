//! Clear benchmarks (numbers in BENCHMARKS.md):
//!
//! ```text
//! cargo bench --bench clear -- post-latency [--objects N] [--objects-dir DIR] [--backend shared]
//! cargo bench --bench clear -- reclaim [--objects N] [--dir DIR] [--objects-dir DIR] [--reclaim-batch N] [--rounds N]
//! cargo bench --bench clear -- reclaim-s3 [--objects N]
//! cargo bench --bench clear -- startup [--objects N] [--objects-dir DIR]
//! cargo bench --bench clear -- purge-latency [--objects N] [--backend shared]
//! cargo bench --bench clear -- purge-reclaim [--objects N]
//! cargo bench --bench clear -- churn [--objects N] [--dir DIR]
//! ```
//!
//! Each compares within one run (this machine is shared and noisy) and prints Markdown rows. `--backend shared`
//! runs on PostgreSQL and S3 (the servers `scripts/services.sh start` runs, from its environment file), and
//! `post-latency` there measures one node and two (`scale_out`); `reclaim-s3` always runs there.

#[path = "clear/churn.rs"]
mod churn;
#[path = "clear/purge.rs"]
mod purge;
#[path = "clear/scale_out.rs"]
mod scale_out;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_reserve::{
    directory::SyncConfig,
    domain::{Permission, Timestamp, TokenId, TokenScope, ZoneId, ZoneName, secret::Secret},
    jobs::{
        ReclaimConfig, Reclaimer,
        reclaim::{BatchTimings, Step},
    },
    reserve::{NewObject, Reserve},
    server::{self, ServeConfig},
    storage::{
        ControlStore, NewZone, StoredToken,
        bodies::segment::{AppendConfig, SegmentBodies},
        open::{ControlBackend, StoreConfig, Stores},
        sql::objects_table,
        testing::Backend,
    },
};
use futures::StreamExt;
use sqlx::{Connection, Executor};

struct Args {
    scenario: String,
    objects: usize,
    dir: PathBuf,
    objects_dir: Option<PathBuf>,
    backend: Backend,
    /// Entries per reclaim batch (`ReclaimConfig::batch_size`); `None` for the body store's preference.
    reclaim_batch: Option<u32>,
    /// Rounds of `reclaim` (alternating which goes first); 2 unless `--rounds N`.
    rounds: usize,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    let scenario = it.next().unwrap_or_else(|| "post-latency".into());
    let mut a = Args {
        scenario,
        objects: 0,
        dir: PathBuf::from("target/bench-data"),
        objects_dir: None,
        backend: Backend::Embedded,
        reclaim_batch: None,
        rounds: 2,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--objects" => a.objects = value.parse().expect("--objects N"),
            "--dir" => a.dir = value.into(),
            "--objects-dir" => a.objects_dir = Some(value.into()),
            "--reclaim-batch" => a.reclaim_batch = Some(value.parse().expect("--reclaim-batch N")),
            "--rounds" => a.rounds = value.parse().expect("--rounds N"),
            "--backend" => {
                a.backend = match value.as_str() {
                    "embedded" => Backend::Embedded,
                    "shared" => Backend::Shared,
                    other => panic!("--backend embedded|shared, not {other}"),
                }
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A fresh data directory under `base`; with `objects_dir`, the bodies live there (e.g. on a tmpfs).
fn fresh_dir(base: &Path, name: &str, objects_dir: Option<&Path>) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(o) = objects_dir {
        let target = o.join(name);
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("objects")).unwrap();
    }
    dir
}

async fn zone(data: &Stores, name: &str) -> ZoneId {
    let id = ZoneId::generate();
    let new = NewZone { id: id.clone(), name: ZoneName::parse(name).unwrap(), origin: None };
    data.sql.create_zone(new).await.unwrap();
    id
}

async fn token(data: &Stores) -> String {
    let secret = Secret::new_token();
    let now = Timestamp::now();
    data.sql
        .create_token(StoredToken {
            id: TokenId::generate(),
            name: "bench".into(),
            hash: secret.hash(),
            permissions: Permission::ALL.to_vec(),
            scope: TokenScope::AllZones,
            created_on: now,
            expires_on: None,
            revoked_on: None,
        })
        .await
        .unwrap();
    secret.expose().to_owned()
}

/// Stores `n` objects of `size` bytes, in batches (four at once on S3); on local disk appended to the zone's
/// segment files without fsync (one `sync` at the end).
async fn seed(data: &Stores, config: &StoreConfig, zone: &ZoneId, n: usize, size: usize) {
    seed_with(data, config, zone, n, size, &[]).await;
}

/// [`seed`], every object with metadata `meta` (an encoded stored response).
async fn seed_with(data: &Stores, config: &StoreConfig, zone: &ZoneId, n: usize, size: usize, meta: &[u8]) {
    let reserve = if config.is_shared() {
        Reserve::over(data)
    } else {
        let append = AppendConfig { segment_bytes: config.segment_bytes, fsync: false, mapped_reads: true };
        Reserve::new(data.index(), Arc::new(SegmentBodies::open(&config.data_dir.join("objects"), append).unwrap()))
    };
    let body = Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    // The reserve records writes only while on; a Clear then needs it off.
    data.sql.set_reserve(zone, true).await.unwrap();
    let batches = (0..n).collect::<Vec<_>>();
    futures::stream::iter(batches.chunks(5000))
        .map(|chunk| {
            let objects = chunk
                .iter()
                .map(|i| NewObject {
                    key: format!("https://bench/{i}"),
                    meta: meta.to_vec(),
                    body: body.clone(),
                    fill_revision: 0,
                })
                .collect();
            let reserve = &reserve;
            async move { reserve.put_many(zone, objects).await.unwrap() }
        })
        .buffer_unordered(if config.is_shared() { 4 } else { 1 })
        .collect::<Vec<_>>()
        .await;
    data.sql.set_reserve(zone, false).await.unwrap();
    Command::new("sync").status().unwrap();
    eprintln!("seeded {n} objects of {size} B in {:.1?}", started.elapsed());
}

/// Index entries for `n` objects of `size` bytes without their bodies, straight into PostgreSQL in one
/// statement (a POST's cost depends on the index only; a million S3 PUTs would take an hour here), then a
/// checkpoint, so that writing out the seeded pages does not land on the measurement.
async fn seed_index_only(config: &StoreConfig, zone: &ZoneId, n: usize, size: usize) {
    let ControlBackend::Postgres { url } = &config.control else { panic!("index-only seeding is for PostgreSQL") };
    let started = Instant::now();
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    db.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (key_hash, cache_key, blob, size, meta, stored_on, last_access)
         SELECT md5(i::text) || md5((i + 1)::text), 'https://bench/' || i, '{zone}/g1/none/' || i,
                {size}, ''::bytea, 0, 0
         FROM generate_series(1, {n}) AS i;
         INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ('{zone}', 1, {n}, {bytes})
         ON CONFLICT (zone_id, generation) DO UPDATE SET objects = generations.objects + {n},
                                                          bytes = generations.bytes + {bytes};
         ANALYZE {table};
         CHECKPOINT;",
        bytes = n * size,
        table = objects_table(zone, 1),
    )))
    .await
    .unwrap();
    eprintln!("seeded {n} index entries in {:.1?}", started.elapsed());
}

/// Fresh stores of the benchmark's backend, named `name` (embedded: a directory under --dir).
async fn fresh_stores(a: &Args, name: &str) -> StoreConfig {
    match a.backend {
        Backend::Embedded => StoreConfig::embedded(fresh_dir(&a.dir, name, a.objects_dir.as_deref())),
        Backend::Shared => a.backend.fresh(&fresh_dir(&a.dir, name, None)).await.unwrap(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn post(http: &reqwest::Client, base: &str, zone: &ZoneId, token: &str) -> Duration {
    let t = Instant::now();
    let r = http
        .post(format!("{base}/zones/{zone}/smart_shield/cache_reserve_clear"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.bytes().await.unwrap();
    t.elapsed()
}

/// POST Clear latency with `objects` stored in one zone: on 200 small zones while the big one is idle,
/// on the big zone itself, then on 200 more small zones while the big zone's reclaim runs.
async fn post_latency(a: &Args) {
    let n = if a.objects == 0 { 10_000 } else { a.objects };
    let config = fresh_stores(a, &format!("post-latency-{n}")).await;
    let data = Stores::open(&config).await.unwrap();
    let big = zone(&data, "big.example").await;
    let mut probes = Vec::new();
    // On the shared backend, 200 more for each of the two-node runs (`scale_out`).
    for i in 0..if config.is_shared() { 800 } else { 400 } {
        let z = zone(&data, &format!("probe{i}.example")).await;
        seed_quiet(&data, &z).await;
        probes.push(z);
    }
    let token = token(&data).await;
    if config.is_shared() {
        seed_index_only(&config, &big, n, 4096).await;
    } else {
        seed(&data, &config, &big, n, 4096).await;
    }
    data.close().await;
    if config.is_shared() {
        return scale_out::post_latency_shared(n, config, big, probes, &token).await;
    }

    let running = server::start(ServeConfig::ephemeral(config)).await.unwrap();
    let base = format!("http://{}/client/v4", running.api_addr);
    let http = reqwest::Client::new();
    for _ in 0..50 {
        http.get(format!("{base}/zones")).bearer_auth(&token).send().await.unwrap();
    }
    let mut idle = Vec::new();
    for z in &probes[..200] {
        idle.push(post(&http, &base, z, &token).await);
    }
    let on_big = post(&http, &base, &big, &token).await;
    let mut during = Vec::new();
    for z in &probes[200..] {
        during.push(post(&http, &base, z, &token).await);
    }
    idle.sort();
    during.sort();
    println!("| objects stored | POSTs | p50 | p99 | max | POST on the zone holding them |");
    println!(
        "| {n} (reclaimer idle) | {} | {} | {} | {} | {} |",
        idle.len(),
        ms(percentile(&idle, 0.5)),
        ms(percentile(&idle, 0.99)),
        ms(*idle.last().unwrap()),
        ms(on_big)
    );
    println!(
        "| {n} (reclaim of them running) | {} | {} | {} | {} | |",
        during.len(),
        ms(percentile(&during, 0.5)),
        ms(percentile(&during, 0.99)),
        ms(*during.last().unwrap())
    );
    running.shutdown(Duration::from_secs(600)).await;
}

async fn seed_quiet(data: &Stores, z: &ZoneId) {
    data.sql.set_reserve(z, true).await.unwrap();
    Reserve::over(data).put(z, "https://probe/", vec![], Bytes::from_static(b"probe")).await.unwrap();
    data.sql.set_reserve(z, false).await.unwrap();
}

/// Reclaim of `objects` 4 KiB objects against `rm -rf` of as many 4 KiB files, same filesystem, same run. With
/// `--objects-dir`, the bodies and rm's tree live there (e.g. on a tmpfs) and the index stays under `--dir`.
async fn reclaim(a: &Args) {
    let n = if a.objects == 0 { 100_000 } else { a.objects };
    let base = a.dir.join("reclaim");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let batch = ReclaimConfig { batch_size: a.reclaim_batch, ..ReclaimConfig::default() };
    println!(
        "| order | objects | `rm -rf` | our Clear | of which: first batch (drops the generation's files) \
         | later batches (forget the index) | ratio (rm/ours) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for round in 0..a.rounds {
        // rm -rf's tree: 256 directories, like the fan-out of the reserve's one-file bodies.
        let tree = a.objects_dir.as_deref().unwrap_or(&base).join("tree");
        let _ = std::fs::remove_dir_all(&tree);
        let t = Instant::now();
        let body = vec![b'x'; 4096];
        for i in 0..n {
            let d = tree.join(format!("{:02x}", i % 256));
            if i < 256 {
                std::fs::create_dir_all(&d).unwrap();
            }
            std::fs::write(d.join(i.to_string()), &body).unwrap();
        }
        eprintln!("wrote rm -rf's {n} files in {:.1?}", t.elapsed());
        let config = StoreConfig::embedded(fresh_dir(&base, "data", a.objects_dir.as_deref()));
        let data = Stores::open(&config).await.unwrap();
        let z = zone(&data, "example.com").await;
        seed(&data, &config, &z, n, 4096).await;
        let generation_dir = config.data_dir.join("objects").join(z.as_str()).join("g1");
        let segments = std::fs::read_dir(&generation_dir).unwrap().count();
        eprintln!("the zone's generation 1 holds {segments} files (segments and their hints)");
        tokio::time::sleep(Duration::from_secs(3)).await;

        let rm = || {
            let t = Instant::now();
            assert!(Command::new("rm").arg("-rf").arg(&tree).status().unwrap().success());
            let before_sync = t.elapsed();
            Command::new("sync").status().unwrap();
            eprintln!("rm -rf: unlinks {before_sync:.1?}, final sync {:.1?}", t.elapsed() - before_sync);
            assert!(!tree.exists());
            t.elapsed()
        };
        // Split: a segment store drops the cleared generation's files in the first batch (its time is in that
        // batch's `find`, where the reclaimer sweeps), and every batch forgets index entries.
        let ours = || async {
            let t = Instant::now();
            data.sql.start_clear(&z).await.unwrap();
            let started = t.elapsed();
            let reclaimer = Reclaimer::new(data.index(), data.bodies.clone(), batch.clone(), "bench".into());
            let mut first: Option<(Duration, BatchTimings)> = None;
            let (mut later, mut batches) = (BatchTimings::default(), 0);
            loop {
                let s = Instant::now();
                match reclaimer.step().await.unwrap() {
                    Step::Busy(b) if first.is_none() => first = Some((s.elapsed(), b)),
                    Step::Busy(b) => {
                        batches += 1;
                        later.objects += b.objects;
                        later.find += b.find;
                        later.delete_bodies += b.delete_bodies;
                        later.forget += b.forget;
                    }
                    Step::Failed => panic!("a reclaim batch failed"),
                    Step::Idle => break,
                }
            }
            assert!(data.sql.latest_clear(&z).await.unwrap().unwrap().end_ts.is_some());
            let before_sync = t.elapsed();
            Command::new("sync").status().unwrap();
            let (first_time, f) = first.unwrap();
            let rest = before_sync - started - first_time;
            eprintln!(
                "reclaim: start_clear {started:.1?}; first batch {first_time:.1?} (sweep of the generation's files \
                 and find {:.1?}, delete bodies {:.1?}, forget {} entries {:.1?}); {batches} later batches {rest:.1?} \
                 (find {:.1?}, delete bodies {:.1?}, forget {} entries {:.1?}, other {:.1?}); final sync {:.1?}",
                f.find,
                f.delete_bodies,
                f.objects,
                f.forget,
                later.find,
                later.delete_bodies,
                later.objects,
                later.forget,
                rest.saturating_sub(later.find + later.delete_bodies + later.forget),
                t.elapsed() - before_sync
            );
            (t.elapsed(), first_time, rest)
        };
        // Alternate which goes first, so neither always inherits the other's pending discards.
        let (rm_time, (our_time, first_time, rest)) = if round % 2 == 0 {
            let r = rm();
            (r, ours().await)
        } else {
            let o = ours().await;
            (rm(), o)
        };
        // Nothing of the cleared generation is left: no files, no index entries.
        assert!(!generation_dir.exists(), "{} is left after the Clear", generation_dir.display());
        assert_eq!(data.bodies.count(Some(&z)).await.unwrap(), 0, "bodies left after the Clear");
        let url = format!("sqlite://{}", config.data_dir.join("control.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let tables: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM sqlite_master WHERE name = '{}'",
            objects_table(&z, 1).trim_matches('"')
        )))
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(tables, 0, "the cleared generation's index entries are left after the Clear");
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        println!(
            "| {} | {n} | {} ({:.0}/s) | {} ({:.0}/s) | {} | {} | {:.2}x |",
            if round % 2 == 0 { "rm first" } else { "reclaim first" },
            s(rm_time),
            n as f64 / rm_time.as_secs_f64(),
            s(our_time),
            n as f64 / our_time.as_secs_f64(),
            s(first_time),
            s(rest),
            rm_time.as_secs_f64() / our_time.as_secs_f64()
        );
        data.close().await;
    }
}

/// Start-up time (spawn to first answered request) and resident memory of the real binary.
async fn startup(a: &Args) {
    let n = if a.objects == 0 { 1_000_000 } else { a.objects };
    let dir = fresh_dir(&a.dir, &format!("startup-{n}"), a.objects_dir.as_deref());
    let config = StoreConfig::embedded(&dir);
    let data = Stores::open(&config).await.unwrap();
    let z = zone(&data, "example.com").await;
    let token = token(&data).await;
    seed(&data, &config, &z, n, 1024).await;
    data.close().await;
    let http = reqwest::Client::new();
    println!("| objects stored | page cache | ready (median of 5) | RSS after 100 requests | peak RSS |");
    for cold in [false, true] {
        let mut rows = Vec::new();
        for _ in 0..5 {
            if cold && !drop_page_cache() {
                println!("| {n} | cold | (cannot drop the page cache here) | | |");
                return;
            }
            let (ready, rss, hwm) = start_once(&http, &dir, &z, &token).await;
            eprintln!(
                "start ({}): ready in {ready:.1?}, RSS {rss} KiB, peak {hwm} KiB",
                if cold { "cold" } else { "warm" }
            );
            rows.push((ready, rss, hwm));
        }
        rows.sort();
        let (ready, rss, hwm) = rows[rows.len() / 2];
        let cache = if cold { "cold (dropped before each start)" } else { "warm" };
        println!("| {n} | {cache} | {} | {:.1} MiB | {:.1} MiB |", ms(ready), rss as f64 / 1024.0, hwm as f64 / 1024.0);
    }
}

/// `sync` and drop the kernel's page cache (needs root); false if not allowed.
fn drop_page_cache() -> bool {
    Command::new("sync").status().is_ok_and(|s| s.success()) && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Spawns the binary once: time to the first answered request, then RSS and peak RSS (KiB).
async fn start_once(http: &reqwest::Client, dir: &Path, z: &ZoneId, token: &str) -> (Duration, u64, u64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cache-reserve"))
        .args(["serve", "--api-listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/client/v4/zones/{z}/cache/cache_reserve");
    let ready = loop {
        if let Ok(r) = http.get(&url).bearer_auth(token).send().await {
            if r.status().is_success() {
                break t.elapsed();
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "server never answered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    for _ in 0..100 {
        http.get(&url).bearer_auth(token).send().await.unwrap();
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kib = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let row = (ready, kib("VmRSS:"), kib("VmHWM:"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    row
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args();
    match a.scenario.as_str() {
        "post-latency" => post_latency(&a).await,
        "reclaim" => reclaim(&a).await,
        "reclaim-s3" => scale_out::reclaim_s3(&a).await,
        "startup" => startup(&a).await,
        "purge-latency" => purge::purge_latency(&a).await,
        "purge-reclaim" => purge::purge_reclaim(&a).await,
        "churn" => churn::churn(&a).await,
        other => panic!(
            "unknown scenario {other}: post-latency, reclaim, reclaim-s3, startup, purge-latency, purge-reclaim or churn"
        ),
    }
}
