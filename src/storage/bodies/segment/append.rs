//! Appending bodies to a generation's active segment, many bodies to one `fdatasync` (group commit).
//!
//! A put queues its body and waits for the flush lock. Whoever gets the lock first writes everything
//! queued (one `pwritev` at the segment's tail, then one `fdatasync`) in one blocking task, and answers
//! every waiter; puts that arrive meanwhile form the next batch. There is no timer: an idle store adds no
//! latency, and a busy one shares each sync among everything that arrived during the previous one.
//!
//! Only this writer appends to its segment: a segment is created under a temporary name, locked
//! (`flock`, exclusive) and only then given its `.seg` name, and the lock is held until the writer has
//! moved on and every body it placed there is settled ([`Hold`] dropped: recorded in the index or given
//! up). Recovery and compaction touch only segments whose lock they can take. A failed write or sync
//! abandons the segment (its state after a failed `fsync` is unknown): the next batch starts a new one.

use std::{
    fs::File,
    io::{self, IoSlice},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::format::{HEADER_LEN, Header, Kind, RecordLocation, dead_file_name, segment_file_name};
use crate::domain::ZoneId;

/// How segments are written (and read).
#[derive(Debug, Clone)]
pub struct AppendConfig {
    /// A segment is finished once it holds this many bytes (a batch may overrun it).
    pub segment_bytes: u64,
    /// Whether batches are made durable (`fdatasync`) before they are acknowledged: always, but in
    /// benchmarks that seed data.
    pub fsync: bool,
    /// Whether hits read through a mapping of the segment (one copy fewer; see [`super::map`]) rather
    /// than with `preadv2`.
    pub mapped_reads: bool,
}

/// A segment being written (or recently written) by this process; holds its lock while it lives.
#[derive(Debug)]
pub struct WriteSegment {
    id: u64,
    file: File,
}

impl WriteSegment {
    /// The segment's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Keeps a segment locked against compaction and recovery until the body placed in it is settled.
pub type Hold = Arc<WriteSegment>;

struct Queued {
    key_hash: String,
    body: Bytes,
    done: oneshot::Sender<io::Result<(u64, Hold)>>,
}

/// The active segment and where its next record goes.
struct Active {
    segment: Hold,
    tail: u64,
    seq: u64,
}

/// The writer of one zone generation's segments.
pub struct Appender {
    dir: PathBuf,
    zone: ZoneId,
    generation: i64,
    config: AppendConfig,
    queue: std::sync::Mutex<Vec<Queued>>,
    active: tokio::sync::Mutex<Option<Active>>,
    batches: std::sync::atomic::AtomicU64,
}

impl Appender {
    /// A writer for `{root}/{zone}/g{generation}/`.
    pub fn new(root: &Path, zone: &ZoneId, generation: i64, config: AppendConfig) -> Self {
        Self {
            dir: root.join(zone.as_str()).join(format!("g{generation}")),
            zone: zone.clone(),
            generation,
            config,
            queue: Default::default(),
            active: Default::default(),
            batches: Default::default(),
        }
    }

    /// Appends one body; returns its location once it is durable, and the hold that keeps its segment
    /// from compaction until the caller has recorded (or given up) the location.
    pub async fn append(&self, key_hash: &str, body: Bytes) -> io::Result<(RecordLocation, Hold)> {
        let len = body.len() as u64;
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().expect("append queue").push(Queued { key_hash: key_hash.to_owned(), body, done: tx });
        let mut active = self.active.lock().await;
        if let Ok(placed) = rx.try_recv() {
            return placed.map(|(offset, hold)| (self.location(hold.id(), offset, len), hold));
        }
        let batch = std::mem::take(&mut *self.queue.lock().expect("append queue"));
        self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (dir, config, state) = (self.dir.clone(), self.config.clone(), active.take());
        *active =
            tokio::task::spawn_blocking(move || write_batch(&dir, &config, state, batch)).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a segment write panicked; starting a new segment");
                None
            });
        drop(active);
        let (offset, hold) = rx.await.map_err(|_| io::Error::other("the segment write was abandoned"))??;
        Ok((self.location(hold.id(), offset, len), hold))
    }

    /// Batches written so far (each one write and one sync).
    pub fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn location(&self, segment: u64, offset: u64, len: u64) -> RecordLocation {
        RecordLocation { zone: self.zone.clone(), generation: self.generation, segment, offset, len }
    }
}

/// Writes a batch into the active segment (starting a new one when it is full or there is none) and
/// answers its waiters. Returns the segment to continue with, `None` after a failure.
fn write_batch(dir: &Path, config: &AppendConfig, state: Option<Active>, batch: Vec<Queued>) -> Option<Active> {
    let bytes: u64 = batch.iter().map(|q| HEADER_LEN as u64 + q.body.len() as u64).sum();
    let state = match state {
        Some(s) if s.seq > 0 && s.tail + bytes > config.segment_bytes => {
            seal(&s);
            None
        }
        other => other,
    };
    let mut active = match state.map_or_else(|| create(dir), Ok) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot start a segment");
            fail(batch, &e);
            return None;
        }
    };
    let headers: Vec<[u8; HEADER_LEN]> = batch
        .iter()
        .enumerate()
        .map(|(i, q)| Header::body(&q.key_hash, active.seq + i as u64, &q.body).encode())
        .collect();
    let mut slices = Vec::with_capacity(batch.len() * 2);
    for (h, q) in headers.iter().zip(&batch) {
        slices.push(IoSlice::new(h));
        slices.push(IoSlice::new(&q.body));
    }
    let written = write_all_at(&active.segment.file, &mut slices, active.tail)
        .and_then(|()| if config.fsync { active.segment.file.sync_data() } else { Ok(()) });
    if let Err(e) = written {
        tracing::error!(dir = %dir.display(), segment = active.segment.id, error = %e, "a segment write failed; abandoning the segment");
        fail(batch, &e);
        return None;
    }
    for q in batch {
        let _ = q.done.send(Ok((active.tail, active.segment.clone())));
        active.tail += HEADER_LEN as u64 + q.body.len() as u64;
        active.seq += 1;
    }
    Some(active)
}

fn fail(batch: Vec<Queued>, e: &io::Error) {
    for q in batch {
        let _ = q.done.send(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

/// Ends a segment its writer is done with: appends the seal (a hint for recovery; not synced).
fn seal(active: &Active) {
    let seal = Header::marker(Kind::Seal, active.tail).encode();
    if let Err(e) = write_all_at(&active.segment.file, &mut [IoSlice::new(&seal)], active.tail) {
        tracing::warn!(segment = active.segment.id, error = %e, "could not seal a segment");
    }
}

/// Creates, locks and names a new segment in `dir` (created if missing), durably.
fn create(dir: &Path) -> io::Result<Active> {
    let created = create_dirs(dir)?;
    let id = new_segment_id();
    let temporary = dir.join(format!(".s{id:016x}.new"));
    let file = File::options().read(true).write(true).create_new(true).open(&temporary)?;
    lock(&file)?;
    let start = Header::marker(Kind::Segment, 0).encode();
    write_all_at(&file, &mut [IoSlice::new(&start)], 0)?;
    File::options().append(true).create(true).open(dir.join(dead_file_name(id)))?;
    std::fs::rename(&temporary, dir.join(segment_file_name(id)))?;
    file.sync_data()?;
    for d in created.iter().rev().chain(std::iter::once(&dir.to_path_buf())) {
        File::open(d)?.sync_all()?;
    }
    Ok(Active { segment: Arc::new(WriteSegment { id, file }), tail: HEADER_LEN as u64, seq: 0 })
}

/// Creates `dir` and missing parents; returns the parents of what it created (to be synced), deepest last.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.exists()) {
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    std::fs::create_dir_all(dir)?;
    Ok(missing.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).rev().collect())
}

/// A segment id no other segment ever has: seconds since the epoch, then 32 random bits.
fn new_segment_id() -> u64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    (secs << 32) | u64::from(u32::from_le_bytes(random))
}

/// Takes the exclusive lock of a segment file, without waiting.
pub fn lock(file: &File) -> io::Result<()> {
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes all of `slices` at `offset` (`pwritev`, repeated after short writes).
pub fn write_all_at(file: &File, mut slices: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    const IOV_MAX: usize = 1024;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = slices.len().min(IOV_MAX);
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                n as libc::c_int,
                offset as libc::off_t,
            )
        };
        match written {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            w => {
                offset += w as u64;
                IoSlice::advance_slices(&mut slices, w as usize);
            }
        }
    }
    Ok(())
}
