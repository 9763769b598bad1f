//! HTTP/2 connections: the server settings that bound what one client may hold, and an idle timer. hyper's
//! HTTP/2 server has no keep-alive timeout of its own (its pings find dead peers, not idle live ones), so
//! each connection counts its open requests, and one that has had none for the idle timeout is closed
//! gracefully (`GOAWAY`), as nginx does with `keepalive_timeout` on HTTP/2; and one whose client leaves a
//! response's data untaken for the send timeout is closed, as an HTTP/1.1 one is.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::{
    sync::{OwnedSemaphorePermit, watch},
    time::Instant,
};

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

/// The requests of one connection: how many are open (their responses not yet sent whole, or dropped), and
/// since when each response that handed hyper data has waited for the client to take it. hyper polls a
/// response body only when the client's flow-control window has room, so a client that never opens its
/// window stalls a stream without stalling the socket, and the send timeout on the socket cannot see it.
#[derive(Clone)]
pub struct Activity {
    open: watch::Sender<usize>,
    waiting: Arc<Mutex<Waiting>>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    since: HashMap<u64, Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { open: watch::Sender::new(0), waiting: Arc::default() }
    }
}

impl Activity {
    /// A request began, holding `slot` (see [`super::Listener::serve`]); it ends, and gives the slot back,
    /// when the returned guard is dropped.
    pub fn begin(&self, slot: OwnedSemaphorePermit) -> Open {
        self.open.send_modify(|n| *n += 1);
        let id = {
            let mut waiting = lock(&self.waiting);
            waiting.next += 1;
            waiting.next
        };
        Open { open: self.open.clone(), waiting: self.waiting.clone(), id, handed: false, _slot: slot }
    }

    /// Resolves once the connection has had no open request for `idle` (from now, or from the end of the
    /// last one).
    pub async fn idle_for(&self, idle: Duration) {
        let mut open = self.open.subscribe();
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

    /// Resolves once some response has waited `limit` for the client to take the data it handed hyper
    /// (checked every quarter of `limit`, at least every 100 ms).
    pub async fn stalled_for(&self, limit: Duration) {
        let tick = (limit / 4).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(tick).await;
            let oldest = lock(&self.waiting).since.values().min().copied();
            if oldest.is_some_and(|t| t.elapsed() >= limit) {
                return;
            }
        }
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One open request of an [`Activity`].
pub struct Open {
    open: watch::Sender<usize>,
    waiting: Arc<Mutex<Waiting>>,
    id: u64,
    /// Its response handed hyper data and has not been asked for more since.
    handed: bool,
    _slot: OwnedSemaphorePermit,
}

impl Open {
    fn handed(&mut self, handed: bool) {
        if handed != self.handed {
            let mut waiting = lock(&self.waiting);
            if handed {
                waiting.since.insert(self.id, Instant::now());
            } else {
                waiting.since.remove(&self.id);
            }
            self.handed = handed;
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.handed(false);
        self.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request open until it is sent whole or dropped, and notes when it has
/// handed hyper data that the client has not yet made room for.
pub struct Tracked<B> {
    inner: B,
    open: Open,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, open: Open) -> Self {
        Self { inner, open }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.open.handed(false);
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            self.open.handed(f.is_data());
        }
        frame
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

    fn slot() -> OwnedSemaphorePermit {
        Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Activity::default();
        let open = activity.begin(slot());
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

    #[tokio::test(start_paused = true)]
    async fn a_response_whose_data_the_client_does_not_take_is_a_stall() {
        use http_body_util::BodyExt;
        let activity = Activity::default();
        let chunks =
            futures::stream::iter(["a", "b"].map(|c| Ok::<_, std::io::Error>(Frame::data(bytes::Bytes::from(c)))));
        let mut body = Tracked::new(http_body_util::StreamBody::new(chunks), activity.begin(slot()));
        let stalled = tokio::spawn({
            let activity = activity.clone();
            async move { activity.stalled_for(Duration::from_secs(10)).await }
        });
        body.frame().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        // Asked for more in time: the wait starts again.
        body.frame().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(!stalled.is_finished());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(stalled.is_finished(), "the second chunk waited 13 s");
        // A response sent whole, or dropped, waits for nothing.
        drop(body);
        assert!(lock(&activity.waiting).since.is_empty());
    }
}
