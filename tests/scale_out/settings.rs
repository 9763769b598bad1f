//! The reserve setting across nodes (SPEC §5): `off` on one node stops the other's reserve reads and writes
//! by the time the PATCH answers, and 1152 / 1153 hold under requests racing on two nodes.

use std::time::Duration;

use cache_reserve::{domain::ZoneId, storage::open::ControlBackend};

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

/// B reads the change feed, then its record of that sync is held back (a lock on its row in `nodes`) until
/// its previous record is older than the view's lifetime. A's `off` then finds B silent and answers at once.
/// When B's record commits, the view B read before the `off` must not come into use: the record of the
/// sync before it had lapsed, so a change could have been acknowledged without B (SPEC §5, §6.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_record_came_too_late_does_not_install_the_view_it_read() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "late-record.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    // Syncs far apart within a view's lifetime (but under half of it, so that a sync reads before it
    // records): a sync's read comes well after the previous sync's record.
    let ttl = Duration::from_secs(2);
    let timing = ["--zone-sync-interval", "700ms", "--zone-view-ttl", "2s"];
    let a = shared.node(&timing);
    let b = shared.node(&[&timing[..], &["--edge-cache-bytes", "0"]].concat());
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, true).await, StatusCode::OK);
    origin.set("/kept", Reply::ok("kept", LONG));
    get(&b, host, "/kept").await;
    wait_stored(&shared.data, &shared.zone, host, "/kept").await;
    wait_until("B to read /kept from its reserve", || async { get(&b, host, "/kept").await.reserve == "HIT" }).await;

    let ControlBackend::Postgres { url } = &shared.stores.config.control else { unreachable!("shared stores") };
    let db = Db { url: url.clone() };
    let b_row = format!("SELECT synced_on FROM nodes WHERE id LIKE '%-{}-%'", b.child.id());
    // Lock B's row just after a record commits, so that B's next sync reads the feed, then waits.
    let before = db.scalar(&b_row).await;
    wait_until("B to record a sync", || async { db.scalar(&b_row).await > before }).await;
    let row_lock = db.hold(&format!("{b_row} FOR UPDATE")).await;
    let last = row_lock.value;
    let since = Duration::from_micros(u64::try_from(db.scalar(NOW).await - last).unwrap_or(0));
    let silent = tokio::time::Instant::now() + ttl.saturating_sub(since) + Duration::from_millis(100);
    wait_until("B's record to wait for the lock", || async { db.scalar(LOCK_WAITS).await > 0 }).await;
    // Once B's last record is older than the view's lifetime, A counts B as silent and answers at once.
    tokio::time::sleep_until(silent).await;
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, false).await, StatusCode::OK);

    // B's next sync would read the `off` (a notification wakes it at once): hold its read of the rules,
    // which comes before it applies what it read. Then let the held record commit.
    let feed_lock = db.hold("LOCK TABLE purge_rules IN ACCESS EXCLUSIVE MODE").await;
    row_lock.release().await;
    wait_until("B's held record to commit", || async { db.scalar(&b_row).await > last }).await;
    let got = get(&b, host, "/kept").await;
    assert_ne!(got.reserve, "HIT", "B read its reserve by a view older than the acknowledged `off`");
    assert_eq!(got.body, "kept");
    feed_lock.release().await;
    wait_until("B to apply `off`", || async { get(&b, host, "/kept").await.reserve == "OFF" }).await;
}

/// The database's clock, µs since the epoch (as `nodes.synced_on`).
const NOW: &str = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)";

/// Sessions of this test's database waiting for a lock (another suite's waits elsewhere on the server
/// must not pass for B's).
const LOCK_WAITS: &str =
    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";

/// The shared PostgreSQL, for statements of the test's own.
struct Db {
    url: String,
}

/// A transaction held open (and the locks it took), until released.
struct Held {
    conn: sqlx::PgConnection,
    /// What its statement returned, when it returned a number.
    value: i64,
}

impl Db {
    async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }

    /// The one number `query` returns.
    async fn scalar(&self, query: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query.to_owned()))
            .fetch_one(&mut self.connect().await)
            .await
            .unwrap()
    }

    /// Runs `statement` in a transaction left open.
    async fn hold(&self, statement: &str) -> Held {
        let mut conn = self.connect().await;
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let statement = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(statement.to_owned()));
        let value = statement.fetch_optional(&mut conn).await.unwrap().unwrap_or(0);
        Held { conn, value }
    }
}

impl Held {
    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.conn).await.unwrap();
    }
}
