//! Our own extractors, so that every rejection comes back in the Cloudflare envelope.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, OriginalUri, Request},
    http::{header::CONTENT_LENGTH, request::Parts},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::{ApiError, error::safe_echo};
use crate::{domain::ZoneId, net::idle_body};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The raw request body, at most [`MAX_BODY_BYTES`] (else 413 in the envelope).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let declared =
            req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::BodyTooLarge);
        }
        match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(collected) => Ok(RawBody(collected.to_bytes())),
            Err(e) if e.is::<LengthLimitError>() => Err(ApiError::BodyTooLarge),
            Err(e) if idle_body::is_idle(e.as_ref()) => Err(ApiError::BodyTimeout),
            Err(_) => Err(ApiError::BrokenBody),
        }
    }
}

impl RawBody {
    /// Parses the body as JSON; an empty or blank body is `None`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&self.0).map(Some).map_err(|_| ApiError::MalformedJson)
    }
}

/// The first field of a JSON object in a body that is not among `known`, made safe to echo: an endpoint
/// refuses the whole body for it rather than ignore what the caller meant to change.
pub fn unknown_field(fields: &serde_json::Map<String, serde_json::Value>, known: &[&str]) -> Option<String> {
    fields.keys().find(|k| !known.contains(&k.as_str())).map(|k| safe_echo(k))
}

/// The `{zone_id}` segment of a zone path, as sent, with the whole path kept for error messages.
pub struct ZoneSegment {
    raw: String,
    path: String,
}

impl ZoneSegment {
    /// The identifier, or the 7003 answer if it is not one.
    pub fn parse(&self) -> Result<ZoneId, ApiError> {
        ZoneId::parse(&self.raw).map_err(|_| self.not_routable())
    }

    /// The answer for a zone that is malformed, unknown or out of scope: all look the same.
    pub fn not_routable(&self) -> ApiError {
        ApiError::CouldNotRoute(safe_echo(&self.path))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ZoneSegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let path = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.path(), |u| u.0.path()).to_owned();
        let raw = path.split('/').skip_while(|s| *s != "zones").nth(1).ok_or(ApiError::NoRoute)?.to_owned();
        Ok(ZoneSegment { raw, path })
    }
}
