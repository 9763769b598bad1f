//! Reserve promotion (issue #12 A5): an object the edge tier holds but the reserve does not (filled while
//! the zone's reserve was off, or when the write budget was spent) is written to the reserve from memory on
//! its next edge hit while the reserve is on, once per edge entry.

use std::time::SystemTime;

use super::{Ctx, edge::EdgeEntry, reserve_fill};
use crate::http_cache::{codec, date};

impl Ctx {
    /// Writes an edge-tier copy the reserve does not hold to the reserve, from memory, if the reserve takes
    /// it (SPEC §8, as at admission: explicit freshness left, size). It keeps the copy's own fill revision,
    /// so purges newer than the copy apply to the written one, and lands only if the key is not invalidated
    /// meanwhile.
    pub(super) fn promote(&self, entry: &EdgeEntry, now: SystemTime) {
        let p = &*self.proxy;
        let size = entry.body.len() as u64;
        let ttl = entry.stored.freshness().explicit_ttl(date::unix_millis(now));
        if entry.invalidation.is_some() || size > p.limits.reserve_max || ttl < p.limits.reserve_min_ttl {
            return;
        }
        // The reserve is known to hold the key (another node wrote it, or a look-up found it): no write.
        if p.index_cache.get(&self.zone, &self.key).is_some() {
            return;
        }
        let Some(budget) = p.write_budget.take(reserve_fill::write_cost(size)) else {
            entry.promotion_failed();
            return;
        };
        self.reserve_write(budget, codec::encode(&entry.stored), size, entry.fill_revision)
            .write_whole(entry.body.clone());
    }
}
