//! Scale-out benchmarks on PostgreSQL and S3 (issue #9; numbers in BENCHMARKS.md):
//!
//! - `reclaim-s3`: a Clear's reclaim of N objects in the bucket against `aws s3 rm --recursive` of an
//!   identical set (same count, sizes and key layout, another prefix), same server, same run;
//! - `post-latency --backend shared`: POST Clear latency with one node, then with two nodes on the same
//!   stores (a POST waits for the other node to acknowledge the change).

use futures::stream;

use super::*;
use cache_reserve::{
    reserve::key_hash,
    storage::bodies::{BodyStore, s3::S3Location},
};

/// The `aws` command: `CACHE_RESERVE_AWS_CLI`, else `.venv-awscli/bin/aws` (PyPI `awscli`).
fn aws_cli() -> String {
    std::env::var("CACHE_RESERVE_AWS_CLI").unwrap_or_else(|_| ".venv-awscli/bin/aws".into())
}

/// Stores `n` bodies of `size` bytes under `bodies`, laid out as the reserve lays out a zone's
/// generation 1 (`{zone}/g1/{hh}/{key_hash}.{write_id}`), 64 PUTs in flight.
async fn seed_bodies(bodies: &dyn BodyStore, zone: &ZoneId, n: usize, size: usize) {
    let body = Bytes::from(vec![b'x'; size]);
    stream::iter(0..n)
        .map(|i| {
            let key = key_hash(&format!("https://bench/{i}"));
            let body = body.clone();
            async move { drop(bodies.put(zone, 1, &key, body).await.unwrap()) }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// Reclaim of `objects` 4 KiB objects on S3 against `aws s3 rm --recursive` of as many 4 KiB objects.
pub(super) async fn reclaim_s3(a: &Args) {
    let n = if a.objects == 0 { 100_000 } else { a.objects };
    let aws = aws_cli();
    let version = Command::new(&aws).arg("--version").output().expect("the aws CLI (CACHE_RESERVE_AWS_CLI)");
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    println!("| order | objects | `aws s3 rm --recursive` | reclaim | ratio (reclaim/aws) |");
    println!("|---|---|---|---|---|");
    for round in 0..2 {
        let config = Backend::Shared.fresh(&fresh_dir(&a.dir, "reclaim-s3", None)).await.unwrap();
        let cache_reserve::storage::open::BodyBackend::S3 { location, endpoint } = &config.bodies else {
            panic!("reclaim-s3 needs the shared backend")
        };
        let endpoint = endpoint.clone().expect("CACHE_RESERVE_TEST_S3_ENDPOINT");
        let theirs = S3Location { bucket: location.bucket.clone(), prefix: format!("{}-aws", location.prefix) };
        let aws_bodies = cache_reserve::storage::bodies::s3::open(&theirs, Some(&endpoint)).unwrap();
        let data = Stores::open(&config).await.unwrap();
        let z = zone(&data, "example.com").await;
        let started = Instant::now();
        tokio::join!(seed(&data, &config, &z, n, 4096), seed_bodies(&aws_bodies, &z, n, 4096));
        eprintln!("seeded both sets ({n} objects each) in {:.1?}", started.elapsed());
        assert_eq!(data.bodies.count(Some(&z)).await.unwrap(), n as u64);
        assert_eq!(aws_bodies.count(None).await.unwrap(), n as u64);
        tokio::time::sleep(Duration::from_secs(3)).await;

        let rm = || {
            let t = Instant::now();
            let status = Command::new(&aws)
                .args(["s3", "rm", &format!("{theirs}"), "--recursive", "--quiet", "--endpoint-url", &endpoint])
                .status()
                .unwrap();
            assert!(status.success(), "aws s3 rm failed");
            t.elapsed()
        };
        let ours = || async {
            let t = Instant::now();
            data.sql.start_clear(&z).await.unwrap();
            let reclaimer = Reclaimer::new(data.index(), data.bodies.clone(), ReclaimConfig::default(), "bench".into());
            let mut spent = BatchTimings::default();
            while let Step::Busy(b) = reclaimer.step().await.unwrap() {
                spent.find += b.find;
                spent.delete_bodies += b.delete_bodies;
                spent.forget += b.forget;
            }
            let elapsed = t.elapsed();
            assert!(data.sql.latest_clear(&z).await.unwrap().unwrap().end_ts.is_some());
            eprintln!(
                "reclaim: find {:.1?}, delete bodies {:.1?}, forget {:.1?}, rest {:.1?}",
                spent.find,
                spent.delete_bodies,
                spent.forget,
                elapsed.saturating_sub(spent.find + spent.delete_bodies + spent.forget),
            );
            elapsed
        };
        // Alternate which goes first, as `reclaim` does.
        let (rm_time, our_time) = if round == 0 {
            let r = rm();
            (r, ours().await)
        } else {
            let o = ours().await;
            (rm(), o)
        };
        assert_eq!(data.bodies.count(Some(&z)).await.unwrap(), 0, "bodies left after the reclaim");
        assert_eq!(aws_bodies.count(None).await.unwrap(), 0, "objects left after aws s3 rm");
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "| {} | {n} | {:.1} s ({:.0}/s) | {:.1} s ({:.0}/s) | {:.2}x |",
            if round == 0 { "aws first" } else { "reclaim first" },
            rm_time.as_secs_f64(),
            rate(rm_time),
            our_time.as_secs_f64(),
            rate(our_time),
            rate(our_time) / rate(rm_time)
        );
        data.close().await;
    }
}

/// POSTs `zones` in turn, alternating between the `bases` given (one per node).
async fn posts(http: &reqwest::Client, bases: &[String], zones: &[ZoneId], token: &str) -> Vec<Duration> {
    let mut times = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        times.push(post(http, &bases[i % bases.len()], z, token).await);
    }
    times.sort();
    times
}

fn row(label: &str, times: &[Duration], extra: &str) {
    println!(
        "| {label} | {} | {} | {} | {} | {extra} |",
        times.len(),
        ms(percentile(times, 0.5)),
        ms(percentile(times, 0.99)),
        ms(*times.last().unwrap())
    );
}

/// POST Clear latency on PostgreSQL and S3 with `n` index entries in one zone: 200 POSTs on small zones
/// with one node (A) and the big zone idle; then a second node (B) on the same stores and 200 POSTs
/// alternating between them; one POST on the big zone; 200 (alternating) while its reclaim runs; then B
/// stops, and after the first two POSTs that follow (a stopped node is waited for until its view would
/// have expired) and a pause of `view_ttl`, 200 on A alone while the reclaim still runs.
pub(super) async fn post_latency_shared(n: usize, config: StoreConfig, big: ZoneId, probes: Vec<ZoneId>, token: &str) {
    let probe = |i: usize| &probes[i * 200..(i + 1) * 200];
    let data = Stores::open(&config).await.unwrap();
    let reclaiming = || async { data.sql.latest_clear(&big).await.unwrap().is_some_and(|c| c.end_ts.is_none()) };
    let http = reqwest::Client::new();
    let start = || async {
        let node = server::start(ServeConfig::ephemeral(config.clone())).await.unwrap();
        let base = format!("http://{}/client/v4", node.api_addr);
        for _ in 0..50 {
            http.get(format!("{base}/zones")).bearer_auth(token).send().await.unwrap();
        }
        (node, base)
    };
    println!("| objects stored | nodes, reclaim | POSTs | p50 | p99 | max | note |");
    println!("|---|---|---|---|---|---|---|");
    let (a, base_a) = start().await;
    let only_a = std::slice::from_ref(&base_a);
    row(&format!("{n} | 1 node, reclaimer idle"), &posts(&http, only_a, probe(0), token).await, "");

    let (b, base_b) = start().await;
    let both = [base_a.clone(), base_b];
    row(&format!("{n} | 2 nodes, reclaimer idle"), &posts(&http, &both, probe(1), token).await, "");
    let on_big = post(&http, &base_a, &big, token).await;
    let during2 = posts(&http, &both, probe(2), token).await;
    let still = reclaiming().await;
    let note = format!("POST on the zone holding them first: {}; reclaim still running after: {still}", ms(on_big));
    row(&format!("{n} | 2 nodes, reclaim running"), &during2, &note);

    // A node that stopped cleanly stays in the node table until its view would have expired.
    b.shutdown(Duration::from_secs(60)).await;
    let first = post(&http, &base_a, &probe(0)[0], token).await;
    let second = post(&http, &base_a, &probe(0)[1], token).await;
    tokio::time::sleep(SyncConfig::default().view_ttl).await;
    let during1 = posts(&http, only_a, probe(3), token).await;
    let still = reclaiming().await;
    let note = format!(
        "after the other node stopped: first POST {}, second {}; then 1 s later these; reclaim still running after: {still}",
        ms(first),
        ms(second)
    );
    row(&format!("{n} | 1 node, reclaim running"), &during1, &note);
    a.shutdown(Duration::from_secs(600)).await;
    data.close().await;
}
