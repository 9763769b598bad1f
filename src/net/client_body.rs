//! A request body as read from a client, with what became of it: read to the end, failed (bad framing, the
//! client went away), or stalled past the body timeout. The listener uses it to close connections whose
//! request body was left unread; the proxy uses it to blame a failed upload on the client, not the origin.

use std::{
    pin::Pin,
    sync::{Arc, OnceLock, atomic::AtomicBool, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::idle_body::{BodyError, IdleTimeout};

/// How a request body read went, shared between the body and whoever holds the request.
#[derive(Debug, Default)]
pub struct BodyProgress {
    /// The client sent a body (or framing announcing one).
    had_body: bool,
    finished: AtomicBool,
    fault: OnceLock<BodyFault>,
}

/// Why a client's request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// No data within the body timeout.
    TimedOut,
    /// Malformed (bad chunked framing) or cut short (the client closed the connection mid-body).
    Broken,
}

impl BodyProgress {
    /// The client sent a body (a request with `Content-Length: 0` or no framing has none).
    pub fn had_body(&self) -> bool {
        self.had_body
    }

    /// The body was read to its end (or there was none).
    pub fn finished(&self) -> bool {
        !self.had_body || self.finished.load(Ordering::Acquire)
    }

    /// Why reading it failed, if it did.
    pub fn fault(&self) -> Option<BodyFault> {
        self.fault.get().copied()
    }
}

/// A client's request body with a progress timeout, reporting into a [`BodyProgress`].
pub struct ClientBody {
    inner: IdleTimeout<Incoming>,
    progress: Arc<BodyProgress>,
}

impl ClientBody {
    /// Wraps `body`; the returned progress is shared with it.
    pub fn new(body: Incoming, timeout: Duration) -> (Self, Arc<BodyProgress>) {
        let progress = Arc::new(BodyProgress { had_body: !body.is_end_stream(), ..BodyProgress::default() });
        (Self { inner: IdleTimeout::new(body, timeout), progress: progress.clone() }, progress)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.progress.finished.store(true, Ordering::Release),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                this.progress.finished.store(true, Ordering::Release);
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = match e {
                    BodyError::Idle(_) => BodyFault::TimedOut,
                    BodyError::Read(_) => BodyFault::Broken,
                };
                let _ = this.progress.fault.set(fault);
            }
            _ => {}
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
