//! The zones the proxy routes by, held in memory: looked up by hostname on every request without a
//! database read, and kept in step with the store — and with every other node sharing it.
//!
//! **Change feed.** Every change to a zone gets the next store-wide revision; this node applies the zones
//! changed after the last revision it saw ([`ControlStore::zone_changes`]), every `sync_interval` and at
//! once when PostgreSQL announces a change. The cost of a sync is the number of changes, not of zones.
//!
//! **Fail closed.** The view may be used for reserve reads and writes only until `view_ttl` after the
//! start of its last successful sync ([`ZoneDirectory::reserve_usable`]); a node cut off from the store
//! stops serving stored copies (the proxy serves from the origin, neither tier) instead of serving
//! from a view that may predate a Clear or an `off`.
//!
//! **Acknowledged changes.** After this node commits a change to the reserve setting or a Clear, it
//! installs the change here and then waits, before the API answers, until every other node that synced
//! within `view_ttl` has applied it ([`ZoneDirectory::publish`]) — about a millisecond with PostgreSQL's
//! notifications — or until `view_ttl` has passed, after which any node that had not applied it has
//! stopped using its view. Either way, once the API answers, no node serves the reserve by the old
//! setting or from a pre-Clear generation (SPEC §6.1). The argument needs no synchronized clocks: a
//! node's view expires by its own monotonic clock, `view_ttl` after a moment that preceded the commit.
//!
//! **Counted as live throughout.** A publisher skips a node whose last record is older than `view_ttl`,
//! so a view may come into use only if the node counted as live from before the view's read until the
//! view expires: from the record that preceded the read (its start, by this node's clock) to this
//! sync's record, no more than `view_ttl` may pass, or a change committed after the read could have been
//! acknowledged meanwhile without this node, and the view read before it must not be used. Such a sync
//! extends nothing. A node without a usable view (starting, back from an outage, or after such a sync) or
//! whose last record is already half a lifetime old (long sync intervals, a failed sync) records itself
//! as live before it reads the feed: a change committed while that read is in flight then waits for it
//! too, and the sync has the whole lifetime to finish.
//!
//! **Clocks.** Nothing assumes synchronized clocks, but the argument assumes that the database's clock
//! and each node's monotonic clock run at the same rate: a database clock stepped forward makes
//! publishers skip live nodes, and a node whose monotonic clock stopped (a suspended virtual machine) uses
//! its view for longer than `view_ttl` of real time. Keep `view_ttl` well above such errors.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

pub use node::{SyncConfig, node_name};
use table::{candidates, install};

use crate::{
    domain::{PurgeRule, Zone, ZoneName},
    purge::PurgeBook,
    storage::{ChangeSignals, ControlStore, StoreResult},
};

/// How long a host that no zone serves is remembered as such.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Hosts remembered as served by no zone, at most.
const NEGATIVE_CAPACITY: u64 = 100_000;

/// Zones read per page of the change feed.
const FEED_PAGE: u32 = 1000;

/// Longest a sync may take before it is abandoned and tried again.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// What this node has synced.
#[derive(Debug, Default)]
struct SyncState {
    /// The highest revision applied from the feed.
    revision: i64,
    /// Until when the view may be used for the reserve.
    valid_until: Option<Instant>,
    /// When (by this node's clock, just before it began) the last record of a sync that committed began.
    recorded: Option<Instant>,
    /// The revision through which this node's memory tiers hold no copy a rule targets unless it is
    /// judged by that rule or carries it ([`crate::proxy::Sweeper`]).
    swept: i64,
    /// The revision through which the rules are retired, as last read.
    retired: i64,
    /// Rules applied from the feed and not swept for yet, oldest first.
    unswept: Vec<PurgeRule>,
    /// Whether the last sync's record came too late to extend the view (module docs).
    lapsed: bool,
}

/// Empties this node's memory tiers (see [`ZoneDirectory::on_flush`]).
type Flush = Box<dyn Fn() + Send + Sync>;

/// The in-memory zone table; cheap to clone.
#[derive(Clone)]
pub struct ZoneDirectory {
    control: Arc<dyn ControlStore>,
    by_name: Arc<RwLock<HashMap<String, Arc<Zone>>>>,
    /// This node's name in the store's node table.
    node: Arc<str>,
    config: SyncConfig,
    state: Arc<Mutex<SyncState>>,
    signals: Arc<ChangeSignals>,
    /// The zones' purge and invalidation rules, from the same feed.
    purges: Arc<PurgeBook>,
    /// Hosts recently found to be served by no zone.
    unknown: moka::sync::Cache<String, ()>,
    /// Set by the proxy: empties its memory tiers.
    flush: Arc<OnceLock<Flush>>,
}

impl ZoneDirectory {
    pub fn new(control: Arc<dyn ControlStore>, node: &str, config: SyncConfig, signals: Arc<ChangeSignals>) -> Self {
        Self {
            control,
            by_name: Arc::default(),
            node: node.into(),
            config,
            state: Arc::default(),
            signals,
            purges: Arc::default(),
            unknown: moka::sync::Cache::builder().max_capacity(NEGATIVE_CAPACITY).time_to_live(NEGATIVE_TTL).build(),
            flush: Arc::default(),
        }
    }

    /// The purge and invalidation rules of every zone, as this node has applied them.
    pub fn purges(&self) -> &Arc<PurgeBook> {
        &self.purges
    }

    /// The highest revision this node has applied from the feed: every zone change and rule up to it is
    /// in the table and the book. A copy filled by a request that began now is stamped with it.
    pub fn revision(&self) -> i64 {
        self.state.lock().expect("sync state lock").revision
    }

    /// Registers how to empty this node's memory tiers: done when rules this node has not swept for were
    /// retired while it was cut off (SPEC §10), before its view is usable again. Only the first call counts.
    pub fn on_flush(&self, flush: impl Fn() + Send + Sync + 'static) {
        let _ = self.flush.set(Box::new(flush));
    }

    /// The revision through which this node's memory tiers are swept for worked rules.
    pub fn swept(&self) -> i64 {
        self.state.lock().expect("sync state lock").swept
    }

    /// The rules this node has applied, of revisions above its last sweep and up to `through`: what the
    /// next sweep judges by. A rule is listed from the sync that applied it until a sweep or a flush
    /// covers it, so a sweep never covers a revision without the rules of it that this node applied.
    pub fn unswept(&self, through: i64) -> Vec<PurgeRule> {
        let state = self.state.lock().expect("sync state lock");
        state.unswept.iter().filter(|r| r.revision <= through).cloned().collect()
    }

    /// Records a sweep of this node's memory tiers through `revision`.
    pub fn note_swept(&self, revision: i64) {
        let mut state = self.state.lock().expect("sync state lock");
        state.swept = state.swept.max(revision);
        state.unswept.retain(|r| r.revision > revision);
    }

    /// The zone that serves `host` (already lower-cased, without port): the zone of that name, else of its
    /// nearest parent domain (a zone serves its subdomains; the most specific zone wins, SPEC §10). From
    /// memory; a name not there yet (created since the last sync) is read from the store, and a host no
    /// zone serves is remembered as such for [`NEGATIVE_TTL`], so unknown hostnames do not cost a store read
    /// each.
    pub async fn resolve(&self, host: &str) -> StoreResult<Option<Arc<Zone>>> {
        {
            let table = self.by_name.read().expect("zone table lock");
            let live = |name: &str| table.get(name).filter(|z| z.deleted_on.is_none());
            if let Some(zone) = candidates(host).find_map(live) {
                return Ok(Some(zone.clone()));
            }
        }
        // Each name found to be no zone is remembered too: random hosts under one unknown domain then cost
        // a read for their new labels only.
        for candidate in candidates(host) {
            if self.unknown.get(candidate).is_some() {
                continue;
            }
            if let Ok(name) = ZoneName::parse(candidate)
                && let Some(zone) = self.control.zone_by_name(&name).await?
            {
                let installed = self.insert(zone);
                // A deletion installed meanwhile wins over this read.
                if installed.deleted_on.is_none() {
                    return Ok(Some(installed));
                }
            }
            self.unknown.insert(candidate.to_owned(), ());
        }
        Ok(None)
    }

    /// Every live zone known in memory.
    pub fn zones(&self) -> Vec<Arc<Zone>> {
        let table = self.by_name.read().expect("zone table lock");
        table.values().filter(|z| z.deleted_on.is_none()).cloned().collect()
    }

    /// Whether the view is recent enough to decide reserve reads and writes by (see the module docs).
    pub fn reserve_usable(&self) -> bool {
        self.state.lock().expect("sync state lock").valid_until.is_some_and(|t| Instant::now() < t)
    }

    /// Installs `zone` as read from the store, unless a newer read of it is already installed (reads
    /// race: a sync may finish after the API's install of a later change).
    pub fn insert(&self, zone: Zone) -> Arc<Zone> {
        let mut table = self.by_name.write().expect("zone table lock");
        install(&mut table, zone)
    }

    /// Installs a change this node committed, then waits until the other live nodes have applied it, or
    /// until `view_ttl` has passed (see the module docs). A store failure while waiting ends the wait
    /// early only by `view_ttl`, never by an error: the change is committed, and the API must say so.
    pub async fn publish(&self, zone: Zone) {
        let revision = zone.revision;
        self.insert(zone);
        let deadline = Instant::now() + self.config.view_ttl;
        loop {
            // Register interest before asking, so an acknowledgement between the two is not missed.
            let acked = self.signals.syncs.notified();
            match self.control.lagging_nodes(&self.node, revision, self.config.view_ttl).await {
                Ok(0) => return,
                Ok(n) => tracing::debug!(nodes = n, revision, "waiting for other nodes to apply a change"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask which nodes applied a change; waiting out their views")
                }
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(revision, "other nodes did not acknowledge a change; their views have expired");
                return;
            }
            // Notifications make this fast; the poll bounds it when they are not available.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(20)), acked).await;
        }
    }

    /// Installs a purge this node committed (its rules, and the zone at its new revision or generation),
    /// then waits as [`ZoneDirectory::publish`] does: once this returns, no node serves a copy the purge
    /// targets (SPEC §10).
    pub async fn publish_purge(&self, zone: Zone, rules: &[PurgeRule]) {
        self.purges.apply(rules);
        // Catch up at once, so this node's own fills are stamped with the purge's revision (until then they
        // do not land). Reads only: with the embedded store a write would wait for the writer, which the
        // background work shares. Only while this node's view is usable: then it counts as live, so no rule
        // it has not read can be retired, and the next sync records what it applied.
        if self.reserve_usable() {
            match self.catch_up().await {
                Ok(revision) => {
                    let mut state = self.state.lock().expect("sync state lock");
                    state.revision = state.revision.max(revision);
                }
                Err(e) => tracing::debug!(error = %e, "could not catch up after a purge; the next sync will"),
            }
        }
        self.publish(zone).await;
    }

    /// Applies every change since the last sync (zones, then the rules up to the zones' revision), records
    /// the sync in the store, and extends the view if this node counted as live throughout (module docs).
    pub async fn sync(&self) -> StoreResult<()> {
        let started = Instant::now();
        // The start of the last record committed before this sync's read.
        let mut since = self.state.lock().expect("sync state lock").recorded;
        let stale = since.is_none_or(|t| t.elapsed() >= self.config.view_ttl / 2);
        if stale || !self.reserve_usable() {
            // Starting, back after losing the store, or last heard of long ago: be counted as live before
            // reading the feed, so that this sync's record comes in time (module docs). A change
            // committed before this record is in what is read next; one committed after it waits for this
            // node's acknowledgement ([`ZoneDirectory::publish`]). Without it, a change committed while this
            // sync was in flight, before this node had a recent record, would not wait for a node whose new
            // view lacks it.
            let (revision, swept) = {
                let state = self.state.lock().expect("sync state lock");
                (state.revision, state.swept)
            };
            let recording = Instant::now();
            self.control.record_sync(&self.node, revision, swept).await?;
            since = Some(recording);
            self.state.lock().expect("sync state lock").recorded = since;
        }
        let revision = self.catch_up().await?;
        let read = started.elapsed();
        let swept = self.swept();
        let recording = Instant::now();
        let retired = self.control.record_sync(&self.node, revision, swept).await?;
        let mut state = self.state.lock().expect("sync state lock");
        state.recorded = Some(recording);
        let took = started.elapsed();
        // From the start of the record before the read to this record's commit (which came before now).
        let unheard = since.map(|t| t.elapsed());
        let lapsed = unheard.is_none_or(|t| t >= self.config.view_ttl);
        if lapsed && !state.lapsed {
            tracing::warn!(
                took = ?took, reads = ?read, record = ?(took - read), unheard = ?unheard,
                view_ttl = ?self.config.view_ttl,
                "a zone sync's record came more than the view's lifetime after the one before: the reserve is \
                 bypassed until a sync is recorded in time"
            );
        } else if !lapsed && state.lapsed {
            tracing::info!(took = ?took, "zone syncs are recorded within the view's lifetime again");
        }
        state.lapsed = lapsed;
        if retired > state.swept {
            // Rules were retired that this node never swept for (it was not live): its memory tiers may
            // hold copies they targeted, and nothing would judge them now. Empty them before serving.
            if let Some(flush) = self.flush.get() {
                tracing::info!(
                    retired,
                    swept = state.swept,
                    "purge rules retired while this node was away; emptying its memory tiers"
                );
                flush();
            }
            state.swept = retired;
            state.unswept.retain(|r| r.revision > retired);
        }
        if retired > state.retired {
            state.retired = retired;
            self.purges.retire(retired);
        }
        state.revision = state.revision.max(revision);
        if !lapsed {
            state.valid_until = Some(started + self.config.view_ttl);
        }
        Ok(())
    }

    /// Reads the change feed since this node's revision and applies it (zones, then the rules up to the
    /// zones' revision). Returns the revision reached; the caller makes it this node's.
    async fn catch_up(&self) -> StoreResult<i64> {
        let mut revision = self.state.lock().expect("sync state lock").revision;
        loop {
            let changes = self.control.zone_changes(revision, FEED_PAGE).await?;
            let last_page = changes.len() < FEED_PAGE as usize;
            let through = changes.iter().map(|z| z.revision).max().unwrap_or(revision);
            // A purge commits its rules with the zone's revision: every rule up to `through` is visible.
            let rules = self.control.purge_rules(revision, through).await?;
            self.purges.apply(&rules);
            self.state.lock().expect("sync state lock").unswept.extend(rules);
            {
                let mut table = self.by_name.write().expect("zone table lock");
                for zone in changes {
                    // Rules retired before this node read them still keep older fills from landing.
                    self.purges.raise_latest(&zone.id, zone.purge_revision);
                    install(&mut table, zone);
                }
            }
            revision = revision.max(through);
            if last_page {
                break;
            }
        }
        Ok(revision)
    }

    /// Syncs every `interval`, and when woken by a notification, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.interval) => {}
                () = self.signals.zones.notified() => {}
            }
            // A sync stuck on a connection that stopped answering is abandoned (the view expires meanwhile,
            // so nothing depends on it finishing) and tried again.
            let synced = match tokio::time::timeout(SYNC_TIMEOUT, self.sync()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer from the control store within {SYNC_TIMEOUT:?}")),
            };
            match synced {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the control store is reachable again; the reserve is back in use");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot sync the zone table; the reserve is bypassed until it can");
                }
                Err(_) => {}
            }
        }
    }
}

mod node;
mod table;
#[cfg(test)]
mod tests;
