//! Storage traits: the control state (zones, credentials, settings, Clear operations, the nodes sharing them)
//! and the object index; object bodies are behind [`bodies::BodyStore`].
//!
//! Backends implement these traits; nothing above this layer names a database. Two backends share one
//! implementation ([`sql::SqlStore`]): SQLite (embedded, one writer) and PostgreSQL (any number of nodes).
//! Each method's doc says what it guarantees under concurrency from several nodes; the backend enforces it
//! (SQLite by its single writer, PostgreSQL by row locks taken in one fixed order — zones by id, then
//! Clears, then objects by key, then per-generation counts — and bounded retries of serialization
//! failures and deadlocks). Times that other nodes compare (settings, Clears, leases, node syncs) come from
//! the database's clock, never a node's.

pub mod background;
pub mod bodies;
pub mod open;
pub mod sql;
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;
pub use background::{CompactionIndex, PendingPurge, PurgeIndex, Relocation, StoredBody};

use crate::domain::{
    ClearOperation, Invalidation, Permission, PurgeAction, PurgeRule, PurgeTarget, Timestamp, TokenId, TokenScope,
    UserId, Zone, ZoneId, ZoneName, secret::SecretHash,
};

/// What went wrong in a backend. Backend detail is kept as a source for the log, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name or key is already taken.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The thing to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The backend cannot be reached or is shutting down: nothing was changed that a retry would repeat
    /// wrongly, and a retry later may succeed (the API answers 503).
    #[error("storage backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The Clear's reclaim lease was taken over by another node (this one stalled past the lease): the
    /// change was refused, and this node must stop working that Clear.
    #[error("the clear's lease was lost to another node")]
    LeaseLost,
    /// The backend failed.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Wake-ups pushed by a backend that can announce changes (PostgreSQL `NOTIFY`); see
/// [`sql::SqlStore::relay_notifications`].
#[derive(Debug, Default)]
pub struct ChangeSignals {
    /// Another node changed a zone: sync now.
    pub zones: tokio::sync::Notify,
    /// A node recorded a sync: acknowledgements may have arrived.
    pub syncs: tokio::sync::Notify,
}

/// A zone to create.
#[derive(Debug, Clone)]
pub struct NewZone {
    pub id: ZoneId,
    pub name: ZoneName,
    pub origin: Option<String>,
}

/// A page of a listing, 1-based.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

/// Which zones to list.
#[derive(Debug, Clone, Default)]
pub struct ZoneFilter {
    pub name: Option<ZoneName>,
    /// Only these zones (a scoped token); `None` for all.
    pub only: Option<Vec<ZoneId>>,
}

/// Outcome of asking to change the reserve setting.
#[derive(Debug, Clone)]
pub enum SetReserveOutcome {
    Changed(Zone),
    /// Turning the reserve on while a Clear runs is refused (Cloudflare 1153).
    ClearInProgress,
}

/// Outcome of asking to start a Clear.
#[derive(Debug, Clone)]
pub enum StartClearOutcome {
    /// A new operation was recorded and the zone's generation bumped, in one transaction; `zone` is the
    /// zone as that transaction left it.
    Started { op: ClearOperation, zone: Zone },
    /// A Clear is already running: it is returned unchanged.
    AlreadyRunning(ClearOperation),
    /// The reserve is on (Cloudflare 1152).
    ReserveOn,
}

/// What a purge or invalidation committed (SPEC §10).
#[derive(Debug, Clone)]
pub struct PurgeOutcome {
    /// The zone as the call's transaction left it (its revision is the call's).
    pub zone: Zone,
    /// The rules recorded, all at the zone's revision; empty for `purge_everything`, which moves the zone to
    /// a new generation instead.
    pub rules: Vec<PurgeRule>,
}

/// An API token as stored (the secret itself is never stored).
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub id: TokenId,
    pub name: String,
    pub hash: SecretHash,
    pub permissions: Vec<Permission>,
    pub scope: TokenScope,
    pub created_on: Timestamp,
    pub expires_on: Option<Timestamp>,
    pub revoked_on: Option<Timestamp>,
}

impl StoredToken {
    /// Usable now: not revoked and not expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_on.is_none() && self.expires_on.is_none_or(|e| e > now)
    }
}

/// A user and the hash of their global API key.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub id: UserId,
    pub email: String,
    pub key_hash: SecretHash,
    pub created_on: Timestamp,
}

/// Zones, settings, Clear operations, credentials, and the nodes that share them.
///
/// Every change to a zone (create, origin, setting, Clear, purge, delete) gives it the next value of one store-wide
/// revision counter, assigned under a lock held to commit: revisions become visible in increasing order,
/// so a reader that has seen revision `r` has seen every change up to `r` ([`ControlStore::zone_changes`]).
#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// The installation's one account id, created with the store.
    async fn account_id(&self) -> StoreResult<String>;
    /// A value of the installation kept under `key`, set to `default` on first use (one winner when nodes
    /// race). Used for identities every node must share, e.g. the `CDN-Loop` id.
    async fn installation_value(&self, key: &str, default: &str) -> StoreResult<String>;

    /// Creates a zone with the reserve off, at generation 1, or, when `zone.id` is a deleted zone's, in its
    /// row at that zone's current generation (empty, and above every generation that zone stored objects in,
    /// so that none of them is ever read again). A name taken by a live zone, or the id of a live zone, is
    /// `AlreadyExists` (its text names which: `zone <name>` or `zone id <id>`).
    async fn create_zone(&self, zone: NewZone) -> StoreResult<Zone>;
    /// Deletes a live zone, in one transaction with the zone locked: turns its reserve off, moves it to a
    /// new generation and records the reclaim of every older one (worked as a Clear's, so its stored
    /// objects are logically gone at commit and physically deleted after), and marks it deleted at the
    /// next revision. Returns the tombstone, which [`ControlStore::zone_changes`] carries to every node; no
    /// other read returns it. An unknown or already deleted zone is `NotFound`. Cost independent of object
    /// count.
    async fn delete_zone(&self, id: &ZoneId) -> StoreResult<Zone>;
    /// The live zone of that id.
    async fn zone(&self, id: &ZoneId) -> StoreResult<Option<Zone>>;
    /// The live zone of that name.
    async fn zone_by_name(&self, name: &ZoneName) -> StoreResult<Option<Zone>>;
    /// A page of live zones ordered by name, and the total number matching.
    async fn list_zones(&self, filter: &ZoneFilter, page: Page) -> StoreResult<(Vec<Zone>, u64)>;
    /// Zones changed after revision `after`, in revision order, at most `limit`: a change feed whose cost
    /// is the number of changes, not of zones. `after = 0` lists every zone. Deleted zones are in it, as
    /// tombstones (`deleted_on` set), so that a node drops them.
    async fn zone_changes(&self, after: i64, limit: u32) -> StoreResult<Vec<Zone>>;
    /// Sets a zone's origin URL.
    async fn set_origin(&self, id: &ZoneId, origin: Option<String>) -> StoreResult<Zone>;

    /// Turns the reserve on or off, by [`crate::domain::rules::decide_set_reserve`]. Atomic with
    /// [`ControlStore::start_clear`] across nodes: of a concurrent `on` and Clear, exactly one succeeds
    /// (the zone row is locked for both).
    async fn set_reserve(&self, id: &ZoneId, on: bool) -> StoreResult<SetReserveOutcome>;

    /// Starts a Clear, by [`crate::domain::rules::decide_start_clear`]: in one transaction, with the zone
    /// locked, bumps the zone's generation and records the operation with the counts it must delete
    /// (read after every write racing it has committed or been refused). `start_ts` is the database's
    /// clock. Cost independent of object count.
    async fn start_clear(&self, id: &ZoneId) -> StoreResult<StartClearOutcome>;
    /// Records a purge or invalidation of `targets` (not empty), in one transaction with the zone locked:
    /// the zone takes the next revision, which becomes its `purge_revision` and every rule's revision, with
    /// `created_on` from the database's clock. `purge_everything` (a purge of [`PurgeTarget::Everything`])
    /// records no rule: it moves the zone to a new generation, as a Clear does, and records a reclaim of
    /// the old ones that the Clear's state does not show. Cost independent of object count.
    async fn purge(&self, id: &ZoneId, action: PurgeAction, targets: &[PurgeTarget]) -> StoreResult<PurgeOutcome>;
    /// Rules of revisions in `(after, through]`, in revision order: with [`ControlStore::zone_changes`], the
    /// feed a node applies (a node that has seen revision `r` holds every rule up to `r`).
    async fn purge_rules(&self, after: i64, through: i64) -> StoreResult<Vec<PurgeRule>>;

    /// The zone's latest Clear, with current progress.
    async fn latest_clear(&self, id: &ZoneId) -> StoreResult<Option<ClearOperation>>;

    /// Records that `node` has applied every zone change up to `seen_revision` and swept its memory tiers
    /// for worked purge rules through `swept_revision` (and is alive), at the database's clock. Nodes not
    /// heard from for a day are forgotten. Returns the revision through which purge rules have been retired
    /// ([`PurgeIndex::retire_purges`]); the caller reads the rules first, so a retirement that deleted rules
    /// it did not read is seen here. It takes no lock another node waits on.
    async fn record_sync(&self, node: &str, seen_revision: i64, swept_revision: i64) -> StoreResult<i64>;
    /// Forgets `node` (it is shutting down cleanly), so that no change waits for its acknowledgement.
    async fn forget_node(&self, node: &str) -> StoreResult<()>;
    /// How many nodes other than `node`, heard from within `window`, have not yet applied revision
    /// `revision`. A node silent for longer has stopped using its view of the zones by itself.
    async fn lagging_nodes(&self, node: &str, revision: i64, window: Duration) -> StoreResult<u64>;

    async fn create_token(&self, token: StoredToken) -> StoreResult<()>;
    async fn token_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<StoredToken>>;
    async fn list_tokens(&self) -> StoreResult<Vec<StoredToken>>;
    /// Revokes a token; revoking twice keeps the first time. Unknown id is `NotFound`.
    async fn revoke_token(&self, id: &TokenId, now: Timestamp) -> StoreResult<()>;

    /// Creates a user; a taken e-mail is `AlreadyExists`.
    async fn create_user(&self, user: StoredUser) -> StoreResult<()>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<StoredUser>>;
}

/// One stored object's index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub zone_id: ZoneId,
    pub generation: i64,
    /// SHA-256 of the cache key, hex.
    pub key_hash: String,
    pub key: String,
    /// Where the body lives in the object store.
    pub blob: String,
    pub size: u64,
    /// Opaque metadata stored beside the body (headers, for the proxy).
    pub meta: Vec<u8>,
    pub stored_on: Timestamp,
    /// The zone revision the filling node had applied when the request began: purge and invalidation
    /// rules of higher revisions apply to it (SPEC §10). 0: filled before any rule.
    pub fill_revision: i64,
    /// The latest invalidation written into it by a rule's background work; it applies while
    /// `fill_revision` is below its revision.
    pub invalidation: Option<Invalidation>,
}

/// Outcome of recording a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Visible now; the blob of the entry it replaced, if any, is to be deleted.
    Recorded { replaced_blob: Option<String> },
    /// The zone's generation moved on (a Clear started) after the body was written: nothing recorded,
    /// the body is to be deleted.
    Superseded,
    /// The zone's reserve is off (it was switched off while the body was being written): nothing recorded,
    /// the body is to be deleted.
    ReserveOff,
    /// A purge or invalidation of the zone committed after the filling request began (the object may
    /// predate it): nothing recorded, the body is to be deleted.
    Purged,
    /// The zone does not exist.
    NoZone,
}

/// Objects and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub objects: u64,
    pub bytes: u64,
}

/// A read of a stored object, for retention (recorded in batches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub zone_id: ZoneId,
    pub generation: i64,
    pub key_hash: String,
    pub at: Timestamp,
}

/// Where a cleared object's body is, and its position in reclaim order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRef {
    pub generation: i64,
    pub key_hash: String,
    pub blob: String,
}

/// A Clear the reclaimer still has to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingClear {
    pub clear_id: i64,
    pub zone_id: ZoneId,
    pub target_generation: i64,
}

/// A node's claim on working one Clear, until `until` on the database's clock. `token` fences it: each
/// claim gets a higher one, and a change made with an older token is refused ([`StoreError::LeaseLost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearLease {
    pub clear: PendingClear,
    pub node: String,
    pub token: i64,
    /// Failed attempts since the last batch that made progress (for the caller's backoff).
    pub attempts: u32,
}

/// The object index: which objects each zone stores, in which generation, where their bodies are.
#[async_trait]
pub trait ObjectIndex: Send + Sync + 'static {
    /// The zone's current generation, or `None` if there is no such zone.
    async fn current_generation(&self, zone: &ZoneId) -> StoreResult<Option<i64>>;
    /// Records objects, in one transaction, each only if [`crate::domain::rules::decide_record`] allows it
    /// against its zone's current generation and setting, read with the zones locked against change (in
    /// id order) until commit: a write racing `off` or a Clear, on any node, is never recorded after either
    /// commits, so nothing lands in a cleared generation after the Clear counted it. Returns one outcome
    /// per entry, in order.
    async fn record_batch(&self, entries: &[IndexEntry]) -> StoreResult<Vec<RecordOutcome>>;
    /// The entry for a key in the zone's current generation.
    async fn lookup(&self, zone: &ZoneId, key_hash: &str) -> StoreResult<Option<IndexEntry>>;
    /// Removes a key from the zone's current generation, returning what was removed.
    async fn remove(&self, zone: &ZoneId, key_hash: &str) -> StoreResult<Option<IndexEntry>>;
    /// Removes an entry only if it is still the one whose body is `blob` in that generation (its body was
    /// found missing or damaged), adjusting the counts. Returns whether it was.
    async fn remove_if_blob(&self, zone: &ZoneId, generation: i64, key_hash: &str, blob: &str) -> StoreResult<bool>;
    /// Objects and bytes in the zone's current generation.
    async fn usage(&self, zone: &ZoneId) -> StoreResult<Usage>;
    /// Replaces the metadata of an entry (after a revalidation), only if it is still the entry whose body
    /// is `blob` in that generation, and raises its fill revision to `fill_revision` (the revalidating
    /// request's; never lowered) unless a purge or invalidation of the zone is newer than that: the `304`
    /// may predate the rule, whose background work may have read the entry already, so the rule must
    /// still apply to it (SPEC §10). Read under the zone's lock, as a purge takes it. Returns the entry's
    /// fill revision afterwards, or `None` if it was replaced meanwhile.
    async fn update_meta(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
        blob: &str,
        meta: &[u8],
        fill_revision: i64,
    ) -> StoreResult<Option<i64>>;
    /// Records when objects were last read, in key order (two nodes flushing at once never deadlock), in
    /// short transactions of a few hundred each: on an error some may be recorded, and recording them again
    /// is harmless. Never moves a time backwards; entries gone meanwhile are skipped.
    async fn record_access(&self, accesses: &[Access]) -> StoreResult<()>;
    /// Forgets up to `limit` entries of current generations last read before `before`, least recently
    /// read first, adjusting the counts by what was actually deleted; returns them so their bodies can be
    /// deleted. Entries another node is evicting at the same moment are skipped, not waited for.
    async fn evict_idle(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<IndexEntry>>;

    /// Claims the Clear that `node` should work next, for `lease` (database clock): the oldest one due
    /// (not backing off after a failure) that no other node holds a live lease on — or the one `node`
    /// already holds. Several nodes therefore work different Clears, and a dead node's Clear is taken over
    /// once its lease runs out. `None` when there is nothing to do.
    async fn claim_clear(&self, node: &str, lease: Duration) -> StoreResult<Option<ClearLease>>;
    /// The first `limit` bodies of the zone in generations below `below`, in (generation, key hash) order.
    async fn bodies_below(&self, zone: &ZoneId, below: i64, limit: u32) -> StoreResult<Vec<BodyRef>>;
    /// Forgets every entry of the Clear's zone in generations below its target, in order up to and
    /// including `last` (a cursor from [`ObjectIndex::bodies_below`]), subtracting from the per-generation
    /// counts exactly what was deleted (so two reclaimers never subtract twice), and extends the lease by
    /// `lease`. Refused with [`StoreError::LeaseLost`] unless `lease` is still the live one. Forgetting
    /// again is harmless.
    async fn forget_through(&self, lease: &ClearLease, last: &BodyRef, extend: Duration) -> StoreResult<()>;
    /// Forgets whatever entries of the cleared generations are left, all at once (the SQL index drops their
    /// partitions: the cost follows the number of generations, not of entries), marks the Clear completed,
    /// with `end_ts` from the database's clock (never before `start_ts`), and drops its lease, in one
    /// transaction. Returns the number of entries it forgot. Refused with [`StoreError::LeaseLost`] unless
    /// `lease` is still the live one. Idempotent (completing again forgets nothing).
    async fn complete_clear(&self, lease: &ClearLease) -> StoreResult<u64>;
    /// Gives up the lease after a failed attempt: the Clear is not retried (by any node) for `retry_after`,
    /// so that other Clears go first; `error` is kept for operators. A lost lease is ignored.
    async fn release_clear(&self, lease: &ClearLease, retry_after: Duration, error: &str) -> StoreResult<()>;
}
