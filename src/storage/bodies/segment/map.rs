//! A segment's bytes mapped read-only, for reads that hand the page cache's own pages to the socket: one
//! copy (kernel, into the socket) instead of two (into our buffer, then into the socket).
//!
//! Only bytes that [`Mapping::resident`] reports in the page cache are ever touched, so a read never
//! page-faults on the disk from the runtime's threads. The one risk a mapping adds is a page evicted between
//! that check and the touch: it is then read back from disk inside the fault (a stall of that thread, like
//! a blocking read), and an I/O error there would be `SIGBUS` where a `pread` returns `EIO`. Segments are
//! never truncated under a reader of their valid records (recovery only cuts a dead writer's torn tail,
//! which no location names), and a removed segment's mapping stays valid until dropped.

use std::{fs::File, io, os::fd::AsRawFd, sync::Arc};

use bytes::Bytes;

/// A read-only shared mapping of a file's first `len` bytes.
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and never written through; the pointer is only used to build shared
// slices, and unmapped once, on drop.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096).max(1)
}

impl Mapping {
    /// Maps the first `len` bytes of `file`; `None` for an empty file.
    pub fn new(file: &File, len: u64) -> io::Result<Option<Arc<Self>>> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh read-only shared mapping of a file we hold open; the kernel picks the address.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Arc::new(Self { ptr, len })))
    }

    /// Bytes mapped (never 0).
    pub fn mapped_len(&self) -> u64 {
        self.len as u64
    }

    /// Whether every page of `offset..offset + len` is in the page cache now.
    pub fn resident(&self, offset: u64, len: usize) -> bool {
        let Ok(offset) = usize::try_from(offset) else { return false };
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > self.len) {
            return false;
        }
        let page = page_size();
        let start = offset / page * page;
        let span = offset + len - start;
        // One byte per page: on the stack for records up to 256 pages (1 MiB of 4 KiB pages).
        let mut small = [0u8; 256];
        let mut large = Vec::new();
        let count = span.div_ceil(page);
        let pages = if count <= small.len() {
            &mut small[..count]
        } else {
            large.resize(count, 0u8);
            &mut large[..]
        };
        // SAFETY: `start` is page-aligned and `start..start + span` lies within the mapping; `pages` has one
        // byte per page of that range.
        let ok = unsafe { libc::mincore(self.ptr.cast::<u8>().add(start).cast(), span, pages.as_mut_ptr()) } == 0;
        ok && pages.iter().all(|p| p & 1 == 1)
    }

    /// The mapped bytes `offset..offset + len`. Touch them only after [`Mapping::resident`] said so.
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let offset = usize::try_from(offset).expect("checked by resident");
        assert!(offset + len <= self.len, "a slice past the mapping");
        // SAFETY: within the mapping (asserted), which lives as long as `self`; read-only, never written.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>().add(offset), len) }
    }

    /// The mapped bytes `offset..offset + len` as `Bytes` that keep the mapping alive.
    pub fn bytes(self: &Arc<Self>, offset: u64, len: usize) -> Bytes {
        Bytes::from_owner(Slice { map: self.clone(), offset, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives `self` (slices borrow it,
        // `Bytes` hold an `Arc` of it).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

struct Slice {
    map: Arc<Mapping>,
    offset: u64,
    len: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        self.map.slice(self.offset, self.len)
    }
}
