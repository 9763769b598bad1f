//! Where bodies live in the object store: `{zone}/g{generation}/{hh}/{key_hash}.{write_id}`.
//!
//! The generation is part of the path, so a Clear's leftovers are exactly the zone's `g{n}` prefixes with
//! `n` below the Clear's target; the random write id makes every write its own object, so a replaced or
//! superseded body can be deleted without touching the one that replaced it.

use object_store::path::Path;

use crate::domain::ZoneId;

/// A fresh location for one write of a key.
pub(super) fn blob_path(zone: &ZoneId, generation: i64, key_hash: &str) -> Path {
    let mut write_id = [0u8; 8];
    getrandom::fill(&mut write_id).expect("the operating system's random source failed");
    Path::from(format!(
        "{zone}/g{generation}/{}/{key_hash}.{}",
        key_hash.get(..2).unwrap_or("00"),
        hex::encode(write_id)
    ))
}

/// The prefix holding every body of a zone.
pub(super) fn zone_prefix(zone: &ZoneId) -> Path {
    Path::from(zone.as_str())
}

/// The generation a `g{n}` path segment names.
pub(super) fn parse_generation_segment(segment: &str) -> Option<i64> {
    segment.strip_prefix('g')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_zone_and_generation_and_differ_per_write() {
        let z = ZoneId::generate();
        let h = crate::reserve::key_hash("https://example.com/a");
        let a = blob_path(&z, 7, &h);
        let b = blob_path(&z, 7, &h);
        assert_ne!(a, b);
        let parts: Vec<_> = a.parts().map(|p| p.as_ref().to_owned()).collect();
        assert_eq!(parts[0], z.as_str());
        assert_eq!(parse_generation_segment(&parts[1]), Some(7));
        assert_eq!(parts[2], h[..2]);
    }
}
