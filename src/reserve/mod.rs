//! The reserve: a zone's persistent objects. Bodies go to a body store under a location that names the
//! zone's generation; the index makes an object visible only once its body is durable, and only while its
//! generation is the zone's current one.

mod group;
mod health;
mod upload;

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use group::GroupCommit;
use object_store::GetResult;
use sha2::{Digest, Sha256};

pub use health::Health;
pub use upload::{Upload, memory_bound as upload_memory_bound};

use crate::{
    domain::{Timestamp, ZoneId},
    storage::{
        Access, IndexEntry, ObjectIndex, RecordOutcome, StoreError, Usage,
        bodies::{BodyStore, Written},
        open::Stores,
    },
};

/// SHA-256 of a cache key, hex: the index's key for an object.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What went wrong in the reserve.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("object index failed")]
    Index(#[from] StoreError),
    #[error("body store failed")]
    Blob(#[from] object_store::Error),
    #[error("no such zone")]
    NoZone,
    #[error("body ended after {got} of {expected} bytes")]
    Incomplete { expected: u64, got: u64 },
    #[error("recording the write failed (see the log)")]
    BatchFailed,
}

/// Outcome of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored and visible.
    Stored,
    /// A Clear started while the body was being written: the object was discarded, as if written before it.
    Superseded,
    /// The zone's reserve was switched off while the body was being written: the object was discarded.
    ReserveOff,
    /// A purge or invalidation of the zone committed after the filling request began: the object was
    /// discarded (it may predate the purge).
    Purged,
    /// The zone disappeared while the body was being written (reported as [`ReserveError::NoZone`]).
    NoZone,
}

/// One object to store.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub key: String,
    pub meta: Vec<u8>,
    pub body: Bytes,
    /// See [`IndexEntry::fill_revision`]; 0 for an object from before any purge of its zone.
    pub fill_revision: i64,
}

/// Bodies written at once by [`Reserve::put_many`].
const WRITE_CONCURRENCY: usize = 16;

/// An object read back from the reserve.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub meta: Vec<u8>,
    pub body: Bytes,
    pub stored_on: Timestamp,
}

impl ReserveError {
    /// A backend could not be reached (as opposed to a missing zone or a short body).
    fn is_outage(&self) -> bool {
        match self {
            ReserveError::Index(StoreError::Unavailable(_)) => true,
            ReserveError::Blob(object_store::Error::NotFound { .. }) => false,
            ReserveError::Blob(_) => true,
            _ => false,
        }
    }
}

/// Objects of zones, over an index and a body store.
#[derive(Clone)]
pub struct Reserve {
    index: Arc<dyn ObjectIndex>,
    bodies: Arc<dyn BodyStore>,
    group: Arc<GroupCommit>,
    health: Arc<Health>,
}

impl Reserve {
    pub fn new(index: Arc<dyn ObjectIndex>, bodies: Arc<dyn BodyStore>) -> Self {
        Self { index, bodies, group: Arc::default(), health: Arc::default() }
    }

    /// The reserve over opened backends.
    pub fn over(stores: &Stores) -> Self {
        Self::new(stores.index(), stores.bodies.clone())
    }

    /// Whether to use the reserve now: `false` for a short while after a backend failed as unreachable,
    /// so that during an outage requests go to the origin at once instead of each waiting out timeouts.
    pub fn available(&self) -> bool {
        self.health.available()
    }

    /// Notes a body store failure for [`Reserve::available`].
    fn observe_blob(&self, e: object_store::Error) -> ReserveError {
        let e = ReserveError::Blob(e);
        if e.is_outage() {
            self.health.failed();
        }
        e
    }

    /// Notes the outcome of an operation for [`Reserve::available`].
    fn observe<T>(&self, r: Result<T, ReserveError>) -> Result<T, ReserveError> {
        if let Err(e) = &r
            && e.is_outage()
        {
            self.health.failed();
        }
        r
    }

    /// Stores `body` under `key` for the zone, replacing any object of that key.
    ///
    /// The body is written (and fsynced, on local disk) before the index records it, so a crash never
    /// leaves a visible partial object; a crash in between leaves an unindexed body that the next Clear's
    /// sweep removes.
    pub async fn put(&self, zone: &ZoneId, key: &str, meta: Vec<u8>, body: Bytes) -> Result<PutOutcome, ReserveError> {
        let object = NewObject { key: key.to_owned(), meta, body, fill_revision: 0 };
        Ok(self.put_many(zone, vec![object]).await?.remove(0))
    }

    /// Stores several objects of one zone: bodies written concurrently, then recorded in one index
    /// transaction (one commit for the lot). Same guarantees as [`Reserve::put`]; outcomes in order.
    pub async fn put_many(&self, zone: &ZoneId, objects: Vec<NewObject>) -> Result<Vec<PutOutcome>, ReserveError> {
        let r = self.put_many_unobserved(zone, objects).await;
        self.observe(r)
    }

    async fn put_many_unobserved(
        &self,
        zone: &ZoneId,
        objects: Vec<NewObject>,
    ) -> Result<Vec<PutOutcome>, ReserveError> {
        let generation = self.index.current_generation(zone).await?.ok_or(ReserveError::NoZone)?;
        let written: Vec<Result<(IndexEntry, Written), object_store::Error>> = stream::iter(objects)
            .map(|o| async move {
                let key_hash = key_hash(&o.key);
                let size = o.body.len() as u64;
                let written = self.bodies.put(zone, generation, &key_hash, o.body).await?;
                let entry = IndexEntry {
                    zone_id: zone.clone(),
                    generation,
                    key_hash,
                    key: o.key,
                    blob: written.location.clone(),
                    size,
                    meta: o.meta,
                    stored_on: Timestamp::now(),
                    fill_revision: o.fill_revision,
                    invalidation: None,
                };
                Ok((entry, written))
            })
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let (done, failures): (Vec<_>, Vec<_>) = written.into_iter().partition(Result::is_ok);
        // The holds keep the bodies' segments as they are until the index has recorded them.
        let (entries, _holds): (Vec<IndexEntry>, Vec<Written>) = done.into_iter().filter_map(Result::ok).unzip();
        if let Some(Err(e)) = failures.into_iter().next() {
            self.delete_blobs(entries.iter().map(|e| e.blob.as_str())).await;
            return Err(e.into());
        }
        self.record(&entries).await
    }

    /// Records entries whose bodies are durable (one transaction), and deletes every body no entry points to
    /// afterwards: those replaced, and those not recorded because a Clear, `off` or the zone's removal
    /// overtook the write. A missing zone is an error.
    async fn record(&self, entries: &[IndexEntry]) -> Result<Vec<PutOutcome>, ReserveError> {
        let result = self.record_each(entries).await?;
        if result.contains(&PutOutcome::NoZone) {
            return Err(ReserveError::NoZone);
        }
        Ok(result)
    }

    /// [`Reserve::record`] with an outcome per entry, a missing zone included.
    async fn record_each(&self, entries: &[IndexEntry]) -> Result<Vec<PutOutcome>, ReserveError> {
        // On an error the commit may still have landed (the connection failed after it): the bodies are
        // kept, since an index entry may name them. If none does, the zone's next Clear sweeps them.
        let outcomes = self.index.record_batch(entries).await?;
        let mut unreferenced = Vec::new();
        let mut result = Vec::with_capacity(outcomes.len());
        for (entry, outcome) in entries.iter().zip(outcomes) {
            result.push(match outcome {
                RecordOutcome::Recorded { replaced_blob } => {
                    unreferenced.extend(replaced_blob);
                    PutOutcome::Stored
                }
                RecordOutcome::Superseded => {
                    unreferenced.push(entry.blob.clone());
                    PutOutcome::Superseded
                }
                RecordOutcome::ReserveOff => {
                    unreferenced.push(entry.blob.clone());
                    PutOutcome::ReserveOff
                }
                RecordOutcome::Purged => {
                    unreferenced.push(entry.blob.clone());
                    PutOutcome::Purged
                }
                RecordOutcome::NoZone => {
                    unreferenced.push(entry.blob.clone());
                    PutOutcome::NoZone
                }
            });
        }
        self.delete_blobs(unreferenced.iter().map(String::as_str)).await;
        Ok(result)
    }

    /// Starts a streamed write of `key` into generation `generation` of the zone, filled under zone
    /// revision `fill_revision` (see [`Upload`]).
    pub async fn begin_upload(
        &self,
        zone: &ZoneId,
        generation: i64,
        fill_revision: i64,
        key: &str,
        meta: Vec<u8>,
        size: u64,
    ) -> Result<Upload, ReserveError> {
        Upload::begin(self.clone(), zone, (generation, fill_revision), key, meta, size).await
    }

    /// The index entry of `key` in the zone's current generation, without reading the body.
    pub async fn find(&self, zone: &ZoneId, key: &str) -> Result<Option<IndexEntry>, ReserveError> {
        let entry = self.index.lookup(zone, &key_hash(key)).await.map_err(ReserveError::from);
        // A SHA-256 collision would name another key's body: never serve it.
        Ok(self.observe(entry)?.filter(|e| e.key == key))
    }

    /// Opens the body of a found entry. `None` if it is gone or is not the size the index recorded (lost or
    /// damaged outside our control, or replaced or cleared since it was found); the index entry is then
    /// removed if it still names that body, so the object becomes a plain miss everywhere.
    pub async fn open(&self, entry: &IndexEntry) -> Result<Option<GetResult>, ReserveError> {
        self.open_part(entry, None).await
    }

    /// Like [`Reserve::open`], for bytes `range` of the body only (within `entry.size`), or the whole body
    /// when `None`: a range request reads what it asks for ([`BodyStore::open_range`]).
    pub async fn open_part(
        &self,
        entry: &IndexEntry,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<GetResult>, ReserveError> {
        let opened = match range {
            Some(range) => match self.bodies.open_range(&entry.blob, range).await {
                Ok(opened) => Ok(opened),
                // A ranged read can fail because the body is shorter than recorded (S3's 416, a file cut
                // short): not an outage. A whole open tells: it heals a damaged entry (`None`), counts a real
                // outage, or finds the body sound, and then this read failed for a reason of its own.
                Err(ranged) => {
                    return match Box::pin(self.open_part(entry, None)).await? {
                        None => Ok(None),
                        Some(_) => Err(ReserveError::Blob(ranged)),
                    };
                }
            },
            None => self.bodies.open(&entry.blob).await,
        };
        let opened = opened.map_err(ReserveError::from);
        match self.observe(opened)? {
            Some(r) if r.meta.size == entry.size => Ok(Some(r)),
            Some(r) => {
                tracing::warn!(
                    blob = %entry.blob, recorded = entry.size, found = r.meta.size,
                    "a reserve body has the wrong size; dropping the object"
                );
                self.heal(entry).await?;
                Ok(None)
            }
            None => {
                self.heal(entry).await?;
                Ok(None)
            }
        }
    }

    /// Removes an index entry whose body was found missing or damaged (if the entry still names that body),
    /// and deletes what is left of the body.
    async fn heal(&self, entry: &IndexEntry) -> Result<(), ReserveError> {
        if self.index.remove_if_blob(&entry.zone_id, entry.generation, &entry.key_hash, &entry.blob).await? {
            tracing::warn!(blob = %entry.blob, "removed a reserve object whose body was missing or damaged");
            self.delete_blobs(std::iter::once(entry.blob.as_str())).await;
        }
        Ok(())
    }

    /// Replaces a stored object's metadata after a revalidation by a request that began at zone revision
    /// `fill_revision`. Returns its fill revision afterwards (not raised past a newer purge rule, see
    /// [`crate::storage::ObjectIndex::update_meta`]), or `None` if it was replaced meanwhile.
    pub async fn update_meta(
        &self,
        entry: &IndexEntry,
        meta: &[u8],
        fill_revision: i64,
    ) -> Result<Option<i64>, ReserveError> {
        let e = entry;
        Ok(self.index.update_meta(&e.zone_id, e.generation, &e.key_hash, &e.blob, meta, fill_revision).await?)
    }

    /// Records when objects were last read.
    pub async fn record_access(&self, accesses: &[Access]) -> Result<(), ReserveError> {
        Ok(self.index.record_access(accesses).await?)
    }

    /// Evicts up to `limit` objects not read since `before`, deleting their bodies. Returns them.
    pub async fn evict_idle(&self, before: Timestamp, limit: u32) -> Result<Vec<IndexEntry>, ReserveError> {
        let evicted = self.index.evict_idle(before, limit).await?;
        self.delete_blobs(evicted.iter().map(|e| e.blob.as_str())).await;
        Ok(evicted)
    }

    /// The object stored under `key` in the zone's current generation.
    pub async fn get(&self, zone: &ZoneId, key: &str) -> Result<Option<StoredObject>, ReserveError> {
        let Some(entry) = self.find(zone, key).await? else {
            return Ok(None);
        };
        match self.open(&entry).await? {
            Some(r) => Ok(Some(StoredObject { meta: entry.meta, body: r.bytes().await?, stored_on: entry.stored_on })),
            None => Ok(None),
        }
    }

    /// Deletes the object stored under `key`, if any; a lookup first, so that deleting what is not there
    /// costs no write. Returns whether there was one.
    pub async fn delete_if_present(&self, zone: &ZoneId, key: &str) -> Result<bool, ReserveError> {
        if self.find(zone, key).await?.is_none() {
            return Ok(false);
        }
        self.delete(zone, key).await
    }

    /// Deletes the object stored under `key`, if any. Returns whether there was one.
    pub async fn delete(&self, zone: &ZoneId, key: &str) -> Result<bool, ReserveError> {
        match self.index.remove(zone, &key_hash(key)).await? {
            Some(entry) => {
                self.delete_blobs(std::iter::once(entry.blob.as_str())).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Objects and bytes the zone stores now (older generations awaiting reclaim are not counted).
    pub async fn usage(&self, zone: &ZoneId) -> Result<Usage, ReserveError> {
        Ok(self.index.usage(zone).await?)
    }

    /// Best-effort delete of bodies no index entry points to; a leftover is swept by the next Clear.
    async fn delete_blobs<'a>(&self, paths: impl Iterator<Item = &'a str>) {
        let paths: Vec<String> = paths.map(str::to_owned).collect();
        if let Err(e) = self.bodies.delete_many(paths).await {
            tracing::warn!(error = %e, "could not delete an unreferenced body");
        }
    }
}

#[cfg(test)]
mod tests;
