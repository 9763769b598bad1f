//! Conformance with Cloudflare's own Python SDK: runs `tests/sdk/conformance.py` with the interpreter named
//! by `CACHE_RESERVE_SDK_PYTHON` (a venv with `cloudflare==5.9.0`; `.ci/run` makes one). Required in CI.

use std::process::Command;

use cache_reserve::{
    domain::{Permission, TokenScope},
    storage::ControlStore,
};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_python_sdk_drives_the_server() {
    let Ok(python) = std::env::var("CACHE_RESERVE_SDK_PYTHON") else {
        assert!(std::env::var_os("CI").is_none(), "CI must set CACHE_RESERVE_SDK_PYTHON");
        eprintln!("skipped: set CACHE_RESERVE_SDK_PYTHON to a python with cloudflare==5.9.0");
        return;
    };
    let stores = TestStores::fresh().await;
    let data = stores.open().await;
    let zone = create_zone(&data, "sdk.example").await;
    let write =
        create_token(&data, &[Permission::ZoneSettingsWrite], TokenScope::Zones(vec![zone.clone()]), None).await;
    let read =
        create_token(&data, &[Permission::ZoneSettingsRead, Permission::ZoneRead], TokenScope::AllZones, None).await;
    let purge = create_token(&data, &[Permission::CachePurge], TokenScope::AllZones, None).await;
    let key = cache_reserve::domain::secret::Secret::new_global_key();
    data.sql
        .create_user(cache_reserve::storage::StoredUser {
            id: cache_reserve::domain::UserId::generate(),
            email: "sdk@example.com".into(),
            key_hash: key.hash(),
            created_on: cache_reserve::domain::Timestamp::now(),
        })
        .await
        .unwrap();
    fill(&data, &zone, "obj", 50, 512).await;
    data.close().await;

    // Paced so the first Clear is still running when the script checks 1153 (50 objects, ~1 s).
    let server = ServerProcess::start(&stores, &["--reclaim-batch", "5", "--reclaim-pause", "100ms"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/conformance.py");
    let out = Command::new(python)
        .args([script, &server.base, "sdk.example", &write, &read, "sdk@example.com", key.expose(), &purge])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "SDK conformance failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"));
}
