//! Issue #12 part B: the mistakes of an operator's first hour are refused and explained, not silently
//! accepted: a data directory that is not there, a configuration out of range, a base URL that is wrong.

use crate::{
    cli::{run, stdout},
    helpers::*,
    proxy::{
        ProxyClient,
        origin::{Reply, TestOrigin},
    },
};
use cache_reserve::storage::testing::Backend;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// B1: from another directory, an admin command once created a new empty data directory and reported success.
#[tokio::test]
async fn admin_commands_refuse_a_missing_data_directory_unless_asked_to_create_it() {
    let stores = TestStores::fresh_of(Backend::Embedded).await;
    let missing = stores.dir.path().join("elsewhere");
    let d = missing.to_str().unwrap();
    for args in [
        &["zone", "create", "example.com", "--data-dir", d][..],
        &["zone", "list", "--data-dir", d],
        &["token", "list", "--data-dir", d],
        &["user", "create", "--email", "ops@example.com", "--data-dir", d],
        &["migrate", "--data-dir", d],
    ] {
        let out = run(&stores, args, &[]);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(&format!("no data directory at {d}")), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--create"), "{}", stderr(&out));
        assert!(!missing.exists(), "{args:?} created it");
    }
    // An empty listing says where it looked.
    let out = run(&stores, &["zone", "list", "--data-dir", d, "--create"], &[]);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains(&format!("no zones in {d}/control.db")), "{}", stderr(&out));
    let id = stdout(&run(&stores, &["zone", "create", "example.com", "--data-dir", d], &[]));
    assert!(stdout(&run(&stores, &["zone", "list", "--data-dir", d], &[])).starts_with(id.trim()));
}

/// B6: `--retention 400000d` panicked at start, `token create --expires-in 3000000d` made every token verify
/// answer 500 (a time past year 9999), `--zone-refresh 0s` busy-looped.
#[tokio::test]
async fn a_configuration_out_of_range_is_refused_at_start_with_its_limits() {
    let stores = TestStores::fresh().await;
    let out = binary()
        .args(["serve", "--api-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .args(["--retention", "400000d", "--zone-refresh", "0s", "--edge-cache-bytes", "2TiB"])
        .args(["--data-dir", stores.dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--retention 400000d is out of range: 1m to 3650d"), "{err}");
    assert!(err.contains("--zone-sync-interval 0ms is out of range: 1ms to 1h"), "{err}");
    assert!(err.contains("--edge-cache-bytes 2TiB is out of range: 0B to 1TiB"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let d = stores.dir.path().to_str().unwrap();
    let args = ["token", "create", "--name", "x", "--permission", "zone_read", "--expires-in", "3000000d"];
    let out = run(&stores, &[&args[..], &["--data-dir", d, "--create"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("out of range: 1ms to 36500d (100 years)"), "{}", stderr(&out));
}

/// B5: an origin with a path prefix was refused although the proxy supports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_with_a_path_prefix_is_accepted_and_prefixes_every_path() {
    let origin = TestOrigin::start().await;
    origin.set("/app/hello.txt", Reply::ok("hello", "max-age=60"));
    let stores = TestStores::fresh().await;
    let d = stores.dir.path().to_str().unwrap();
    let with_prefix = format!("{}/app/", origin.url);
    stdout(&run(
        &stores,
        &["zone", "create", "example.com", "--origin", &with_prefix, "--data-dir", d, "--create"],
        &[],
    ));
    let listed = stdout(&run(&stores, &["zone", "list", "--data-dir", d], &[]));
    assert!(listed.contains(&format!("origin={}/app\n", origin.url)), "{listed}");
    let query = format!("{}/app?x=1", origin.url);
    let out = run(&stores, &["zone", "create", "b.example", "--origin", &query, "--data-dir", d], &[]);
    assert!(stderr(&out).contains("no query"), "{}", stderr(&out));

    let server = ServerProcess::start(&stores, &[]);
    let got = ProxyClient::new(&server.proxy).get("example.com", "/hello.txt").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "hello");
    assert_eq!(origin.hits("/app/hello.txt"), 1);
}

/// B2 and B4: a client error names the API it talked to and keeps the cause, and the precise cause that
/// Cloudflare nests in `error_chain`; a base URL without `/client/v4` gets a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_name_the_api_and_keep_the_cause() {
    let stores = TestStores::fresh().await;
    let server = ServerProcess::start(&stores, &[]);
    let refused = run(
        &stores,
        &["reserve", "get", "example.com"],
        &[("CLOUDFLARE_BASE_URL", "http://127.0.0.1:9/client/v4"), ("CLOUDFLARE_API_TOKEN", "t")],
    );
    assert_eq!(refused.status.code(), Some(3));
    let err = stderr(&refused).to_lowercase();
    assert!(err.contains("cannot reach the api at http://127.0.0.1:9/client/v4"), "{err}");
    assert!(err.contains("connection refused"), "{err}");

    let bad_key = run(
        &stores,
        &["reserve", "get", "023e105f4ecef8ad9ca31a8372d0c353"],
        &[("CLOUDFLARE_BASE_URL", &server.base), ("CLOUDFLARE_EMAIL", "a@example.com"), ("CLOUDFLARE_API_KEY", "x")],
    );
    let err = stderr(&bad_key);
    assert!(err.contains("error 6003: Invalid request headers (error 6103: Invalid format for X-Auth-Key"), "{err}");
    assert!(err.contains(&format!("(from {})", server.base)), "{err}");

    let root = server.base.strip_suffix("/client/v4").unwrap();
    let no_prefix = run(
        &stores,
        &["reserve", "get", "023e105f4ecef8ad9ca31a8372d0c353"],
        &[("CLOUDFLARE_BASE_URL", root), ("CLOUDFLARE_API_TOKEN", "t")],
    );
    let err = stderr(&no_prefix);
    assert!(err.contains("error 7000: No route for that URI"), "{err}");
    assert!(err.contains("the base URL should end in /client/v4"), "{err}");
}

/// B3: `clear wait` and `clear status --wait` re-attach to a running Clear and never start one; in a log (stderr
/// not a terminal) progress comes as plain lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_wait_reattaches_without_starting_a_clear() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Json, Router, routing::get};
    use serde_json::json;

    let (gets, posts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (g, p) = (gets.clone(), posts.clone());
    let path = "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/smart_shield/cache_reserve_clear";
    let app = Router::new().route(
        path,
        get(move || {
            // In-progress for the first three polls of each command, then Completed.
            let state = if g.fetch_add(1, Ordering::SeqCst) % 4 < 3 { "In-progress" } else { "Completed" };
            let progress = json!({"objects_deleted": 3, "objects_remaining": 7, "bytes_deleted": 2048});
            let result = json!({"id": "cache_reserve_clear", "state": state, "progress": progress,
                "start_ts": "2023-10-02T10:00:00.12345Z"});
            async move { Json(json!({"success": true, "errors": [], "messages": [], "result": result})) }
        })
        .post(move || {
            p.fetch_add(1, Ordering::SeqCst);
            async { Json(json!({"success": false, "errors": [{"code": 1, "message": "must not start"}]})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/client/v4", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let stores = TestStores::fresh_of(Backend::Embedded).await;
    let out = tokio::task::spawn_blocking(move || {
        let env = [("CLOUDFLARE_BASE_URL", base.as_str()), ("CLOUDFLARE_API_TOKEN", "t")];
        let zone = "023e105f4ecef8ad9ca31a8372d0c353";
        [
            run(&stores, &["clear", "wait", zone, "--interval", "20ms"], &env),
            run(&stores, &["clear", "status", zone, "--wait", "--interval", "20ms"], &env),
        ]
    })
    .await
    .unwrap();
    for out in &out {
        let done: serde_json::Value = serde_json::from_str(&stdout(out)).unwrap();
        assert_eq!(done["state"], "Completed");
        assert!(
            stderr(out).contains("Cache Reserve Clear: In-progress, 3/10 objects, 2.00 KiB deleted"),
            "{}",
            stderr(out)
        );
    }
    assert_eq!(gets.load(Ordering::SeqCst), 8);
    assert_eq!(posts.load(Ordering::SeqCst), 0, "waiting must never start a Clear");
}

/// B3: `stats` takes a zone id as well as a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_takes_a_zone_id() {
    let origin = TestOrigin::start().await;
    origin.set("/a", Reply::ok("a", "max-age=60"));
    let seeded = crate::proxy::Seeded::new("example.com", &origin.url).await;
    let server = ServerProcess::start(&seeded.stores, &[]);
    ProxyClient::new(&server.proxy).get("example.com", "/a").await;
    let env = [("CLOUDFLARE_BASE_URL", server.base.as_str()), ("CLOUDFLARE_API_TOKEN", seeded.token.as_str())];
    let shown = stdout(&run(&seeded.stores, &["stats", seeded.zone.as_str()], &env));
    assert!(shown.starts_with("zone example.com\n"), "{shown}");
    assert!(shown.contains("responses MISS"), "{shown}");
}

/// B9: a liveness and a readiness endpoint for load balancers (the outage cases in tests/scale_out show
/// readiness failing), and an access log of one JSON line per proxied request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_an_access_log_line_per_request() {
    let origin = TestOrigin::start().await;
    origin.set("/a?x=1", Reply::ok("hello", "max-age=60"));
    let seeded = crate::proxy::Seeded::new("example.com", &origin.url).await;
    let log = seeded.stores.dir.path().join("access.log");
    let server = ServerProcess::start(&seeded.stores, &["--access-log", log.to_str().unwrap()]);
    let root = server.base.trim_end_matches("/client/v4");
    for (path, want) in [("/healthz", r#"{"status":"ok"}"#), ("/readyz", r#""ready":true"#)] {
        let r = http_client().get(format!("{root}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains(want), "{path}");
    }

    let proxy = ProxyClient::new(&server.proxy);
    assert_eq!(proxy.get("example.com", "/a?x=1").await.cache(), "MISS");
    assert_eq!(proxy.get("example.com", "/a?x=1").await.cache(), "HIT");
    let head = proxy.request(reqwest::Method::HEAD, "example.com", "/a?x=1").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(proxy.get("nowhere.example", "/").await.status, 421);

    let lines = wait_for_lines(&log, 4).await;
    let (miss, hit, head, unknown) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["host"], "example.com");
    assert_eq!(miss["uri"], "/a?x=1");
    assert_eq!(miss["zone"], "example.com");
    assert_eq!(miss["client"], "127.0.0.1");
    assert_eq!((miss["status"].as_u64(), miss["cache"].as_str()), (Some(200), Some("MISS")));
    assert_eq!((miss["bytes"].as_u64(), miss["complete"].as_bool()), (Some(5), Some(true)));
    assert!(miss["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(miss["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!((hit["cache"].as_str(), hit["reserve"].as_str()), (Some("HIT"), Some("EDGE")));
    assert_eq!((head["method"].as_str(), head["bytes"].as_u64()), (Some("HEAD"), Some(0)));
    assert_eq!((unknown["status"].as_u64(), &unknown["zone"]), (Some(421), &serde_json::Value::Null));
}

/// The access log's lines, once there are at least `n` (the writer is asynchronous).
async fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "{} lines: {text}", lines.len());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// B8: zones with fixed ids for offline automation, and their deletion reaching a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_create_with_a_fixed_id_and_zone_delete_reach_a_running_server() {
    let origin = TestOrigin::start().await;
    origin.set("/hello", Reply::ok("hello", "max-age=60"));
    let stores = TestStores::fresh().await;
    let d = stores.dir.path().to_str().unwrap();
    let id = "0123456789abcdef0123456789abcdef";
    let create = |name: &str, id: &str| {
        run(&stores, &["zone", "create", name, "--id", id, "--origin", &origin.url, "--data-dir", d, "--create"], &[])
    };
    assert_eq!(stdout(&create("example.com", id)), format!("{id}\n"));
    let taken = create("other.example", id);
    assert!(stderr(&taken).contains(&format!("zone id {id} already exists")), "{}", stderr(&taken));
    let bad = create("other.example", "0123456789ABCDEF0123456789ABCDEF");
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("is not a zone id: expected 32 lowercase hex digits"), "{}", stderr(&bad));

    let server = ServerProcess::start(&stores, &[]);
    let proxy = ProxyClient::new(&server.proxy);
    assert_eq!(proxy.get("example.com", "/hello").await.status, 200);
    assert_eq!(stdout(&run(&stores, &["zone", "delete", "example.com", "--data-dir", d], &[])), format!("{id}\n"));
    // The change feed carries the deletion to the running server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proxy.get("example.com", "/hello").await.status != 421 {
        assert!(std::time::Instant::now() < deadline, "the server still serves the deleted zone");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let again = run(&stores, &["zone", "delete", id, "--data-dir", d], &[]);
    assert!(stderr(&again).contains(&format!("no zone \"{id}\"")), "{}", stderr(&again));
    let listed = run(&stores, &["zone", "list", "--data-dir", d], &[]);
    assert_eq!(stdout(&listed), "");
    // The id and the name can be used again.
    assert_eq!(stdout(&create("example.com", id)), format!("{id}\n"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proxy.get("example.com", "/hello").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "the server does not serve the zone created again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
