//! `Cache-Tag` (Cloudflare): the origin names groups an object belongs to, so a purge by tag can target
//! them (SPEC §10). Read from the response, kept with the stored object, never sent to a client.
//!
//! The value is a comma-separated list; several lines are one list (RFC 9110 §5.3); each tag is trimmed and
//! lower-cased (tags are case-insensitive) and empty members are skipped. A response whose `Cache-Tag` lines
//! add up to more than the configured bound (`--cache-tag-max-bytes`, 16 KiB by default, Cloudflare's
//! limit), or that holds a tag longer than [`crate::domain::purge::MAX_TAG_BYTES`], is not stored (our
//! choice: dropping tags would make a purge by one of them silently miss the object).

use http::{HeaderMap, HeaderName};

use crate::domain::purge::MAX_TAG_BYTES;

/// `Cache-Tag`.
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Cloudflare's bound on a response's `Cache-Tag` lines, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024;

/// The tags of a response, lower-cased, each once, in order of first appearance.
pub fn tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for line in headers.get_all(CACHE_TAG) {
        for member in line.as_bytes().split(|&b| b == b',') {
            let member = String::from_utf8_lossy(member.trim_ascii()).to_lowercase();
            if !member.is_empty() && !tags.contains(&member) {
                tags.push(member);
            }
        }
    }
    tags
}

/// Whether the response's `Cache-Tag` lines stay within `max_bytes` in all and every tag within
/// [`MAX_TAG_BYTES`].
pub fn within_bounds(headers: &HeaderMap, max_bytes: usize) -> bool {
    let mut total = 0usize;
    for line in headers.get_all(CACHE_TAG) {
        total = total.saturating_add(line.len());
        if total > max_bytes || line.as_bytes().split(|&b| b == b',').any(|m| m.trim_ascii().len() > MAX_TAG_BYTES) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_TAG, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn tags_are_read_over_every_line_trimmed_and_case_insensitive() {
        let h = headers(&["Product-1, ,shoes", " SHOES ,sale"]);
        assert_eq!(tags(&h), vec!["product-1", "shoes", "sale"]);
        assert!(tags(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn bounds_cover_the_total_and_each_tag() {
        assert!(within_bounds(&headers(&["a,b"]), 16));
        assert!(!within_bounds(&headers(&["a".repeat(10).as_str(), "b".repeat(10).as_str()]), 16));
        assert!(!within_bounds(&headers(&["x".repeat(MAX_TAG_BYTES + 1).as_str()]), 1 << 20));
    }
}
