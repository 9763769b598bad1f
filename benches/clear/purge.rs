//! `purge-latency`: POST purge_cache latency against the number of objects it targets (SPEC §10: the POST's
//! cost must not grow with them). One server, zones of 1 and of N objects all carrying the tag purged.
//!
//! `purge-reclaim`: how fast the background work deletes what a purge by tag targets, against a Clear's
//! reclaim of as many objects on the same disk.

use std::time::{Duration, Instant, SystemTime};

use cache_reserve::{
    domain::{PurgeAction, PurgeTarget},
    http_cache::{CacheRules, StoredResponse, codec},
    jobs::PurgeReclaimer,
};

use super::*;

/// Above this many objects, `purge-latency` seeds index entries only: the POST reads no object, and four
/// gigabytes of bodies would only make the run long.
const INDEX_ONLY_ABOVE: usize = 200_000;

/// The metadata of a response tagged `t` (and `other`), as the proxy stores it.
pub fn tagged_meta() -> Vec<u8> {
    let (parts, ()) = http::Request::builder().uri("/").body(()).unwrap().into_parts();
    let mut h = http::HeaderMap::new();
    h.insert("cache-control", http::HeaderValue::from_static("public, max-age=86400"));
    h.insert("cache-tag", http::HeaderValue::from_static("t, other"));
    let now = SystemTime::now();
    let stored =
        StoredResponse::admit(&parts, http::StatusCode::OK, &h, now, now, &CacheRules::default()).expect("storable");
    codec::encode(&stored)
}

/// `n` index entries with metadata `meta` and no bodies, straight into the embedded store's SQLite file.
async fn seed_sqlite_index(config: &StoreConfig, zone: &ZoneId, n: usize, size: usize, meta: &[u8]) {
    let started = Instant::now();
    let url = format!("sqlite://{}", config.data_dir.join("control.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < {n})
         INSERT INTO {} (key_hash, cache_key, blob, size, meta, stored_on, last_access, fill_revision)
         SELECT printf('%064x', n), 'https://bench/' || n, '{zone}/g1/none/' || n, {size}, $1, $2, $2, 0
         FROM i",
        objects_table(zone, 1)
    )))
    .bind(meta)
    // Stored and read now: entries never read would be the retention job's to evict, during the run.
    .bind(Timestamp::now().as_micros())
    .execute(&mut db)
    .await
    .unwrap();
    db.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ('{zone}', 1, {n}, {bytes})
         ON CONFLICT (zone_id, generation) DO UPDATE SET objects = generations.objects + {n},
                                                          bytes = generations.bytes + {bytes};
         PRAGMA wal_checkpoint(TRUNCATE);",
        bytes = n * size
    )))
    .await
    .unwrap();
    eprintln!("seeded {n} index entries in {:.1?}", started.elapsed());
}

async fn purge(http: &reqwest::Client, base: &str, zone: &ZoneId, token: &str, body: &serde_json::Value) -> Duration {
    let t = Instant::now();
    let r = http.post(format!("{base}/zones/{zone}/purge_cache")).bearer_auth(token).json(body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    r.bytes().await.unwrap();
    t.elapsed()
}

fn row(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let n = times.len();
    println!(
        "| {what} | {n} | {} | {} | {} |",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap())
    );
}

pub async fn purge_latency(a: &Args) {
    let n = if a.objects == 0 { 100_000 } else { a.objects };
    let config = fresh_stores(a, &format!("purge-latency-{n}")).await;
    let data = Stores::open(&config).await.unwrap();
    let small = zone(&data, "small.example").await;
    let big = zone(&data, "big.example").await;
    let everything: Vec<ZoneId> = {
        let mut zones = Vec::new();
        for i in 0..200 {
            zones.push(zone(&data, &format!("everything{i}.example")).await);
        }
        zones
    };
    let token = token(&data).await;
    let meta = tagged_meta();
    seed_with(&data, &config, &small, 1, 4096, &meta).await;
    if n > INDEX_ONLY_ABOVE && !config.is_shared() {
        seed_sqlite_index(&config, &big, n, 4096, &meta).await;
    } else {
        seed_with(&data, &config, &big, n, 4096, &meta).await;
    }
    for z in [&small, &big] {
        data.sql.set_reserve(z, true).await.unwrap();
    }
    data.close().await;

    let running = server::start(ServeConfig::ephemeral(config)).await.unwrap();
    let base = format!("http://{}/client/v4", running.api_addr);
    let http = reqwest::Client::new();
    let tag = serde_json::json!({"tags": ["t"]});
    for _ in 0..50 {
        purge(&http, &base, &small, &token, &tag).await;
    }
    let (mut on_small, mut on_big) = (Vec::new(), Vec::new());
    // Interleaved, so drift on this shared machine falls on both alike.
    for _ in 0..200 {
        on_small.push(purge(&http, &base, &small, &token, &tag).await);
        on_big.push(purge(&http, &base, &big, &token, &tag).await);
    }
    let all = serde_json::json!({"purge_everything": true});
    let mut empty = Vec::new();
    for z in &everything {
        empty.push(purge(&http, &base, z, &token, &all).await);
    }
    let on_big_everything = purge(&http, &base, &big, &token, &all).await;
    println!("| POST purge_cache | POSTs | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    row("`tags` on a zone of 1 object", on_small);
    row(&format!("`tags` on a zone of {n} objects"), on_big);
    row("`purge_everything` on empty zones", empty);
    row(&format!("`purge_everything` on the zone of {n} objects"), vec![on_big_everything]);
    running.shutdown(Duration::from_secs(10)).await;
}

pub async fn purge_reclaim(a: &Args) {
    let n = if a.objects == 0 { 100_000 } else { a.objects };
    let config = StoreConfig::embedded(fresh_dir(&a.dir, "purge-reclaim", a.objects_dir.as_deref()));
    let data = Stores::open(&config).await.unwrap();
    let meta = tagged_meta();
    let (purged, cleared) = (zone(&data, "purged.example").await, zone(&data, "cleared.example").await);
    seed_with(&data, &config, &purged, n, 4096, &meta).await;
    seed_with(&data, &config, &cleared, n, 4096, &meta).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let clear = async {
        let t = Instant::now();
        data.sql.start_clear(&cleared).await.unwrap();
        let reclaimer = Reclaimer::new(data.index(), data.bodies.clone(), ReclaimConfig::default(), "bench".into());
        while let Step::Busy(_) = reclaimer.step().await.unwrap() {}
        Command::new("sync").status().unwrap();
        t.elapsed()
    };
    let purge = async {
        let t = Instant::now();
        data.sql.purge(&purged, PurgeAction::Purge, &[PurgeTarget::Tag("t".into())]).await.unwrap();
        let job = PurgeReclaimer::new(data.purge_index(), data.bodies.clone(), Duration::ZERO, Duration::ZERO);
        while job.round().await.unwrap().0 > 0 {}
        Command::new("sync").status().unwrap();
        assert_eq!(data.index().usage(&purged).await.unwrap().objects, 0, "the purge left objects");
        t.elapsed()
    };
    let clear_time = clear.await;
    let purge_time = purge.await;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("| reclaim of {n} × 4 KiB objects (embedded, one run) | seconds | objects/s |");
    println!("|---|---|---|");
    println!("| Clear (generation dropped) | {:.1} | {:.0} |", clear_time.as_secs_f64(), rate(clear_time));
    println!(
        "| purge by tag (one pass judging every entry) | {:.1} | {:.0} |",
        purge_time.as_secs_f64(),
        rate(purge_time)
    );
    println!("| purge ÷ Clear | | {:.2}× |", rate(purge_time) / rate(clear_time));
}
