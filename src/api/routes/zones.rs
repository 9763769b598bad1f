//! Zones: `GET /zones` (with `?name=` and pagination) and `GET /zones/{zone_id}`.

use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{
        ApiError, AppState,
        auth::Caller,
        envelope::{Envelope, ResultInfo},
        error::Failure,
        extract::ZoneSegment,
    },
    domain::{Access, Principal, Timestamp, TokenScope, Zone, ZoneName},
    storage::{Page, ZoneFilter},
};

#[derive(Serialize, ToSchema)]
struct AccountView {
    id: String,
    name: &'static str,
}

#[derive(Serialize, ToSchema)]
struct ZoneView {
    id: String,
    name: String,
    /// Always `active`.
    status: &'static str,
    paused: bool,
    /// Always `full`.
    r#type: &'static str,
    development_mode: u32,
    name_servers: Vec<String>,
    /// The origin the proxy forwards to (our addition).
    origin: Option<String>,
    account: AccountView,
    #[schema(value_type = String, format = DateTime)]
    created_on: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    modified_on: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    activated_on: Timestamp,
}

fn view(z: Zone, account: &str) -> ZoneView {
    ZoneView {
        id: z.id.to_string(),
        name: z.name.to_string(),
        status: "active",
        paused: false,
        r#type: "full",
        development_mode: 0,
        name_servers: vec![],
        origin: z.origin,
        account: AccountView { id: account.to_owned(), name: "cache-reserve" },
        created_on: z.created_on,
        modified_on: z.modified_on,
        activated_on: z.created_on,
    }
}

/// Query of `GET /zones`.
struct ListQuery {
    name: Option<String>,
    page: u32,
    per_page: u32,
}

/// A whole number, also written as a float (`2.0`), as Cloudflare's Python SDK types `page`.
fn whole_number(v: &str) -> Option<u32> {
    v.parse::<u32>().ok().or_else(|| {
        let f = v.parse::<f64>().ok()?;
        (f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f)).then_some(f as u32)
    })
}

fn parse_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::InvalidQuery("not a valid query string"))?;
    let mut q = ListQuery { name: None, page: 1, per_page: 20 };
    for (k, v) in pairs {
        match k.as_str() {
            "name" => q.name = Some(v),
            "page" => {
                q.page = whole_number(&v)
                    .filter(|p| *p >= 1)
                    .ok_or(ApiError::InvalidQuery("page must be an integer of at least 1"))?
            }
            "per_page" => {
                q.per_page = whole_number(&v)
                    .filter(|p| (5..=50).contains(p))
                    .ok_or(ApiError::InvalidQuery("per_page must be an integer from 5 to 50"))?
            }
            // Other filters of Cloudflare's (status, order, account.id, ...) do not narrow one account's zones.
            _ => {}
        }
    }
    Ok(q)
}

/// List zones, optionally by exact `name`.
///
/// Paginated with `page` (from 1) and `per_page` (5 to 50, default 20). A token sees only the zones in its scope.
#[utoipa::path(get, path = "/zones", tag = "Zone",
    params(("name" = Option<String>, Query, description = "Exact zone name"),
           ("page" = Option<u32>, Query, description = "Page number, from 1"),
           ("per_page" = Option<u32>, Query, description = "Zones per page, 5 to 50")),
    responses((status = 200, body = Envelope<Vec<ZoneView>>), (status = 400, body = Failure)))]
async fn list_zones(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Envelope<Vec<ZoneView>>, ApiError> {
    if !caller.0.allows(Access::ZoneRead) {
        return Err(ApiError::AuthenticationError);
    }
    let q = parse_query(raw.as_deref())?;
    let only = match &caller.0 {
        Principal::Token { scope: TokenScope::Zones(z), .. } => Some(z.clone()),
        _ => None,
    };
    let page = Page { page: q.page, per_page: q.per_page };
    let (zones, total) = match q.name.as_deref().map(ZoneName::parse) {
        // A name that cannot be a zone matches none.
        Some(Err(_)) => (vec![], 0),
        name => state.control.list_zones(&ZoneFilter { name: name.and_then(Result::ok), only }, page).await?,
    };
    let account = state.control.account_id().await?;
    let info = ResultInfo {
        page: q.page,
        per_page: q.per_page,
        count: zones.len() as u64,
        total_count: total,
        total_pages: total.div_ceil(u64::from(q.per_page)),
    };
    Ok(Envelope::list(zones.into_iter().map(|z| view(z, &account)).collect(), info))
}

/// Get one zone.
#[utoipa::path(get, path = "/zones/{zone_id}", tag = "Zone",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    responses((status = 200, body = Envelope<ZoneView>), (status = 400, body = Failure)))]
async fn get_zone(
    State(state): State<AppState>,
    caller: Caller,
    zone: ZoneSegment,
) -> Result<Envelope<ZoneView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::ZoneRead).await?;
    let account = state.control.account_id().await?;
    Ok(Envelope::ok(view(zone, &account)))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_zones)).routes(routes!(get_zone))
}
