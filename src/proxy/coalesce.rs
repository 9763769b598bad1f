//! Request coalescing: concurrent misses and validations for one key make one origin request. The first
//! becomes the leader and asks the origin; the others follow it. When the leader's response head is
//! admitted, the followers learn either that its body is shared as it arrives ([`Filled::Streaming`]:
//! they read it at once) or that it is not ([`Filled::Gathering`]: they wait for the outcome, at most the
//! lock timeout, `--coalesce-timeout`); at the outcome they are served from what was filled, or look again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use super::{edge::EdgeEntry, invalidations::Epoch, shared_body::SharedBody};
use crate::{domain::ZoneId, http_cache::StoredResponse};

/// A leader's response whose body is shared as it arrives.
pub struct Streaming {
    /// The response as stored (it has a `Content-Length`).
    pub stored: Arc<StoredResponse>,
    /// The body, filling; each follower reads it through its own reader.
    pub body: Arc<SharedBody>,
    /// The zone revision the leader began under (what the fill will be stamped with).
    pub fill_revision: i64,
    /// The key's invalidation count when the leader began: once an unsafe request has invalidated the key
    /// (RFC 9111 §4.4), the fill never lands, and no request may join it.
    pub seen: Epoch,
}

/// What a leader's request has produced so far.
#[derive(Clone)]
pub enum Filled {
    /// The head is admitted and the body is shared as it arrives: read it. The key stays in flight until
    /// the body has ended (and its edge entry landed), so later requests join too.
    Streaming(Arc<Streaming>),
    /// The head is admitted but the body is not shared (too large to hold in memory, no room in the fill
    /// budget, no announced length, or the reserve alone takes it): wait for the outcome.
    Gathering,
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

/// Held by the leader. [`FillGuard::publish`] tells followers what the head said and keeps the key in
/// flight; completing the guard (or dropping it, which reports [`Filled::Nothing`]) releases the followers
/// still waiting; the key is removed first, so later requests find the filled tier or lead a new fill.
pub struct FillGuard {
    coalescer: Arc<Coalescer>,
    key: Option<FillKey>,
    tx: watch::Sender<Option<Filled>>,
}

impl FillGuard {
    /// Tells the followers, and those that join from now on, what is known before the outcome.
    pub fn publish(&self, known: Filled) {
        self.tx.send_replace(Some(known));
    }

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

/// Waits for what a leader learns: its response head at most `head_timeout` (the leader waits as long for
/// it), then, if the body is not shared ([`Filled::Gathering`]), its outcome at most `lock_timeout`.
/// [`Filled::Nothing`] when either wait runs out or the leader gave up.
pub async fn wait(mut rx: watch::Receiver<Option<Filled>>, head_timeout: Duration, lock_timeout: Duration) -> Filled {
    let known = until(&mut rx, head_timeout, Option::is_some).await;
    if !matches!(known, Filled::Gathering) {
        return known;
    }
    until(&mut rx, lock_timeout, |v| !matches!(v, Some(Filled::Gathering))).await
}

/// The value of `rx` once it satisfies `done`, waiting at most `timeout`.
async fn until(
    rx: &mut watch::Receiver<Option<Filled>>,
    timeout: Duration,
    done: impl FnMut(&Option<Filled>) -> bool,
) -> Filled {
    match tokio::time::timeout(timeout, rx.wait_for(done)).await {
        Ok(Ok(v)) => v.clone().unwrap_or(Filled::Nothing),
        Ok(Err(_)) | Err(_) => Filled::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn coalescer_and_leader() -> (Arc<Coalescer>, FillGuard) {
        let coalescer = Arc::new(Coalescer::default());
        let Joined::Leader(guard) = coalescer.join(&ZoneId::generate(), 1, "k") else { panic!("not the leader") };
        (coalescer, guard)
    }

    fn follower(coalescer: &Arc<Coalescer>, guard: &FillGuard) -> watch::Receiver<Option<Filled>> {
        let key = guard.key.as_ref().unwrap();
        let Joined::Follower(rx) = coalescer.join(&key.0, key.1, &key.2) else { panic!("not a follower") };
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn a_fill_not_shared_is_waited_for_at_most_the_lock_timeout_and_stays_in_flight() {
        let (coalescer, guard) = coalescer_and_leader();
        guard.publish(Filled::Gathering);
        let rx = follower(&coalescer, &guard);
        let waited = tokio::time::Instant::now();
        assert!(matches!(wait(rx, LONG, Duration::from_secs(5)).await, Filled::Nothing));
        assert_eq!(waited.elapsed(), Duration::from_secs(5));
        // Still the leader's: a request now joins it too.
        let rx = follower(&coalescer, &guard);
        let (zone, generation, key) = guard.key.clone().unwrap();
        guard.complete(Filled::Stored);
        assert!(matches!(wait(rx, LONG, LONG).await, Filled::Stored));
        assert!(matches!(coalescer.join(&zone, generation, &key), Joined::Leader(_)), "released");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_gives_up_releases_its_followers() {
        let (coalescer, guard) = coalescer_and_leader();
        let rx = follower(&coalescer, &guard);
        drop(guard);
        assert!(matches!(wait(rx, LONG, LONG).await, Filled::Nothing));
    }
}
