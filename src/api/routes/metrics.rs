//! `GET /metrics`: the proxy's per-zone counters in the Prometheus text format, with each zone's stored
//! objects and bytes read from the index, and the purge rules this node holds, at scrape time. Outside `/client/v4` and unauthenticated, as
//! Prometheus scrapers expect; it names zones and counts, nothing else. With the control store unreachable
//! the counters are still served, with the stored figures of the last scrape that could read them.

use axum::{extract::State, http::header::CONTENT_TYPE, response::IntoResponse};

use crate::{api::AppState, metrics, storage::StoreError};

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    for zone in state.zones.zones() {
        match state.index.usage(&zone.id).await {
            Ok(usage) => state.metrics.set_stored(&zone, usage.objects, usage.bytes),
            Err(e) => {
                tracing::warn!(zone = %zone.name, error = %e, "could not read a zone's usage for /metrics");
                if matches!(e, StoreError::Unavailable(_)) {
                    // Every other zone would wait out the same connect timeout.
                    break;
                }
            }
        }
    }
    #[allow(clippy::cast_precision_loss)] // a count far below 2^52
    state.metrics.gauge(metrics::PURGE_RULES).set(state.zones.purges().len() as f64);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
