//! Bodies on local disk: object_store's `LocalFileSystem` (atomic, fsynced writes), with deletes
//! batched into blocking tasks.
//!
//! `LocalFileSystem` sends every delete to the blocking pool on its own; on a fast disk the hand-off costs
//! more than the unlink. Here a chunk of paths is unlinked in one blocking task, several chunks at once,
//! and each emptied directory is removed once per chunk rather than tried once per file.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path as FsPath, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, local::LocalFileSystem, path::Path,
};

/// Paths unlinked per blocking task.
const CHUNK: usize = 64;
/// Blocking tasks in flight.
const IN_FLIGHT: usize = 8;

/// Bodies under one directory.
#[derive(Debug, Clone)]
pub struct LocalBodies {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl LocalBodies {
    /// Bodies under `root`, which must exist. Writes are fsynced (file and directory) before they return.
    pub fn new(root: &FsPath) -> Result<Self> {
        let root = std::fs::canonicalize(root)
            .map_err(|e| object_store::Error::Generic { store: "LocalBodies", source: Box::new(e) })?;
        let inner = LocalFileSystem::new_with_prefix(&root)?.with_fsync(true).with_automatic_cleanup(true);
        Ok(Self { inner: Arc::new(inner), root })
    }

    /// Removes the staging files of writes a crash cut short (`{name}#{digits}`: object_store's staging
    /// names, which its listings skip, so nothing else would ever find them) last modified before
    /// `before` — the start of this process, so that writes in progress now are left alone and this can
    /// run while the server serves. Returns how many were removed.
    pub fn remove_staging_files(&self, before: SystemTime) -> std::io::Result<usize> {
        fn walk(dir: &FsPath, before: SystemTime, removed: &mut usize) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                // Emptied and removed by a delete meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    walk(&path, before, removed)?;
                } else if is_staging_name(&entry.file_name().to_string_lossy())
                    && entry.metadata().and_then(|m| m.modified()).is_ok_and(|m| m < before)
                {
                    match std::fs::remove_file(&path) {
                        Ok(()) => *removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        }
        let mut removed = 0;
        walk(&self.root, before, &mut removed)?;
        Ok(removed)
    }
}

/// Bodies up to this size are read whole by [`ObjectStore::get_opts`]; larger ones stream.
const READ_WHOLE_MAX: u64 = 4 * 1024 * 1024;

/// A get of a whole object with no conditions.
fn is_plain_get(o: &GetOptions) -> bool {
    o.range.is_none()
        && !o.head
        && o.if_match.is_none()
        && o.if_none_match.is_none()
        && o.if_modified_since.is_none()
        && o.if_unmodified_since.is_none()
        && o.version.is_none()
}

/// Opens a body; reads it whole when small, else hands the open file over to stream.
fn read_small(file: &FsPath, location: Path) -> Result<GetResult> {
    use std::io::Read;
    let not_found = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => {
            object_store::Error::NotFound { path: location.to_string(), source: Box::new(e) }
        }
        _ => object_store::Error::Generic { store: "LocalBodies", source: Box::new(e) },
    };
    let mut f = std::fs::File::open(file).map_err(not_found)?;
    let metadata = f.metadata().map_err(not_found)?;
    let size = metadata.len();
    let meta = ObjectMeta {
        location: location.clone(),
        last_modified: metadata.modified().map(chrono::DateTime::from).unwrap_or_default(),
        size,
        e_tag: None,
        version: None,
    };
    let payload = if size <= READ_WHOLE_MAX {
        let mut body = Vec::with_capacity(size as usize);
        f.read_to_end(&mut body).map_err(not_found)?;
        GetResultPayload::Stream(futures::stream::once(async move { Ok(Bytes::from(body)) }).boxed())
    } else {
        GetResultPayload::File(f, file.to_owned())
    };
    Ok(GetResult { payload, meta, range: 0..size, attributes: Default::default(), extensions: Default::default() })
}

/// object_store's staging names: the final name, `#`, then digits.
pub(super) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for LocalBodies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalBodies({})", self.root.display())
    }
}

/// Unlinks a chunk of bodies, then removes the directories it emptied (up to, not including, `root`).
fn delete_chunk(inner: &LocalFileSystem, root: &FsPath, chunk: Vec<Result<Path>>) -> Vec<Result<Path>> {
    let mut parents = BTreeSet::new();
    let results = chunk
        .into_iter()
        .map(|location| {
            let location = location?;
            let file = inner.path_to_filesystem(&location)?;
            match std::fs::remove_file(&file) {
                Ok(()) => {
                    parents.extend(file.parent().map(FsPath::to_path_buf));
                    Ok(location)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(object_store::Error::NotFound { path: location.to_string(), source: Box::new(e) })
                }
                Err(e) => Err(object_store::Error::Generic { store: "LocalBodies", source: Box::new(e) }),
            }
        })
        .collect();
    // Deepest first, so a parent is tried after its children.
    for dir in parents.into_iter().rev() {
        let mut dir = Some(dir.as_path());
        while let Some(d) = dir.filter(|d| *d != root && d.starts_with(root)) {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    results
}

#[async_trait]
impl ObjectStore for LocalBodies {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !is_plain_get(&options) {
            return self.inner.get_opts(location, options).await;
        }
        // A whole small body in one blocking task (open, stat, read) instead of one for the open and
        // another for the read: reserve hits are mostly page-cache reads, where the hand-offs dominate.
        let file = self.inner.path_to_filesystem(location)?;
        let location = location.clone();
        tokio::task::spawn_blocking(move || read_small(&file, location))
            .await
            .map_err(|e| object_store::Error::Generic { store: "LocalBodies", source: Box::new(e) })?
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let (inner, root) = (self.inner.clone(), self.root.clone());
        locations
            .ready_chunks(CHUNK)
            .map(move |chunk| {
                let (inner, root) = (inner.clone(), root.clone());
                async move {
                    let n = chunk.len();
                    tokio::task::spawn_blocking(move || delete_chunk(&inner, &root, chunk)).await.unwrap_or_else(|e| {
                        (0..n)
                            .map(|_| {
                                Err(object_store::Error::Generic { store: "LocalBodies", source: e.to_string().into() })
                            })
                            .collect()
                    })
                }
            })
            .buffered(IN_FLIGHT)
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn removes_staging_files_of_interrupted_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let bodies = LocalBodies::new(dir.path()).unwrap();
        let kept = Path::from("z/g1/ab/abcd.0011");
        bodies.put(&kept, PutPayload::from_static(b"whole")).await.unwrap();
        let staged = dir.path().join("z/g1/ab/abce.0012#3");
        std::fs::write(&staged, b"part").unwrap();
        let started = SystemTime::now() + std::time::Duration::from_secs(1);
        let in_flight = dir.path().join("z/g1/ab/abcf.0013#4");
        std::fs::write(&in_flight, b"part").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&in_flight)
            .unwrap()
            .set_modified(started + std::time::Duration::from_secs(1))
            .unwrap();
        assert_eq!(bodies.remove_staging_files(started).unwrap(), 1);
        assert!(in_flight.exists(), "a write begun after the start is left alone");
        assert!(!staged.exists());
        assert_eq!(bodies.get(&kept).await.unwrap().bytes().await.unwrap().as_ref(), b"whole");
        assert!(!is_staging_name("abcd.0011") && !is_staging_name("a#") && !is_staging_name("a#1x"));
    }

    #[tokio::test]
    async fn deletes_in_chunks_reports_missing_and_removes_emptied_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBodies::new(dir.path()).unwrap();
        let paths: Vec<Path> = (0..200).map(|i| Path::from(format!("z/g1/{:02}/{i}", i % 3))).collect();
        for p in &paths {
            store.put(p, PutPayload::from_static(b"x")).await.unwrap();
        }
        store.put(&Path::from("z/g2/00/keep"), PutPayload::from_static(b"y")).await.unwrap();
        let mut input: Vec<Result<Path>> = paths.iter().cloned().map(Ok).collect();
        input.push(Ok(Path::from("z/g1/00/missing")));
        let results: Vec<_> = store.delete_stream(futures::stream::iter(input).boxed()).collect().await;
        assert_eq!(results.len(), 201);
        assert!(results[..200].iter().all(Result::is_ok));
        assert!(matches!(results[200], Err(object_store::Error::NotFound { .. })));
        assert!(!dir.path().join("z/g1").exists(), "emptied directories are removed");
        assert!(dir.path().join("z/g2/00/keep").exists());
        assert_eq!(store.get(&Path::from("z/g2/00/keep")).await.unwrap().bytes().await.unwrap().as_ref(), b"y");
    }
}
