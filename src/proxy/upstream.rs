//! The upstream phase: requests to the zone's origin — the client's request passed through as it is, or a
//! `GET` the cache makes for itself (a fetch, or a validation with the stored validators).

use std::{sync::Arc, time::SystemTime};

use http::{HeaderName, HeaderValue, Response};

use crate::net::client_body::BodyProgress;

use super::{
    Ctx,
    error::ProxyError,
    origin::{OriginBody, OriginResponseBody, origin_request, strip_conditionals, strip_hop_by_hop},
};

/// Attempts at a cache fetch when the origin closes reused connections under it.
const FETCH_TRIES: u32 = 3;

impl Ctx {
    /// Forwards the client's request as it is (hop-by-hop fields aside), streaming `body` to the origin.
    /// A failure while the client's body was being read is the client's (400 or 408), not the origin's.
    /// An idempotent request without a body is sent once more when a reused connection fails before any
    /// response (RFC 9110 §9.2.2).
    pub(super) async fn forward(&self, body: OriginBody) -> Result<Response<OriginResponseBody>, ProxyError> {
        let progress = self.parts.extensions.get::<Arc<BodyProgress>>().cloned();
        let replayable = self.parts.method.is_idempotent() && progress.as_ref().is_none_or(|p| !p.had_body());
        let first = self.send(&self.parts, body).await;
        let fault = progress.as_ref().and_then(|p| p.fault());
        match first {
            Err(_) if fault.is_some() => Err(ProxyError::ClientBody(fault.expect("checked"))),
            Err(ProxyError::Origin(e)) if e.closed_early() && replayable => {
                tracing::debug!(zone = %self.zone.name, error = %e, "origin closed a reused connection; retrying once");
                self.send(&self.parts, OriginBody::None).await
            }
            other => other,
        }
    }

    /// GETs the object for the cache: without the client's conditionals or body, and with `validators` when
    /// validating a stored copy (RFC 9111 §4.3.1). Returns the response and when the request was sent.
    pub(super) async fn fetch(
        &self,
        validators: &[(HeaderName, HeaderValue)],
    ) -> Result<(Response<OriginResponseBody>, SystemTime), ProxyError> {
        let mut ask = self.as_get();
        strip_conditionals(&mut ask.headers);
        // The whole object, for the tiers: a client's range is cut from it (see `ranges`).
        ask.headers.remove(http::header::RANGE);
        for (name, value) in validators {
            ask.headers.insert(name, value.clone());
        }
        // A keep-alive connection the origin closed just as it was reused fails before any response: a GET
        // is safe to send again, on another connection (as nginx's proxy_next_upstream does). Several pooled
        // connections may have been closed at once, hence a few tries.
        let mut tries = 1;
        loop {
            let sent = SystemTime::now();
            match self.send(&ask, OriginBody::None).await {
                Err(ProxyError::Origin(e)) if e.closed_early() && tries < FETCH_TRIES => {
                    tracing::debug!(zone = %self.zone.name, error = %e, "origin closed a reused connection; retrying");
                    tries += 1;
                }
                other => return Ok((other?, sent)),
            }
        }
    }

    async fn send(
        &self,
        parts: &http::request::Parts,
        body: OriginBody,
    ) -> Result<Response<OriginResponseBody>, ProxyError> {
        let origin = self.origin.as_ref().ok_or_else(|| ProxyError::NoOrigin(self.zone.name.to_string()))?;
        let mut req =
            origin_request(origin, parts, body).map_err(|_| ProxyError::BadOrigin(self.zone.name.to_string()))?;
        forward_informational(&mut req, &self.parts);
        self.counters.origin_requests.increment(1);
        self.proxy.origin.send(req).await.map_err(ProxyError::Origin)
    }
}

/// Passes the origin's 1xx responses (`103 Early Hints`, `102 Processing`, ...) on to the client as they
/// arrive, hop-by-hop fields removed (RFC 9110 §15.2: a proxy forwards them). `100 Continue` is not passed
/// on: the client's own was already sent by this server when its body was first read.
fn forward_informational(req: &mut http::Request<axum::body::Body>, client: &http::request::Parts) {
    let Some(to_client) = client.extensions.get::<hyper::ext::InformationalSender>().cloned() else { return };
    hyper::ext::on_informational(req, move |res| {
        if res.status() == http::StatusCode::CONTINUE {
            return;
        }
        let mut headers = res.headers().clone();
        strip_hop_by_hop(&mut headers);
        if let Err(e) = to_client.send(res.status(), headers) {
            tracing::debug!(error = %e, "an informational response arrived too late to pass on");
        }
    });
}
