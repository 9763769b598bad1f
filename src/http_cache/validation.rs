//! Validation (RFC 9111 §4.3): the validators a cache sends, the `304`s that select a stored response, and
//! the client's own conditional requests answered from a stored response.

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED},
    request,
};

use super::{date, stored::StoredResponse};

impl StoredResponse {
    /// The conditional header fields that validate this response (RFC 9111 §4.3.1): `If-None-Match` with its
    /// `ETag` and `If-Modified-Since` with its `Last-Modified`. Empty when it has neither: it must then be
    /// fetched whole.
    pub fn validators(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(etag) = self.headers.get(ETAG) {
            out.push((IF_NONE_MATCH, etag.clone()));
        }
        if let Some(lm) = self.headers.get(LAST_MODIFIED).filter(|v| date::parse(v).is_some()) {
            out.push((IF_MODIFIED_SINCE, lm.clone()));
        }
        out
    }

    /// Whether a `304` answering our validation request selects this response (RFC 9111 §4.3.4): a strong
    /// entity tag must be this response's strong tag (strong comparison), a weak one match it weakly; without
    /// a tag, its `Last-Modified` must be this response's; a `304` with neither answers the one response we
    /// asked about (some origins send bare 304s).
    pub fn validated_by(&self, not_modified: &HeaderMap) -> bool {
        if let Some(tag) = not_modified.get(ETAG) {
            let Some(ours) = self.headers.get(ETAG) else { return false };
            let tag = tag.as_bytes().trim_ascii();
            return if tag.starts_with(b"W/") {
                weak_eq(ours.as_bytes(), tag)
            } else {
                ours.as_bytes().trim_ascii() == tag
            };
        }
        if let Some(lm) = not_modified.get(LAST_MODIFIED) {
            let ours = self.headers.get(LAST_MODIFIED).and_then(date::parse);
            return ours.is_some() && ours == date::parse(lm);
        }
        true
    }

    /// Whether the client's own conditional request is answered `304` from this response (RFC 9111 §4.3.2):
    /// `If-None-Match` against its entity tag (weak comparison, `*` matches), else `If-Modified-Since`
    /// against its `Last-Modified`, else its `Date`. Only for a 2xx response.
    pub fn not_modified_for(&self, request: &request::Parts) -> bool {
        if !self.status.is_success() {
            return false;
        }
        let mut inm = request.headers.get_all(IF_NONE_MATCH).iter().peekable();
        if inm.peek().is_some() {
            let ours = self.headers.get(ETAG);
            return inm.any(|line| {
                entity_tags(line.as_bytes()).any(|tag| tag == b"*" || ours.is_some_and(|o| weak_eq(o.as_bytes(), tag)))
            });
        }
        let mut ims = request.headers.get_all(IF_MODIFIED_SINCE).iter();
        let (Some(since), None) = (ims.next(), ims.next()) else { return false };
        let Some(since) = date::parse(since) else { return false };
        let modified = self
            .headers
            .get(LAST_MODIFIED)
            .and_then(date::parse)
            .or_else(|| self.headers.get(DATE).and_then(date::parse))
            .unwrap_or_else(|| date::from_unix_millis(self.response_time));
        modified <= since
    }
}

/// The members of an `If-None-Match` line: `*` or entity tags (`"x"`, `W/"x"`; RFC 9110 §8.8.3), read as
/// quoted strings, since an entity tag may itself hold a comma. Reading stops at anything else.
fn entity_tags(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = line;
    std::iter::from_fn(move || {
        rest = rest.trim_ascii_start();
        while let [b',', tail @ ..] = rest {
            rest = tail.trim_ascii_start();
        }
        if rest.is_empty() {
            return None;
        }
        if let [b'*', tail @ ..] = rest {
            rest = tail;
            return Some(&b"*"[..]);
        }
        let start = rest;
        let body = rest.strip_prefix(b"W/").unwrap_or(rest);
        let [b'"', quoted @ ..] = body else {
            rest = &[];
            return None;
        };
        let Some(end) = quoted.iter().position(|&b| b == b'"') else {
            rest = &[];
            return None;
        };
        let len = start.len() - quoted.len() + end + 1;
        let (tag, tail) = start.split_at(len);
        rest = tail;
        Some(tag)
    })
}

/// Weak comparison of entity tags (RFC 9110 §8.8.3.2): the opaque tags are equal, `W/` ignored.
fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    let opaque = |t: &[u8]| {
        let t = t.trim_ascii();
        t.strip_prefix(b"W/").unwrap_or(t).to_vec()
    };
    opaque(a) == opaque(b)
}

#[cfg(test)]
mod tests {
    use super::entity_tags;

    #[test]
    fn entity_tag_lists_are_read_as_quoted_strings() {
        let tags =
            |s: &str| entity_tags(s.as_bytes()).map(|t| String::from_utf8_lossy(t).into_owned()).collect::<Vec<_>>();
        assert_eq!(tags(r#""a", W/"b,c" , *"#), [r#""a""#, r#"W/"b,c""#, "*"]);
        assert_eq!(tags(r#",, "a",,"b""#), [r#""a""#, r#""b""#]);
        assert_eq!(tags(r#""a", junk, "b""#), [r#""a""#]);
        assert_eq!(tags(r#""unterminated"#), Vec::<String>::new());
        assert!(tags("").is_empty());
    }
}
