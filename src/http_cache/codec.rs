//! The stored form of a [`StoredResponse`]: a versioned, length-prefixed binary record that keeps every
//! header field line, in order, byte for byte.
//!
//! Layout (integers big-endian): version `2` (u8); status (u16); request time and response time (u64 unix
//! milliseconds); field count (u32) and per field its name (u16 length + bytes) and value (u32 length +
//! bytes); selecting-field count (u16) and per field its name (u16 length + bytes), a presence byte and, if
//! present, its 16-byte digest. Directives and freshness are derived again on load.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{
    stored::{CacheRules, StoredResponse},
    vary::{FieldDigest, Selecting},
};

const VERSION: u8 = 2;

/// Encodes a stored response.
pub fn encode(stored: &StoredResponse) -> Vec<u8> {
    let (status, headers, selecting, request_time, response_time) = stored.parts();
    let mut out = Vec::with_capacity(64 + headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 6).sum::<usize>());
    out.push(VERSION);
    out.extend_from_slice(&status.as_u16().to_be_bytes());
    out.extend_from_slice(&request_time.to_be_bytes());
    out.extend_from_slice(&response_time.to_be_bytes());
    let fields: Vec<(&HeaderName, &HeaderValue)> = headers.iter().collect();
    out.extend_from_slice(&u32::try_from(fields.len()).unwrap_or(u32::MAX).to_be_bytes());
    for (name, value) in fields {
        put_name(&mut out, name);
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(&u16::try_from(selecting.0.len()).unwrap_or(u16::MAX).to_be_bytes());
    for (name, digest) in &selecting.0 {
        put_name(&mut out, name);
        match digest {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(d);
            }
            None => out.push(0),
        }
    }
    out
}

fn put_name(out: &mut Vec<u8>, name: &HeaderName) {
    let bytes = name.as_str().as_bytes();
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes a stored response; `None` for anything this version did not write (an older format, a
/// truncated or corrupt record): the object is then treated as absent.
pub fn decode(bytes: &[u8], rules: &CacheRules) -> Option<StoredResponse> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let request_time = r.u64()?;
    let response_time = r.u64()?;
    let count = r.u32()?;
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name_len = usize::from(r.u16()?);
        let name = HeaderName::from_bytes(r.bytes(name_len)?).ok()?;
        let len = usize::try_from(r.u32()?).ok()?;
        let value = HeaderValue::from_bytes(r.bytes(len)?).ok()?;
        headers.append(name, value);
    }
    let count = r.u16()?;
    let mut selecting = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_len = usize::from(r.u16()?);
        let name = HeaderName::from_bytes(r.bytes(name_len)?).ok()?;
        let digest = match r.u8()? {
            0 => None,
            1 => Some(FieldDigest::try_from(r.bytes(16)?).ok()?),
            _ => return None,
        };
        selecting.push((name, digest));
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(StoredResponse::assemble(status, headers, Selecting(selecting), request_time, response_time, rules))
}

/// A cursor that fails instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.bytes(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?))
    }
}
