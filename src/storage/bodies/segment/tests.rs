use std::{
    fs::File,
    io::IoSlice,
    os::{fd::AsRawFd, unix::fs::FileExt},
    path::Path,
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;

use super::{
    append::{AppendConfig, Appender, write_all_at},
    format::{HEADER_LEN, Header, Kind, RecordLocation},
    recover::recover_segment,
    scan::{is_sealed, scan},
    *,
};
use crate::{reserve::key_hash, storage::bodies::BodyStore};

fn config(segment_bytes: u64) -> AppendConfig {
    AppendConfig { segment_bytes, fsync: true, mapped_reads: true }
}

fn store(dir: &Path, segment_bytes: u64) -> SegmentBodies {
    SegmentBodies::open(dir, config(segment_bytes)).unwrap()
}

/// A store whose hits read with `preadv2` (`mapped` false) or through a mapping.
fn reading(dir: &Path, mapped: bool) -> SegmentBodies {
    SegmentBodies::open(dir, AppendConfig { mapped_reads: mapped, ..config(64 << 20) }).unwrap()
}

fn body(i: usize, len: usize) -> Bytes {
    Bytes::from((0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<u8>>())
}

async fn read(s: &SegmentBodies, location: &str) -> Option<Bytes> {
    Some(s.open(location).await.unwrap()?.bytes().await.unwrap())
}

/// The segment files of a store's directory, with their lengths.
fn segment_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for zone in std::fs::read_dir(root).unwrap() {
        for generation in std::fs::read_dir(zone.unwrap().path()).unwrap() {
            for f in std::fs::read_dir(generation.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_some_and(|e| e == "seg") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn bodies_round_trip_and_concurrent_puts_share_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let z = ZoneId::generate();
    let appender = Appender::new(dir.path(), &z, 1, config(64 << 20));
    let puts = (0..64).map(|i| {
        let appender = &appender;
        async move { appender.append(&key_hash(&i.to_string()), body(i, 100 + i)).await.unwrap() }
    });
    let placed = futures::future::join_all(puts).await;
    // The first put writes alone; the 63 that queued behind its sync share the next one.
    assert_eq!(appender.batches(), 2);
    drop(placed);
    let s = store(dir.path(), 64 << 20);
    let mut locations = Vec::new();
    for i in 0..20 {
        let w = s.put(&z, 1, &key_hash(&i.to_string()), body(i, 4096)).await.unwrap();
        assert!(w.hold.is_some());
        locations.push(w.location);
    }
    for (i, l) in locations.iter().enumerate() {
        assert_eq!(read(&s, l).await.unwrap(), body(i, 4096), "{l}");
    }
    assert_eq!(s.count(None).await.unwrap(), 64 + 20);
    assert_eq!(s.count(Some(&z)).await.unwrap(), 64 + 20);
    assert_eq!(s.count(Some(&ZoneId::generate())).await.unwrap(), 0);
}

#[tokio::test]
async fn a_full_segment_is_sealed_and_the_next_begins() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 20_000);
    let z = ZoneId::generate();
    let mut written = Vec::new();
    for i in 0..20 {
        written.push(s.put(&z, 1, &key_hash(&i.to_string()), body(i, 4000)).await.unwrap());
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 4, "{} segments", files.len());
    let sealed = files.iter().filter(|f| {
        let file = File::open(f).unwrap();
        is_sealed(&file, file.metadata().unwrap().len()).unwrap()
    });
    assert_eq!(sealed.count(), files.len() - 1, "every segment but the active one is sealed");
    for (i, w) in written.iter().enumerate() {
        assert_eq!(read(&s, &w.location).await.unwrap(), body(i, 4000));
    }
}

#[tokio::test]
async fn large_bodies_are_files_of_their_own_and_both_kinds_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 64 << 20);
    let z = ZoneId::generate();
    let big = body(7, format::MAX_BODY as usize + 1);
    let w = s.put(&z, 1, &key_hash("big"), big.clone()).await.unwrap();
    assert!(RecordLocation::parse(&w.location).is_none() && w.hold.is_none(), "{}", w.location);
    assert_eq!(read(&s, &w.location).await.unwrap(), big);
    let small = s.put(&z, 1, &key_hash("small"), body(1, 10)).await.unwrap();
    assert_eq!(s.count(None).await.unwrap(), 2);
    s.delete_many(vec![w.location.clone(), small.location.clone()]).await.unwrap();
    assert!(read(&s, &w.location).await.is_none() && read(&s, &small.location).await.is_none());
    assert_eq!(s.count(None).await.unwrap(), 0);
}

#[tokio::test]
async fn deleted_damaged_and_misnamed_records_read_as_gone_in_every_process() {
    for mapped in [true, false] {
        deleted_damaged_and_misnamed_records_read_as_gone(mapped).await;
    }
}

async fn deleted_damaged_and_misnamed_records_read_as_gone(mapped: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (reading(dir.path(), mapped), reading(dir.path(), mapped));
    let z = ZoneId::generate();
    let [one, two, three] = [1, 2, 3].map(|i| body(i, 500));
    let one_at = a.put(&z, 1, &key_hash("1"), one.clone()).await.unwrap().location;
    let two_at = a.put(&z, 1, &key_hash("2"), two).await.unwrap().location;
    let three_at = a.put(&z, 1, &key_hash("3"), three.clone()).await.unwrap().location;
    // Another process (b) has the segment open before the delete, and picks it up from the `.dead` file.
    assert!(read(&b, &two_at).await.is_some());
    a.delete_many(vec![two_at.clone()]).await.unwrap();
    assert!(read(&a, &two_at).await.is_none());
    assert!(read(&b, &two_at).await.is_none());
    assert_eq!(b.count(None).await.unwrap(), 2);
    // A flipped bit in a body: never served.
    let (file, offset, _) = body_region(dir.path(), &three_at).unwrap();
    File::options().write(true).open(&file).unwrap().write_all_at(b"X", offset + 10).unwrap();
    assert!(read(&b, &three_at).await.is_none());
    // A location whose length or offset is not the record's: never served.
    let loc = RecordLocation::parse(&one_at).unwrap();
    for wrong in [
        RecordLocation { len: loc.len - 1, ..loc.clone() },
        RecordLocation { offset: loc.offset + 1, ..loc.clone() },
        RecordLocation { offset: 1 << 40, ..loc.clone() },
        RecordLocation { len: u64::MAX, ..loc.clone() },
        RecordLocation { offset: u64::MAX, ..loc.clone() },
        RecordLocation { segment: loc.segment ^ 1, ..loc.clone() },
    ] {
        assert!(read(&a, &wrong.to_string()).await.is_none(), "{wrong}");
    }
    assert_eq!(read(&a, &one_at).await.unwrap(), one);
}

#[tokio::test]
async fn a_read_of_bytes_not_in_the_page_cache_goes_to_the_pool_and_a_cached_one_does_not() {
    for mapped in [true, false] {
        a_cold_read_goes_to_the_pool(mapped).await;
    }
}

async fn a_cold_read_goes_to_the_pool(mapped: bool) {
    let dir = tempfile::tempdir().unwrap();
    let z = ZoneId::generate();
    let b = body(3, 64 << 10);
    let w = store(dir.path(), 64 << 20);
    let at = w.put(&z, 1, &key_hash("k"), b.clone()).await.unwrap().location;
    w.put(&z, 1, &key_hash("spacer"), body(5, 1000 << 10)).await.unwrap();
    let opener = w.put(&z, 1, &key_hash("opener"), body(4, 1 << 10)).await.unwrap().location;
    drop(w);
    // The segment opened first, through another record, a megabyte further on: opening reads the file's
    // start, and the readahead that sets off would bring the record under test back in; a mapped read
    // maps the pages around the one it touches, which then cannot be dropped.
    let s = reading(dir.path(), mapped);
    assert!(read(&s, &opener).await.is_some());
    assert_eq!(s.pool_reads(), 0, "just written, so in the page cache");
    // Evict the (clean, synced, not yet mapped) pages: the first read would wait for the disk. The kernel
    // may keep pages through one request (a busy machine), so ask until `mincore` says they are gone; and
    // readahead the kernel had under way may bring them back before the read, so try a few times: a store
    // that never sends a cold read to the pool fails every time.
    let (file, offset, len) = body_region(dir.path(), &at).unwrap();
    let f = File::open(file).unwrap();
    let mut went_to_pool = false;
    for _ in 0..5 {
        let evicted = (0..200).any(|_| {
            // SAFETY: fadvise on a descriptor we own.
            assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
            let view = map::Mapping::new(&f, f.metadata().unwrap().len()).unwrap().unwrap();
            // Every page gone: with only some gone, a `RWF_NOWAIT` read returns the resident prefix and sets
            // off readahead, which may bring the rest in before it asks again.
            let gone = (0..len).step_by(4096).all(|at| !view.resident(offset + at, 1));
            if !gone {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            gone
        });
        assert!(evicted, "the kernel kept the segment's pages through 200 requests to drop them");
        let before = s.pool_reads();
        assert_eq!(read(&s, &at).await.unwrap(), b);
        if s.pool_reads() == before + 1 {
            went_to_pool = true;
            break;
        }
    }
    assert!(went_to_pool, "a cold read goes to the blocking pool (mapped reads: {mapped})");
    let pooled = s.pool_reads();
    assert_eq!(read(&s, &at).await.unwrap(), b);
    assert_eq!(s.pool_reads(), pooled, "a cached read stays on the calling thread");
}

#[tokio::test]
async fn sweeping_below_a_generation_removes_its_files_and_nothing_newer() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 64 << 20);
    let (z, other) = (ZoneId::generate(), ZoneId::generate());
    for generation in [1, 2, 3] {
        for i in 0..5 {
            drop(s.put(&z, generation, &key_hash(&i.to_string()), body(i, 100)).await.unwrap());
        }
    }
    drop(s.put(&z, 1, &key_hash("big"), body(0, format::MAX_BODY as usize + 1)).await.unwrap());
    let kept = s.put(&other, 1, &key_hash("x"), body(9, 100)).await.unwrap().location;
    let old = s.put(&z, 2, &key_hash("late"), body(8, 100)).await.unwrap().location;
    // Files of g1 and g2: a segment and its `.dead` each, plus the big body.
    assert_eq!(s.sweep_below(&z, 3).await.unwrap(), 5);
    assert!(read(&s, &old).await.is_none());
    assert_eq!(s.count(Some(&z)).await.unwrap(), 5);
    assert_eq!(read(&s, &kept).await.unwrap(), body(9, 100));
    // A write into a swept generation after the sweep starts a new segment there (the next sweep's).
    drop(s.put(&z, 2, &key_hash("later"), body(8, 100)).await.unwrap());
    assert_eq!(s.sweep_below(&z, 3).await.unwrap(), 2);
    assert_eq!(s.count(Some(&z)).await.unwrap(), 5);
}

/// Writes records `0..n` into a fresh segment at `path` the way the appender lays them out.
fn write_segment(path: &Path, n: usize) -> Vec<u64> {
    let f = File::create(path).unwrap();
    let start = Header::marker(Kind::Segment, 0).encode();
    write_all_at(&f, &mut [IoSlice::new(&start)], 0).unwrap();
    let mut at = HEADER_LEN as u64;
    let mut offsets = Vec::new();
    for i in 0..n {
        let b = body(i, 50 + i * 7);
        let h = Header::body(&key_hash(&i.to_string()), i as u64, &b).encode();
        write_all_at(&f, &mut [IoSlice::new(&h), IoSlice::new(&b)], at).unwrap();
        offsets.push(at);
        at += (HEADER_LEN + b.len()) as u64;
    }
    offsets.push(at);
    offsets
}

#[test]
fn a_scan_keeps_exactly_the_records_wholly_before_a_cut_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let offsets = write_segment(&path, 6);
    let whole = std::fs::read(&path).unwrap();
    let end = *offsets.last().unwrap();
    let records_before = |limit: u64| offsets.windows(2).filter(|w| w[1] <= limit).count();
    // Cut at every byte of the last three records.
    for cut in offsets[3]..=end {
        std::fs::write(&path, &whole[..cut as usize]).unwrap();
        let f = File::open(&path).unwrap();
        let got = scan(&f, cut, true).unwrap();
        assert_eq!(got.bodies.len(), records_before(cut), "cut at {cut}");
        assert_eq!(got.end, offsets[records_before(cut)], "cut at {cut}");
        assert!(!got.sealed);
    }
    // Flip any byte of the last two records: the scan ends before the damaged one.
    for at in offsets[4]..end {
        let mut damaged = whole.clone();
        damaged[at as usize] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        let f = File::open(&path).unwrap();
        let got = scan(&f, end, true).unwrap();
        let first_bad = offsets.iter().rposition(|o| *o <= at).unwrap();
        assert_eq!(got.bodies.len(), first_bad, "byte {at}");
        assert_eq!(got.end, offsets[first_bad], "byte {at}");
    }
}

#[tokio::test]
async fn recovery_cuts_a_dead_writers_torn_tail_seals_it_and_leaves_a_live_writers_segment_alone() {
    let dir = tempfile::tempdir().unwrap();
    let z = ZoneId::generate();
    let crashed = store(dir.path(), 64 << 20);
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        acknowledged.push(crashed.put(&z, 1, &key_hash(&i.to_string()), body(i, 3000)).await.unwrap().location);
    }
    drop(crashed); // Its locks go with it, as with a killed process.
    let path = segment_files(dir.path()).remove(0);
    let len = std::fs::metadata(&path).unwrap().len();
    // An unacknowledged batch cut short: a whole header and part of its body.
    let torn = Header::body(&key_hash("torn"), 5, &body(5, 3000)).encode();
    let f = File::options().write(true).open(&path).unwrap();
    write_all_at(&f, &mut [IoSlice::new(&torn), IoSlice::new(&body(5, 1000))], len).unwrap();

    let live = store(dir.path(), 64 << 20);
    let live_at = live.put(&z, 1, &key_hash("live"), body(9, 100)).await.unwrap().location;
    let started = SystemTime::now();
    assert_eq!(live.recover(started).await.unwrap(), 1, "one segment sealed");
    let f = File::open(&path).unwrap();
    let new_len = f.metadata().unwrap().len();
    assert_eq!(new_len, len + HEADER_LEN as u64, "the torn batch is cut and a seal appended");
    assert!(is_sealed(&f, new_len).unwrap());
    for (i, l) in acknowledged.iter().enumerate() {
        assert_eq!(read(&live, l).await.unwrap(), body(i, 3000));
    }
    // The live writer's segment is locked: recovery leaves it, and it goes on taking writes.
    let live_path = body_region(dir.path(), &live_at).unwrap().0;
    assert_eq!(recover_segment(&live_path).unwrap(), None);
    let more = live.put(&z, 1, &key_hash("more"), body(10, 100)).await.unwrap().location;
    assert_eq!(read(&live, &more).await.unwrap(), body(10, 100));
    assert_eq!(live.recover(started).await.unwrap(), 0, "nothing left to do");
    assert_eq!(live.count(None).await.unwrap(), 7);
}

#[tokio::test]
async fn holds_keep_a_finished_segment_locked_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(store(dir.path(), 1));
    let z = ZoneId::generate();
    // Every put finishes its segment (1-byte segments), so only the holds keep the older ones locked.
    let first = s.put(&z, 1, &key_hash("a"), body(0, 10)).await.unwrap();
    let second = s.put(&z, 1, &key_hash("b"), body(1, 10)).await.unwrap();
    let first_path = body_region(dir.path(), &first.location).unwrap().0;
    let second_path = body_region(dir.path(), &second.location).unwrap().0;
    assert_ne!(first_path, second_path);
    assert_eq!(recover_segment(&first_path).unwrap(), None, "held");
    drop(first);
    // Sealed by its writer when the next began: recovery has nothing to do, but it can take the lock.
    let f = File::options().read(true).write(true).open(&first_path).unwrap();
    append::lock(&f).unwrap();
}
