//! Memory budgets: how many bytes requests in flight may hold outside the bounded caches. A request takes
//! its share before it allocates and gives it back when the share is dropped — whichever way the request
//! ends (finished, client gone, origin cut short, error) — so what a budget counts cannot leak.
//!
//! Two budgets use this: reserve writes in flight (`--write-buffer-bytes`) and bodies gathered for the edge
//! tier (`--edge-fill-buffer-bytes`: misses filling it and reserve bodies read whole to be promoted to it).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use metrics::Gauge;

/// A limit on bytes held, shared by every request.
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Mirrors `used`, for `/metrics`.
    gauge: Option<Gauge>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes; `gauge`, if any, follows the bytes in use.
    pub fn new(limit: u64, gauge: Option<Gauge>) -> Arc<Self> {
        Arc::new(Self { limit, used: AtomicU64::new(0), gauge })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// A share of `bytes`, if the budget has room for it.
    pub fn take(self: &Arc<Self>, bytes: u64) -> Option<BudgetShare> {
        self.add(bytes).then(|| BudgetShare { budget: self.clone(), bytes })
    }

    fn add(&self, bytes: u64) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(now) = used.checked_add(bytes).filter(|n| *n <= self.limit) else {
                return false;
            };
            match self.used.compare_exchange_weak(used, now, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => used = seen,
            }
        }
        if let Some(g) = &self.gauge {
            g.increment(bytes as f64);
        }
        true
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(g) = &self.gauge {
            g.decrement(bytes as f64);
        }
    }
}

/// Bytes held from a [`MemoryBudget`], given back on drop.
pub struct BudgetShare {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl BudgetShare {
    /// Bytes this share holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `extra` bytes more, if the budget has room; the share is unchanged otherwise.
    pub fn grow(&mut self, extra: u64) -> bool {
        let ok = self.budget.add(extra);
        if ok {
            self.bytes += extra;
        }
        ok
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Why a [`BudgetedBuf`] refused more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The body is larger than the buffer may grow.
    TooLarge,
    /// The budget has no room for the growth.
    OverBudget,
}

/// Smallest allocation for a body of unknown length.
const FIRST_GROWTH: usize = 16 * 1024;

/// A buffer gathering one body, whose allocation is always covered by its share of a budget: the share is
/// taken before the buffer grows, so no origin — whatever length it announces — makes it allocate beyond
/// what the budget allows.
pub struct BudgetedBuf {
    buf: Vec<u8>,
    share: BudgetShare,
    max: usize,
}

impl BudgetedBuf {
    /// A buffer for a body of `expected` bytes (its share taken whole now) or of unknown length (taken as it
    /// grows), never larger than `max`. `None` when the budget has no room, or `expected` is over `max`.
    pub fn new(budget: &Arc<MemoryBudget>, expected: Option<u64>, max: u64) -> Option<Self> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let expected = match expected {
            Some(n) => Some(usize::try_from(n).ok().filter(|n| *n <= max)?),
            None => None,
        };
        let first = expected.unwrap_or(0);
        let share = budget.take(first as u64)?;
        Some(Self { buf: Vec::with_capacity(first), share, max })
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes gathered so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends `data`, growing the buffer (and its share) if needed; on refusal nothing is appended.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), Refused> {
        let need = self.buf.len().checked_add(data.len()).filter(|n| *n <= self.max).ok_or(Refused::TooLarge)?;
        if need > self.buf.capacity() {
            self.grow(need)?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Grows the allocation to at least `need` bytes: doubling (at most `max`) when the budget allows, else
    /// exactly `need`.
    fn grow(&mut self, need: usize) -> Result<(), Refused> {
        let cap = self.buf.capacity();
        let doubled = cap.saturating_mul(2).max(FIRST_GROWTH).max(need).min(self.max);
        let covered = usize::try_from(self.share.bytes()).unwrap_or(usize::MAX);
        let target = [doubled, need]
            .into_iter()
            .find(|t| *t <= covered || self.share.grow((*t - covered) as u64))
            .ok_or(Refused::OverBudget)?;
        self.buf.reserve_exact(target - self.buf.len());
        Ok(())
    }

    /// The gathered body, its allocation trimmed to its length; the share is given back (the caller hands
    /// the bytes to a cache that accounts for them, or drops them).
    pub fn freeze(mut self) -> Bytes {
        self.buf.shrink_to_fit();
        Bytes::from(std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_taken_only_within_the_limit_and_given_back_on_drop() {
        let budget = MemoryBudget::new(100, None);
        let a = budget.take(60).unwrap();
        assert!(budget.take(41).is_none());
        let b = budget.take(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert!(budget.take(1).is_none());
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.take(u64::MAX).is_none(), "no overflow past the limit");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_share_grows_only_within_the_limit() {
        let budget = MemoryBudget::new(100, None);
        let mut share = budget.take(10).unwrap();
        assert!(share.grow(80));
        assert!(!share.grow(11));
        assert_eq!((share.bytes(), budget.used()), (90, 90));
        drop(share);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_buffer_of_announced_length_takes_its_share_before_allocating() {
        let budget = MemoryBudget::new(1000, None);
        let buf = BudgetedBuf::new(&budget, Some(600), 800).unwrap();
        assert_eq!(budget.used(), 600);
        assert!(BudgetedBuf::new(&budget, Some(401), 800).is_none(), "the rest of the budget is too small");
        assert!(BudgetedBuf::new(&budget, Some(301), 300).is_none(), "larger than the buffer may grow");
        assert!(BudgetedBuf::new(&budget, Some(u64::MAX), 800).is_none(), "a hostile length allocates nothing");
        assert_eq!(budget.used(), 600);
        drop(buf);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_buffer_of_unknown_length_grows_its_share_with_its_allocation() {
        let budget = MemoryBudget::new(100_000, None);
        let mut buf = BudgetedBuf::new(&budget, None, 50_000).unwrap();
        assert_eq!(budget.used(), 0);
        let chunk = [7u8; 10_000];
        for _ in 0..5 {
            buf.extend(&chunk).unwrap();
            assert!(budget.used() >= buf.buf.capacity() as u64, "every allocated byte is covered");
        }
        assert_eq!(buf.extend(&[1]), Err(Refused::TooLarge));
        assert_eq!(buf.len(), 50_000);
        let body = buf.freeze();
        assert_eq!(body.len(), 50_000);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_buffer_that_outgrows_the_budget_is_refused_and_keeps_what_it_had() {
        let budget = MemoryBudget::new(30_000, None);
        let other = budget.take(10_000).unwrap();
        let mut buf = BudgetedBuf::new(&budget, None, 1_000_000).unwrap();
        buf.extend(&[1u8; 15_000]).unwrap();
        // Doubling would pass the limit; growing to exactly what is needed still fits.
        buf.extend(&[2u8; 5_000]).unwrap();
        assert_eq!(budget.used(), 30_000);
        assert_eq!(buf.extend(&[3u8; 1]), Err(Refused::OverBudget));
        assert_eq!(buf.len(), 20_000);
        drop(buf);
        assert_eq!(budget.used(), 10_000);
        drop(other);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_budget_reports_its_use_to_its_gauge() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let key = metrics::Key::from_name("in_use");
        let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        let gauge = metrics::Recorder::register_gauge(&recorder, &key, &meta);
        let budget = MemoryBudget::new(100, Some(gauge));
        let share = budget.take(42).unwrap();
        assert!(recorder.handle().render().contains("in_use 42"));
        drop(share);
        assert!(recorder.handle().render().contains("in_use 0"));
    }
}
