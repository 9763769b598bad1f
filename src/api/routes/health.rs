//! `GET /healthz` and `GET /readyz` for load balancers and orchestrators, outside `/client/v4` and
//! unauthenticated (as `/metrics`), answering from memory: a probe every second costs no store request.
//!
//! - `/healthz` (liveness): `200 {"status":"ok"}` whenever the process answers at all.
//! - `/readyz` (readiness): `200 {"ready":true,...}`, or `503 {"ready":false,...}` while this node's view of
//!   the zones is older than `--zone-view-ttl` (the control store has been unreachable for that long, so the
//!   proxy bypasses the reserve) or the reserve's storage failed within the last 2 s (the circuit breaker of
//!   `reserve::health` is open). Each check is named `"ok"` or `"unavailable"`.

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::api::AppState;

/// Liveness.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let control = state.zones.reserve_usable();
    let bodies = state.reserve.available();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = control && bodies;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready, "control_store": word(control), "reserve_storage": word(bodies)})))
}
