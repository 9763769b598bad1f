//! Reading a segment front to back: where its valid prefix ends, and what it holds.
//!
//! A writer acknowledges a record only after the `fdatasync` that covers it, and appends the next batch
//! only after that, so a crash leaves at most one unacknowledged batch after the durable prefix. The first
//! record that does not check out (bad magic, header checksum, a length past the end of the file, a body
//! checksum) therefore marks the end of what was ever acknowledged: everything from there on is a torn
//! tail that no index entry names.

use std::{
    fs::File,
    io::{self, BufReader, Read},
    os::unix::fs::FileExt,
};

use super::format::{HEADER_LEN, Header, Kind, MAX_BODY, crc32c};

/// What a scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Where the valid prefix ends, in bytes.
    pub end: u64,
    /// Offsets of the body records in it.
    pub bodies: Vec<u64>,
    /// Whether it ends with a seal.
    pub sealed: bool,
}

/// Scans `file` (of `len` bytes) from the start. With `verify_bodies`, every body is read and its checksum
/// checked; without, bodies are skipped (counting records, where headers suffice).
pub fn scan(file: &File, len: u64, verify_bodies: bool) -> io::Result<Scanned> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut out = Scanned::default();
    let mut body = Vec::new();
    let mut at = 0u64;
    loop {
        if at + HEADER_LEN as u64 > len {
            break;
        }
        let mut raw = [0u8; HEADER_LEN];
        reader.read_exact(&mut raw)?;
        let Ok(header) = Header::decode(&raw) else { break };
        let end = at + HEADER_LEN as u64 + header.body_len;
        let fits = header.body_len <= MAX_BODY && end <= len;
        let in_place = match header.kind {
            Kind::Segment => at == 0,
            Kind::Body | Kind::Seal => at > 0,
        };
        if !fits || !in_place {
            break;
        }
        if header.kind == Kind::Body && verify_bodies {
            body.resize(header.body_len as usize, 0);
            reader.read_exact(&mut body)?;
            if crc32c(&body) != header.body_crc {
                break;
            }
        } else {
            reader.seek_relative(header.body_len as i64)?;
        }
        match header.kind {
            Kind::Body => out.bodies.push(at),
            Kind::Seal => {
                out.end = end;
                out.sealed = header.seq == at;
                return Ok(out);
            }
            Kind::Segment => {}
        }
        at = end;
        out.end = end;
    }
    Ok(out)
}

/// Whether the segment ends with its seal (read from its last 48 bytes, without a scan).
pub fn is_sealed(file: &File, len: u64) -> io::Result<bool> {
    if len < 2 * HEADER_LEN as u64 {
        return Ok(false);
    }
    let mut raw = [0u8; HEADER_LEN];
    let at = len - HEADER_LEN as u64;
    file.read_exact_at(&mut raw, at)?;
    Ok(Header::decode(&raw).is_ok_and(|h| h.kind == Kind::Seal && h.seq == at && h.body_len == 0))
}
