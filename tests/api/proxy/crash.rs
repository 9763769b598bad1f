//! A SIGKILL in the middle of a large reserve write leaves no visible object and no partial body: after a
//! restart the object is a miss and is fetched whole.

use std::time::Duration;

use futures::StreamExt;

use super::{origin::*, *};

#[tokio::test]
async fn sigkill_during_a_large_reserve_write_never_serves_a_truncated_body() {
    let origin = TestOrigin::start().await;
    let host = "kill.example";
    let seeded = Seeded::new(host, &origin.url).await;
    let (stores, data, zone) = (&seeded.stores, &seeded.data, &seeded.zone);
    let size = 48 * 1024 * 1024;
    let body: Bytes = (0..size).map(|i| (i % 253) as u8).collect::<Vec<u8>>().into();
    // About 2.4 s to send, so the kill lands mid-write.
    origin.set("/big", Reply::ok(body.clone(), "public, max-age=86400").slow(1024 * 1024, Duration::from_millis(50)));

    let server = ServerProcess::start(stores, &[]);
    seeded.reserve_on(&server).await;
    let resp = http_client().get(format!("{}/big", server.proxy)).header("host", host).send().await.unwrap();
    assert_eq!(resp.headers()["x-cache-reserve"], "MISS");
    let mut stream = resp.bytes_stream();
    let mut received = 0;
    while received < 16 * 1024 * 1024 {
        received += stream.next().await.unwrap().unwrap().len();
    }
    server.kill();
    drop(stream);
    assert!(data.reserve().find(zone, &format!("{host}/big")).await.unwrap().is_none(), "a partial write is visible");

    let server = ServerProcess::start(stores, &[]);
    // Removed by the start-up clean-up (in the background; on S3 an unfinished upload is invisible).
    wait_bodies(data, 0).await;
    let got = ProxyClient::new(&server.proxy).get(host, "/big").await;
    assert_eq!((got.status, got.cache()), (StatusCode::OK, "MISS"));
    assert!(got.body == body, "wrong body after restart ({} bytes)", got.body.len());

    // Written whole this time, and served whole from the reserve.
    wait_stored(data, zone, host, "/big").await;
    let got = ProxyClient::new(&server.proxy).get(host, "/big").await;
    assert_eq!((got.cache(), got.reserve()), ("HIT", "HIT"));
    assert!(got.body == body, "reserve served a different body ({} bytes)", got.body.len());
}

/// Many small bodies are packed into one segment, group-committed: a SIGKILL while 200 fills are being
/// appended leaves every object the index names whole (served as a reserve hit, byte for byte), and every
/// other one a plain miss fetched whole. A segment the killed process was writing is sealed by the next
/// start, after its torn tail (if any) is cut.
#[tokio::test]
async fn sigkill_during_many_segment_appends_leaves_every_indexed_object_whole() {
    let origin = TestOrigin::start().await;
    let host = "appends.example";
    let seeded = Seeded::new(host, &origin.url).await;
    let (stores, data, zone) = (&seeded.stores, &seeded.data, &seeded.zone);
    let n = 200;
    let body_of =
        |i: usize| -> Bytes { (0..16 * 1024 + i).map(|j| ((i * 7 + j) % 251) as u8).collect::<Vec<u8>>().into() };
    for i in 0..n {
        // Staggered: the fills finish over about two seconds, so the kill lands among them.
        let pause = Duration::from_millis(5 * (i % 40) as u64);
        origin.set(&format!("/o{i}"), Reply::ok(body_of(i), "public, max-age=86400").slow(4096, pause));
    }
    let server = ServerProcess::start(stores, &[]);
    seeded.reserve_on(&server).await;
    let fetches: Vec<_> = (0..n)
        .map(|i| {
            let client = ProxyClient::new(&server.proxy);
            tokio::spawn(async move { client.get("appends.example", &format!("/o{i}")).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while data.reserve().usage(zone).await.unwrap().objects < 20 {
        assert!(std::time::Instant::now() < deadline, "nothing reached the reserve");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for f in fetches {
        let _ = f.await;
    }
    let indexed = data.reserve().usage(zone).await.unwrap().objects;
    assert!(indexed < n as u64, "every fill finished before the kill ({indexed}); the test proves nothing");

    for i in 0..n {
        origin.set(&format!("/o{i}"), Reply::ok(body_of(i), "public, max-age=86400"));
    }
    let server = ServerProcess::start(stores, &[]);
    let client = ProxyClient::new(&server.proxy);
    let mut hits = 0;
    for i in 0..n {
        let path = format!("/o{i}");
        let was_indexed = data.reserve().find(zone, &format!("{host}{path}")).await.unwrap().is_some();
        let got = client.get(host, &path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert!(got.body == body_of(i), "{path}: wrong body ({} bytes)", got.body.len());
        if was_indexed {
            assert_eq!(got.reserve(), "HIT", "{path}: indexed but not served from the reserve");
            hits += 1;
        } else {
            assert_eq!(got.cache(), "MISS", "{path}");
        }
    }
    assert_eq!(hits, indexed);
}
