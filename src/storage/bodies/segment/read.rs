//! Reading records: segments stay open (a bounded cache of file descriptors), and a read whose bytes are
//! in the page cache is done on the calling thread with `preadv2(RWF_NOWAIT)`; only one that would wait
//! for the disk (or a kernel without it) goes to the blocking pool, so a cold disk never stalls the
//! runtime and a warm one costs no hand-off.
//!
//! Deleted records stay in their segment until compaction; their offsets are appended to the segment's
//! `.dead` file (a hint, not synced), which readers in every process pick up, so a deleted body reads as
//! gone.

use std::{
    collections::HashSet,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::{fd::AsRawFd, unix::fs::FileExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};

use super::format::{HEADER_LEN, Header, Kind, RecordLocation, crc32c, dead_file_name, segment_file_name};
use super::map::Mapping;
use crate::domain::ZoneId;

/// Segments kept open at once.
const OPEN_SEGMENTS: u64 = 1024;

type SegmentKey = (ZoneId, i64, u64);

/// An open segment.
pub struct ReadSegment {
    file: File,
    dead_file: Option<File>,
    dead: Mutex<Dead>,
    /// The file mapped as far as it was long when last mapped (mapped reads only).
    map: std::sync::RwLock<Option<Arc<Mapping>>>,
    /// Offsets of records of at least [`VERIFIED_MIN`] bytes whose body checksum matched in a mapped read.
    verified: Mutex<HashSet<u64>>,
}

/// A mapped record this long or longer whose body checksum matched once is not checked again while its
/// segment stays open here: a record the index names is acknowledged, so complete and never rewritten
/// (a torn one never matches, and never gets here). Shorter ones are checked every time: their checksum
/// costs about what the look-up in the set does.
const VERIFIED_MIN: usize = 16 << 10;

/// What a mapped read found.
enum Mapped {
    /// Read (or found torn or damaged: `None`) from the mapping.
    Done(Option<Bytes>),
    /// Not all in the page cache: read it in the blocking pool.
    Cold,
    /// No mapping: read it with `pread`.
    Unmapped,
}

impl ReadSegment {
    /// Reads a record from the mapping, remapping once if the file has grown past it.
    fn read_mapped(&self, loc: &RecordLocation, total: usize) -> io::Result<Mapped> {
        let end = loc.offset.saturating_add(total as u64);
        let mut map = self.map.read().expect("segment map").clone();
        if map.as_ref().is_none_or(|m| m.mapped_len() < end) {
            let len = self.file.metadata()?.len();
            if len < end {
                return Ok(Mapped::Done(verify(BytesMut::new(), loc)));
            }
            map = Mapping::new(&self.file, len)?;
            *self.map.write().expect("segment map") = map.clone();
        }
        let Some(map) = map else { return Ok(Mapped::Unmapped) };
        if !map.resident(loc.offset, total) {
            return Ok(Mapped::Cold);
        }
        let header: &[u8; HEADER_LEN] = map.slice(loc.offset, HEADER_LEN).try_into().expect("header length");
        let body_at = loc.offset + HEADER_LEN as u64;
        let len = total - HEADER_LEN;
        let known = len >= VERIFIED_MIN && self.verified.lock().expect("verified offsets").contains(&loc.offset);
        let ok = Header::decode(header).is_ok_and(|h| {
            h.kind == Kind::Body && h.body_len == loc.len && (known || h.body_crc == crc32c(map.slice(body_at, len)))
        });
        if ok && !known && len >= VERIFIED_MIN {
            self.verified.lock().expect("verified offsets").insert(loc.offset);
        }
        if !ok {
            tracing::warn!(location = %loc, "a reserve record is torn or damaged; not serving it");
            return Ok(Mapped::Done(None));
        }
        Ok(Mapped::Done(Some(map.bytes(body_at, len))))
    }
}

/// Offsets deleted in a segment, as far as its `.dead` file has been read.
#[derive(Default)]
struct Dead {
    offsets: HashSet<u64>,
    read: u64,
}

impl ReadSegment {
    /// Whether the record at `offset` was deleted (re-reading the `.dead` file when it grew).
    fn is_dead(&self, offset: u64) -> io::Result<bool> {
        let mut dead = self.dead.lock().expect("dead offsets");
        if let Some(f) = &self.dead_file {
            let len = f.metadata()?.len();
            if len > dead.read {
                let mut buf = vec![0u8; (len - dead.read) as usize];
                f.read_exact_at(&mut buf, dead.read)?;
                let whole = buf.len() / 8 * 8;
                dead.offsets.extend(buf[..whole].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))));
                dead.read += whole as u64;
            }
        }
        Ok(dead.offsets.contains(&offset))
    }

    /// Notes offsets this process deleted.
    pub fn forget(&self, offsets: &[u64]) {
        self.dead.lock().expect("dead offsets").offsets.extend(offsets);
    }
}

/// The open segments of a store.
pub struct Segments {
    root: PathBuf,
    open: moka::sync::Cache<SegmentKey, Arc<ReadSegment>>,
    /// Cleared when the kernel or file system refuses `RWF_NOWAIT`: every read then goes to the pool.
    nowait: AtomicBool,
    /// Reads that went to the blocking pool (the bytes were not all in the page cache).
    pool_reads: AtomicU64,
    /// Whether reads hand out the page cache's pages through a mapping ([`super::map`]).
    mapped: bool,
}

impl Segments {
    pub fn new(root: &Path, mapped: bool) -> Self {
        Self {
            root: root.to_owned(),
            open: moka::sync::Cache::builder().max_capacity(OPEN_SEGMENTS).support_invalidation_closures().build(),
            nowait: AtomicBool::new(true),
            pool_reads: AtomicU64::new(0),
            mapped,
        }
    }

    /// The open segment of a record; `None` if its file is gone.
    async fn segment(&self, loc: &RecordLocation) -> io::Result<Option<Arc<ReadSegment>>> {
        let key = (loc.zone.clone(), loc.generation, loc.segment);
        if let Some(s) = self.open.get(&key) {
            return Ok(Some(s));
        }
        let dir = self.root.join(loc.zone.as_str()).join(format!("g{}", loc.generation));
        let segment = loc.segment;
        let opened =
            tokio::task::spawn_blocking(move || open_segment(&dir, segment)).await.map_err(io::Error::other)??;
        Ok(opened.map(|s| {
            let s = Arc::new(s);
            self.open.insert(key, s.clone());
            s
        }))
    }

    /// Reads a record's body: `None` when the segment is gone, the record was deleted, or it does not check
    /// out (torn, damaged, not the length the location says).
    pub async fn read(&self, loc: &RecordLocation) -> io::Result<Option<Bytes>> {
        if loc.len > super::format::MAX_BODY || loc.offset > i64::MAX as u64 / 2 {
            return Ok(None); // No record is that long or that far: a location this store never wrote.
        }
        let Some(segment) = self.segment(loc).await? else { return Ok(None) };
        if segment.is_dead(loc.offset)? {
            return Ok(None);
        }
        let total = HEADER_LEN + usize::try_from(loc.len).map_err(io::Error::other)?;
        let mut cold = false;
        if self.mapped {
            match segment.read_mapped(loc, total)? {
                Mapped::Done(body) => return Ok(body),
                Mapped::Cold => cold = true,
                Mapped::Unmapped => {}
            }
        }
        if !cold && self.nowait.load(Ordering::Relaxed) {
            match read_nowait(&segment.file, loc.offset, total) {
                Nowait::Done(buf) => return Ok(verify(buf, loc)),
                Nowait::WouldBlock => {}
                Nowait::Unsupported => {
                    tracing::info!("preadv2(RWF_NOWAIT) is not supported here; reserve reads use the blocking pool");
                    self.nowait.store(false, Ordering::Relaxed);
                }
                Nowait::Failed(e) => return Err(e),
            }
        }
        self.pool_reads.fetch_add(1, Ordering::Relaxed);
        let (offset, loc) = (loc.offset, loc.clone());
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(total);
            match segment.file.read_exact_at(&mut buf, offset) {
                Ok(()) => Ok(verify(buf, &loc)),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(verify(BytesMut::new(), &loc)),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Reads that went to the blocking pool so far.
    pub fn pool_reads(&self) -> u64 {
        self.pool_reads.load(Ordering::Relaxed)
    }

    /// Notes deletions made by this process in the open segment, if it is open.
    pub fn forget(&self, zone: &ZoneId, generation: i64, segment: u64, offsets: &[u64]) {
        if let Some(s) = self.open.get(&(zone.clone(), generation, segment)) {
            s.forget(offsets);
        }
    }

    /// Closes the zone's segments of generations below `below`.
    pub fn close_below(&self, zone: &ZoneId, below: i64) {
        let zone = zone.clone();
        // Only fails when invalidation closures are not enabled, and they are.
        let _ = self.open.invalidate_entries_if(move |k, _| k.0 == zone && k.1 < below);
    }

    /// Closes one segment (before its file is removed).
    pub fn close(&self, zone: &ZoneId, generation: i64, segment: u64) {
        self.open.invalidate(&(zone.clone(), generation, segment));
    }
}

fn open_segment(dir: &Path, segment: u64) -> io::Result<Option<ReadSegment>> {
    let file = match File::open(dir.join(segment_file_name(segment))) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let dead_file = match File::open(dir.join(dead_file_name(segment))) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(Some(ReadSegment {
        file,
        dead_file,
        dead: Mutex::default(),
        map: Default::default(),
        verified: Mutex::default(),
    }))
}

enum Nowait {
    Done(BytesMut),
    WouldBlock,
    Unsupported,
    Failed(io::Error),
}

/// One `preadv2(RWF_NOWAIT)` of `total` bytes at `offset`: done only if every byte was in the page cache.
fn read_nowait(file: &File, offset: u64, total: usize) -> Nowait {
    let mut buf = BytesMut::with_capacity(total);
    let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: total };
    // SAFETY: the iovec points into `buf`'s spare capacity of `total` bytes, which outlives the call; the
    // kernel writes at most `total` bytes there.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset as libc::off_t, libc::RWF_NOWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Nowait::WouldBlock,
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Nowait::Unsupported,
            _ if e.kind() == io::ErrorKind::Interrupted => Nowait::WouldBlock,
            _ => Nowait::Failed(e),
        };
    }
    let n = n as usize;
    if n < total {
        // Partly cached, or past the end (torn): let the blocking read decide.
        return Nowait::WouldBlock;
    }
    // SAFETY: the kernel initialized the first `n` (== total) bytes.
    unsafe { buf.set_len(n) };
    Nowait::Done(buf)
}

/// The body of a record read whole, if it is the record `loc` names and checks out.
fn verify(mut buf: BytesMut, loc: &RecordLocation) -> Option<Bytes> {
    let ok = buf.len() == HEADER_LEN + loc.len as usize && {
        let header: &[u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().expect("header length");
        Header::decode(header)
            .is_ok_and(|h| h.kind == Kind::Body && h.body_len == loc.len && h.body_crc == crc32c(&buf[HEADER_LEN..]))
    };
    if !ok {
        tracing::warn!(location = %loc, "a reserve record is torn or damaged; not serving it");
        return None;
    }
    Some(buf.split_off(HEADER_LEN).freeze())
}

/// Records and deletions counted in one segment file: bodies not deleted.
pub fn live_records(path: &Path) -> io::Result<u64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let scanned = super::scan::scan(&file, len, false)?;
    let dead = read_dead(&path.with_extension("dead"))?;
    Ok(scanned.bodies.iter().filter(|o| !dead.contains(o)).count() as u64)
}

/// Every offset a `.dead` file lists.
pub fn read_dead(path: &Path) -> io::Result<HashSet<u64>> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(0))?;
            f.read_to_end(&mut buf)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(buf.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}
