//! SPEC §9: one node reclaims a Clear at a time, under a lease; when that node is killed, another finishes
//! the Clear with no manual step.

use crate::{helpers::*, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_whose_node_is_killed_is_finished_by_another() {
    let _serial = SERIAL.lock().await;
    let Some(shared) = Shared::new("takeover.example", "http://127.0.0.1:9").await else { return };
    fill(&shared.data, &shared.zone, "old", 200, 512).await;
    // Paced (a batch of 5 every 100 ms) so the kill lands mid-reclaim; a short lease so the takeover is quick.
    let flags = ["--reclaim-batch", "5", "--reclaim-pause", "100ms", "--reclaim-lease", "2s"];
    let a = shared.node(&flags);
    let r = api(&a, reqwest::Method::POST, &clear_path(&shared.zone), &shared.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    wait_until("reclaim to start", || async {
        latest_clear(&shared.data, &shared.zone).await.progress.objects_deleted() > 0
    })
    .await;
    let b = shared.node(&flags);
    a.kill();
    let at_kill = latest_clear(&shared.data, &shared.zone).await;
    assert!(at_kill.end_ts.is_none() && at_kill.progress.objects_remaining > 0, "finished before the kill");

    // B takes the Clear over once A's lease runs out, and completes it.
    wait_until("the other node to complete the clear", || async {
        latest_clear(&shared.data, &shared.zone).await.end_ts.is_some()
    })
    .await;
    let done = latest_clear(&shared.data, &shared.zone).await;
    assert_eq!((done.progress.objects_deleted(), done.progress.objects_remaining), (200, 0));
    assert!(done.end_ts.unwrap() >= done.start_ts);
    assert_eq!(shared.data.bodies(Some(&shared.zone)).await, 0, "cleared bodies left in the bucket");
    let status = api(&b, reqwest::Method::GET, &clear_path(&shared.zone), &shared.token).await;
    let status: serde_json::Value = status.json().await.unwrap();
    assert_eq!(status["result"]["state"], "Completed");
}
