//! The access log (nginx's `access_log`, `--access-log`): one JSON line per proxied request, written once
//! its response body has gone out or been cut short, so `bytes` and `duration_ms` are what the client got.
//!
//! A line: `{"time":"2026-12-02T03:00:00.123Z","client":"203.0.113.9","method":"GET","host":"example.com",
//! "uri":"/a?b=1","zone":"example.com","status":200,"cache":"HIT","reserve":"EDGE","bytes":1024,
//! "duration_ms":0.412,"complete":true}`. `zone` is `null` for a request no zone serves; `complete` is
//! `false` when the client left or the origin cut the body short; a `uri` over 2 KiB (a `host` over 256
//! bytes) is cut and ends in `...`. Lines go through a bounded queue to one
//! writer task; when the disk falls behind, lines beyond the queue are dropped and counted
//! (`cache_reserve_access_log_dropped_total`), never waited for.

use std::{
    io::Write,
    net::IpAddr,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Response};
use http_body::{Body as _, Frame, SizeHint};
use metrics::Counter;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::Timestamp;

/// Lines queued for the writer at most; beyond it they are dropped. With [`MAX_URI`] and [`MAX_HOST`] a full
/// queue holds about 10 MiB.
const QUEUE: usize = 4096;

/// Longest `uri` written, in bytes; a longer one is cut (at a character boundary) and ends in `...`.
const MAX_URI: usize = 2048;

/// Longest `host` written, in bytes, cut the same way.
const MAX_HOST: usize = 256;

/// `s`, or its first `max` bytes (at a character boundary) and `...`.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Where the access log goes: standard output or a file (appended to, created if missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

impl LogTarget {
    /// `-` is standard output; anything else a file path.
    pub fn parse(s: &str) -> Self {
        if s == "-" { LogTarget::Stdout } else { LogTarget::File(PathBuf::from(s)) }
    }
}

/// The access log's sending end, shared by every request.
pub struct RequestLog {
    lines: mpsc::Sender<String>,
    dropped: Counter,
}

impl RequestLog {
    /// Opens the target and starts the writer task. Fails if the file cannot be opened for appending.
    pub fn start(target: &LogTarget, dropped: Counter) -> anyhow::Result<Arc<Self>> {
        let mut out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("cannot open the access log {}: {e}", path.display()))?,
            ),
        };
        let (lines, mut rx) = mpsc::channel::<String>(QUEUE);
        std::thread::Builder::new().name("access-log".into()).spawn(move || {
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(line) = rx.blocking_recv() {
                buf.extend_from_slice(line.as_bytes());
                // Everything already queued goes out in the same write.
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(more.as_bytes());
                    if buf.len() >= 64 * 1024 {
                        break;
                    }
                }
                if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
                    tracing::warn!(error = %e, "cannot write the access log");
                }
                buf.clear();
            }
        })?;
        Ok(Arc::new(Self { lines, dropped }))
    }

    /// Starts a request's line; `None` unless logging (then nothing else is looked at). It copies the
    /// method, the target (cut at [`MAX_URI`]) and the host (`Host`, or the HTTP/2 authority).
    pub fn begin<B>(this: Option<&Arc<Self>>, req: &http::Request<B>) -> Option<Pending> {
        let log = this?.clone();
        let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().host());
        Some(Pending {
            log,
            started: Instant::now(),
            method: req.method().clone(),
            uri: clip(req.uri().path_and_query().map_or("", |pq| pq.as_str()), MAX_URI),
            host: clip(host.unwrap_or(""), MAX_HOST),
        })
    }

    fn send(&self, line: String) {
        if self.lines.try_send(line).is_err() {
            self.dropped.increment(1);
        }
    }
}

/// A request whose line is not written yet.
pub struct Pending {
    log: Arc<RequestLog>,
    started: Instant,
    method: Method,
    uri: String,
    host: String,
}

impl Pending {
    /// Wraps the response so that its line is written when the body ends or is dropped.
    pub fn finish(self, client: Option<IpAddr>, zone: Option<&str>, response: Response<Body>) -> Response<Body> {
        let Pending { log, started, method, uri, host } = self;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let line = Line {
            time: String::new(),
            client: client.map(|ip| ip.to_string()),
            method: method.to_string(),
            host,
            uri,
            zone: zone.map(str::to_owned),
            status: response.status().as_u16(),
            cache: header("cf-cache-status"),
            reserve: header("x-cache-reserve"),
            bytes: 0,
            duration_ms: 0.0,
            complete: false,
        };
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, Body::new(Counted { inner: body, line: Some(line), started, log }))
    }
}

#[derive(Serialize)]
struct Line {
    time: String,
    client: Option<String>,
    method: String,
    host: String,
    uri: String,
    zone: Option<String>,
    status: u16,
    cache: Option<String>,
    reserve: Option<String>,
    bytes: u64,
    duration_ms: f64,
    complete: bool,
}

/// A response body that counts what it yields and writes the line at its end or when dropped.
struct Counted {
    inner: Body,
    line: Option<Line>,
    started: Instant,
    log: Arc<RequestLog>,
}

impl Counted {
    fn write(&mut self, complete: bool) {
        if let Some(mut line) = self.line.take() {
            line.time = Timestamp::now().to_string();
            line.duration_ms = (self.started.elapsed().as_micros() as f64) / 1000.0;
            line.complete = complete;
            if let Ok(mut json) = serde_json::to_string(&line) {
                json.push('\n');
                self.log.send(json);
            }
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(line)) = (frame.data_ref(), self.line.as_mut()) {
                    line.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.write(true);
                }
            }
            Poll::Ready(Some(Err(_))) => self.write(false),
            Poll::Ready(None) => self.write(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    /// A body dropped before its end: the client left, or the response had no body to poll (`HEAD`, `304`).
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.write(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        assert_eq!(clip("/short", MAX_URI), "/short");
        let long = format!("/{}", "é".repeat(MAX_URI));
        let cut = clip(&long, MAX_URI);
        assert!(cut.len() <= MAX_URI + 3 && cut.ends_with("..."), "{}", cut.len());
    }
}
