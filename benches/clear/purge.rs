//! `purge-latency`: POST purge_cache latency against the number of objects it targets (SPEC §10: the POST's
//! cost must not grow with them). One server, zones of 1 and of N objects all carrying the tag purged.

use std::time::{Duration, Instant};

use super::*;

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
    seed(&data, &config, &small, 1, 4096).await;
    seed(&data, &config, &big, n, 4096).await;
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
