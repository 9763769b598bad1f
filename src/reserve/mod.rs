//! The reserve: a zone's persistent objects. Bodies go to an object store under a path that names the
//! zone's generation; the index makes an object visible only once its body is durable, and only while its
//! generation is the zone's current one.

pub mod layout;

use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

use crate::{
    domain::{Timestamp, ZoneId},
    storage::{IndexEntry, ObjectIndex, RecordOutcome, StoreError, Usage},
};

/// What went wrong in the reserve.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("object index failed")]
    Index(#[from] StoreError),
    #[error("object store failed")]
    Blob(#[from] object_store::Error),
    #[error("no such zone")]
    NoZone,
}

/// Outcome of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored and visible.
    Stored,
    /// A Clear started while the body was being written: the object was discarded, as if written before it.
    Superseded,
}

/// An object read back from the reserve.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub meta: Vec<u8>,
    pub body: Bytes,
    pub stored_on: Timestamp,
}

/// Objects of zones, over an index and an object store.
#[derive(Clone)]
pub struct Reserve {
    index: Arc<dyn ObjectIndex>,
    blobs: Arc<dyn ObjectStore>,
}

impl Reserve {
    pub fn new(index: Arc<dyn ObjectIndex>, blobs: Arc<dyn ObjectStore>) -> Self {
        Self { index, blobs }
    }

    /// Stores `body` under `key` for the zone, replacing any object of that key.
    ///
    /// The body is written (and fsynced, on local disk) before the index records it, so a crash never
    /// leaves a visible partial object; a crash in between leaves an unindexed body that the next Clear's
    /// sweep removes.
    pub async fn put(&self, zone: &ZoneId, key: &str, meta: Vec<u8>, body: Bytes) -> Result<PutOutcome, ReserveError> {
        let generation = self.index.current_generation(zone).await?.ok_or(ReserveError::NoZone)?;
        let key_hash = layout::key_hash(key);
        let blob = layout::blob_path(zone, generation, &key_hash);
        let size = body.len() as u64;
        self.blobs.put(&blob, PutPayload::from_bytes(body)).await?;
        let entry = IndexEntry {
            zone_id: zone.clone(),
            generation,
            key_hash,
            key: key.to_owned(),
            blob: blob.to_string(),
            size,
            meta,
            stored_on: Timestamp::now(),
        };
        match self.index.record(&entry).await {
            Ok(RecordOutcome::Recorded { replaced_blob }) => {
                if let Some(old) = replaced_blob {
                    self.delete_blob(&Path::from(old)).await;
                }
                Ok(PutOutcome::Stored)
            }
            Ok(RecordOutcome::Superseded) => {
                self.delete_blob(&blob).await;
                Ok(PutOutcome::Superseded)
            }
            Ok(RecordOutcome::NoZone) => {
                self.delete_blob(&blob).await;
                Err(ReserveError::NoZone)
            }
            Err(e) => {
                self.delete_blob(&blob).await;
                Err(e.into())
            }
        }
    }

    /// The object stored under `key` in the zone's current generation.
    pub async fn get(&self, zone: &ZoneId, key: &str) -> Result<Option<StoredObject>, ReserveError> {
        let Some(entry) = self.index.lookup(zone, &layout::key_hash(key)).await? else {
            return Ok(None);
        };
        if entry.key != key {
            // A SHA-256 collision; never serve another key's body.
            return Ok(None);
        }
        match self.blobs.get(&Path::from(entry.blob.as_str())).await {
            Ok(r) => Ok(Some(StoredObject { meta: entry.meta, body: r.bytes().await?, stored_on: entry.stored_on })),
            // Replaced or cleared between the lookup and the read: a miss.
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object stored under `key`, if any. Returns whether there was one.
    pub async fn delete(&self, zone: &ZoneId, key: &str) -> Result<bool, ReserveError> {
        match self.index.remove(zone, &layout::key_hash(key)).await? {
            Some(entry) => {
                self.delete_blob(&Path::from(entry.blob)).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Objects and bytes the zone stores now (older generations awaiting reclaim are not counted).
    pub async fn usage(&self, zone: &ZoneId) -> Result<Usage, ReserveError> {
        Ok(self.index.usage(zone).await?)
    }

    /// Best-effort delete of a body no index entry points to; a leftover is swept by the next Clear.
    async fn delete_blob(&self, path: &Path) {
        match self.blobs.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "could not delete an unreferenced body")
            }
        }
    }
}

#[cfg(test)]
mod tests;
