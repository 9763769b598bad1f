//! Every error the API answers with, and the one table that maps each to HTTP status, Cloudflare code and
//! message. The match has no `_` arm: a new variant cannot slip through unmapped.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::storage::StoreError;

/// An error answered in Cloudflare's failure envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No credentials, or only one of X-Auth-Email / X-Auth-Key.
    MissingCredentials,
    /// `Authorization` is not `Bearer <token>`.
    MalformedAuthorization,
    /// `X-Auth-Email` is not an e-mail address.
    MalformedEmail,
    /// `X-Auth-Key` is not a global API key.
    MalformedKey,
    /// No user has that e-mail and key.
    UnknownGlobalKey,
    /// Unknown, revoked or expired token, or a permission missing.
    AuthenticationError,
    /// Malformed, unknown or out-of-scope zone identifier; carries the request path, already made safe.
    CouldNotRoute(String),
    /// No such endpoint.
    NoRoute,
    /// The endpoint exists but not with this method.
    MethodNotAllowed,
    /// The body is not JSON.
    MalformedJson,
    /// The body is over the limit.
    BodyTooLarge,
    /// A setting's value is missing or not allowed; carries the setting's name.
    InvalidSettingValue(&'static str),
    /// A setting this server does not have was asked to be turned on.
    UnsupportedSetting(&'static str),
    /// The request body has the wrong shape; carries what was expected.
    InvalidBody(&'static str),
    /// A JSON object in the body has a field this endpoint does not take (nothing is changed); carries the
    /// field, already made safe, and the fields allowed there.
    UnknownField { field: String, expected: &'static str },
    /// A query parameter is out of range; carries which and what is allowed.
    InvalidQuery(&'static str),
    /// This endpoint needs an API token, and another credential was sent.
    TokenRequired,
    /// GET status of a zone that never had a Clear (Cloudflare 1142).
    ClearNeverPerformed,
    /// POST Clear while the reserve is on (Cloudflare 1152).
    ReserveOn,
    /// Turning the reserve on while a Clear runs (Cloudflare 1153).
    ClearInProgress,
    /// The request body stopped arriving for longer than the body timeout.
    BodyTimeout,
    /// The body could not be read: bad chunked framing, or the client closed mid-body.
    BrokenBody,
    /// The listener could not parse the request (`400`), or its URI (`414`) or header section (`431`) is
    /// too large. Answered by the HTTP/1 server itself, before any route.
    Unparseable(StatusCode),
    /// The API's connection cap is reached (`503`, answered by the listener before reading the request).
    TooManyConnections,
    /// `POST /zones` with a name a live zone has (Cloudflare 1061); carries the name.
    ZoneExists(String),
    /// `POST /zones` with a name that is not a hostname; carries it, already made safe.
    InvalidZoneName(String),
    /// A `purge_cache` / `invalidate_cache` body that cannot be carried out (SPEC §10).
    Purge(PurgeError),
    /// The control store cannot be reached (`503`, retryable): nothing was changed.
    Unavailable,
    /// Something failed inside; the cause was logged where it happened.
    Internal,
}

/// Why a purge body was refused (SPEC §10). Codes 1012 and 1014 are Cloudflare's; the others are our
/// choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeError {
    /// No selector at all (Cloudflare 1012).
    NoSelector,
    /// A selector that is not an array (Cloudflare 1014).
    NotArray,
    /// An item that is not valid; the message names it (1016, our choice).
    Invalid(String),
    /// Two selectors in one body (1017, our choice).
    MoreThanOneSelector,
    /// `purge_everything` with a selector beside it (1017, our choice).
    EverythingNotAlone,
    /// More items than the per-request limit (1018, our choice).
    OverLimit { selector: &'static str, limit: usize },
}

impl PurgeError {
    fn item(&self) -> ErrorItem {
        match self {
            PurgeError::NoSelector => {
                item(1012, r#"Request must contain one of "purge_everything", "files", "tags", "hosts" or "prefixes""#)
            }
            PurgeError::NotArray => item(1014, r#""files", "tags", "hosts" or "prefixes" must be an array"#),
            PurgeError::Invalid(why) => item(1016, format!("Invalid purge request: {why}")),
            PurgeError::MoreThanOneSelector => item(
                1017,
                r#"Request must contain only one of "files", "tags", "hosts" or "prefixes"; send one request per selector"#,
            ),
            PurgeError::EverythingNotAlone => item(1017, r#""purge_everything" must be the only field of the request"#),
            PurgeError::OverLimit { selector, limit } => {
                item(1018, format!("Too many items in {selector}: at most {limit} per request; split it"))
            }
        }
    }
}

/// One entry of `errors`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorItem {
    pub code: u32,
    pub message: String,
    /// Causes of this error, same shape.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub error_chain: Vec<ErrorItem>,
}

fn item(code: u32, message: impl Into<String>) -> ErrorItem {
    ErrorItem { code, message: message.into(), error_chain: Vec::new() }
}

fn invalid_headers(inner: ErrorItem) -> ErrorItem {
    ErrorItem { code: 6003, message: "Invalid request headers".into(), error_chain: vec![inner] }
}

impl ApiError {
    /// The table: status and error item for every variant.
    pub fn parts(&self) -> (StatusCode, ErrorItem) {
        use StatusCode as S;
        match self {
            ApiError::MissingCredentials => {
                (S::BAD_REQUEST, item(9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers"))
            }
            ApiError::MalformedAuthorization => {
                (S::BAD_REQUEST, invalid_headers(item(6111, "Invalid format for Authorization header")))
            }
            ApiError::MalformedEmail => {
                (S::BAD_REQUEST, invalid_headers(item(6102, "Invalid format for X-Auth-Email header")))
            }
            ApiError::MalformedKey => {
                (S::BAD_REQUEST, invalid_headers(item(6103, "Invalid format for X-Auth-Key header")))
            }
            ApiError::UnknownGlobalKey => (S::FORBIDDEN, item(9103, "Unknown X-Auth-Key or X-Auth-Email")),
            ApiError::AuthenticationError => (S::FORBIDDEN, item(10000, "Authentication error")),
            ApiError::CouldNotRoute(path) => (
                S::BAD_REQUEST,
                item(7003, format!("Could not route to {path}, perhaps your object identifier is invalid?")),
            ),
            ApiError::NoRoute => (S::NOT_FOUND, item(7000, "No route for that URI")),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, item(7001, "Method not allowed for this endpoint")),
            ApiError::MalformedJson => (S::BAD_REQUEST, item(6007, "Malformed JSON in request body")),
            ApiError::BodyTooLarge => (S::PAYLOAD_TOO_LARGE, item(6009, "Request body is larger than 1 MiB")),
            ApiError::InvalidSettingValue(setting) => (
                S::BAD_REQUEST,
                item(
                    1007,
                    format!(
                        "Invalid value for zone setting {setting}: expected {{\"value\":\"on\"}} or {{\"value\":\"off\"}}"
                    ),
                ),
            ),
            ApiError::UnsupportedSetting(setting) => (
                S::BAD_REQUEST,
                item(
                    1007,
                    format!(
                        "Invalid value for zone setting {setting}: this server does not provide {setting}, so it can only be \"off\""
                    ),
                ),
            ),
            ApiError::InvalidBody(expected) => {
                (S::BAD_REQUEST, item(1007, format!("Invalid request body: {expected}")))
            }
            ApiError::UnknownField { field, expected } => (
                S::BAD_REQUEST,
                item(1007, format!("Invalid request body: unknown field \"{field}\"; expected {expected}")),
            ),
            ApiError::InvalidQuery(what) => (S::BAD_REQUEST, item(1004, format!("Invalid query parameter: {what}"))),
            ApiError::TokenRequired => (
                S::BAD_REQUEST,
                item(1001, "This endpoint verifies an API token: send it as Authorization: Bearer <token>"),
            ),
            ApiError::ClearNeverPerformed => (
                S::BAD_REQUEST,
                item(
                    1142,
                    "Unable to retrieve cache_reserve_clear setting value. The zone setting does not exist because you never performed a Cache Reserve Clear operation.",
                ),
            ),
            ApiError::ReserveOn => {
                (S::BAD_REQUEST, item(1152, "Turn off Cache Reserve sync to proceed with deletion."))
            }
            ApiError::ClearInProgress => (
                S::BAD_REQUEST,
                item(1153, "Cache Reserve cannot be enabled because a deletion is already in progress."),
            ),
            ApiError::BodyTimeout => (S::REQUEST_TIMEOUT, item(6010, "The request body stopped arriving")),
            ApiError::BrokenBody => (S::BAD_REQUEST, item(6011, "The request body is malformed or incomplete")),
            ApiError::Unparseable(S::URI_TOO_LONG) => (S::URI_TOO_LONG, item(6012, "The request URI is too long")),
            ApiError::Unparseable(S::REQUEST_HEADER_FIELDS_TOO_LARGE) => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                invalid_headers(item(6013, "The request header section is too large")),
            ),
            ApiError::Unparseable(_) => (S::BAD_REQUEST, item(6014, "The request is not valid HTTP/1.1")),
            ApiError::TooManyConnections => {
                (S::SERVICE_UNAVAILABLE, item(1015, "Too many connections to the API; retry shortly"))
            }
            ApiError::ZoneExists(name) => (S::BAD_REQUEST, item(1061, format!("{name} already exists"))),
            ApiError::InvalidZoneName(name) => (
                S::BAD_REQUEST,
                item(
                    1007,
                    format!(
                        "Invalid request body: \"{name}\" is not a valid zone name; expected a hostname such as example.com"
                    ),
                ),
            ),
            ApiError::Purge(e) => (S::BAD_REQUEST, e.item()),
            ApiError::Unavailable => (
                S::SERVICE_UNAVAILABLE,
                item(6015, "The control store is unavailable; nothing was changed. Retry shortly"),
            ),
            ApiError::Internal => (S::INTERNAL_SERVER_ERROR, item(1000, "Internal server error")),
        }
    }
}

/// The failure envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Failure {
    /// Always `false`.
    pub success: bool,
    pub errors: Vec<ErrorItem>,
    pub messages: Vec<ErrorItem>,
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<()>,
}

impl ApiError {
    /// The failure envelope's bytes.
    pub fn body(&self) -> Vec<u8> {
        let (_, error) = self.parts();
        let body = Failure { success: false, errors: vec![error], messages: vec![], result: None };
        serde_json::to_vec(&body).expect("the failure envelope serialises")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        let mut response =
            (status, [(axum::http::header::CONTENT_TYPE, "application/json")], self.body()).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // RFC 9110 §10.2.3: when to try again.
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// The envelope of an answer the API's listener gives by itself (see [`crate::net::ErrorBody`]): parse
/// failures and the connection cap.
pub fn listener_error_body(status: StatusCode) -> (axum::http::HeaderValue, axum::body::Bytes) {
    let e = if status == StatusCode::SERVICE_UNAVAILABLE {
        ApiError::TooManyConnections
    } else {
        ApiError::Unparseable(status)
    };
    (axum::http::HeaderValue::from_static("application/json"), e.body().into())
}

impl From<StoreError> for ApiError {
    /// Storage failures are logged here, with their cause chain, and answered generically.
    fn from(e: StoreError) -> Self {
        if let StoreError::Unavailable(_) = e {
            tracing::warn!(error = ?e, "the control store is unavailable; answered 503");
            return ApiError::Unavailable;
        }
        tracing::error!(error = ?e, "storage failed while serving a request");
        ApiError::Internal
    }
}

/// Makes a request path safe to echo: printable ASCII only (others percent-escaped), at most 200 bytes.
pub fn safe_echo(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if out.len() >= 200 {
            out.push_str("...");
            break;
        }
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_at_least_1000() {
        let all = [
            ApiError::MissingCredentials,
            ApiError::MalformedAuthorization,
            ApiError::MalformedEmail,
            ApiError::MalformedKey,
            ApiError::UnknownGlobalKey,
            ApiError::AuthenticationError,
            ApiError::CouldNotRoute("/x".into()),
            ApiError::NoRoute,
            ApiError::MethodNotAllowed,
            ApiError::MalformedJson,
            ApiError::BodyTooLarge,
            ApiError::InvalidSettingValue("cache_reserve"),
            ApiError::UnsupportedSetting("smart_routing"),
            ApiError::InvalidBody("an object"),
            ApiError::UnknownField { field: "foo".into(), expected: "value" },
            ApiError::InvalidQuery("page"),
            ApiError::TokenRequired,
            ApiError::ClearNeverPerformed,
            ApiError::ReserveOn,
            ApiError::ClearInProgress,
            ApiError::BodyTimeout,
            ApiError::BrokenBody,
            ApiError::Unparseable(StatusCode::BAD_REQUEST),
            ApiError::Unparseable(StatusCode::URI_TOO_LONG),
            ApiError::Unparseable(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            ApiError::TooManyConnections,
            ApiError::ZoneExists("example.com".into()),
            ApiError::InvalidZoneName("a b".into()),
            ApiError::Purge(PurgeError::NoSelector),
            ApiError::Purge(PurgeError::NotArray),
            ApiError::Purge(PurgeError::Invalid("x".into())),
            ApiError::Purge(PurgeError::MoreThanOneSelector),
            ApiError::Purge(PurgeError::EverythingNotAlone),
            ApiError::Purge(PurgeError::OverLimit { selector: "files", limit: 500 }),
            ApiError::Unavailable,
            ApiError::Internal,
        ];
        for e in all {
            let (status, item) = e.parts();
            assert!(item.code >= 1000, "{e:?}");
            // Rule violations must not be 409 or 5xx: Cloudflare's SDKs retry those.
            // Failures of this server (not of the request) are 5xx, so that clients retry them.
            if ![ApiError::Internal, ApiError::TooManyConnections, ApiError::Unavailable].contains(&e) {
                assert!(status.is_client_error() && status != StatusCode::CONFLICT, "{e:?}");
            }
        }
    }

    #[test]
    fn echo_escapes_controls_and_truncates() {
        assert_eq!(safe_echo("/a\u{1b}[31m b"), "/a%1B[31m%20b");
        assert!(safe_echo(&"x".repeat(5000)).len() < 210);
    }
}
