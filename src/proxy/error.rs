//! Why the proxy could not answer as asked, and the one table that says what each failure answers: its
//! status, its short body, who is to blame, and how it is logged. Bodies never carry internal detail; the
//! cause goes to the log.

use http::StatusCode;

use super::{cdn_loop::Looped, origin::OriginError};
use crate::{net::client_body::BodyFault, storage::StoreError};

/// Who a failure is blamed on (pingora's error sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client's request cannot be served (4xx).
    Downstream,
    /// The origin failed (502/504), counted in `origin_errors`.
    Upstream,
    /// This proxy failed (5xx).
    Internal,
}

/// A failure while serving one request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request has no Host")]
    MissingHost,
    #[error("the request's Host is invalid: {0}")]
    BadHost(&'static str),
    #[error("no zone is named {0:?}")]
    UnknownHost(String),
    #[error("the zone table could not be read")]
    ZoneLookup(#[source] StoreError),
    #[error("zone {0} has no origin configured")]
    NoOrigin(String),
    #[error("zone {0}'s origin URL cannot make a request")]
    BadOrigin(String),
    #[error("origin request failed")]
    Origin(#[source] OriginError),
    #[error("the client's request body {}", match .0 {
        BodyFault::TimedOut => "stopped arriving",
        BodyFault::Broken => "is malformed or was cut short",
    })]
    ClientBody(BodyFault),
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("only-if-cached, and no stored response may answer")]
    NotCached,
    #[error("forwarding loop: {}", .0.as_str())]
    LoopDetected(Looped),
    #[error("a request handler panicked")]
    Panic,
}

impl ProxyError {
    /// The table: status, body, blame. Exhaustive, so a new failure cannot go unmapped.
    pub fn answer(&self) -> (StatusCode, String, Blame) {
        use Blame::*;
        let (status, body, blame) = match self {
            Self::MissingHost => (StatusCode::BAD_REQUEST, "missing Host header".to_owned(), Downstream),
            Self::BadHost(_) => (StatusCode::BAD_REQUEST, "invalid Host header".to_owned(), Downstream),
            Self::UnknownHost(host) => {
                let shown: String = host.escape_debug().take(200).collect();
                (StatusCode::MISDIRECTED_REQUEST, format!("no zone is named \"{shown}\" on this cache"), Downstream)
            }
            Self::ZoneLookup(_) => (StatusCode::SERVICE_UNAVAILABLE, "zone lookup failed".to_owned(), Internal),
            Self::NoOrigin(zone) => {
                (StatusCode::BAD_GATEWAY, format!("zone {zone} has no origin configured"), Upstream)
            }
            Self::BadOrigin(_) => (StatusCode::BAD_GATEWAY, "origin misconfigured".to_owned(), Upstream),
            Self::Origin(e) if e.timed_out() => (StatusCode::GATEWAY_TIMEOUT, "origin timed out".to_owned(), Upstream),
            Self::Origin(OriginError::Invalid(_)) => {
                (StatusCode::BAD_GATEWAY, "invalid origin response".to_owned(), Upstream)
            }
            Self::Origin(OriginError::HeadTooLarge(_)) => {
                (StatusCode::BAD_GATEWAY, "origin response head too large".to_owned(), Upstream)
            }
            Self::Origin(_) => (StatusCode::BAD_GATEWAY, "origin unreachable".to_owned(), Upstream),
            Self::ClientBody(BodyFault::TimedOut) => {
                (StatusCode::REQUEST_TIMEOUT, "request body timed out".to_owned(), Downstream)
            }
            Self::ClientBody(BodyFault::Broken) => {
                (StatusCode::BAD_REQUEST, "request body malformed or incomplete".to_owned(), Downstream)
            }
            Self::NotImplemented(what) => (StatusCode::NOT_IMPLEMENTED, format!("not implemented: {what}"), Downstream),
            Self::NotCached => (StatusCode::GATEWAY_TIMEOUT, "not cached (only-if-cached)".to_owned(), Downstream),
            Self::LoopDetected(_) => (
                StatusCode::LOOP_DETECTED,
                "loop detected: this request has come round to this cache".to_owned(),
                Downstream,
            ),
            Self::Panic => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned(), Internal),
        };
        (status, body + "\n", blame)
    }

    /// Logs the failure once, with its cause chain and the request it failed, at the level its blame
    /// deserves.
    pub fn log(&self, zone: Option<&str>, request: Option<&http::request::Parts>) {
        let zone = zone.unwrap_or("");
        let method = request.map_or("", |r| r.method.as_str());
        let path: String = request.map_or("", |r| r.uri.path()).escape_debug().take(200).collect();
        let mut cause = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            cause.push_str(": ");
            cause.push_str(&e.to_string());
            source = e.source();
        }
        match self.answer().2 {
            Blame::Downstream => tracing::debug!(zone, method, path, error = cause, "request refused"),
            Blame::Upstream => tracing::warn!(zone, method, path, error = cause, "origin failure"),
            Blame::Internal => tracing::error!(zone, method, path, error = cause, "proxy failure"),
        }
    }
}

/// The body of an answer the proxy's listener gives by itself (see [`crate::net::ErrorBody`]): parse
/// failures and the connection cap, in plain text like the table's.
pub fn listener_error_body(status: StatusCode) -> (http::HeaderValue, bytes::Bytes) {
    let text: &'static str = match status {
        StatusCode::URI_TOO_LONG => "request URI too long\n",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request header fields too large\n",
        StatusCode::SERVICE_UNAVAILABLE => "too many connections; retry shortly\n",
        _ => "malformed request\n",
    };
    (http::HeaderValue::from_static("text/plain; charset=utf-8"), bytes::Bytes::from_static(text.as_bytes()))
}
