//! Request coalescing: concurrent misses and validations for one key make one origin request. The first
//! becomes the leader and asks the origin; the others wait for its outcome and look again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use super::edge::EdgeEntry;
use crate::domain::ZoneId;

/// What a leader's request produced.
#[derive(Clone)]
pub enum Filled {
    /// The object is in the edge tier: here it is.
    Edge(Arc<EdgeEntry>),
    /// The object was stored or refreshed in the reserve: look it up.
    Stored,
    /// The origin failed (or answered 500, 502, 503 or 504), and the leader served a stale copy: serve yours
    /// if you may (see `stale`), else ask the origin yourself.
    Failed,
    /// Nothing to share (not cacheable, failed, abandoned): ask the origin yourself.
    Nothing,
}

/// Key of a fill: zone, generation, cache key.
type FillKey = (ZoneId, i64, String);

#[derive(Default)]
pub struct Coalescer {
    inflight: Mutex<HashMap<FillKey, watch::Receiver<Option<Filled>>>>,
}

/// The outcome of joining a fill.
pub enum Joined {
    /// Fetch, then report through the guard.
    Leader(FillGuard),
    /// Another request is fetching: wait on this.
    Follower(watch::Receiver<Option<Filled>>),
}

impl Coalescer {
    pub fn join(self: &Arc<Self>, zone: &ZoneId, generation: i64, key: &str) -> Joined {
        let fill_key = (zone.clone(), generation, key.to_owned());
        let mut inflight = self.inflight.lock().expect("coalescer lock");
        if let Some(rx) = inflight.get(&fill_key) {
            return Joined::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(fill_key.clone(), rx);
        Joined::Leader(FillGuard { coalescer: self.clone(), key: Some(fill_key), tx })
    }
}

/// Held by the leader. Completing it (or dropping it, which reports [`Filled::Nothing`]) releases the
/// followers; the key is removed first, so later requests find the filled tier or lead a new fill.
pub struct FillGuard {
    coalescer: Arc<Coalescer>,
    key: Option<FillKey>,
    tx: watch::Sender<Option<Filled>>,
}

impl FillGuard {
    pub fn complete(mut self, filled: Filled) {
        self.release(filled);
    }

    fn release(&mut self, filled: Filled) {
        if let Some(key) = self.key.take() {
            self.coalescer.inflight.lock().expect("coalescer lock").remove(&key);
            let _ = self.tx.send(Some(filled));
        }
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.release(Filled::Nothing);
    }
}

/// Waits for a leader's outcome.
pub async fn wait(mut rx: watch::Receiver<Option<Filled>>) -> Filled {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or(Filled::Nothing),
        Err(_) => Filled::Nothing,
    }
}
