//! `GET /metrics`: the proxy's per-zone counters in the Prometheus text format, with each zone's stored
//! objects and bytes read from the index at scrape time. Outside `/client/v4` and unauthenticated, as
//! Prometheus scrapers expect; it names zones and counts, nothing else.

use axum::{extract::State, http::header::CONTENT_TYPE, response::IntoResponse};

use crate::api::AppState;

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    for zone in state.zones.zones() {
        match state.index.usage(&zone.id).await {
            Ok(usage) => state.metrics.set_stored(&zone, usage.objects, usage.bytes),
            Err(e) => tracing::warn!(zone = %zone.name, error = %e, "could not read a zone's usage for /metrics"),
        }
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
