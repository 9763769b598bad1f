//! Sending 1xx informational responses from a server (HTTP/1).
//!
//! Added by cache-reserve's fork of hyper 1.12.0 (see `vendor/README.md` in that repository): a proxy must
//! forward the 1xx responses it receives (RFC 9110 §15.2), e.g. `103 Early Hints` (RFC 8297).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use http::{HeaderMap, StatusCode};

/// Informational responses waiting to be written, per request, beyond which more are refused.
const MAX_QUEUED: usize = 8;

/// Sends 1xx informational responses ahead of the final response to the request it came with.
///
/// An HTTP/1 server connection puts one in every request's extensions; a handler takes it with
/// `req.extensions().get::<InformationalSender>()`. Informational responses are written in the order
/// sent, before the final response, and only to HTTP/1.1 clients (RFC 9110 §15.2: never to an HTTP/1.0
/// client; those are dropped), without `Content-Length` or `Transfer-Encoding` (a 1xx has no content,
/// RFC 9110 §8.6). At most 8 wait to be written at a time.
#[derive(Clone)]
pub struct InformationalSender(Arc<InformationalQueue>);

impl std::fmt::Debug for InformationalSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformationalSender").finish()
    }
}

/// Why an informational response was not queued.
#[derive(Debug)]
pub enum InformationalError {
    /// Not a 1xx status, or `101 Switching Protocols` (an upgrade is a final response here).
    NotInformational,
    /// The final response was already sent.
    Closed,
    /// Too many are waiting to be written (the client is not reading).
    Full,
}

impl std::fmt::Display for InformationalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotInformational => f.write_str("not an informational status (1xx other than 101)"),
            Self::Closed => f.write_str("the final response was already sent"),
            Self::Full => f.write_str("too many informational responses are waiting to be written"),
        }
    }
}

impl std::error::Error for InformationalError {}

impl InformationalSender {
    /// Queues an informational response with `status` (1xx, not 101) and `headers`.
    pub fn send(&self, status: StatusCode, headers: HeaderMap) -> Result<(), InformationalError> {
        if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(InformationalError::NotInformational);
        }
        if self.0.closed.load(Ordering::Acquire) {
            return Err(InformationalError::Closed);
        }
        let mut queue = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= MAX_QUEUED {
            return Err(InformationalError::Full);
        }
        queue.push_back((status, headers));
        drop(queue);
        self.0.waker.wake();
        Ok(())
    }
}

/// The connection's end of a request's informational responses.
pub(crate) struct InformationalQueue {
    queue: Mutex<VecDeque<(StatusCode, HeaderMap)>>,
    waker: AtomicWaker,
    closed: AtomicBool,
}

impl InformationalQueue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { queue: Mutex::new(VecDeque::new()), waker: AtomicWaker::new(), closed: AtomicBool::new(false) })
    }

    pub(crate) fn sender(self: &Arc<Self>) -> InformationalSender {
        InformationalSender(self.clone())
    }

    /// The next queued response, registering for a wake-up when there is none.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<(StatusCode, HeaderMap)> {
        self.waker.register(cx.waker());
        match self.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
            Some(next) => Poll::Ready(next),
            None => Poll::Pending,
        }
    }

    /// The final response is on its way: later sends fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
