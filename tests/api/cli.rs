//! The command line, as a user runs it: admin commands on the data directory, client commands over HTTP.

use std::process::Output;

use crate::helpers::*;

pub fn run(stores: &TestStores, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = binary();
    stores.apply(&mut cmd);
    cmd.args(args);
    for var in ["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_BASE_URL"] {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_from_zone_to_completed_clear() {
    let stores = TestStores::fresh().await;
    let d = stores.dir.path().to_str().unwrap();
    let server = ServerProcess::start(&stores, &[]);

    // Admin commands while the server runs; each prints only what a script needs.
    let zone = stdout(&run(
        &stores,
        &["zone", "create", "example.com", "--origin", "http://127.0.0.1:9000", "--data-dir", d],
        &[],
    ));
    let zone = zone.trim();
    assert!(cache_reserve::domain::ZoneId::parse(zone).is_ok(), "{zone:?}");
    let dup = run(&stores, &["zone", "create", "EXAMPLE.com", "--data-dir", d], &[]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let token = stdout(&run(
        &stores,
        &[
            "token",
            "create",
            "--name",
            "ci",
            "--permission",
            "Zone Settings Write",
            "--zone",
            "example.com",
            "--data-dir",
            d,
        ],
        &[],
    ));
    let token = token.trim();
    assert_eq!(token.len(), 43);
    let listed = stdout(&run(&stores, &["zone", "list", "--data-dir", d], &[]));
    assert!(listed.contains("example.com") && listed.contains("reserve=off"));

    let env = [("CLOUDFLARE_BASE_URL", server.base.as_str()), ("CLOUDFLARE_API_TOKEN", token)];
    let on = stdout(&run(&stores, &["reserve", "on", "example.com"], &env));
    assert!(on.contains("\"value\": \"on\""), "{on}");
    // A refused Clear exits non-zero with Cloudflare's code and message.
    let refused = run(&stores, &["clear", "start", zone], &env);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("error 1152: Turn off Cache Reserve sync"));
    stdout(&run(&stores, &["reserve", "off", zone], &env));
    let done = stdout(&run(&stores, &["clear", "start", "example.com", "--wait", "--interval", "50ms"], &env));
    let done: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(done["state"], "Completed");
    assert!(done["end_ts"].is_string());
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&run(&stores, &["clear", "status", zone], &env))).unwrap();
    assert_eq!(status["start_ts"], done["start_ts"]);

    // A global key works the same way.
    let key = stdout(&run(&stores, &["user", "create", "--email", "ops@example.com", "--data-dir", d], &[]));
    let env_key = [
        ("CLOUDFLARE_BASE_URL", server.base.as_str()),
        ("CLOUDFLARE_EMAIL", "ops@example.com"),
        ("CLOUDFLARE_API_KEY", key.trim()),
    ];
    assert!(stdout(&run(&stores, &["reserve", "get", zone], &env_key)).contains("\"value\": \"off\""));

    // Purge and invalidate, one selector per call; the answer is Cloudflare's `{"id": zone}`.
    for args in [
        &["purge", "example.com", "--url", "https://example.com/a", "--url", "https://example.com/b"][..],
        &["purge", zone, "--tag", "Sale"],
        &["purge", zone, "--host", "static.example.com"],
        &["invalidate", zone, "--prefix", "example.com/assets/"],
        &["purge", zone, "--everything"],
    ] {
        let answer: serde_json::Value = serde_json::from_str(&stdout(&run(&stores, args, &env_key))).unwrap();
        assert_eq!(answer["id"], zone, "{args:?}");
    }
    let two = run(&stores, &["purge", zone, "--tag", "a", "--host", "example.com"], &env_key);
    assert!(!two.status.success() && String::from_utf8_lossy(&two.stderr).contains("cannot be used with"));
    let bare = run(&stores, &["purge", zone, "--url", "/a"], &env_key);
    assert!(String::from_utf8_lossy(&bare.stderr).contains("error 1016"), "{}", String::from_utf8_lossy(&bare.stderr));

    // Revoked tokens stop working at once.
    let id = stdout(&run(&stores, &["token", "list", "--data-dir", d], &[])).split('\t').next().unwrap().to_owned();
    stdout(&run(&stores, &["token", "revoke", &id, "--data-dir", d], &[]));
    assert!(stdout(&run(&stores, &["token", "list", "--data-dir", d], &[])).contains("revoked"));
    let denied = run(&stores, &["reserve", "get", zone], &env);
    assert!(String::from_utf8_lossy(&denied.stderr).contains("error 10000: Authentication error"));
}

#[tokio::test]
async fn bad_arguments_are_explained() {
    let stores = TestStores::fresh().await;
    let d = stores.dir.path().to_str().unwrap();
    let bad_perm =
        run(&stores, &["token", "create", "--name", "x", "--permission", "Zone Admin", "--data-dir", d], &[]);
    assert!(!bad_perm.status.success());
    assert!(String::from_utf8_lossy(&bad_perm.stderr).contains("Zone Settings Write"));
    let bad_zone = run(
        &stores,
        &[
            "token",
            "create",
            "--name",
            "x",
            "--permission",
            "zone_read",
            "--zone",
            "nope.example",
            "--data-dir",
            d,
            "--create",
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&bad_zone.stderr).contains("no zone"));
    let bad_name = run(&stores, &["zone", "create", "bad name", "--data-dir", d], &[]);
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("invalid zone name"));
    let no_creds = run(&stores, &["clear", "status", "example.com"], &[("CLOUDFLARE_BASE_URL", "http://127.0.0.1:9")]);
    assert!(String::from_utf8_lossy(&no_creds.stderr).contains("CLOUDFLARE_API_TOKEN"));
    let unreachable = run(
        &stores,
        &["clear", "status", "example.com"],
        &[("CLOUDFLARE_BASE_URL", "http://127.0.0.1:9"), ("CLOUDFLARE_API_TOKEN", "x")],
    );
    assert_eq!(unreachable.status.code(), Some(3));
}

/// Against a server that reports no progress (as api.cloudflare.com), `--wait` still follows the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_works_without_progress_fields() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Json, Router, routing::get};
    use serde_json::json;

    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let path = "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/smart_shield/cache_reserve_clear";
    let app = Router::new().route(
        path,
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let state = if n < 2 { "In-progress" } else { "Completed" };
            let mut result =
                json!({"id": "cache_reserve_clear", "state": state, "start_ts": "2023-10-02T10:00:00.12345Z"});
            if n >= 2 {
                result["end_ts"] = json!("2023-10-02T12:00:00.12345Z");
            }
            async move { Json(json!({"success": true, "errors": [], "messages": [], "result": result})) }
        })
        .post(|| async {
            Json(json!({"success": true, "errors": [], "messages": [], "result":
                {"id": "cache_reserve_clear", "state": "In-progress", "start_ts": "2023-10-02T10:00:00.12345Z"}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/client/v4", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let stores = TestStores::fresh_of(cache_reserve::storage::testing::Backend::Embedded).await;
    let out = tokio::task::spawn_blocking(move || {
        run(
            &stores,
            &["clear", "start", "023e105f4ecef8ad9ca31a8372d0c353", "--wait", "--interval", "20ms"],
            &[("CLOUDFLARE_BASE_URL", base.as_str()), ("CLOUDFLARE_API_TOKEN", "t")],
        )
    })
    .await
    .unwrap();
    let done: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(done["state"], "Completed");
    assert_eq!(done["end_ts"], "2023-10-02T12:00:00.12345Z");
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_directory_refuses_to_start() {
    // The embedded backends whatever the suite's: shared ones are meant for several servers.
    let stores = TestStores::fresh_of(cache_reserve::storage::testing::Backend::Embedded).await;
    let first = ServerProcess::start(&stores, &[]);
    let mut second = binary();
    stores.apply(&mut second);
    let second =
        second.args(["serve", "--api-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another cache-reserve serve is using the data directory"), "{err}");
    // The first keeps serving.
    let resp = http_client().get(format!("{}/user/tokens/verify", first.base)).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
    // Once it is gone, the directory can be served again.
    first.kill();
    ServerProcess::start(&stores, &[]).kill();
}
