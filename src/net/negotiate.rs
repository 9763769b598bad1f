//! Connections whose protocol is chosen per connection: TLS, with HTTP/2 or HTTP/1.1 by ALPN, and plain
//! connections that may open with the HTTP/2 preface (h2c with prior knowledge, RFC 9113 §3.3). The plain
//! HTTP/1.1-only listener does not come here (see [`super::Listener::serve`]).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::{http1, http2};
use hyper_util::{rt::TokioExecutor, rt::TokioIo, server::graceful::GracefulConnection};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::h2::Activity;

/// Longest an HTTP/2 connection with no request open is given to finish its `GOAWAY` exchange (shorter
/// when the header timeout is).
const MAX_LINGER: Duration = Duration::from_secs(5);

/// The connection preface every HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a listener speaks.
#[derive(Clone)]
pub enum Protocols {
    /// Plain HTTP/1.1 (and 1.0).
    Http1,
    /// Plain HTTP/1.1, and HTTP/2 from clients that open with its preface (h2c with prior knowledge; the
    /// HTTP/1.1 `Upgrade: h2c` dance, deprecated by RFC 9113, is not offered).
    H2c,
    /// TLS, then HTTP/2 when the client's ALPN picked `h2`, else HTTP/1.1.
    Tls(TlsAcceptor),
}

/// The protocol a connection settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    Http1,
    Http2,
}

/// How a negotiated connection is served: both builders, the listener's timeouts and its shutdown.
pub struct Serving {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub shutdown: CancellationToken,
    /// The listener's connection slots; an open HTTP/2 request takes one of its own.
    pub slots: Arc<Semaphore>,
}

/// Why a negotiated connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("the TLS handshake or the first bytes took longer than the header timeout")]
    Timeout,
    #[error("the server shut down before the TLS handshake or the first bytes were done")]
    Shutdown,
    #[error("the TLS handshake failed")]
    Handshake(#[source] io::Error),
    #[error("reading the first bytes failed")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl Serving {
    /// Serves one connection on `io` as `protocols` say: its TLS handshake, or its first bytes on a h2c
    /// listener, within the header timeout (else it is closed: a client that connects and sends nothing
    /// holds a slot no longer than it could on HTTP/1.1), then HTTP/2 or HTTP/1.1. `service` makes the
    /// connection's service; for HTTP/2 it is given an [`Activity`] to count open requests by.
    pub async fn serve<I, S, F>(&self, protocols: &Protocols, io: I, service: F) -> Result<Negotiated, ConnError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(Option<Activity>) -> S,
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match protocols {
            Protocols::Http1 => {
                self.http1_conn(io, service(None)).await?;
                Ok(Negotiated::Http1)
            }
            Protocols::H2c => {
                let (first, io) = self.within_header_timeout(read_preface(io)).await?;
                let h2 = first.as_ref() == PREFACE;
                let io = Rewind { first, inner: io };
                if h2 {
                    self.http2_conn(io, service).await?;
                    Ok(Negotiated::Http2)
                } else {
                    self.http1_conn(io, service(None)).await?;
                    Ok(Negotiated::Http1)
                }
            }
            Protocols::Tls(acceptor) => {
                let tls = self.within_header_timeout(async { acceptor.accept(io).await.map_err(ConnError::Handshake) });
                let tls = tls.await?;
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    self.http2_conn(tls, service).await?;
                    Ok(Negotiated::Http2)
                } else {
                    self.http1_conn(tls, service(None)).await?;
                    Ok(Negotiated::Http1)
                }
            }
        }
    }

    async fn within_header_timeout<T>(&self, step: impl Future<Output = Result<T, ConnError>>) -> Result<T, ConnError> {
        tokio::select! {
            () = self.shutdown.cancelled() => Err(ConnError::Shutdown),
            done = tokio::time::timeout(self.header_timeout, step) => done.map_err(|_| ConnError::Timeout)?,
        }
    }

    async fn http1_conn<I, S>(&self, io: I, service: S) -> Result<(), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let conn = self.http1.serve_connection(TokioIo::new(io), service);
        drive(conn, &self.shutdown, None).await
    }

    async fn http2_conn<I, S, F>(&self, io: I, service: F) -> Result<(), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(Option<Activity>) -> S,
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let activity = Activity::default();
        let conn = self.http2.serve_connection(TokioIo::new(io), service(Some(activity.clone())));
        let linger = self.header_timeout.min(MAX_LINGER);
        let idle = Idle { activity: &activity, timeout: self.idle_timeout, linger, send_timeout: self.send_timeout };
        drive(conn, &self.shutdown, Some(idle)).await
    }
}

/// An HTTP/2 connection's open requests, its idle timeout, how long it may linger once asked to close, and
/// how long a response may wait for the client to take its data.
struct Idle<'a> {
    activity: &'a Activity,
    timeout: Duration,
    linger: Duration,
    send_timeout: Duration,
}

/// Runs a connection until it ends. On shutdown, asks it to finish gracefully (HTTP/1.1: after the
/// response under way; HTTP/2: `GOAWAY`, then after the open streams). An HTTP/2 connection (`idle`) with
/// no request open for its idle timeout is asked the same; once asked, it is closed after `linger` with no
/// request open — a client that never sent the preface, or does not answer the `GOAWAY` exchange, is not
/// waited for (nor is shutdown). And it is closed at once when a response has waited its send timeout for
/// the client to take data (HTTP/1.1's send timeout is on the socket, which covers that case there).
async fn drive<C>(conn: C, shutdown: &CancellationToken, idle: Option<Idle<'_>>) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    let stalled = async {
        match &idle {
            Some(i) => i.activity.stalled_for(i.send_timeout).await,
            None => std::future::pending().await,
        }
    };
    let mut stalled = std::pin::pin!(stalled);
    let mut conn = std::pin::pin!(conn);
    // Dropping the connection (returning without awaiting it) closes it.
    tokio::select! {
        done = conn.as_mut() => return done,
        () = shutdown.cancelled() => {}
        () = quiet(idle.as_ref().map(|i| (i.activity, i.timeout))) => {}
        () = stalled.as_mut() => {
            stalled_out();
            return Ok(());
        }
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        done = conn => done,
        () = quiet(idle.as_ref().map(|i| (i.activity, i.linger))) => Ok(()),
        () = stalled => {
            stalled_out();
            Ok(())
        }
    }
}

fn stalled_out() {
    tracing::debug!("closing an HTTP/2 connection: a response waited the send timeout for the client to take data");
}

/// Resolves once the connection has had no request open for the duration given; never for HTTP/1.1.
async fn quiet(http2: Option<(&Activity, Duration)>) {
    match http2 {
        Some((activity, duration)) => activity.idle_for(duration).await,
        None => std::future::pending().await,
    }
}

/// Reads until the bytes read are the HTTP/2 preface or cannot begin it; returns them with the stream.
async fn read_preface<I: AsyncRead + Unpin>(mut io: I) -> Result<(Bytes, I), ConnError> {
    let mut first = BytesMut::with_capacity(PREFACE.len());
    while first.len() < PREFACE.len() && PREFACE.starts_with(&first) {
        let mut byte = [0u8; 24];
        let want = PREFACE.len() - first.len();
        let n = io.read(&mut byte[..want]).await.map_err(ConnError::Read)?;
        if n == 0 {
            break;
        }
        first.extend_from_slice(&byte[..n]);
    }
    Ok((first.freeze(), io))
}

/// A stream whose first bytes, already read, are read again.
struct Rewind<I> {
    first: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..n]);
            self.first.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_preface_is_told_from_http1_and_the_bytes_read_are_kept() {
        for (sent, h2) in [(PREFACE, true), (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".as_slice(), false)] {
            let (mut client, server) = tokio::io::duplex(64);
            tokio::io::AsyncWriteExt::write_all(&mut client, sent).await.unwrap();
            let (first, io) = read_preface(server).await.unwrap();
            assert_eq!(first.as_ref() == PREFACE, h2);
            let mut again = Rewind { first, inner: io };
            let mut buf = vec![0u8; sent.len()];
            again.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, sent);
        }
    }

    #[tokio::test]
    async fn a_short_first_read_that_ends_is_not_the_preface() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PRI").await.unwrap();
        drop(client);
        let (first, _) = read_preface(server).await.unwrap();
        assert_eq!(first.as_ref(), b"PRI");
    }
}
