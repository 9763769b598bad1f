//! HTTP/1.1 over raw sockets, where framing and timing matter: a minimal response reader for clients and a
//! scripted origin whose every connection runs a test's own code.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Longest any read here waits: a test that would hang fails instead.
const PATIENCE: Duration = Duration::from_secs(30);

/// Connects to `addr` (`host:port`, an `http://` prefix allowed).
pub async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr.trim_start_matches("http://")).await.unwrap()
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Field lines in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first line of field `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every line of field `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response: its head, then a `Content-Length` body, or everything up to the end of the stream
/// when there is none. `None` when the connection closed before the first byte. Responses to `HEAD` are
/// not supported.
pub async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await.expect("a response head in time");
        match n {
            Ok(0) | Err(_) if buf.is_empty() => return None,
            Ok(0) | Err(_) => {
                panic!("the connection closed inside a response head: {:?}", String::from_utf8_lossy(&buf))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let length = headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.parse::<usize>().unwrap());
    let bodiless = status == 304 || status == 204 || (100..200).contains(&status);
    match length {
        _ if bodiless => {}
        Some(n) => {
            while body.len() < n {
                let mut chunk = vec![0u8; n - body.len()];
                let got = tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await.expect("the body in time");
                match got {
                    Ok(0) | Err(_) => break,
                    Ok(got) => body.extend_from_slice(&chunk[..got]),
                }
            }
        }
        None => {
            let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut body)).await.expect("the end in time");
        }
    }
    Some(RawResponse { status, headers, body })
}

/// Sends `request` on a new connection to `addr` and reads the response.
pub async fn exchange(addr: &str, request: &[u8]) -> RawResponse {
    let mut s = connect(addr).await;
    s.write_all(request).await.unwrap();
    read_response(&mut s).await.expect("a response")
}

/// Reads and discards until the peer closes; the byte count. Fails the test if it stays open past
/// `patience`.
pub async fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> usize {
    let mut total = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(patience, stream.read(&mut chunk)).await {
            Err(_) => panic!("the connection is still open after {patience:?}"),
            Ok(Ok(0) | Err(_)) => return total,
            Ok(Ok(n)) => total += n,
        }
    }
}

/// Reads a request head (up to and including the blank line) off `stream`; empty at end of stream.
pub async fn read_request_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while find(&buf, b"\r\n\r\n").is_none() {
        match tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await.expect("a request in time") {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An origin on port 0 that runs `script(n, stream)` for its `n`-th connection (from 0).
pub struct ScriptedOrigin {
    pub url: String,
    pub connections: Arc<AtomicUsize>,
}

impl ScriptedOrigin {
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(n, stream));
            }
        });
        Self { url, connections }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
