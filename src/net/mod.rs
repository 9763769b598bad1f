//! Serving HTTP/1.1 on a TCP listener with the limits a public listener needs: a cap on connections, and
//! timeouts for a head that does not arrive, a kept-alive connection left idle, a request body that stops,
//! and a client that stops reading (nginx's `client_header_timeout`, `keepalive_timeout`,
//! `client_body_timeout`, `send_timeout`). Both the proxy and the control API are served this way, each
//! with its own budget, so a flood on one leaves the other reachable. The proxy's listener may also speak
//! TLS (HTTP/2 and HTTP/1.1 by ALPN, [`tls`]) or accept h2c ([`Protocols`]), under the same limits.

pub mod client_body;
pub mod h2;
pub mod idle_body;
mod limits;
mod negotiate;
pub mod tls;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, StatusCode,
    header::{CONNECTION, CONTENT_TYPE},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use client_body::ClientBody;
pub use limits::{FileBudget, raise_open_files_limit};
pub use negotiate::Protocols;
use negotiate::Serving;

/// Largest request head (request line and header section) read, in bytes; more is `431`. Without it hyper
/// read up to its buffer limit (about 400 KiB) per connection while a head arrived; nginx allows 4 × 8 KiB,
/// Cloudflare 32 KiB of header fields. (hyper's `max_buf_size` would bound the head too, but it also caps
/// the write buffer, and a response's head and body would no longer go out in one write.)
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest request target, in bytes; longer is `414` (Cloudflare's limit on URLs is 16 KiB).
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Connections over the cap answered `503` at once (each for at most a second); more are closed unanswered,
/// so a flood cannot turn refusals into a file descriptor leak of its own.
const MAX_REFUSING: usize = 64;

/// The limits of one listener. Defaults follow nginx's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once; one more is answered `503` and closed (over TLS, closed).
    pub max_connections: usize,
    /// How long a request head may take to arrive, from the connection's start or the head's first byte
    /// (nginx `client_header_timeout`, 60 s). The connection is closed. Also bounds a TLS handshake, and the
    /// first bytes on an h2c listener.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request (nginx `keepalive_timeout`, 75 s);
    /// on HTTP/2, how long a connection may have no request open.
    pub idle_timeout: Duration,
    /// Longest wait for the next piece of a request body (nginx `client_body_timeout`, 60 s).
    pub body_timeout: Duration,
    /// Longest wait for a client to take the next bytes of a response (nginx `send_timeout`, 60 s).
    pub send_timeout: Duration,
}

impl ConnLimits {
    /// nginx's timeouts, and `max_connections`.
    pub fn with_max_connections(max_connections: usize) -> Self {
        Self {
            max_connections,
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// Makes the body of a response the listener sends by itself: the HTTP/1 parser's `400`, `414` and `431`,
/// and the `503` to a connection over the cap. Returns the content type and the bytes.
pub type ErrorBody = fn(StatusCode) -> (HeaderValue, Bytes);

/// One listener: its name for logs, its limits, how its own error answers look, and what it speaks.
#[derive(Clone)]
pub struct Listener {
    pub name: &'static str,
    pub limits: ConnLimits,
    pub error_body: ErrorBody,
    /// Plain HTTP/1.1, h2c beside it, or TLS with HTTP/2 and HTTP/1.1.
    pub protocols: Protocols,
}

/// Put in a request's extensions when it came over TLS (the request's own `:scheme` or absolute URI is the
/// client's say, not the connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure;

impl Listener {
    /// Serves `app` on `tcp` until `shutdown`, then lets the open connections finish their requests (the
    /// caller bounds how long it waits). `app` sees the peer as `ConnectInfo<SocketAddr>`, the request
    /// body's [`client_body::BodyProgress`], and [`Secure`] for a request over TLS, in the request
    /// extensions.
    pub async fn serve(self, tcp: TcpListener, app: Router, shutdown: CancellationToken) {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .max_header_size(MAX_HEAD_BYTES)
            .header_read_timeout(self.limits.header_timeout)
            .idle_timeout(self.limits.idle_timeout)
            .error_response(self.error_body);
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
        let graceful = GracefulShutdown::new();
        let negotiated = Arc::new(Serving {
            http1: http.clone(),
            http2: h2::builder(&self.limits),
            header_timeout: self.limits.header_timeout,
            idle_timeout: self.limits.idle_timeout,
            send_timeout: self.limits.send_timeout,
            shutdown: shutdown.clone(),
            slots: slots.clone(),
        });
        let tasks = tokio_util::task::TaskTracker::new();
        let mut refusals = RefusalLog::default();
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        self.accept_failed(&e).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refusals.note(self.name, self.limits.max_connections);
                // Answered while few refusals are under way; past that, a flood is just closed. A TLS client
                // could not read a plain answer (and a handshake would cost what the cap saves): closed.
                if matches!(self.protocols, Protocols::Tls(_)) {
                    continue;
                }
                if let Ok(refusing) = refusing.clone().try_acquire_owned() {
                    let answer = (self.error_body)(StatusCode::SERVICE_UNAVAILABLE);
                    tokio::spawn(async move {
                        refuse(stream, answer).await;
                        drop(refusing);
                    });
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let mut io = TimeoutStream::new(stream);
            io.set_write_timeout(Some(self.limits.send_timeout));
            if !matches!(self.protocols, Protocols::Http1) {
                tasks.spawn(self.clone().serve_negotiated(negotiated.clone(), Box::pin(io), peer, app.clone(), slot));
                continue;
            }
            let service = hyper::service::service_fn({
                let app = app.clone();
                let body_timeout = self.limits.body_timeout;
                let error_body = self.error_body;
                move |req| serve_request(app.clone(), peer, body_timeout, error_body, false, req)
            });
            let conn = graceful.watch(http.serve_connection(TokioIo::new(Box::pin(io)), service));
            let name = self.name;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(tcp);
        tasks.close();
        tokio::join!(graceful.shutdown(), tasks.wait());
    }

    /// One connection of a TLS or h2c listener (see [`negotiate`]), holding its `slot` until it ends.
    async fn serve_negotiated(
        self,
        serving: Arc<Serving>,
        io: std::pin::Pin<Box<TimeoutStream<TcpStream>>>,
        peer: SocketAddr,
        app: Router,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let secure = matches!(self.protocols, Protocols::Tls(_));
        let (body_timeout, error_body) = (self.limits.body_timeout, self.error_body);
        let service = |activity: Option<h2::Activity>| {
            let (app, slots) = (app.clone(), serving.slots.clone());
            hyper::service::service_fn(move |req| {
                // An HTTP/2 request takes a connection slot of its own while open: one connection may carry
                // many, and each may hold an origin connection and a reserve file as a connection does. None
                // left: `503`, as for a connection over the cap.
                let stream = match &activity {
                    None => Stream::Http1,
                    Some(activity) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => Stream::Http2(activity.begin(slot)),
                        Err(_) => Stream::OverTheCap,
                    },
                };
                let answer = (!matches!(stream, Stream::OverTheCap))
                    .then(|| serve_request(app.clone(), peer, body_timeout, error_body, secure, req));
                async move {
                    let Some(answer) = answer else { return Ok(over_the_cap(error_body)) };
                    let Ok(response) = answer.await;
                    Ok::<_, Infallible>(match stream {
                        Stream::Http2(open) => response.map(|body| axum::body::Body::new(h2::Tracked::new(body, open))),
                        Stream::Http1 | Stream::OverTheCap => response,
                    })
                }
            })
        };
        match serving.serve(&self.protocols, io, service).await {
            Ok(protocol) => tracing::trace!(listener = self.name, %peer, ?protocol, "connection ended"),
            Err(e) => tracing::debug!(listener = self.name, %peer, error = %e, "connection ended with an error"),
        }
        drop(slot);
    }

    /// An `accept` failed: a connection that died in the queue is skipped; running out of file
    /// descriptors (or memory) is logged and waited out, instead of spinning.
    async fn accept_failed(&self, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
            return;
        }
        tracing::warn!(listener = self.name, error = %e, "cannot accept connections; retrying in 100 ms");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request: the body wrapped with its timeout and progress, the peer recorded, and an HTTP/1 connection
/// closed after the response when the request body was left unread (the next request's bytes would
/// otherwise be read as the rest of that body, or the client would write into a closing connection).
/// HTTP/2 has no such hazard (a stream's unread body is reset alone) and no `Connection` field.
async fn serve_request(
    app: Router,
    peer: SocketAddr,
    body_timeout: Duration,
    error_body: ErrorBody,
    secure: bool,
    req: Request<Incoming>,
) -> Result<Response<axum::body::Body>, Infallible> {
    let http1 = req.version() < http::Version::HTTP_2;
    if target_len(req.uri()) > MAX_URI_BYTES {
        let (content_type, body) = error_body(StatusCode::URI_TOO_LONG);
        let mut response = Response::new(axum::body::Body::from(body));
        *response.status_mut() = StatusCode::URI_TOO_LONG;
        response.headers_mut().insert(CONTENT_TYPE, content_type);
        if http1 {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(response);
    }
    let (mut parts, body) = req.into_parts();
    let (body, progress) = ClientBody::new(body, body_timeout);
    parts.extensions.insert(ConnectInfo(peer));
    parts.extensions.insert(progress.clone());
    if secure {
        parts.extensions.insert(Secure);
    }
    let Ok(mut response) = app.oneshot(Request::from_parts(parts, axum::body::Body::new(body))).await;
    if http1 && !progress.finished() {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// A request of a negotiated connection, as admitted.
enum Stream {
    /// On HTTP/1.1: the connection's slot covers it.
    Http1,
    /// On HTTP/2, with a slot of its own.
    Http2(h2::Open),
    /// On HTTP/2, with no slot free.
    OverTheCap,
}

/// The answer to an HTTP/2 request that finds no connection slot free.
fn over_the_cap(error_body: ErrorBody) -> Response<axum::body::Body> {
    let (content_type, body) = error_body(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The length of a request target, near enough (without the scheme's `://`).
fn target_len(uri: &http::Uri) -> usize {
    let pq = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    pq + uri.authority().map_or(0, |a| a.as_str().len()) + uri.scheme_str().map_or(0, str::len)
}

/// Answers a connection over the cap, and closes it. Bounded: a client that does not read is dropped.
async fn refuse(mut stream: TcpStream, (content_type, body): (HeaderValue, Bytes)) {
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\ncontent-length: {}\r\nretry-after: 1\r\n\
         connection: close\r\n\r\n",
        content_type.to_str().unwrap_or("text/plain"),
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Logs refused connections at most every 10 seconds per listener, with how many.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    fn note(&mut self, listener: &'static str, limit: usize) {
        self.since += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(listener, limit, refused = self.since, "connection limit reached; refusing connections");
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}
