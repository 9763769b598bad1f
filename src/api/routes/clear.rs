//! Cache Reserve Clear: `GET`/`POST` on `smart_shield/cache_reserve_clear` and on `cache/cache_reserve_clear`,
//! two paths over one state.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{
        ApiError, AppState,
        auth::Caller,
        envelope::Envelope,
        error::Failure,
        extract::{RawBody, ZoneSegment},
    },
    domain::{Access, ClearOperation, Timestamp},
    storage::StartClearOutcome,
};

/// Progress of a Clear (our addition; Cloudflare's SDKs ignore unknown fields).
#[derive(Serialize, ToSchema)]
struct ProgressView {
    /// Objects of the cleared generations deleted so far.
    objects_deleted: u64,
    /// Objects of the cleared generations still stored.
    objects_remaining: u64,
    bytes_deleted: u64,
    bytes_remaining: u64,
}

/// The Clear operation as Cloudflare shows it, plus `progress`.
#[derive(Serialize, ToSchema)]
struct ClearView {
    /// Always `cache_reserve_clear`.
    id: &'static str,
    /// `In-progress` or `Completed`.
    state: &'static str,
    #[schema(value_type = String, format = DateTime)]
    start_ts: Timestamp,
    /// Only when `Completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    end_ts: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    modified_on: Timestamp,
    progress: ProgressView,
}

impl From<ClearOperation> for ClearView {
    fn from(op: ClearOperation) -> Self {
        let p = op.progress;
        ClearView {
            id: "cache_reserve_clear",
            state: op.state().as_str(),
            start_ts: op.start_ts,
            end_ts: op.end_ts,
            modified_on: op.modified_on,
            progress: ProgressView {
                objects_deleted: p.objects_deleted(),
                objects_remaining: p.objects_remaining,
                bytes_deleted: p.bytes_deleted(),
                bytes_remaining: p.bytes_remaining,
            },
        }
    }
}

async fn status(state: AppState, caller: Caller, zone: ZoneSegment) -> Result<Envelope<ClearView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::SettingsRead).await?;
    let op = state.control.latest_clear(&zone.id).await?.ok_or(ApiError::ClearNeverPerformed)?;
    Ok(Envelope::ok(op.into()))
}

async fn start(
    state: AppState,
    caller: Caller,
    zone: ZoneSegment,
    body: RawBody,
) -> Result<Envelope<ClearView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::SettingsWrite).await?;
    // Any JSON value, or nothing, is accepted; the body is otherwise unused.
    body.json::<serde_json::Value>()?;
    match state.control.start_clear(&zone.id).await? {
        StartClearOutcome::Started { op, zone } => {
            // Every pre-clear copy, in the edge tier too, is a miss from here on, on every node.
            state.zones.publish(zone.clone()).await;
            tracing::info!(zone = %zone.id, objects = op.progress.objects_total, "cache reserve clear started");
            state.clear_started.notify_one();
            Ok(Envelope::ok(op.into()))
        }
        // Published by the request that started it.
        StartClearOutcome::AlreadyRunning(op) => Ok(Envelope::ok(op.into())),
        StartClearOutcome::ReserveOn => Err(ApiError::ReserveOn),
    }
}

/// Get Cache Reserve Clear status.
///
/// 400 with code 1142 if the zone never had a Clear.
#[utoipa::path(get, path = "/zones/{zone_id}/smart_shield/cache_reserve_clear", tag = "Smart Shield Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    responses((status = 200, body = Envelope<ClearView>), (status = 400, body = Failure)))]
async fn smart_shield_status(
    State(s): State<AppState>,
    c: Caller,
    z: ZoneSegment,
) -> Result<Envelope<ClearView>, ApiError> {
    status(s, c, z).await
}

/// Start a Cache Reserve Clear.
///
/// The reserve must be off (else 1152). Returns the running operation if one is in progress.
#[utoipa::path(post, path = "/zones/{zone_id}/smart_shield/cache_reserve_clear", tag = "Smart Shield Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Option<Object>, description = "Ignored; may be empty"),
    responses((status = 200, body = Envelope<ClearView>), (status = 400, body = Failure)))]
async fn smart_shield_start(
    State(s): State<AppState>,
    c: Caller,
    z: ZoneSegment,
    b: RawBody,
) -> Result<Envelope<ClearView>, ApiError> {
    start(s, c, z, b).await
}

/// Get Cache Reserve Clear status (the `cache/` path; same state as the `smart_shield/` path).
#[utoipa::path(get, path = "/zones/{zone_id}/cache/cache_reserve_clear", tag = "Zone Cache Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    responses((status = 200, body = Envelope<ClearView>), (status = 400, body = Failure)))]
async fn cache_status(State(s): State<AppState>, c: Caller, z: ZoneSegment) -> Result<Envelope<ClearView>, ApiError> {
    status(s, c, z).await
}

/// Start a Cache Reserve Clear (the `cache/` path; same operation as the `smart_shield/` path).
#[utoipa::path(post, path = "/zones/{zone_id}/cache/cache_reserve_clear", tag = "Zone Cache Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Option<Object>, description = "Ignored; may be empty"),
    responses((status = 200, body = Envelope<ClearView>), (status = 400, body = Failure)))]
async fn cache_start(
    State(s): State<AppState>,
    c: Caller,
    z: ZoneSegment,
    b: RawBody,
) -> Result<Envelope<ClearView>, ApiError> {
    start(s, c, z, b).await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(smart_shield_status, smart_shield_start))
        .routes(routes!(cache_status, cache_start))
}
