//! One origin body, read once and streamed to every client that asks for it while it arrives (issue #12
//! A3): the leader's client and the followers each read it through their own [`SharedReader`], at their
//! own pace, while a pump task (see `fill`) reads the origin at the origin's pace and appends to it through
//! the [`SharedWriter`]. A slow client slows nobody else, and a client that leaves stops nothing.
//!
//! Memory: the body is held once — the buffer gathered for the edge tier, whose share of the fill budget
//! (`--edge-fill-buffer-bytes`) covers the whole announced length from the start (a shared body always has
//! one). Once whole, that buffer is frozen into the edge entry's body and readers slice it without copying;
//! before that, a reader copies out at most [`FRAME`] bytes per frame, and only when its connection asks
//! for the next one: beyond the budgeted body, a reader holds what its connection's write buffer holds, as
//! any response does.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::budget::{BudgetedBuf, Refused};

/// Most bytes a reader copies out of a body still filling, per frame.
pub const FRAME: usize = 64 * 1024;

/// Why a shared body failed: the origin's body failed or ended before its announced length (the pump then
/// installs nothing), or the pump stopped.
#[derive(Debug, thiserror::Error)]
#[error("the origin's body ended before its announced length")]
pub struct Cut;

/// A body of known length, filling.
pub struct SharedBody {
    /// The announced `Content-Length`, in bytes.
    length: u64,
    state: Mutex<State>,
}

struct State {
    /// The body so far, while it arrives.
    filling: Option<BudgetedBuf>,
    /// The whole body, once it has arrived.
    whole: Option<Bytes>,
    /// The body will never be whole.
    failed: bool,
    /// Readers waiting for more, by reader id.
    waiting: HashMap<u64, Waker>,
    next_reader: u64,
}

impl SharedBody {
    /// A body of `length` bytes to be gathered in `buf` (whose share already covers `length`): the body,
    /// for readers, and its writer, for the pump.
    pub fn new(buf: BudgetedBuf, length: u64) -> (Arc<Self>, SharedWriter) {
        let state = State { filling: Some(buf), whole: None, failed: false, waiting: HashMap::new(), next_reader: 0 };
        let body = Arc::new(Self { length, state: Mutex::new(state) });
        (body.clone(), SharedWriter { body, done: false })
    }

    /// A reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> SharedReader {
        let id = {
            let mut state = self.lock();
            state.next_reader += 1;
            state.next_reader
        };
        SharedReader { body: self.clone(), id, at: 0 }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("shared body lock")
    }

    /// Changes the state, then wakes every waiting reader.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let woken: Vec<Waker> = {
            let mut state = self.lock();
            change(&mut state);
            state.waiting.drain().map(|(_, w)| w).collect()
        };
        woken.into_iter().for_each(Waker::wake);
    }
}

/// The pump's end of a [`SharedBody`]. Dropped before [`SharedWriter::finish`], it fails the body: every
/// reader's next frame past what arrived is an error.
pub struct SharedWriter {
    body: Arc<SharedBody>,
    done: bool,
}

impl SharedWriter {
    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        let state = self.body.lock();
        state.filling.as_ref().map_or(0, BudgetedBuf::len)
    }

    /// Appends `data` and wakes the readers; on refusal nothing is appended (and the writer should be
    /// dropped: no reader can be given the rest).
    pub fn extend(&mut self, data: &[u8]) -> Result<(), Refused> {
        let mut result = Ok(());
        self.body.update(|state| {
            if let Some(buf) = &mut state.filling {
                result = buf.extend(data);
            }
        });
        result
    }

    /// The body has all its bytes: frozen into one buffer (its budget share given back, as for any edge
    /// fill), which readers go on from. Returns it, for the edge entry.
    pub fn finish(mut self) -> Bytes {
        self.done = true;
        let mut whole = Bytes::new();
        self.body.update(|state| {
            if let Some(buf) = state.filling.take() {
                whole = buf.freeze();
            }
            state.whole = Some(whole.clone());
        });
        whole
    }
}

impl Drop for SharedWriter {
    fn drop(&mut self) {
        if !self.done {
            self.body.update(|state| {
                state.failed = true;
                // Gives its budget share back; readers behind get an error.
                state.filling = None;
            });
        }
    }
}

/// One client's read of a [`SharedBody`]: exact size hint, frames of at most [`FRAME`] bytes, an error
/// ([`Cut`]) if the body fails before this reader has all of it.
pub struct SharedReader {
    body: Arc<SharedBody>,
    id: u64,
    /// Bytes read so far.
    at: u64,
}

impl Body for SharedReader {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        let this = &mut *self;
        if this.at >= this.body.length {
            return Poll::Ready(None);
        }
        let at = usize::try_from(this.at).unwrap_or(usize::MAX);
        let mut state = this.body.lock();
        let chunk = if let Some(whole) = state.whole.as_ref().filter(|w| w.len() > at) {
            whole.slice(at..whole.len().min(at + FRAME))
        } else if let Some(buf) = state.filling.as_ref().filter(|b| b.len() > at) {
            let bytes = buf.bytes();
            Bytes::copy_from_slice(&bytes[at..bytes.len().min(at + FRAME)])
        } else if state.failed || state.whole.is_some() {
            return Poll::Ready(Some(Err(Cut)));
        } else {
            state.waiting.insert(this.id, cx.waker().clone());
            return Poll::Pending;
        };
        drop(state);
        this.at += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.at >= self.body.length
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.body.length.saturating_sub(self.at))
    }
}

impl Drop for SharedReader {
    fn drop(&mut self) {
        self.body.lock().waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::proxy::budget::MemoryBudget;

    fn shared(length: u64) -> (Arc<MemoryBudget>, Arc<SharedBody>, SharedWriter) {
        let budget = MemoryBudget::new(1 << 20, None);
        let buf = BudgetedBuf::new(&budget, Some(length), 1 << 20).unwrap();
        let (body, writer) = SharedBody::new(buf, length);
        (budget, body, writer)
    }

    async fn next(reader: &mut SharedReader) -> Option<Result<Bytes, Cut>> {
        reader.frame().await.map(|f| f.map(|f| f.into_data().unwrap()))
    }

    #[tokio::test]
    async fn readers_get_each_byte_as_it_arrives_at_their_own_pace() {
        let (_budget, body, mut writer) = shared(6);
        let (mut fast, mut slow) = (body.reader(), body.reader());
        writer.extend(b"abc").unwrap();
        assert_eq!(next(&mut fast).await.unwrap().unwrap(), "abc");
        let waiting = tokio::spawn(async move { (next(&mut fast).await.unwrap().unwrap(), fast) });
        tokio::task::yield_now().await;
        writer.extend(b"def").unwrap();
        let (more, fast) = waiting.await.unwrap();
        assert_eq!(more, "def");
        assert!(fast.is_end_stream());
        assert_eq!(writer.finish(), "abcdef");
        // The slow one reads it all from the whole body, later.
        assert_eq!(next(&mut slow).await.unwrap().unwrap(), "abcdef");
        assert!(next(&mut slow).await.is_none());
        // So does one that joins after the end.
        assert_eq!(body.reader().collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn a_reader_waiting_past_what_arrived_fails_when_the_writer_goes() {
        let (budget, body, mut writer) = shared(6);
        let mut early = body.reader();
        writer.extend(b"abc").unwrap();
        let mut waiting = body.reader();
        assert_eq!(next(&mut waiting).await.unwrap().unwrap(), "abc");
        let waiting = tokio::spawn(async move { next(&mut waiting).await });
        tokio::task::yield_now().await;
        drop(writer);
        assert!(matches!(waiting.await.unwrap(), Some(Err(Cut))));
        assert!(matches!(next(&mut early).await, Some(Err(Cut))), "the bytes held are gone with the fill");
        assert_eq!(budget.used(), 0, "the share came back");
    }

    #[tokio::test]
    async fn frames_are_at_most_a_frame_long() {
        let length = 3 * FRAME as u64 + 1;
        let (_budget, body, mut writer) = shared(length);
        writer.extend(&vec![7; length as usize]).unwrap();
        let mut reader = body.reader();
        assert_eq!(next(&mut reader).await.unwrap().unwrap().len(), FRAME);
        writer.finish();
        let mut sizes = Vec::new();
        while let Some(chunk) = next(&mut reader).await {
            sizes.push(chunk.unwrap().len());
        }
        assert_eq!(sizes, [FRAME, FRAME, 1]);
    }
}
