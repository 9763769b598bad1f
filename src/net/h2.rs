//! HTTP/2 connections: the server settings that bound what one client may hold, and an idle timer. hyper's
//! HTTP/2 server has no keep-alive timeout of its own (its pings find dead peers, not idle live ones), so
//! each connection counts its open requests, and one that has had none for the idle timeout is closed
//! gracefully (`GOAWAY`), as nginx does with `keepalive_timeout` on HTTP/2.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;

use super::{ConnLimits, MAX_HEAD_BYTES};

/// Most requests one HTTP/2 connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`); nginx's
/// `http2_max_concurrent_streams` is 128 too.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// How long a keep-alive ping may go unanswered before the connection is closed.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP/2 server builder with this listener's bounds: [`MAX_CONCURRENT_STREAMS`], a header list of at
/// most [`MAX_HEAD_BYTES`] (decoded, as RFC 9113 §6.5.2 counts it), and a ping every `header_timeout`
/// (answered within 20 s, or the connection closes) so that a peer gone silent with requests open is found.
pub fn builder(limits: &ConnLimits) -> http2::Builder<TokioExecutor> {
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(PING_TIMEOUT);
    h2
}

/// How many requests of one connection are open (their responses not yet sent whole, or dropped).
#[derive(Clone)]
pub struct Activity(watch::Sender<usize>);

impl Default for Activity {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Activity {
    /// A request began; it ends when the returned guard is dropped.
    pub fn begin(&self) -> Open {
        self.0.send_modify(|n| *n += 1);
        Open(self.0.clone())
    }

    /// Resolves once the connection has had no open request for `idle` (from now, or from the end of the
    /// last one).
    pub async fn idle_for(&self, idle: Duration) {
        let mut open = self.0.subscribe();
        loop {
            if *open.borrow_and_update() == 0 {
                tokio::select! {
                    () = tokio::time::sleep(idle) => return,
                    _ = open.changed() => {}
                }
            } else if open.changed().await.is_err() {
                // Cannot happen while `self` holds the sender; waiting on is the safe reading.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One open request of an [`Activity`].
pub struct Open(watch::Sender<usize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request open until it is sent whole or dropped.
pub struct Tracked<B> {
    inner: B,
    _open: Open,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, open: Open) -> Self {
        Self { inner, _open: open }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Activity::default();
        let open = activity.begin();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!idle.is_finished(), "a connection with a request open is not idle");
        drop(open);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!idle.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(idle.is_finished());
    }
}
