//! Bodies on local disk, packed into append-only segment files: the reserve's local store.
//!
//! Each zone generation has its own segments, `{root}/{zone}/g{generation}/s{id:016x}.seg`, of about
//! [`AppendConfig::segment_bytes`] each; a body's location names its segment, offset and length
//! ([`format::RecordLocation`]). What this buys over a file per object:
//! - a hit is one positional read from an already open file, on the calling thread when the bytes are in
//!   the page cache ([`read`]);
//! - many bodies share one `fdatasync` ([`append`]);
//! - a Clear frees a generation by removing its directory: a cost per segment, not per object
//!   ([`BodyStore::drops_generations`]);
//! - a million small objects are a few dozen files, and start-up reads none of them.
//!
//! Deleted records stay in place until compaction copies a segment's live records elsewhere and removes
//! it. Bodies over [`format::MAX_BODY`] (which stream, and whose own file costs little next to their
//! size) and every body written before segments existed live one per file, in the same directories, through
//! [`ObjectBodies`]; both kinds of location are served.

pub mod append;
pub mod format;
pub mod map;
pub mod read;
pub mod recover;
pub mod scan;
mod sweep;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    io,
    ops::Range,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::{GetResult, MultipartUpload};

pub use append::AppendConfig;
use append::Appender;
use format::RecordLocation;
use read::Segments;

use super::{BodyError, BodyStore, ObjectBodies, Written};
use crate::domain::ZoneId;

const STORE: &str = "SegmentBodies";

fn io_error(e: io::Error) -> BodyError {
    BodyError::Generic { store: STORE, source: Box::new(e) }
}

/// Default [`AppendConfig::segment_bytes`]: 64 MiB (a million 4 KiB bodies fill about 65 segments).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Bodies under one directory; see the module docs.
pub struct SegmentBodies {
    root: PathBuf,
    files: ObjectBodies,
    config: AppendConfig,
    appenders: Mutex<HashMap<(ZoneId, i64), Arc<Appender>>>,
    segments: Segments,
    /// Record bytes (headers included) this process deleted per zone generation since compaction last
    /// looked: a hint of how much there is to reclaim.
    dead_bytes: Mutex<HashMap<(ZoneId, i64), u64>>,
}

impl SegmentBodies {
    /// Bodies under `root`, which must exist.
    pub fn open(root: &Path, config: AppendConfig) -> Result<Self, BodyError> {
        let files = ObjectBodies::local(root)?;
        let root = std::fs::canonicalize(root).map_err(io_error)?;
        Ok(Self {
            segments: Segments::new(&root, config.mapped_reads),
            root,
            files,
            config,
            appenders: Mutex::default(),
            dead_bytes: Mutex::default(),
        })
    }

    /// The zone generations that have a directory here.
    pub fn generations(&self) -> io::Result<Vec<(ZoneId, i64)>> {
        let mut out = Vec::new();
        for zone in read_dir_or_empty(&self.root)? {
            let Some(id) = zone.file_name().to_str().and_then(|z| ZoneId::parse(z).ok()) else { continue };
            for generation in read_dir_or_empty(&zone.path())? {
                if let Some(g) = generation.file_name().to_str().and_then(|n| n.strip_prefix('g')?.parse().ok()) {
                    out.push((id.clone(), g));
                }
            }
        }
        Ok(out)
    }

    /// The segments of a zone generation: (id, bytes).
    pub fn segments_of(&self, zone: &ZoneId, generation: i64) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for entry in read_dir_or_empty(&self.generation_dir(zone, generation))? {
            if let Some(id) = entry.file_name().to_str().and_then(format::parse_segment_file_name) {
                match entry.metadata() {
                    Ok(m) => out.push((id, m.len())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Record bytes this process deleted in the zone generation since [`SegmentBodies::reset_dead_bytes`].
    pub fn dead_bytes(&self, zone: &ZoneId, generation: i64) -> u64 {
        self.dead_bytes.lock().expect("dead bytes").get(&(zone.clone(), generation)).copied().unwrap_or(0)
    }

    /// Starts counting [`SegmentBodies::dead_bytes`] afresh (compaction has just looked).
    pub fn reset_dead_bytes(&self, zone: &ZoneId, generation: i64) {
        self.dead_bytes.lock().expect("dead bytes").remove(&(zone.clone(), generation));
    }

    /// Locks a segment for compaction: `None` while any process writes it or holds a body placed in it
    /// that is not yet recorded or given up. Keep the file until the segment is removed.
    pub fn lock_for_compaction(
        &self,
        zone: &ZoneId,
        generation: i64,
        segment: u64,
    ) -> io::Result<Option<std::fs::File>> {
        let path = self.generation_dir(zone, generation).join(format::segment_file_name(segment));
        let file = match std::fs::File::options().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match append::lock(&file) {
            Ok(()) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a segment whose live records were all copied elsewhere (readers that have it open finish
    /// from the unlinked file).
    pub fn remove_segment(&self, zone: &ZoneId, generation: i64, segment: u64) -> io::Result<()> {
        self.segments.close(zone, generation, segment);
        let dir = self.generation_dir(zone, generation);
        for name in [format::segment_file_name(segment), format::dead_file_name(segment)] {
            match std::fs::remove_file(dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The segment a location names, if it is a record of this zone generation.
    pub fn segment_of(location: &str) -> Option<(u64, u64)> {
        RecordLocation::parse(location).map(|l| (l.segment, l.len))
    }

    fn generation_dir(&self, zone: &ZoneId, generation: i64) -> PathBuf {
        self.root.join(zone.as_str()).join(format!("g{generation}"))
    }

    /// Reads that went to the blocking pool (not wholly in the page cache), since opening.
    pub fn pool_reads(&self) -> u64 {
        self.segments.pool_reads()
    }

    fn appender(&self, zone: &ZoneId, generation: i64) -> Arc<Appender> {
        let mut appenders = self.appenders.lock().expect("appenders");
        appenders
            .entry((zone.clone(), generation))
            .or_insert_with(|| Arc::new(Appender::new(&self.root, zone, generation, self.config.clone())))
            .clone()
    }
}

/// Where a segment-stored body lies on disk, for tools and tests: the segment file, the byte offset of the
/// body in it, and its length. `None` for a location that is not a segment record.
pub fn body_region(root: &Path, location: &str) -> Option<(PathBuf, u64, u64)> {
    let loc = RecordLocation::parse(location)?;
    let file = root.join(loc.zone.as_str()).join(format!("g{}", loc.generation)).join(loc.file_name());
    Some((file, loc.offset + format::HEADER_LEN as u64, loc.len))
}

#[async_trait]
impl BodyStore for SegmentBodies {
    async fn put(&self, zone: &ZoneId, generation: i64, key_hash: &str, body: Bytes) -> Result<Written, BodyError> {
        if body.len() as u64 > format::MAX_BODY {
            return self.files.put(zone, generation, key_hash, body).await;
        }
        let (location, hold) = self.appender(zone, generation).append(key_hash, body).await.map_err(io_error)?;
        Ok(Written { location: location.to_string(), hold: Some(hold) })
    }

    async fn put_multipart(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
    ) -> Result<(String, Box<dyn MultipartUpload>), BodyError> {
        self.files.put_multipart(zone, generation, key_hash).await
    }

    async fn open(&self, location: &str) -> Result<Option<GetResult>, BodyError> {
        let Some(loc) = RecordLocation::parse(location) else { return self.files.open(location).await };
        let Some(body) = self.segments.read(&loc).await.map_err(io_error)? else { return Ok(None) };
        let size = body.len() as u64;
        Ok(Some(super::in_memory_result(body, 0..size, size)))
    }

    async fn open_range(&self, location: &str, range: Range<u64>) -> Result<Option<GetResult>, BodyError> {
        let Some(loc) = RecordLocation::parse(location) else { return self.files.open_range(location, range).await };
        let Some(body) = self.segments.read(&loc).await.map_err(io_error)? else { return Ok(None) };
        let size = body.len() as u64;
        if range.start > range.end || range.end > size {
            return Err(object_store::Error::Generic {
                store: "SegmentBodies",
                source: format!("range {range:?} is outside a body of {size} bytes").into(),
            });
        }
        let part = body.slice(range.start as usize..range.end as usize);
        Ok(Some(super::in_memory_result(part, range, size)))
    }

    async fn delete_many(&self, locations: Vec<String>) -> Result<(), BodyError> {
        let mut files = Vec::new();
        let mut records: HashMap<(ZoneId, i64, u64), Vec<u64>> = HashMap::new();
        let mut freed: HashMap<(ZoneId, i64), u64> = HashMap::new();
        for l in locations {
            match RecordLocation::parse(&l) {
                Some(r) => {
                    *freed.entry((r.zone.clone(), r.generation)).or_default() += format::HEADER_LEN as u64 + r.len;
                    records.entry((r.zone, r.generation, r.segment)).or_default().push(r.offset);
                }
                None => files.push(l),
            }
        }
        if !records.is_empty() {
            for ((zone, generation, segment), offsets) in &records {
                self.segments.forget(zone, *generation, *segment, offsets);
            }
            {
                let mut dead_bytes = self.dead_bytes.lock().expect("dead bytes");
                for (key, bytes) in freed {
                    *dead_bytes.entry(key).or_default() += bytes;
                }
            }
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || mark_dead(&root, records))
                .await
                .map_err(|e| io_error(io::Error::other(e)))?
                .map_err(io_error)?;
        }
        self.files.delete_many(files).await
    }

    fn drops_generations(&self) -> bool {
        true
    }

    async fn sweep_below(&self, zone: &ZoneId, below: i64) -> Result<u64, BodyError> {
        self.appenders.lock().expect("appenders").retain(|(z, g), _| z != zone || *g >= below);
        self.segments.close_below(zone, below);
        let zone_dir = self.root.join(zone.as_str());
        tokio::task::spawn_blocking(move || sweep::remove_generations_below(&zone_dir, below))
            .await
            .map_err(|e| io_error(io::Error::other(e)))?
            .map_err(io_error)
    }

    async fn recover(&self, before: SystemTime) -> Result<u64, BodyError> {
        let staging = self.files.recover(before).await?;
        let root = self.root.clone();
        let recovered = tokio::task::spawn_blocking(move || recover::recover_all(&root))
            .await
            .map_err(|e| io_error(io::Error::other(e)))?
            .map_err(io_error)?;
        if recovered.sealed > 0 {
            tracing::info!(
                segments = recovered.sealed,
                torn_bytes = recovered.torn_bytes,
                "sealed the segments of writers a crash or restart stopped"
            );
        }
        Ok(staging + recovered.removed + recovered.sealed)
    }

    async fn count(&self, zone: Option<&ZoneId>) -> Result<u64, BodyError> {
        let dir = zone.map_or_else(|| self.root.clone(), |z| self.root.join(z.as_str()));
        tokio::task::spawn_blocking(move || count_under(&dir))
            .await
            .map_err(|e| io_error(io::Error::other(e)))?
            .map_err(io_error)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Appends deleted offsets to their segments' `.dead` files (segments already gone are skipped).
fn mark_dead(root: &Path, records: HashMap<(ZoneId, i64, u64), Vec<u64>>) -> io::Result<()> {
    use std::io::Write;
    for ((zone, generation, segment), offsets) in records {
        let dir = root.join(zone.as_str()).join(format!("g{generation}"));
        if !dir.join(format::segment_file_name(segment)).exists() {
            continue;
        }
        let bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let mut f =
            std::fs::File::options().append(true).create(true).open(dir.join(format::dead_file_name(segment)))?;
        // One write of whole 8-byte entries: appends of concurrent deleters never interleave inside one.
        f.write_all(&bytes)?;
    }
    Ok(())
}

/// Bodies stored under `dir`: live segment records plus one-file bodies (staging files not counted).
fn count_under(dir: &Path) -> io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            n += count_under(&entry.path())?;
        } else if format::parse_segment_file_name(&name).is_some() {
            match read::live_records(&entry.path()) {
                Ok(live) => n += live,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else if !(name.ends_with(".dead") || name.ends_with(".new") || super::local::is_staging_name(&name)) {
            n += 1;
        }
    }
    Ok(n)
}
