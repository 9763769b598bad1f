//! Smart Shield settings: `GET`/`PATCH /zones/{zone_id}/smart_shield`. `cache_reserve` is the real setting;
//! the three features this server does not have are reported as off and not editable.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::cache_reserve::{on_off, parse_on_off};
use crate::{
    api::{
        ApiError, AppState,
        auth::Caller,
        envelope::Envelope,
        error::Failure,
        extract::{RawBody, ZoneSegment, unknown_field},
    },
    domain::{Access, Timestamp, Zone},
};

/// Settings this server reports but does not provide.
const UNSUPPORTED: [&str; 3] = ["regional_tiered_cache", "smart_routing", "smart_tiered_cache"];

/// Every field a PATCH may hold (Cloudflare's `smartshield_smart_shield_settings_patch_body`).
const SETTINGS: [&str; 4] = ["cache_reserve", "regional_tiered_cache", "smart_routing", "smart_tiered_cache"];

#[derive(Serialize, ToSchema)]
struct SettingView {
    id: &'static str,
    editable: bool,
    value: &'static str,
}

#[derive(Serialize, ToSchema)]
struct TieredCacheView {
    id: &'static str,
    editable: bool,
    value: &'static str,
    /// Never modified here: `null`.
    #[schema(value_type = Option<String>, format = DateTime)]
    modified_on: Option<Timestamp>,
}

#[derive(Serialize, ToSchema)]
struct SmartShieldView {
    cache_reserve: SettingView,
    regional_tiered_cache: SettingView,
    smart_routing: SettingView,
    smart_tiered_cache: TieredCacheView,
    /// Health checks of the zone: this server has none.
    healthchecks_count: u32,
}

impl From<&Zone> for SmartShieldView {
    fn from(z: &Zone) -> Self {
        let off = |id| SettingView { id, editable: false, value: "off" };
        SmartShieldView {
            cache_reserve: SettingView { id: "cache_reserve", editable: true, value: on_off(z.reserve_on) },
            regional_tiered_cache: off("regional_tiered_cache"),
            smart_routing: off("smart_routing"),
            smart_tiered_cache: TieredCacheView {
                id: "smart_tiered_cache",
                editable: false,
                value: "off",
                modified_on: None,
            },
            healthchecks_count: 0,
        }
    }
}

/// Get Smart Shield settings.
#[utoipa::path(get, path = "/zones/{zone_id}/smart_shield", tag = "Smart Shield Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    responses((status = 200, body = Envelope<SmartShieldView>), (status = 400, body = Failure)))]
async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    zone: ZoneSegment,
) -> Result<Envelope<SmartShieldView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::SettingsRead).await?;
    Ok(Envelope::ok((&zone).into()))
}

/// Change Smart Shield settings.
///
/// Each of `cache_reserve`, `regional_tiered_cache`, `smart_routing`, `smart_tiered_cache` is optional,
/// `{"value":"on"|"off"}`. Only `cache_reserve` can be turned on (1153 while a Clear runs); turning on one
/// of the others is refused with 1007. Nothing is changed unless the whole body is valid.
#[utoipa::path(patch, path = "/zones/{zone_id}/smart_shield", tag = "Smart Shield Settings",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Object, description = "e.g. {\"cache_reserve\":{\"value\":\"off\"}}"),
    responses((status = 200, body = Envelope<SmartShieldView>), (status = 400, body = Failure)))]
async fn patch_settings(
    State(state): State<AppState>,
    caller: Caller,
    zone: ZoneSegment,
    body: RawBody,
) -> Result<Envelope<SmartShieldView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::SettingsWrite).await?;
    let body = body.json::<serde_json::Value>()?.unwrap_or_else(|| serde_json::json!({}));
    let Some(fields) = body.as_object() else {
        return Err(ApiError::InvalidBody("expected a JSON object"));
    };
    if let Some(field) = unknown_field(fields, &SETTINGS) {
        return Err(ApiError::UnknownField {
            field,
            expected: "cache_reserve, regional_tiered_cache, smart_routing or smart_tiered_cache",
        });
    }
    for name in UNSUPPORTED {
        if let Some(v) = fields.get(name) {
            if parse_on_off(Some(v), name)? {
                return Err(ApiError::UnsupportedSetting(name));
            }
        }
    }
    let zone = match fields.get("cache_reserve") {
        Some(v) => state.set_reserve(&zone.id, parse_on_off(Some(v), "cache_reserve")?).await?,
        None => zone,
    };
    Ok(Envelope::ok((&zone).into()))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, patch_settings))
}
