//! Removal of a zone's cleared generations: every file under their `g{n}` directories, unlinked by a few
//! threads at once (on a tmpfs, and for large files anywhere, the time goes to freeing the files' pages,
//! which proceeds in parallel for different files), then the directories.

use std::{io, path::Path, path::PathBuf, sync::Mutex};

/// Threads that unlink at once.
const UNLINKERS: usize = 4;

/// Removes the `g{n}` directories of a zone with `n < below`. Returns the files removed.
pub(super) fn remove_generations_below(zone_dir: &Path, below: i64) -> io::Result<u64> {
    let entries = match std::fs::read_dir(zone_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry?;
        let generation = entry.file_name().to_str().and_then(|n| n.strip_prefix('g')?.parse::<i64>().ok());
        if generation.is_some_and(|g| g < below) && entry.file_type()?.is_dir() {
            walk(&entry.path(), &mut files, &mut dirs)?;
        }
    }
    let removed = unlink_all(files)?;
    // Deepest first: each directory after everything in it.
    for dir in dirs.iter().rev() {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Lists the files under `dir` and the directories, `dir` first (each before what it holds).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    dirs.push(dir.to_owned());
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), files, dirs)?;
        } else {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// Unlinks `files` on up to [`UNLINKERS`] threads; one already gone counts as not removed. Returns how many
/// were removed, or the first error.
fn unlink_all(files: Vec<PathBuf>) -> io::Result<u64> {
    let threads = UNLINKERS.min(files.len()).max(1);
    let queue = Mutex::new(files.into_iter());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> io::Result<u64> {
                    let mut removed = 0;
                    loop {
                        let Some(file) = queue.lock().expect("unlink queue").next() else { return Ok(removed) };
                        match std::fs::remove_file(&file) {
                            Ok(()) => removed += 1,
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_fold(0, |sum, w| Ok(sum + w.join().expect("an unlink thread panicked")?))
    })
}
