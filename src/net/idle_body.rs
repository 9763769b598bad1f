//! A body that fails when its next frame takes too long: the progress timeout of a request body read from
//! a client (nginx's `client_body_timeout`) and of a response body read from an origin (nginx's
//! `proxy_read_timeout`). The timer runs only while the body is polled, and restarts at every frame.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Sleep, sleep};

/// Why a timed body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No frame arrived within the timeout.
    #[error("no body data arrived within {0:?}")]
    Idle(Duration),
    /// The underlying body failed (a connection closed early, bad chunked framing, ...).
    #[error("the body could not be read")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Whether `e`, or an error it wraps, is [`BodyError::Idle`].
pub fn is_idle(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(BodyError::Idle(_)) = err.downcast_ref::<BodyError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `inner`, failing with [`BodyError::Idle`] when a frame takes longer than `timeout`. Size hints and
/// end-of-stream pass through, so framing derived from them is unchanged.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self { inner, timeout, sleep: None }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(|e| BodyError::Read(e.into()))))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.sleep = None;
                        Poll::Ready(Some(Err(BodyError::Idle(timeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
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
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fails_when_a_frame_is_late_and_not_before() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let mut body = IdleTimeout::new(StreamBody::new(tokio_stream_from(rx)), Duration::from_secs(10));
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(9)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await.unwrap();
            tokio::time::sleep(Duration::from_secs(11)).await;
            drop(tx);
        });
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        let late = body.frame().await.unwrap();
        assert!(matches!(late, Err(BodyError::Idle(d)) if d == Duration::from_secs(10)));
        sender.abort();
    }

    #[test]
    fn keeps_the_size_hint() {
        let body = IdleTimeout::new(Full::new(Bytes::from_static(b"hello")), Duration::from_secs(1));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
    }

    fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Unpin {
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
