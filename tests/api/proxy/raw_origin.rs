//! A raw-TCP origin for tests where the framing is the point: it trusts whatever framing it is sent. (The
//! raw client is `crate::raw`.)

use std::sync::{Arc, Mutex};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One request as the raw origin read it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line, e.g. `GET /a HTTP/1.1`.
    pub line: String,
    /// Header lines in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body the head announced, as read.
    pub body: Vec<u8>,
}

impl Seen {
    /// Every line of one header field.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// An origin that answers each request head at once and only then reads the body its `Content-Length` or
/// `Transfer-Encoding: chunked` announced, from the same connection — as Node, Go and nginx may for a GET.
/// A head that announces a body it does not carry thus eats the start of the next request on the
/// connection. Each answer is `200` with body `path:{target}`, `ETag: "v1"`, `max-age=60` (`max-age=0` for
/// targets under `/stale`), and an `Access-Control-Allow-Origin` naming the request's `Origin` if it has one;
/// a request with `If-None-Match: "v1"` gets a `304`.
pub struct RawOrigin {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawOrigin {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, log.clone()));
            }
        });
        Self { url, seen }
    }

    /// Every request read so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests whose request line starts with `prefix` (e.g. `GET /a `), once there are at least
    /// `count` of them (a request is logged when its body has been read, which may be after its answer).
    pub async fn requests(&self, prefix: &str, count: usize) -> Vec<Seen> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let found: Vec<Seen> = self.seen().into_iter().filter(|s| s.line.starts_with(prefix)).collect();
            if found.len() >= count {
                return found;
            }
            assert!(std::time::Instant::now() < deadline, "no {count} requests {prefix:?}: {:#?}", self.seen());
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = take_head(&mut stream, &mut buf).await else { return };
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let target = line.split(' ').nth(1).unwrap_or("/").to_owned();
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let response = if get("if-none-match").as_deref() == Some("\"v1\"") {
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=0\r\n\r\n".to_owned()
        } else {
            let body = format!("path:{target}");
            let max_age = if target.starts_with("/stale") { 0 } else { 60 };
            // A CORS grant for whichever `Origin` asked, without `Vary: Origin`: the common mistake.
            let cors = get("origin").map(|o| format!("Access-Control-Allow-Origin: {o}\r\n")).unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age={max_age}\r\nETag: \"v1\"\r\n{cors}\r\n{body}",
                body.len()
            )
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        // Lenient, as the origins this stands for: the first member of a list-valued length counts.
        let length = get("content-length").and_then(|v| v.split(',').next().and_then(|n| n.trim().parse().ok()));
        let chunked = get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            take_chunked(&mut stream, &mut buf).await
        } else {
            take_exact(&mut stream, &mut buf, length.unwrap_or(0)).await
        };
        let Some(body) = body else { return };
        log.lock().unwrap().push(Seen { line, headers, body });
    }
}

/// Reads more from `stream` into `buf`; false at end of stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn take_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

async fn take_exact(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !fill(stream, buf).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

async fn take_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 2);
            return Some(line);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

async fn take_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = take_line(stream, buf).await?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailer section, then the empty line.
            while !take_line(stream, buf).await?.is_empty() {}
            return Some(body);
        }
        body.extend(take_exact(stream, buf, size).await?);
        take_exact(stream, buf, 2).await?;
    }
}
