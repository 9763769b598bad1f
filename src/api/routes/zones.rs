//! Zones: `GET /zones` (with `?name=` and pagination), `GET /zones/{zone_id}`, and creating and deleting
//! them (`POST /zones`, `DELETE /zones/{zone_id}`).

use axum::extract::{RawQuery, State};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{
        ApiError, AppState,
        auth::Caller,
        envelope::{Envelope, ResultInfo},
        error::Failure,
        error::safe_echo,
        extract::{RawBody, ZoneSegment, unknown_field},
    },
    domain::{Access, Principal, Timestamp, TokenScope, Zone, ZoneId, ZoneName, zone::parse_origin},
    storage::{NewZone, Page, StoreError, ZoneFilter},
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

/// What `POST /zones` asks for.
struct CreateRequest {
    name: ZoneName,
    origin: Option<String>,
}

/// Reads Cloudflare's body `{"name": ..., "account": {"id": ...}, "type": "full"}`, plus our `origin`.
/// `account.id`, if sent, must be this installation's `account`.
fn parse_create(body: Option<Value>, account: &str) -> Result<CreateRequest, ApiError> {
    const SHAPE: &str = "an object with \"name\" (and optionally \"account\", \"type\", \"origin\")";
    let Some(Value::Object(fields)) = body else { return Err(ApiError::InvalidBody(SHAPE)) };
    if let Some(field) = unknown_field(&fields, &["name", "account", "type", "origin"]) {
        return Err(ApiError::UnknownField { field, expected: "\"name\", \"account\", \"type\" or \"origin\"" });
    }
    let name = match fields.get("name") {
        Some(Value::String(n)) => ZoneName::parse(n).map_err(|_| ApiError::InvalidZoneName(safe_echo(n)))?,
        _ => return Err(ApiError::InvalidBody("\"name\" is required: the zone's hostname, e.g. example.com")),
    };
    if let Some(sent) = fields.get("account") {
        check_account(sent, account)?;
    }
    match fields.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "full" => {}
        Some(_) => return Err(ApiError::InvalidBody("\"type\" must be \"full\", the only zone type this server has")),
    }
    let origin =
        match fields.get("origin") {
            None | Some(Value::Null) => None,
            Some(Value::String(o)) => Some(parse_origin(o).map_err(|_| {
                ApiError::InvalidBody("\"origin\" must be a URL such as http://127.0.0.1:9000 (no query)")
            })?),
            Some(_) => return Err(ApiError::InvalidBody("\"origin\" must be a string")),
        };
    Ok(CreateRequest { name, origin })
}

/// `account` of a create body: `{"id": <this installation's account id>}`.
fn check_account(sent: &Value, account: &str) -> Result<(), ApiError> {
    let empty = Map::new();
    let fields = sent.as_object().unwrap_or(&empty);
    if let Some(field) = unknown_field(fields, &["id"]) {
        return Err(ApiError::UnknownField { field, expected: "only \"id\" in \"account\"" });
    }
    if fields.get("id").and_then(Value::as_str) != Some(account) {
        return Err(ApiError::InvalidBody(
            "\"account\" must be {\"id\": <this installation's account id>}, as GET /zones shows it",
        ));
    }
    Ok(())
}

/// Create a zone.
///
/// Body `{"name": "example.com", "account": {"id": "..."}, "type": "full"}` (Cloudflare's), optionally with
/// `origin` (our addition); `account.id`, if sent, must be this installation's and `type`, if sent, `full`.
/// Needs `Zone Write` over all zones (a global key, or a token scoped to all zones). A name a live zone has
/// is refused with 1061; a deleted zone's name may be taken again.
#[utoipa::path(post, path = "/zones", tag = "Zone",
    request_body(content = Object, description = "{\"name\": \"example.com\", \"account\": {\"id\": \"...\"}, \"type\": \"full\"}"),
    responses((status = 200, body = Envelope<ZoneView>), (status = 400, body = Failure), (status = 403, body = Failure)))]
async fn create_zone(
    State(state): State<AppState>,
    caller: Caller,
    body: RawBody,
) -> Result<Envelope<ZoneView>, ApiError> {
    if !caller.0.allows(Access::ZoneAdmin) || !caller.0.reaches_all() {
        return Err(ApiError::AuthenticationError);
    }
    let account = state.control.account_id().await?;
    let CreateRequest { name, origin } = parse_create(body.json()?, &account)?;
    let new = NewZone { id: ZoneId::generate(), name: name.clone(), origin };
    let zone = state.control.create_zone(new).await.map_err(|e| match e {
        StoreError::AlreadyExists(_) => ApiError::ZoneExists(name.to_string()),
        other => other.into(),
    })?;
    // Served by every node's proxy before the caller hears back.
    state.zones.publish(zone.clone()).await;
    Ok(Envelope::ok(view(zone, &account)))
}

#[derive(Serialize, ToSchema)]
struct DeletedView {
    /// The deleted zone's id.
    id: String,
}

/// Delete a zone.
///
/// Its reserve objects are gone at once (deleted in the background, as by a Clear) and no node's proxy
/// serves its hostname when this answers (421). Needs `Zone Write` on the zone. The name can be taken
/// again; a token scoped to this id reaches a zone created later with the same id.
#[utoipa::path(delete, path = "/zones/{zone_id}", tag = "Zone",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    responses((status = 200, body = Envelope<DeletedView>), (status = 400, body = Failure), (status = 403, body = Failure)))]
async fn delete_zone(
    State(state): State<AppState>,
    caller: Caller,
    zone: ZoneSegment,
) -> Result<Envelope<DeletedView>, ApiError> {
    let found = state.zone_for(&caller.0, &zone, Access::ZoneAdmin).await?;
    // Deleted by another request since the read above: as unknown.
    let tombstone = state.control.delete_zone(&found.id).await.map_err(|e| match e {
        StoreError::NotFound(_) => zone.not_routable(),
        other => other.into(),
    })?;
    state.zones.publish(tombstone).await;
    state.clear_started.notify_one();
    Ok(Envelope::ok(DeletedView { id: found.id.to_string() }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_zones, create_zone)).routes(routes!(get_zone, delete_zone))
}
