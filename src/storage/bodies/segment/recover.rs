//! After a crash: finishing the segments their writers left behind.
//!
//! A segment whose lock can be taken has no live writer. If it is not sealed, its writer died: the scan
//! finds the end of its valid prefix, the torn tail after it is cut off, and a seal is appended. Nothing
//! cut was ever acknowledged (see [`super::scan`]), so no index entry names it. Segments that never got
//! their name (a crash during creation) and `.dead` files without a segment are removed.

use std::{
    fs::File,
    io::{self, IoSlice},
    path::Path,
};

use super::{
    append::{lock, write_all_at},
    format::{HEADER_LEN, Header, Kind, parse_segment_file_name},
    scan::{is_sealed, scan},
};

/// What recovery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Unsealed segments of dead writers, scanned and sealed.
    pub sealed: u64,
    /// Bytes of torn tails cut off.
    pub torn_bytes: u64,
    /// Files removed: segments a crash left unnamed, `.dead` files without a segment.
    pub removed: u64,
}

/// Recovers every segment under `root` (`{root}/{zone}/g{n}/`) that no live writer holds.
pub fn recover_all(root: &Path) -> io::Result<Recovered> {
    let mut out = Recovered::default();
    for zone in read_dir(root)? {
        if !zone.file_type()?.is_dir() {
            continue;
        }
        for generation in read_dir(&zone.path())? {
            let name = generation.file_name();
            if generation.file_type()?.is_dir() && name.to_string_lossy().starts_with('g') {
                recover_dir(&generation.path(), &mut out)?;
            }
        }
    }
    Ok(out)
}

fn read_dir(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Recovers the segments of one generation directory.
pub fn recover_dir(dir: &Path, out: &mut Recovered) -> io::Result<()> {
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if parse_segment_file_name(&name).is_some() {
            match recover_segment(&path) {
                Ok(Some(torn)) => {
                    out.sealed += 1;
                    out.torn_bytes += torn;
                    if torn > 0 {
                        tracing::warn!(segment = %path.display(), bytes = torn, "cut off the torn tail of a segment");
                    }
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else if name.starts_with(".s") && name.ends_with(".new") {
            // Never named, so never written to: no acknowledged record is in it.
            if File::options().read(true).write(true).open(&path).and_then(|f| lock(&f)).is_ok() {
                remove(&path, out)?;
            }
        } else if let Some(stem) = name.strip_suffix(".dead")
            && !dir.join(format!("{stem}.seg")).exists()
            && !dir.join(format!(".{stem}.new")).exists()
        {
            remove(&path, out)?;
        }
    }
    Ok(())
}

fn remove(path: &Path, out: &mut Recovered) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            out.removed += 1;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Seals one segment if no writer holds it and it is not sealed. Returns the bytes cut off, `None` when
/// there was nothing to do.
pub fn recover_segment(path: &Path) -> io::Result<Option<u64>> {
    let file = File::options().read(true).write(true).open(path)?;
    match lock(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = file.metadata()?.len();
    if is_sealed(&file, len)? {
        return Ok(None);
    }
    let scanned = scan(&file, len, true)?;
    let end = scanned.end.max(HEADER_LEN as u64);
    if scanned.end < HEADER_LEN as u64 {
        // Not even the start record survived: write it again, so the file stays a segment.
        let start = Header::marker(Kind::Segment, 0).encode();
        write_all_at(&file, &mut [IoSlice::new(&start)], 0)?;
    }
    file.set_len(end)?;
    if !scanned.sealed {
        let seal = Header::marker(Kind::Seal, end).encode();
        write_all_at(&file, &mut [IoSlice::new(&seal)], end)?;
    }
    file.sync_data()?;
    Ok(Some(len.saturating_sub(end)))
}
