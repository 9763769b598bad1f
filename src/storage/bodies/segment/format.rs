//! The on-disk format of a segment: records of a 48-byte header and a body, packed one after another, and
//! the locations that name one record.
//!
//! A segment file starts with a [`Kind::Segment`] record (no body), holds [`Kind::Body`] records, and may
//! end with a [`Kind::Seal`] record, written when its writer moves on to a new segment. Every header
//! carries a CRC-32C of itself, so a scan can trust a length before it reads the body, and one of the
//! body, so a torn or damaged body is never served.
//!
//! | offset | field (little-endian) |
//! |---|---|
//! | 0 | magic `u32`, the bytes `CRS1` |
//! | 4 | kind `u8` (1 body, 2 segment start, 3 seal) · version `u8` (1) · header length `u16` (48) |
//! | 8 | body length `u64`, bytes |
//! | 16 | the first 16 bytes of the key's SHA-256 (zero when not a body): for tools, not needed to read |
//! | 32 | sequence `u64`: the record's number in the segment (a seal: its own offset) |
//! | 40 | CRC-32C of the body `u32` |
//! | 44 | CRC-32C of bytes 0..44 `u32` |

use std::fmt;

use crate::domain::ZoneId;

/// Bytes of a record header.
pub const HEADER_LEN: usize = 48;
/// The largest body a segment holds, in bytes; larger ones are stored one file each.
pub const MAX_BODY: u64 = 1 << 20;
const MAGIC: [u8; 4] = *b"CRS1";
const VERSION: u8 = 1;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An object body.
    Body = 1,
    /// The first record of every segment.
    Segment = 2,
    /// The last record of a segment its writer finished.
    Seal = 3,
}

/// A record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub body_len: u64,
    pub key: [u8; 16],
    pub seq: u64,
    pub body_crc: u32,
}

/// Why bytes are not a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    Magic,
    Checksum,
    Version,
    Kind,
}

/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and RocksDB: SIMD-accelerated by crc-fast.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

impl Header {
    /// The header of a body record.
    pub fn body(key_hash: &str, seq: u64, body: &[u8]) -> Self {
        Self { kind: Kind::Body, body_len: body.len() as u64, key: key_prefix(key_hash), seq, body_crc: crc32c(body) }
    }

    /// A record without a body: a segment start or a seal.
    pub fn marker(kind: Kind, seq: u64) -> Self {
        Self { kind, body_len: 0, key: [0; 16], seq, body_crc: crc32c(&[]) }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = self.kind as u8;
        b[5] = VERSION;
        b[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[8..16].copy_from_slice(&self.body_len.to_le_bytes());
        b[16..32].copy_from_slice(&self.key);
        b[32..40].copy_from_slice(&self.seq.to_le_bytes());
        b[40..44].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, BadHeader> {
        if b[0..4] != MAGIC {
            return Err(BadHeader::Magic);
        }
        if u32::from_le_bytes(b[44..48].try_into().expect("4 bytes")) != crc32c(&b[..44]) {
            return Err(BadHeader::Checksum);
        }
        if b[5] != VERSION || u16::from_le_bytes([b[6], b[7]]) as usize != HEADER_LEN {
            return Err(BadHeader::Version);
        }
        let kind = match b[4] {
            1 => Kind::Body,
            2 => Kind::Segment,
            3 => Kind::Seal,
            _ => return Err(BadHeader::Kind),
        };
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(Self {
            kind,
            body_len: u64_at(8),
            key: b[16..32].try_into().expect("16 bytes"),
            seq: u64_at(32),
            body_crc: u32::from_le_bytes(b[40..44].try_into().expect("4 bytes")),
        })
    }
}

/// The first 16 bytes of a hex SHA-256 (zeros where it is not hex).
fn key_prefix(key_hash: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    if let Some(hex) = key_hash.get(..32) {
        let _ = hex::decode_to_slice(hex, &mut key);
    }
    key
}

/// Where one record is: `{zone}/g{generation}/s{segment:016x}@{offset:x}+{len:x}`, the header's offset in
/// the segment file and the body's length, in bytes. Kept as the index's `blob` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLocation {
    pub zone: ZoneId,
    pub generation: i64,
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
}

impl RecordLocation {
    /// Parses a location this store wrote; `None` for anything else (a one-file body's path).
    pub fn parse(location: &str) -> Option<Self> {
        let mut parts = location.split('/');
        let (zone, generation, record) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let generation = generation.strip_prefix('g')?.parse().ok()?;
        let (segment, rest) = record.strip_prefix('s')?.split_once('@')?;
        let (offset, len) = rest.split_once('+')?;
        let hex = |s: &str| (!s.is_empty() && s.len() <= 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
        Some(Self {
            zone: ZoneId::parse(zone).ok()?,
            generation,
            segment: (segment.len() == 16).then(|| hex(segment)).flatten()?,
            offset: hex(offset)?,
            len: hex(len)?,
        })
    }

    /// The segment file's name in its generation's directory.
    pub fn file_name(&self) -> String {
        segment_file_name(self.segment)
    }
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/g{}/s{:016x}@{:x}+{:x}", self.zone, self.generation, self.segment, self.offset, self.len)
    }
}

/// `s{segment:016x}.seg`.
pub fn segment_file_name(segment: u64) -> String {
    format!("s{segment:016x}.seg")
}

/// The segment a file name names (`s{16 hex}.seg`).
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix('s')?.strip_suffix(".seg")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

/// `s{segment:016x}.dead`: offsets of deleted records, 8 bytes each, little-endian.
pub fn dead_file_name(segment: u64) -> String {
    format!("s{segment:016x}.dead")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_any_flipped_bit_is_caught() {
        let h = Header::body(&crate::reserve::key_hash("k"), 7, b"hello");
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        for i in 0..HEADER_LEN * 8 {
            let mut damaged = b;
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(Header::decode(&damaged).is_err(), "bit {i}");
        }
    }

    #[test]
    fn locations_round_trip_and_reject_other_paths() {
        let zone = ZoneId::generate();
        let l =
            RecordLocation { zone: zone.clone(), generation: 3, segment: 0x6763_a1f0_c2d4_9b7e, offset: 48, len: 4096 };
        let text = l.to_string();
        assert_eq!(text, format!("{zone}/g3/s6763a1f0c2d49b7e@30+1000"));
        assert_eq!(RecordLocation::parse(&text).as_ref(), Some(&l));
        for other in [
            format!("{zone}/g3/ab/abcd.0011"),
            format!("{zone}/g3/s6763a1f0c2d49b7e@30"),
            format!("{zone}/g3/s6763a1f0c2d49b7@30+10"),
            "../g3/s6763a1f0c2d49b7e@30+10".to_string(),
            format!("{zone}/gx/s6763a1f0c2d49b7e@30+10"),
            format!("{zone}/g3/s6763a1f0c2d49b7e@30+10/x"),
            format!("{zone}/g3/s6763a1f0c2d49b7e@+10"),
        ] {
            assert_eq!(RecordLocation::parse(&other), None, "{other}");
        }
        assert_eq!(parse_segment_file_name(&l.file_name()), Some(l.segment));
        assert_eq!(parse_segment_file_name("s6763a1f0c2d49b7e.dead"), None);
    }
}
