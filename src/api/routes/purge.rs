//! Purge and invalidate (SPEC §10): `POST /zones/{zone_id}/purge_cache` (and `DELETE`, as older clients
//! send it) and `POST /zones/{zone_id}/invalidate_cache`, Cloudflare's bodies and answers.

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{
        ApiError, AppState,
        auth::Caller,
        envelope::Envelope,
        error::{Failure, PurgeError},
        extract::{RawBody, ZoneSegment, unknown_field},
    },
    domain::{
        Access, PurgeAction, PurgeTarget, ZoneName,
        purge::{InvalidTarget, parse_file_url, parse_host, parse_prefix, parse_tag},
    },
};

/// The selectors a body may hold, in the order Cloudflare's message names them.
const SELECTORS: [&str; 4] = ["files", "tags", "hosts", "prefixes"];

/// What Cloudflare returns: the zone's id.
#[derive(Serialize, ToSchema)]
struct PurgeView {
    /// The zone identifier.
    id: String,
}

/// Reads a purge body: exactly one selector, each of its items valid and in the zone, at most `limit` of
/// them (SPEC §10). Returns the targets, deduplicated, in order.
pub fn parse_body(body: Option<&Value>, zone: &ZoneName, limit: usize) -> Result<Vec<PurgeTarget>, PurgeError> {
    let Some(Value::Object(fields)) = body else {
        return Err(PurgeError::NoSelector);
    };
    if let Some(field) = unknown_field(fields, &["purge_everything", "files", "tags", "hosts", "prefixes"]) {
        return Err(PurgeError::Invalid(format!(
            "unknown field \"{field}\"; expected \"purge_everything\", \"files\", \"tags\", \"hosts\" or \"prefixes\""
        )));
    }
    let everything = match fields.get("purge_everything") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(PurgeError::Invalid("purge_everything must be true or false".into())),
    };
    let present: Vec<&str> = SELECTORS.into_iter().filter(|s| fields.contains_key(*s)).collect();
    if everything {
        if !present.is_empty() {
            return Err(PurgeError::EverythingNotAlone);
        }
        return Ok(vec![PurgeTarget::Everything]);
    }
    let selector = match present.as_slice() {
        [] => return Err(PurgeError::NoSelector),
        [one] => *one,
        _ => return Err(PurgeError::MoreThanOneSelector),
    };
    let Some(Value::Array(items)) = fields.get(selector) else {
        return Err(PurgeError::NotArray);
    };
    if items.is_empty() {
        return Err(PurgeError::Invalid(format!("{selector} must list at least one item")));
    }
    if items.len() > limit {
        return Err(PurgeError::OverLimit { selector, limit });
    }
    let mut targets: Vec<PurgeTarget> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let target = parse_item(selector, item, zone)
            .map_err(|InvalidTarget(why)| PurgeError::Invalid(format!("{why} (item {i} of {selector})")))?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

fn parse_item(selector: &str, item: &Value, zone: &ZoneName) -> Result<PurgeTarget, InvalidTarget> {
    let not_string = || InvalidTarget(format!("{selector}: every item must be a string"));
    match selector {
        "files" => match item {
            Value::String(url) => Ok(PurgeTarget::File { url: parse_file_url(url, zone)?, headers: Vec::new() }),
            Value::Object(o) => {
                if let Some(field) = unknown_field(o, &["url", "headers"]) {
                    return Err(InvalidTarget(format!(
                        "files: unknown field \"{field}\" in an object item; expected \"url\" and \"headers\""
                    )));
                }
                let url = match o.get("url") {
                    Some(Value::String(u)) => parse_file_url(u, zone)?,
                    _ => return Err(InvalidTarget("files: an object item needs \"url\", a string".into())),
                };
                let headers = match o.get("headers") {
                    None => Vec::new(),
                    Some(Value::Object(h)) => parse_headers(h)?,
                    Some(_) => return Err(InvalidTarget("files: \"headers\" must be an object of strings".into())),
                };
                Ok(PurgeTarget::File { url, headers })
            }
            Value::Null => Err(InvalidTarget("files: an item is null".into())),
            _ => Err(InvalidTarget(
                "files: every item must be a URL string or {\"url\": ..., \"headers\": {...}}".into(),
            )),
        },
        "tags" => Ok(PurgeTarget::Tag(parse_tag(item.as_str().ok_or_else(not_string)?)?)),
        "hosts" => Ok(PurgeTarget::Host(parse_host(item.as_str().ok_or_else(not_string)?, zone)?)),
        _ => Ok(PurgeTarget::Prefix(parse_prefix(item.as_str().ok_or_else(not_string)?, zone)?)),
    }
}

/// A `files` item's `headers`: names that are header field names (lower-cased), values that are strings a
/// header may hold; `null` is refused.
fn parse_headers(h: &serde_json::Map<String, Value>) -> Result<Vec<(String, String)>, InvalidTarget> {
    let mut out = Vec::with_capacity(h.len());
    for (name, value) in h {
        let Value::String(value) = value else {
            let name: String = name.chars().take(200).collect();
            return Err(InvalidTarget(format!("files: header {name:?} must have a string value (null is refused)")));
        };
        let valid_name = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !valid_name || http::HeaderValue::from_str(value).is_err() {
            let name: String = name.chars().take(200).collect();
            return Err(InvalidTarget(format!("files: header {name:?} is not a valid header field")));
        }
        out.push((name.to_ascii_lowercase(), value.clone()));
    }
    Ok(out)
}

async fn run(
    state: AppState,
    caller: Caller,
    zone: ZoneSegment,
    body: RawBody,
    action: PurgeAction,
) -> Result<Envelope<PurgeView>, ApiError> {
    let zone = state.zone_for(&caller.0, &zone, Access::Purge).await?;
    let body = body.json::<Value>()?;
    let targets = parse_body(body.as_ref(), &zone.name, state.purge_limit).map_err(ApiError::Purge)?;
    let outcome = state.control.purge(&zone.id, action, &targets).await?;
    // Every node holds the rules (or has stopped serving stored copies) before the caller hears back.
    state.zones.publish_purge(outcome.zone, &outcome.rules).await;
    if outcome.rules.is_empty() {
        // purge_everything moved the zone to a new generation: its old ones are reclaimed as a Clear's.
        state.clear_started.notify_one();
    } else if action == PurgeAction::Purge {
        state.purge_recorded.notify_one();
    }
    tracing::info!(zone = %zone.id, action = action.as_str(), targets = targets.len(), "purge recorded");
    Ok(Envelope::ok(PurgeView { id: zone.id.to_string() }))
}

/// Purge cached content.
///
/// Body: exactly one of `files` (URLs, or `{url, headers}`), `tags`, `hosts`, `prefixes`, or
/// `purge_everything: true`. Removes the targeted objects from every tier on every node before answering
/// (the reserve's bytes are deleted in the background).
#[utoipa::path(post, path = "/zones/{zone_id}/purge_cache", tag = "Zone",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Object, description = "One selector: files, tags, hosts, prefixes or purge_everything"),
    responses((status = 200, body = Envelope<PurgeView>), (status = 400, body = Failure)))]
async fn purge_cache(
    State(s): State<AppState>,
    c: Caller,
    z: ZoneSegment,
    b: RawBody,
) -> Result<Envelope<PurgeView>, ApiError> {
    run(s, c, z, b, PurgeAction::Purge).await
}

/// Purge cached content (`DELETE`, as older clients send it; the same as `POST`).
#[utoipa::path(delete, path = "/zones/{zone_id}/purge_cache", tag = "Zone",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Object, description = "As for POST"),
    responses((status = 200, body = Envelope<PurgeView>), (status = 400, body = Failure)))]
async fn purge_cache_delete(
    State(s): State<AppState>,
    c: Caller,
    z: ZoneSegment,
    b: RawBody,
) -> Result<Envelope<PurgeView>, ApiError> {
    run(s, c, z, b, PurgeAction::Purge).await
}

/// Invalidate cached content.
///
/// The same body as `purge_cache`. Marks the targeted objects stale in every tier on every node before
/// answering: the next request revalidates each with the origin.
#[utoipa::path(post, path = "/zones/{zone_id}/invalidate_cache", tag = "Zone",
    params(("zone_id" = String, Path, description = "Zone identifier")),
    request_body(content = Object, description = "One selector: files, tags, hosts, prefixes or purge_everything"),
    responses((status = 200, body = Envelope<PurgeView>), (status = 400, body = Failure)))]
async fn invalidate_cache(
    State(s): State<AppState>,
    c: Caller,
    z: ZoneSegment,
    b: RawBody,
) -> Result<Envelope<PurgeView>, ApiError> {
    run(s, c, z, b, PurgeAction::Invalidate).await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(purge_cache, purge_cache_delete)).routes(routes!(invalidate_cache))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Vec<PurgeTarget>, PurgeError> {
        parse_body(Some(&v), &ZoneName::parse("example.com").unwrap(), 3)
    }

    #[test]
    fn one_selector_of_valid_items() {
        assert_eq!(parse(json!({"purge_everything": true})).unwrap(), vec![PurgeTarget::Everything]);
        assert_eq!(
            parse(json!({"tags": ["A", "a", "b"]})).unwrap(),
            vec![PurgeTarget::Tag("a".into()), PurgeTarget::Tag("b".into())]
        );
        assert_eq!(
            parse(json!({"files": [{"url": "https://example.com/x", "headers": {"Origin": "https://a"}}]})).unwrap(),
            vec![PurgeTarget::File {
                url: "example.com/x".into(),
                headers: vec![("origin".into(), "https://a".into())]
            }]
        );
    }

    #[test]
    fn cloudflare_answers_for_bad_shapes() {
        assert_eq!(parse(json!({})), Err(PurgeError::NoSelector));
        assert_eq!(parse(json!({"purge_everything": false})), Err(PurgeError::NoSelector));
        assert_eq!(parse(json!([1])), Err(PurgeError::NoSelector));
        assert_eq!(parse(json!({"files": "https://example.com/"})), Err(PurgeError::NotArray));
        assert_eq!(parse(json!({"purge_everything": true, "tags": ["a"]})), Err(PurgeError::EverythingNotAlone));
        assert_eq!(parse(json!({"tags": ["a"], "hosts": ["example.com"]})), Err(PurgeError::MoreThanOneSelector));
        assert_eq!(
            parse(json!({"tags": ["a", "b", "c", "d"]})),
            Err(PurgeError::OverLimit { selector: "tags", limit: 3 })
        );
        for bad in [
            json!({"files": ["/index.html"]}),
            json!({"files": [null]}),
            json!({"files": [{"url": "https://example.com/", "headers": {"x": null}}]}),
            json!({"hosts": ["other.org"]}),
            json!({"tags": [""]}),
            json!({"prefixes": ["https://example.com/a"]}),
            json!({"tags": []}),
            json!({"tags": ["a"], "foo": 1}),
            json!({"files": [{"url": "https://example.com/", "header": {"Origin": "https://a"}}]}),
        ] {
            assert!(matches!(parse(bad.clone()), Err(PurgeError::Invalid(_))), "{bad}");
        }
    }
}
