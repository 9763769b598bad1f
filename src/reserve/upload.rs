//! A streamed write into the reserve: the body arrives in chunks (from the origin, while it is being sent
//! to the client) and becomes visible only when it is complete, durable and recorded in the index.
//!
//! Bodies up to the part size are gathered in memory and written with one put (one S3 `PUT`, no multipart
//! round trips); larger ones go through a multipart upload, so memory stays bounded by the parts in flight
//! whatever the object size. Both are atomic in the body store: on local disk a gathered body up to 1 MiB is
//! one segment record, acknowledged once synced, and a larger one a file written under a staging name and
//! renamed into place; on S3 the object appears when the upload completes. A crash before that leaves no
//! visible object.

use bytes::{Bytes, BytesMut};
use object_store::WriteMultipart;

use super::{PutOutcome, Reserve, ReserveError, key_hash};
use crate::{
    domain::{Timestamp, ZoneId},
    storage::{IndexEntry, bodies::Written},
};

/// Part size of multipart uploads (S3's minimum is 5 MiB for every part but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Bodies up to this size are gathered in memory and written at once.
const BUFFERED_MAX: u64 = PART_SIZE as u64;
/// Parts being written at once.
const PARTS_IN_FLIGHT: usize = 2;

/// The most memory an upload of `size` bytes holds at once: the whole body when gathered, else the parts in
/// flight.
pub fn memory_bound(size: u64) -> u64 {
    if size <= BUFFERED_MAX { size } else { (PARTS_IN_FLIGHT * PART_SIZE) as u64 }
}

enum Sink {
    Buffered(BytesMut),
    Multipart(WriteMultipart),
}

/// A write in progress; see the module docs. Dropping it without [`Upload::finish`] abandons it.
pub struct Upload {
    reserve: Reserve,
    entry: IndexEntry,
    sink: Sink,
    written: u64,
}

impl Upload {
    pub(super) async fn begin(
        reserve: Reserve,
        zone: &ZoneId,
        (generation, fill_revision): (i64, i64),
        key: &str,
        meta: Vec<u8>,
        size: u64,
    ) -> Result<Self, ReserveError> {
        let key_hash = key_hash(key);
        // A buffered body learns its location when it is written, in `finish`.
        let (blob, sink) = if size <= BUFFERED_MAX {
            (String::new(), Sink::Buffered(BytesMut::with_capacity(usize::try_from(size).unwrap_or(0))))
        } else {
            let (blob, upload) =
                reserve.bodies.put_multipart(zone, generation, &key_hash).await.map_err(|e| reserve.observe_blob(e))?;
            (blob, Sink::Multipart(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)))
        };
        let entry = IndexEntry {
            zone_id: zone.clone(),
            generation,
            key_hash,
            key: key.to_owned(),
            blob,
            size,
            meta,
            stored_on: Timestamp::now(),
            fill_revision,
            invalidation: None,
        };
        Ok(Self { reserve, entry, sink, written: 0 })
    }

    /// Appends a chunk of the body.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ReserveError> {
        self.written += chunk.len() as u64;
        match &mut self.sink {
            Sink::Buffered(buf) => buf.extend_from_slice(&chunk),
            Sink::Multipart(w) => {
                w.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|e| self.reserve.observe_blob(e))?;
                w.put(chunk);
            }
        }
        Ok(())
    }

    /// Completes the write if exactly the announced size arrived, and records the object. A body of any
    /// other size is discarded ([`ReserveError::Incomplete`]).
    pub async fn finish(mut self) -> Result<PutOutcome, ReserveError> {
        if self.written != self.entry.size {
            let (expected, got) = (self.entry.size, self.written);
            self.abort().await;
            return Err(ReserveError::Incomplete { expected, got });
        }
        let e = &self.entry;
        let written = match self.sink {
            Sink::Buffered(buf) => self.reserve.bodies.put(&e.zone_id, e.generation, &e.key_hash, buf.freeze()).await,
            Sink::Multipart(w) => w.finish().await.map(|_| Written::at(self.entry.blob.clone())),
        };
        // Held until the index has recorded the location (see `Written::hold`).
        let written = written.map_err(|e| self.reserve.observe_blob(e))?;
        self.entry.blob = written.location.clone();
        self.entry.stored_on = Timestamp::now();
        self.reserve.record_grouped(self.entry, written).await
    }

    /// Abandons the write; nothing becomes visible.
    pub async fn abort(self) {
        if let Sink::Multipart(w) = self.sink
            && let Err(e) = w.abort().await
        {
            tracing::warn!(error = %e, "could not abort a reserve upload");
        }
    }
}
