//! The reserve setting across nodes (SPEC §5): `off` on one node stops the other's reserve reads and writes
//! by the time the PATCH answers, and 1152 / 1153 hold under requests racing on two nodes.

use cache_reserve::domain::ZoneId;

use crate::{helpers::*, origin::*, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_on_one_node_stops_reserve_reads_and_writes_on_the_other() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "off.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let (a, b) = (shared.node(&[]), shared.node(&["--edge-cache-bytes", "0"]));
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, true).await, StatusCode::OK);
    origin.set("/kept", Reply::ok("kept", LONG));
    get(&b, host, "/kept").await;
    wait_stored(&shared.data, &shared.zone, host, "/kept").await;
    assert_eq!(get(&b, host, "/kept").await.reserve, "HIT");

    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, false).await, StatusCode::OK);
    // At once on B: no read (the object stays stored, SPEC §5) ...
    let got = get(&b, host, "/kept").await;
    assert_eq!((got.cache.as_str(), got.reserve.as_str(), got.body.as_str()), ("MISS", "OFF", "kept"));
    // ... and no write.
    origin.set("/new", Reply::ok("new", LONG));
    assert_eq!(get(&b, host, "/new").await.reserve, "OFF");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(shared.data.reserve().find(&shared.zone, &format!("{host}/new")).await.unwrap().is_none());
    assert!(shared.data.reserve().find(&shared.zone, &format!("{host}/kept")).await.unwrap().is_some());

    // And `on` on B is in force on A when it answers.
    assert_eq!(set_reserve(&b, &shared.zone, &shared.token, true).await, StatusCode::OK);
    let a_reads = get(&a, host, "/kept").await;
    assert_eq!(a_reads.reserve, "HIT");
}

/// B cut off from the database: A's `off` waits out B's view, and by the time it answers B neither reads nor
/// writes the reserve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_on_one_node_stops_the_reserve_on_a_node_cut_off_from_the_database() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "off-cut.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let db = shared.link().await;
    let (a, b) = (shared.node(&[]), shared.node_behind(&db, &["--edge-cache-bytes", "0"]));
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, true).await, StatusCode::OK);
    origin.set("/kept", Reply::ok("kept", LONG));
    get(&b, host, "/kept").await;
    wait_stored(&shared.data, &shared.zone, host, "/kept").await;
    assert_eq!(get(&b, host, "/kept").await.reserve, "HIT");

    db.freeze(true);
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, false).await, StatusCode::OK);
    let hits = origin.hits("/kept");
    let got = get(&b, host, "/kept").await;
    assert_eq!((got.reserve.as_str(), got.body.as_str()), ("UNAVAILABLE", "kept"));
    assert_eq!(origin.hits("/kept"), hits + 1, "served from the origin, not the reserve");
    origin.set("/new", Reply::ok("new", LONG));
    assert_eq!(get(&b, host, "/new").await.reserve, "UNAVAILABLE");
    db.freeze(false);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(shared.data.reserve().find(&shared.zone, &format!("{host}/new")).await.unwrap().is_none());
    // Reconnected, B follows the setting again.
    wait_until("B to apply `off`", || async { get(&b, host, "/kept").await.reserve == "OFF" }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_and_clear_racing_on_two_nodes_exactly_one_wins() {
    let _serial = SERIAL.lock().await;
    let Some(shared) = Shared::new("race0.example", "http://127.0.0.1:9").await else { return };
    let (a, b) = (shared.node(&[]), shared.node(&[]));
    let mut zones: Vec<ZoneId> = vec![shared.zone.clone()];
    for i in 1..20 {
        zones.push(create_zone(&shared.data, &format!("race{i}.example")).await);
    }
    let (mut on_won, mut clear_won) = (0, 0);
    for z in &zones {
        let (on, clear) = tokio::join!(async { set_reserve(&a, z, &shared.token, true).await }, async {
            api(&b, reqwest::Method::POST, &clear_path(z), &shared.token).await
        },);
        let clear_status = clear.status();
        let clear_body: serde_json::Value = clear.json().await.unwrap();
        match (on, clear_status) {
            (StatusCode::OK, StatusCode::BAD_REQUEST) => {
                assert_eq!(clear_body["errors"][0]["code"], 1152, "{clear_body}");
                on_won += 1;
            }
            (StatusCode::BAD_REQUEST, StatusCode::OK) => clear_won += 1,
            other => panic!("both or neither won: {other:?} {clear_body}"),
        }
        let zone = shared.data.sql.zone(z).await.unwrap().unwrap();
        let running = shared.data.sql.latest_clear(z).await.unwrap().is_some_and(|c| c.end_ts.is_none());
        assert!(!(zone.reserve_on && running), "on with a Clear running");
    }
    eprintln!("on won {on_won} times, the clear {clear_won} times");
}
