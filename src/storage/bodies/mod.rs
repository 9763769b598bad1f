//! Object bodies: the narrow interface the reserve and the jobs use ([`BodyStore`]), so that none of them
//! knows a path layout or a storage service; its implementation on local disk, append-only segments
//! ([`segment::SegmentBodies`], with large bodies one file each through [`local::LocalBodies`]); and on
//! S3-compatible storage, one object per body over object_store ([`s3::open`]).
//!
//! A body is written once under a location of its own (a new one per write), so a replaced or superseded
//! body can be deleted without touching the one that replaced it; the location names the zone's generation,
//! so a Clear's leftovers are found by generation without the index ([`BodyStore::sweep_below`]).

mod layout;
pub mod local;
pub mod s3;
pub mod segment;

use std::{fmt, ops::Range, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::{GetOptions, GetResult, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, path::Path};

use crate::domain::ZoneId;

/// What went wrong in a body store (object_store's error: `NotFound`, or a failure of the disk or the
/// service after its own retries).
pub type BodyError = object_store::Error;

/// A body just written: where it is, and what keeps it safe until its location is recorded.
pub struct Written {
    /// The location to record in the index.
    pub location: String,
    /// Held until the location is recorded in the index or given up: a segment store does not compact
    /// or recover the segment holding the body meanwhile. Drop it then.
    pub hold: Option<Arc<dyn Send + Sync>>,
}

impl Written {
    /// A body that needs no hold (one object, one file).
    pub fn at(location: String) -> Self {
        Self { location, hold: None }
    }
}

/// Where the reserve keeps object bodies.
#[async_trait]
pub trait BodyStore: Send + Sync + 'static {
    /// Writes a whole body of `key_hash` for the zone's `generation`, at a new location (every write gets
    /// one of its own): when it returns, the body is durable and complete, and before, nothing is visible
    /// (one `PUT` on S3; on disk, an append to a segment and its `fdatasync`, or a staged, fsynced and
    /// renamed file).
    async fn put(&self, zone: &ZoneId, generation: i64, key_hash: &str, body: Bytes) -> Result<Written, BodyError>;
    /// Starts a streamed write of a large body at a new location (S3 multipart upload, or a staged file);
    /// nothing is visible until it completes.
    async fn put_multipart(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
    ) -> Result<(String, Box<dyn MultipartUpload>), BodyError>;
    /// Opens a body for reading; `None` when there is none at `location`.
    async fn open(&self, location: &str) -> Result<Option<GetResult>, BodyError>;
    /// Opens bytes `range` of a body, which must lie within it (a range request answered from the
    /// reserve, RFC 9110 §14): S3 gets only those bytes (a ranged `GET`), a file is read from the range's
    /// start; a record in a segment (bodies up to 1 MiB) is read whole, so that its CRC-32C is checked, and
    /// sliced. The result's `meta.size` is the whole body's, its `range` the one read. `None` when there is
    /// no body at `location`.
    async fn open_range(&self, location: &str, range: Range<u64>) -> Result<Option<GetResult>, BodyError>;
    /// Deletes bodies (S3: `DeleteObjects`, 1,000 keys a request, 20 requests in flight); one already gone
    /// counts as deleted. Fails with the first body that could not be deleted.
    async fn delete_many(&self, locations: Vec<String>) -> Result<(), BodyError>;
    /// How many bodies a reclaim batch should hand [`BodyStore::delete_many`] at once, to keep the store
    /// busy: on disk 1,000 (64 unlinks per blocking task, 8 tasks at once); on S3 20,000 (20 `DeleteObjects`
    /// requests of 1,000 keys in flight).
    fn preferred_delete_batch(&self) -> u32 {
        1000
    }
    /// Whether [`BodyStore::sweep_below`] frees every body of the generations below at once, whether
    /// indexed or not, so that a Clear's reclaim need not delete them one by one (a segment store drops
    /// whole segment files).
    fn drops_generations(&self) -> bool {
        false
    }
    /// Deletes every body the zone has in generations below `below`: once a Clear has forgotten its
    /// index entries, what is left there was never indexed (a write a crash cut short); with
    /// [`BodyStore::drops_generations`], everything there. Returns how many files or objects it removed.
    async fn sweep_below(&self, zone: &ZoneId, below: i64) -> Result<u64, BodyError>;
    /// Removes what writes cut short by a crash left behind, if this store can leave anything (partial
    /// files on disk; on S3 an abandoned multipart upload is invisible and the bucket's lifecycle rule
    /// removes it). Only what was written before `before`, so it may run while new writes do. Returns how
    /// many were removed.
    async fn recover(&self, before: SystemTime) -> Result<u64, BodyError>;
    /// Bodies stored for the zone (all zones when `None`), by listing: for tests and tools, not hot paths.
    async fn count(&self, zone: Option<&ZoneId>) -> Result<u64, BodyError>;
    /// Where the bodies are, for logs and errors: `/var/lib/x/objects`, `s3://bucket/prefix`.
    fn describe(&self) -> String;
}

/// A [`BodyStore`] over an object_store backend.
pub struct ObjectBodies {
    store: Arc<dyn ObjectStore>,
    /// Set on local disk: where partial files are cleaned up.
    local: Option<local::LocalBodies>,
    description: String,
}

impl fmt::Debug for ObjectBodies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectBodies({})", self.description)
    }
}

impl ObjectBodies {
    /// Bodies under the directory `root`, which must exist; writes are fsynced before they return.
    pub fn local(root: &std::path::Path) -> Result<Self, BodyError> {
        let local = local::LocalBodies::new(root)?;
        Ok(Self { store: Arc::new(local.clone()), local: Some(local), description: root.display().to_string() })
    }

    /// Bodies in any object_store backend (S3; object_store's `InMemory` in tests).
    pub fn remote(store: Arc<dyn ObjectStore>, description: String) -> Self {
        Self { store, local: None, description }
    }

    /// The object store underneath, for tools and tests that read or damage a body in place.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

#[async_trait]
impl BodyStore for ObjectBodies {
    async fn put(&self, zone: &ZoneId, generation: i64, key_hash: &str, body: Bytes) -> Result<Written, BodyError> {
        let location = layout::blob_path(zone, generation, key_hash);
        self.store.put(&location, PutPayload::from_bytes(body)).await?;
        Ok(Written::at(location.to_string()))
    }

    async fn put_multipart(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
    ) -> Result<(String, Box<dyn MultipartUpload>), BodyError> {
        let location = layout::blob_path(zone, generation, key_hash);
        let upload = self.store.put_multipart(&location).await?;
        Ok((location.to_string(), upload))
    }

    async fn open(&self, location: &str) -> Result<Option<GetResult>, BodyError> {
        match self.store.get(&Path::from(location)).await {
            Ok(r) => Ok(Some(r)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn open_range(&self, location: &str, range: Range<u64>) -> Result<Option<GetResult>, BodyError> {
        let options = GetOptions { range: Some(range.into()), ..Default::default() };
        match self.store.get_opts(&Path::from(location), options).await {
            Ok(r) => Ok(Some(r)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete_many(&self, locations: Vec<String>) -> Result<(), BodyError> {
        if locations.is_empty() {
            return Ok(());
        }
        let paths = stream::iter(locations.into_iter().map(|l| Ok(Path::from(l)))).boxed();
        let mut results = self.store.delete_stream(paths);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn preferred_delete_batch(&self) -> u32 {
        if self.local.is_some() { 1000 } else { 20_000 }
    }

    async fn sweep_below(&self, zone: &ZoneId, below: i64) -> Result<u64, BodyError> {
        let listing = self.store.list_with_delimiter(Some(&layout::zone_prefix(zone))).await?;
        let mut deleted = 0;
        for generation_dir in listing.common_prefixes {
            let cleared =
                generation_dir.filename().and_then(layout::parse_generation_segment).is_some_and(|g| g < below);
            if !cleared {
                continue;
            }
            let leftovers: Vec<String> =
                self.store.list(Some(&generation_dir)).map_ok(|m| m.location.to_string()).try_collect().await?;
            deleted += leftovers.len() as u64;
            self.delete_many(leftovers).await?;
        }
        Ok(deleted)
    }

    async fn recover(&self, before: SystemTime) -> Result<u64, BodyError> {
        let Some(local) = self.local.clone() else { return Ok(0) };
        let removed = tokio::task::spawn_blocking(move || local.remove_staging_files(before))
            .await
            .map_err(|e| object_store::Error::Generic { store: "LocalBodies", source: Box::new(e) })?
            .map_err(|e| object_store::Error::Generic { store: "LocalBodies", source: Box::new(e) })?;
        Ok(removed as u64)
    }

    async fn count(&self, zone: Option<&ZoneId>) -> Result<u64, BodyError> {
        let prefix = zone.map(layout::zone_prefix);
        self.store.list(prefix.as_ref()).try_fold(0, |n, _| async move { Ok(n + 1) }).await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Bytes already in memory as object_store's result: `body` is bytes `range` of a body of `size` (a segment
/// record read, or nothing read at all for a range past the end).
pub fn in_memory_result(body: Bytes, range: Range<u64>, size: u64) -> GetResult {
    let meta = object_store::ObjectMeta {
        // Not an object path, and no reader looks at it: not built per hit.
        location: Path::default(),
        last_modified: Default::default(),
        size,
        e_tag: None,
        version: None,
    };
    GetResult {
        payload: object_store::GetResultPayload::Stream(stream::once(async move { Ok(body) }).boxed()),
        meta,
        range,
        attributes: Default::default(),
        extensions: Default::default(),
    }
}
