//! The upstream phase: requests to the zone's origin — the client's request passed through as it is, or a
//! `GET` the cache makes for itself (a fetch, or a validation with the stored validators).

use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Response};
use hyper::body::Incoming;

use super::{
    Ctx,
    error::ProxyError,
    origin::{OriginBody, OriginError, origin_request, strip_conditionals},
};

impl Ctx<'_> {
    /// Forwards the client's request as it is (hop-by-hop fields aside), streaming `body` to the origin.
    pub(super) async fn forward(&self, body: OriginBody) -> Result<Response<Incoming>, ProxyError> {
        self.send(&self.parts, body).await
    }

    /// GETs the object for the cache: without the client's conditionals or body, and with `validators` when
    /// validating a stored copy (RFC 9111 §4.3.1). Returns the response and when the request was sent.
    pub(super) async fn fetch(
        &self,
        validators: &[(HeaderName, HeaderValue)],
    ) -> Result<(Response<Incoming>, SystemTime), ProxyError> {
        let mut ask = self.as_get();
        strip_conditionals(&mut ask.headers);
        for (name, value) in validators {
            ask.headers.insert(name, value.clone());
        }
        let sent = SystemTime::now();
        Ok((self.send(&ask, OriginBody::None).await?, sent))
    }

    async fn send(&self, parts: &http::request::Parts, body: OriginBody) -> Result<Response<Incoming>, ProxyError> {
        let origin = self.origin.as_ref().ok_or_else(|| ProxyError::NoOrigin(self.zone.name.to_string()))?;
        let req = origin_request(origin, parts, &self.forwarded, body)
            .map_err(|_| ProxyError::BadOrigin(self.zone.name.to_string()))?;
        self.counters.origin_requests.increment(1);
        self.proxy.origin.send(req).await.map_err(ProxyError::Origin)
    }
}

impl From<OriginError> for ProxyError {
    fn from(e: OriginError) -> Self {
        Self::Origin(e)
    }
}
