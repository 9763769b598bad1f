//! The control API: Cloudflare v4-compatible routes under `/client/v4`, the envelope, auth and errors.
//!
//! Only this layer knows the envelope and Cloudflare's error codes; handlers parse at the edge and call
//! storage traits, never a database.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
mod openapi;
mod routes;

use std::sync::Arc;

use axum::{Router, body::Bytes, http::header::CONTENT_TYPE, response::IntoResponse, routing::get};
use tokio::sync::Notify;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, listener_error_body};

use crate::{
    directory::ZoneDirectory,
    domain::{Access, Principal, Zone},
    metrics::Metrics,
    reserve::Reserve,
    storage::{ControlStore, ObjectIndex},
};
use extract::ZoneSegment;

/// Shared handles of the API.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<dyn ControlStore>,
    /// Notified when a Clear starts, so the reclaimer begins at once.
    pub clear_started: Arc<Notify>,
    /// Notified when a purge is recorded, so the deletion of its reserve objects begins at once.
    pub purge_recorded: Arc<Notify>,
    /// The proxy's zone table, brought up to date before a change is answered.
    pub zones: ZoneDirectory,
    pub metrics: Arc<Metrics>,
    pub index: Arc<dyn ObjectIndex>,
    /// The reserve, for readiness: whether its storage answered lately.
    pub reserve: Reserve,
    /// Most items one purge request may name (SPEC §10; `--purge-max-items`).
    pub purge_limit: usize,
}

impl AppState {
    /// The zone a request names, if the caller may reach it with `access`. Malformed, unknown and
    /// out-of-scope identifiers all get the same 7003 answer, so zones cannot be enumerated.
    pub async fn zone_for(&self, caller: &Principal, seg: &ZoneSegment, access: Access) -> Result<Zone, ApiError> {
        let id = seg.parse()?;
        if !caller.reaches(&id) {
            return Err(seg.not_routable());
        }
        let zone = self.control.zone(&id).await?.ok_or_else(|| seg.not_routable())?;
        if !caller.allows(access) {
            return Err(ApiError::AuthenticationError);
        }
        Ok(zone)
    }
}

/// Every route with its OpenAPI description, relative to `/client/v4`.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::clear::router())
        .merge(routes::purge::router())
        .merge(routes::cache_reserve::router())
        .merge(routes::smart_shield::router())
        .merge(routes::zones::router())
        .merge(routes::user_tokens::router())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api_routes().split_for_parts();
    // Rendered once; every request gets the same bytes.
    let doc = Bytes::from(serde_json::to_vec(&doc).expect("the OpenAPI document serialises"));
    let v4 = routes
        .route("/openapi.json", get(move || async move { ([(CONTENT_TYPE, "application/json")], doc) }))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NoRoute });
    Router::new()
        .nest("/client/v4", v4)
        .route("/metrics", get(routes::metrics::render))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_panic| {
            tracing::error!("a request handler panicked");
            ApiError::Internal.into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// The span every API request is logged in: method, path and version. Never the query string, which may
/// hold a credential (a token sent as `?token=...` is refused, but must not reach the log either).
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let query = if req.uri().query().is_some() { "[redacted]" } else { "" };
    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), query, version = ?req.version())
}
