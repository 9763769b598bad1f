//! Talking to origins: the pooled HTTP client, the request a client's request becomes, and hop-by-hop
//! header stripping.

use std::time::Duration;

use axum::body::Body;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, Uri,
    header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING},
    request,
};

use crate::{http_cache::directives::SURROGATE_DEVICE, net::idle_body::IdleTimeout};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Conditional request headers: the cache asks the origin with its own validators, or for the whole object.
const CONDITIONALS: [HeaderName; 5] = [
    http::header::IF_MATCH,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::IF_RANGE,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    remove_fields(headers, |name| HOP_BY_HOP.contains(&name.as_str()) || named.contains(name));
}

/// Removes every field whose name `remove` picks. One pass over the fields present: a header section holds
/// a handful, where the lists callers remove name dozens, and each `HeaderMap::remove` by name hashes it.
pub fn remove_fields(headers: &mut HeaderMap, remove: impl Fn(&HeaderName) -> bool) {
    let doomed: Vec<HeaderName> = headers.keys().filter(|name| remove(name)).cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes the client's conditional headers (the cache validates with its own, RFC 9111 §4.3.1).
pub fn strip_conditionals(headers: &mut HeaderMap) {
    remove_fields(headers, |name| CONDITIONALS.contains(name));
}

/// A zone's origin, parsed: `scheme://authority[/prefix]`.
#[derive(Debug, Clone)]
pub struct Origin {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
}

impl Origin {
    /// Parses an origin URL as stored for a zone (the admin command has checked its shape).
    pub fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Some(Self { scheme: uri.scheme()?.clone(), authority: uri.authority()?.clone(), prefix })
    }

    /// The origin's URI for a client's path and query.
    fn uri_for(&self, client: &Uri) -> Result<Uri, http::Error> {
        let pq = client.path_and_query().map_or("/", |pq| pq.as_str());
        if pq == "*" {
            // `OPTIONS *` asks about the server, not a path: no prefix (RFC 9112 §3.2.4).
            return Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query("*")
                .build();
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{pq}", self.prefix))
            .build()
    }
}

/// What the cache tells origins it is, per the Edge Architecture: its `Surrogate-Control` device token.
fn surrogate_capability() -> HeaderValue {
    HeaderValue::from_str(&format!("{SURROGATE_DEVICE}=\"Surrogate/1.0\"")).expect("a valid header value")
}

/// What goes to the origin with a request. Either way the client's `Content-Length` and
/// `Transfer-Encoding` are not copied: the framing is the body's own (see [`origin_request`]).
pub enum OriginBody {
    /// The client's body, as it arrives.
    Client(Body),
    /// No body.
    None,
}

/// The origin request for a request prepared by [`super::client_headers::prepare_for_origin`]: same method, path and headers,
/// `Host` set to the origin's and `Surrogate-Capability` added.
///
/// The message is framed from the body that is actually sent, never from the client's header fields: a
/// `Content-Length` without its body (or a body without its length) makes an origin that trusts it read the
/// start of the next request on the pooled connection as this one's body — a desync that files an
/// attacker's response under another URL (RFC 9112 §6.3, §11.2). So the client's `Content-Length` and
/// `Transfer-Encoding` are always removed and hyper frames the body: an exact size hint (the client's own
/// `Content-Length`, which the server has checked, or none for an empty body) becomes `Content-Length`, an
/// unknown one `chunked` — except for GET, HEAD and CONNECT, where hyper sends no body and no framing
/// (vendor/hyper `src/proto/h1/role.rs`, `Client::set_length`). A repeated or list-valued length
/// (`Content-Length: 5, 5`) thus leaves as one value.
pub fn origin_request(origin: &Origin, parts: &request::Parts, body: OriginBody) -> Result<Request<Body>, http::Error> {
    let mut headers = parts.headers.clone();
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    let body = match body {
        OriginBody::Client(b) => b,
        OriginBody::None => Body::empty(),
    };
    headers.insert("surrogate-capability", surrogate_capability());
    headers.insert(HOST, HeaderValue::from_str(origin.authority.as_str())?);
    let mut req = Request::builder().method(parts.method.clone()).uri(origin.uri_for(&parts.uri)?).body(body)?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Why an origin request failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not connect to the origin")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("the origin request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("the origin's response head has more than {MAX_ORIGIN_HEADER_LINES} field lines or is too large")]
    HeadTooLarge(#[source] hyper_util::client::legacy::Error),
    #[error("the origin's response is not valid HTTP/1.1")]
    Invalid(#[source] hyper_util::client::legacy::Error),
}

impl OriginError {
    /// Whether the connection closed before the response began: typically a pooled keep-alive connection the
    /// origin had just closed. The request may not have been processed; an idempotent one can be retried on
    /// a new connection.
    pub fn closed_early(&self) -> bool {
        let Self::Request(e) = self else { return false };
        any_cause(e, |err| {
            err.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
                || err.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
                })
        })
    }

    /// Whether it timed out (connecting, or waiting for the response head).
    pub fn timed_out(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Connect(e) => any_cause(e, |err| {
                err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            }),
            Self::Request(_) | Self::HeadTooLarge(_) | Self::Invalid(_) => false,
        }
    }
}

/// Whether `e` or any error in its source chain satisfies `matches`.
fn any_cause(
    e: &(dyn std::error::Error + 'static),
    matches: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    std::iter::successors(Some(e), |err| err.source()).any(matches)
}

/// Most field lines accepted in an origin's response head. nginx accepts what fits its 4 or 8 KiB
/// `proxy_buffer_size` (up to about 1,600 minimal lines); hyper's default is 100.
pub const MAX_ORIGIN_HEADER_LINES: usize = 2048;

/// Largest read buffer of an origin connection, in bytes: the most a response head may take (nginx's
/// `proxy_buffer_size` is 4 or 8 KiB), and the most one read of its body holds while the client takes it.
/// hyper's default, about 400 KiB, kept that much alive per connection streaming to a slow client.
pub const MAX_ORIGIN_READ_BUFFER: usize = 64 * 1024;

/// An origin's response body: it fails when its next piece takes longer than the read timeout.
pub type OriginResponseBody = IdleTimeout<Incoming>;

/// A pooled HTTP/1.1 client to origins (plain HTTP and HTTPS with the Web PKI roots). It follows no
/// redirects and leaves bodies as they are (no decompression).
#[derive(Clone)]
pub struct OriginClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    response_timeout: Duration,
    read_timeout: Duration,
}

impl OriginClient {
    /// `connect_timeout` bounds the TCP connect, `response_timeout` the wait for the response head,
    /// `read_timeout` each wait for the next piece of its body.
    pub fn new(connect_timeout: Duration, response_timeout: Duration, read_timeout: Duration) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_max_headers(MAX_ORIGIN_HEADER_LINES)
            .http1_max_buf_size(MAX_ORIGIN_READ_BUFFER)
            .build(https);
        Ok(Self { client, response_timeout, read_timeout })
    }

    /// Sends a request; the response body streams. Its `Content-Length` is made a single value (RFC 9110
    /// §8.6: a list of equal values is accepted, never forwarded).
    pub async fn send(&self, req: Request<Body>) -> Result<Response<OriginResponseBody>, OriginError> {
        let resp = match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => return Err(OriginError::Timeout(self.response_timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(OriginError::Connect(e)),
            Ok(Err(e)) if head_too_large(&e) => return Err(OriginError::HeadTooLarge(e)),
            Ok(Err(e)) if invalid_head(&e) => return Err(OriginError::Invalid(e)),
            Ok(Err(e)) => return Err(OriginError::Request(e)),
            Ok(Ok(r)) => r,
        };
        let (mut head, body) = resp.into_parts();
        if head.headers.contains_key(TRANSFER_ENCODING) {
            // The body was framed by its transfer coding; a length beside it is wrong and must not be
            // forwarded (RFC 9112 §6.3).
            head.headers.remove(CONTENT_LENGTH);
        }
        single_content_length(&mut head.headers);
        Ok(Response::from_parts(head, IdleTimeout::new(body, self.read_timeout)))
    }
}

/// Whether hyper refused a response head as malformed (bad syntax, conflicting lengths, ...).
fn invalid_head(e: &hyper_util::client::legacy::Error) -> bool {
    any_cause(e, |err| err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse))
}

/// Whether hyper refused a response head for its size or number of lines.
fn head_too_large(e: &hyper_util::client::legacy::Error) -> bool {
    any_cause(e, |err| err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse_too_large))
}

/// Makes `Content-Length` one value: a list (or several lines) of one same length becomes that length
/// (RFC 9110 §8.6, RFC 9112 §6.3); anything else is removed (the body's own framing stands).
pub fn single_content_length(headers: &mut HeaderMap) {
    let mut values = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.to_str().map_or(vec![None], |s| s.split(',').map(|n| n.trim().parse::<u64>().ok()).collect()));
    let Some(first) = values.next() else { return };
    let single = values.try_fold(first, |acc, v| (v == acc).then_some(acc)).flatten();
    headers.remove(CONTENT_LENGTH);
    if let Some(n) = single {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::client_headers::{TrustedProxies, prepare_for_origin};

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("cache-control"));
    }

    #[test]
    fn origin_request_keeps_path_and_sets_forwarding_headers() {
        let origin = Origin::parse("http://127.0.0.1:9000/base/").unwrap();
        let (mut parts, ()) = Request::get("/a/b?c=1").body(()).unwrap().into_parts();
        parts.headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        parts.headers.insert("host", HeaderValue::from_static("example.com"));
        parts.headers.insert("content-length", HeaderValue::from_static("5"));
        let peer = "192.0.2.7".parse().unwrap();
        prepare_for_origin(
            &mut parts.headers,
            &parts.method,
            peer,
            &TrustedProxies::default(),
            "example.com".into(),
            false,
        );
        let req = origin_request(&origin, &parts, OriginBody::None).unwrap();
        assert!(!req.headers().contains_key("content-length"), "no body, so no length");
        let with_body = origin_request(&origin, &parts, OriginBody::Client(Body::from("hello"))).unwrap();
        assert!(!with_body.headers().contains_key("content-length"), "the body's own length is hyper's to set");
        assert_eq!(http_body::Body::size_hint(with_body.body()).exact(), Some(5));
        assert_eq!(req.headers()["surrogate-capability"], "cache-reserve=\"Surrogate/1.0\"");
        assert_eq!(req.uri(), "http://127.0.0.1:9000/base/a/b?c=1");
        assert_eq!(req.headers()["host"], "127.0.0.1:9000");
        assert_eq!(req.headers()["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(req.headers()["x-forwarded-proto"], "http");
        assert_eq!(req.headers()["x-forwarded-host"], "example.com");
    }

    #[test]
    fn a_content_length_list_of_one_value_becomes_that_value_and_anything_else_goes() {
        let cases: [(&[&str], Option<&str>); 6] = [
            (&["5, 5"], Some("5")),
            (&["5", "5"], Some("5")),
            (&["5,5 , 5"], Some("5")),
            (&["5, 6"], None),
            (&["5", "x"], None),
            (&["7"], Some("7")),
        ];
        for (lines, want) in cases {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(CONTENT_LENGTH, HeaderValue::from_static(l));
            }
            single_content_length(&mut h);
            assert_eq!(h.get_all(CONTENT_LENGTH).iter().count(), usize::from(want.is_some()), "{lines:?}");
            assert_eq!(h.get(CONTENT_LENGTH).map(|v| v.to_str().unwrap()), want, "{lines:?}");
        }
    }
}
