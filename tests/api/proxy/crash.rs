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
