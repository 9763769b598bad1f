//! Storage traits: the control state (zones, credentials, settings, Clear operations) and the object index.
//!
//! Backends implement these traits; nothing above this layer names a database. Object bodies live in an
//! [`object_store::ObjectStore`], addressed by the paths this index records.

pub mod local_bodies;
pub mod sqlite;

use async_trait::async_trait;

use crate::domain::{
    ClearOperation, Permission, Timestamp, TokenId, TokenScope, UserId, Zone, ZoneId, ZoneName, secret::SecretHash,
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
    /// The backend failed.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A zone to create.
#[derive(Debug, Clone)]
pub struct NewZone {
    pub id: ZoneId,
    pub name: ZoneName,
    pub origin: Option<String>,
    pub now: Timestamp,
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
    /// A new operation was recorded and the zone's generation bumped, in one transaction.
    Started(ClearOperation),
    /// A Clear is already running: it is returned unchanged.
    AlreadyRunning(ClearOperation),
    /// The reserve is on (Cloudflare 1152).
    ReserveOn,
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

/// Zones, settings, Clear operations and credentials.
#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// The installation's one account id, created with the store.
    async fn account_id(&self) -> StoreResult<String>;

    /// Creates a zone at generation 1 with the reserve off. A taken name is `AlreadyExists`.
    async fn create_zone(&self, zone: NewZone) -> StoreResult<Zone>;
    async fn zone(&self, id: &ZoneId) -> StoreResult<Option<Zone>>;
    async fn zone_by_name(&self, name: &ZoneName) -> StoreResult<Option<Zone>>;
    /// A page of zones ordered by name, and the total number matching.
    async fn list_zones(&self, filter: &ZoneFilter, page: Page) -> StoreResult<(Vec<Zone>, u64)>;
    /// Sets a zone's origin URL.
    async fn set_origin(&self, id: &ZoneId, origin: Option<String>, now: Timestamp) -> StoreResult<Zone>;

    /// Turns the reserve on or off; turning it on is refused while a Clear is in progress.
    async fn set_reserve(&self, id: &ZoneId, on: bool, now: Timestamp) -> StoreResult<SetReserveOutcome>;

    /// Starts a Clear: in one transaction, checks the setting and any running Clear, bumps the zone's
    /// generation and records the operation with the counts it must delete. Cost independent of object count.
    async fn start_clear(&self, id: &ZoneId, now: Timestamp) -> StoreResult<StartClearOutcome>;
    /// The zone's latest Clear, with current progress.
    async fn latest_clear(&self, id: &ZoneId) -> StoreResult<Option<ClearOperation>>;

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

/// The object index: which objects each zone stores, in which generation, where their bodies are.
#[async_trait]
pub trait ObjectIndex: Send + Sync + 'static {
    /// The zone's current generation, or `None` if there is no such zone.
    async fn current_generation(&self, zone: &ZoneId) -> StoreResult<Option<i64>>;
    /// Records objects, in one transaction, each only if its `generation` is still its zone's current
    /// one and the zone's reserve is on (checked in that same transaction, so a write racing `off` or a
    /// Clear is never recorded after either commits). Returns one outcome per entry, in order.
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
    /// is `blob` in that generation. Returns whether it was.
    async fn update_meta(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
        blob: &str,
        meta: &[u8],
    ) -> StoreResult<bool>;
    /// Records when objects were last read, in one transaction. Never moves a time backwards; entries
    /// gone meanwhile are skipped.
    async fn record_access(&self, accesses: &[Access]) -> StoreResult<()>;
    /// Forgets up to `limit` entries of current generations last read before `before`, least recently
    /// read first, adjusting the counts; returns them so their bodies can be deleted.
    async fn evict_idle(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<IndexEntry>>;

    /// Clears not yet completed, oldest first.
    async fn pending_clears(&self) -> StoreResult<Vec<PendingClear>>;
    /// The first `limit` bodies of the zone in generations below `below`, in (generation, key hash) order.
    async fn bodies_below(&self, zone: &ZoneId, below: i64, limit: u32) -> StoreResult<Vec<BodyRef>>;
    /// Forgets every entry of the zone in generations below `below`, in order up to and including `last`
    /// (a cursor from [`ObjectIndex::bodies_below`]), adjusting the per-generation counts. Generations
    /// below the current one receive no new entries, so this range is exactly the bodies listed up to
    /// `last`. Forgetting again is harmless.
    async fn forget_through(&self, zone: &ZoneId, below: i64, last: &BodyRef) -> StoreResult<()>;
    /// Marks a Clear completed, with `end_ts = now`. Idempotent.
    async fn complete_clear(&self, clear: &PendingClear, now: Timestamp) -> StoreResult<()>;
}
