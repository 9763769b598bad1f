//! Reserve metadata in memory: which objects the reserve holds and their decoded cache policies, so a
//! reserve hit reads only the body, not the index. Bounded by bytes (an estimate per entry).
//!
//! Entries are hints that can only fail towards a miss: one from an older generation is ignored (a Clear
//! started since), and one whose body is gone (replaced, evicted) is dropped when the read finds nothing.
//! This process's own writes and metadata refreshes drop the key, so the next read takes the index's word.

use std::sync::Arc;

use moka::sync::Cache;

use crate::{domain::Zone, http_cache::StoredResponse, storage::IndexEntry};

/// Bytes charged per entry beyond its key and stored metadata (decoded headers, bookkeeping).
const ENTRY_OVERHEAD: usize = 512;

/// A reserve object known to exist.
pub struct Known {
    /// Its index entry, without the encoded metadata (the decoded response is beside it).
    pub entry: IndexEntry,
    pub stored: Arc<StoredResponse>,
    /// Size of the encoded metadata, for the weight.
    pub meta_len: usize,
}

impl Known {
    /// From an index entry and its decoded stored response.
    pub fn new(mut entry: IndexEntry, stored: Arc<StoredResponse>) -> Self {
        let meta_len = entry.meta.len();
        entry.meta = Vec::new();
        Self { entry, stored, meta_len }
    }
}

#[derive(Clone)]
pub struct IndexCache {
    cache: Cache<String, Arc<Known>>,
}

impl IndexCache {
    pub fn new(capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &String, k: &Arc<Known>| {
                // The decoded response takes about twice its encoded size.
                u32::try_from(2 * key.len() + k.entry.blob.len() + 2 * k.meta_len + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .build();
        Self { cache }
    }

    /// What the reserve is known to hold for `key` in the zone's current generation.
    pub fn get(&self, zone: &Zone, key: &str) -> Option<Arc<Known>> {
        self.cache.get(key).filter(|k| k.entry.generation == zone.generation && k.entry.zone_id == zone.id)
    }

    pub fn insert(&self, key: &str, known: Known) -> Arc<Known> {
        let known = Arc::new(known);
        self.cache.insert(key.to_owned(), known.clone());
        known
    }

    pub fn forget(&self, key: &str) {
        self.cache.invalidate(key);
    }
}
