//! A real origin on port 0 whose responses each test sets per path, counting what it is asked.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use bytes::Bytes;
use futures::StreamExt;

/// What the origin answers for one path.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Send the body without `Content-Length`.
    pub chunked: bool,
    /// Send the body in chunks of this size with this pause between them (keeping `Content-Length`).
    pub slow: Option<(usize, Duration)>,
    /// Send the first half of the body, then the rest once this is true (`Content-Length` kept unless
    /// `chunked`).
    pub gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// Answer 304s with no headers at all, as Python's http.server does.
    pub bare_304: bool,
    /// Answer 304s with these headers instead of the 200's.
    pub headers_304: Option<Vec<(&'static str, String)>>,
}

impl Reply {
    /// 200 with `Cache-Control: {cache_control}` (omitted when empty).
    pub fn ok(body: impl Into<Bytes>, cache_control: &str) -> Self {
        let mut headers = vec![("content-type", "text/plain".to_owned())];
        if !cache_control.is_empty() {
            headers.push(("cache-control", cache_control.to_owned()));
        }
        Self {
            status: 200,
            headers,
            body: body.into(),
            delay: Duration::ZERO,
            chunked: false,
            slow: None,
            gate: None,
            bare_304: false,
            headers_304: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn bare_304(mut self) -> Self {
        self.bare_304 = true;
        self
    }

    /// 304s carry `headers` (and nothing else).
    pub fn on_304(mut self, headers: &[(&'static str, &str)]) -> Self {
        self.headers_304 = Some(headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect());
        self
    }

    pub fn slow(mut self, chunk: usize, pause: Duration) -> Self {
        self.slow = Some((chunk, pause));
        self
    }

    /// Holds the second half of the body back until `gate` is true.
    pub fn gated(mut self, gate: tokio::sync::watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct OriginState {
    replies: Mutex<HashMap<String, Reply>>,
    hits: Mutex<HashMap<String, usize>>,
    not_modified: Mutex<HashMap<String, usize>>,
    last: Mutex<HashMap<String, (String, HeaderMap, Bytes)>>,
}

/// The origin; stops with the test's runtime.
pub struct TestOrigin {
    pub url: String,
    state: Arc<OriginState>,
}

impl TestOrigin {
    pub async fn start() -> Self {
        let state = Arc::new(OriginState::default());
        let app = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// Sets the reply for a path (with query, if any).
    pub fn set(&self, path: &str, reply: Reply) {
        self.state.replies.lock().unwrap().insert(path.to_owned(), reply);
    }

    /// Requests received for a path, 304s included.
    pub fn hits(&self, path: &str) -> usize {
        self.state.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Conditional requests answered 304.
    pub fn not_modified(&self, path: &str) -> usize {
        self.state.not_modified.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Method, headers and body of the last request for a path.
    pub fn last(&self, path: &str) -> Option<(String, HeaderMap, Bytes)> {
        self.state.last.lock().unwrap().get(path).cloned()
    }
}

async fn answer(State(state): State<Arc<OriginState>>, req: Request) -> Response {
    let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    state.last.lock().unwrap().insert(path.clone(), (parts.method.to_string(), parts.headers.clone(), body));
    let Some(reply) = state.replies.lock().unwrap().get(&path).cloned() else {
        let mut r = Response::new(Body::from("not found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
        return r;
    };
    tokio::time::sleep(reply.delay).await;
    let inm = parts.headers.get("if-none-match").and_then(|v| v.to_str().ok());
    let ims = parts.headers.get("if-modified-since").and_then(|v| v.to_str().ok());
    let unchanged = match (inm, reply.header_value("etag"), ims, reply.header_value("last-modified")) {
        (Some(inm), Some(etag), _, _) => inm.split(',').any(|t| t.trim() == etag),
        (None, _, Some(ims), Some(lm)) => ims == lm,
        _ => false,
    };
    let mut resp = if unchanged {
        *state.not_modified.lock().unwrap().entry(path).or_default() += 1;
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if let Some(mut gate) = reply.gate.clone() {
        let total = reply.body.len();
        let (first, rest) = (reply.body.slice(..total / 2), reply.body.slice(total / 2..));
        let rest = futures::stream::once(async move {
            let _ = gate.wait_for(|open| *open).await;
            rest
        });
        let stream = futures::stream::iter([first]).chain(rest).map(Ok::<_, std::io::Error>);
        let mut r = Response::new(Body::from_stream(stream));
        if !reply.chunked {
            r.headers_mut().insert("content-length", HeaderValue::from(total));
        }
        r
    } else if reply.chunked {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            reply.body.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Response::new(Body::from_stream(futures::stream::iter(chunks)))
    } else if let Some((size, pause)) = reply.slow {
        let body = reply.body.clone();
        let total = body.len();
        let stream = futures::stream::iter((0..total).step_by(size)).then(move |start| {
            let chunk = body.slice(start..(start + size).min(total));
            async move {
                tokio::time::sleep(pause).await;
                Ok::<_, std::io::Error>(chunk)
            }
        });
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert("content-length", HeaderValue::from(total));
        r
    } else {
        Response::new(Body::from(reply.body.clone()))
    };
    if !unchanged {
        *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    }
    if unchanged && reply.bare_304 {
        return resp;
    }
    let headers = match (&reply.headers_304, unchanged) {
        (Some(h), true) => h,
        _ => &reply.headers,
    };
    for (name, value) in headers {
        resp.headers_mut().append(*name, HeaderValue::from_str(value).unwrap());
    }
    resp
}
