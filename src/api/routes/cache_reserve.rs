//! The Cache Reserve setting: `GET`/`PATCH /zones/{zone_id}/cache/cache_reserve`.

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
        extract::{RawBody, ZoneSegment, unknown_field},
    },
    domain::{Access, Timestamp, Zone, ZoneId},
    storage::SetReserveOutcome,
};

#[derive(Serialize, ToSchema)]
struct ReserveSettingView {
    /// Always `cache_reserve`.
    id: &'static str,
    /// `on` or `off`.
    value: &'static str,
    editable: bool,
    /// When the setting was last changed; `null` if never.
    #[schema(value_type = Option<String>, format = DateTime)]
    modified_on: Option<Timestamp>,
}

impl From<&Zone> for ReserveSettingView {
    fn from(z: &Zone) -> Self {
        Self { id: "cache_reserve", value: on_off(z.reserve_on), editable: true, modified_on: z.reserve_modified_on }
    }
}

/// The wire spelling of a boolean setting.
pub fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Reads `{"value":"on"|"off"}`; a field beside `value` is 1007 naming it, anything else 1007 naming
/// `setting`.
pub fn parse_on_off(value: Option<&serde_json::Value>, setting: &'static str) -> Result<bool, ApiError> {
    if let Some(field) = value.and_then(|v| v.as_object()).and_then(|o| unknown_field(o, &["value"])) {
        return Err(ApiError::UnknownField { field, expected: "only \"value\"" });
    }
    match value.and_then(|v| v.get("value")).and_then(|v| v.as_str()) {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err(ApiError::InvalidSettingValue(setting)),
    }
}

impl AppState {
    /// Turns a zone's reserve on or off; on is refused (1153) while a Clear runs.
    pub async fn set_reserve(&self, zone: &ZoneId, on: bool) -> Result<Zone, ApiError> {
        match self.control.set_reserve(zone, on).await? {
            SetReserveOutcome::Changed(z) => {
                // In force for this node's proxy, and every other node's, before the caller hears back.
                self.zones.publish(z.clone()).await;
                Ok(z)
            }
            SetReserveOutcome::ClearInProgress => Err(ApiError::ClearInProgress),
        }
    }
}

/// Get the Cache Reserve setting.
#[utoipa::path(get, path = "/zones/{zone_id}/cache/cache_reserve", tag = "Zone Cache Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    responses((status = 200, body = Envelope<ReserveSettingView>), (status = 400, body = Failure)))]
async fn get_setting(
    State(state): State<AppState>,
    caller: Caller,
    zone: ZoneSegment,
) -> Result<Envelope<ReserveSettingView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::SettingsRead).await?;
    Ok(Envelope::ok((&zone).into()))
}

/// Change the Cache Reserve setting.
///
/// Body `{"value":"on"|"off"}`. Turning it on while a Clear is in progress is refused with 1153.
#[utoipa::path(patch, path = "/zones/{zone_id}/cache/cache_reserve", tag = "Zone Cache Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Object, description = "{\"value\":\"on\"} or {\"value\":\"off\"}"),
    responses((status = 200, body = Envelope<ReserveSettingView>), (status = 400, body = Failure)))]
async fn patch_setting(
    State(state): State<AppState>,
    caller: Caller,
    zone: ZoneSegment,
    body: RawBody,
) -> Result<Envelope<ReserveSettingView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::SettingsWrite).await?;
    let on = parse_on_off(body.json::<serde_json::Value>()?.as_ref(), "cache_reserve")?;
    let zone = state.set_reserve(&zone.id, on).await?;
    Ok(Envelope::ok((&zone).into()))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_setting, patch_setting))
}
