//! Secondary keys (RFC 9111 §4.1): the request header fields a response's `Vary` names, kept as digests of
//! their normalised values, so a stored response never holds a client's cookies or credentials and a
//! stored variant is reused only for a request that presents the same values.

use http::{HeaderMap, HeaderName, header::VARY};
use sha2::{Digest, Sha256};

/// The bytes kept per selecting header field.
pub type FieldDigest = [u8; 16];

/// The selecting header fields of a stored response and what the original request held for each
/// (`None` when it held none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selecting(pub Vec<(HeaderName, Option<FieldDigest>)>);

/// The field names a response's `Vary` lists (lower-case, each once). `None` for `Vary: *` in any line,
/// which no request can match.
pub fn names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in response.get_all(VARY) {
        for member in line.as_bytes().split(|&b| b == b',') {
            let member = member.trim_ascii();
            if member == b"*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(member)
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    Some(names)
}

impl Selecting {
    /// The selecting fields of `request` for the fields `names`.
    pub fn capture(names: &[HeaderName], request: &HeaderMap) -> Self {
        Self(names.iter().map(|n| (n.clone(), digest(n, request))).collect())
    }

    /// Whether `request` presents the same selecting fields (RFC 9111 §4.1).
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.0.iter().all(|(name, stored)| digest(name, request) == *stored)
    }
}

/// The digest of a request's value for one selecting field, after normalisation: field lines combined,
/// whitespace around list members and parameters removed and runs of it made one space, empty members
/// dropped; for the `Accept*` fields, whose members
/// are case-insensitive and unordered, also lower-cased and sorted.
fn digest(name: &HeaderName, request: &HeaderMap) -> Option<FieldDigest> {
    let mut lines = request.get_all(name).iter().peekable();
    lines.peek()?;
    let mut members: Vec<Vec<u8>> = lines
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(|m| squeeze(m.trim_ascii()))
        .filter(|m| !m.is_empty())
        .collect();
    if matches!(name.as_str(), "accept" | "accept-language" | "accept-encoding" | "accept-charset") {
        for m in &mut members {
            m.make_ascii_lowercase();
        }
        members.sort();
    }
    let mut h = Sha256::new();
    for m in &members {
        h.update((m.len() as u64).to_be_bytes());
        h.update(m);
    }
    let full = h.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    Some(out)
}

/// A list member with whitespace runs made one space and none beside `;` or `=`.
fn squeeze(member: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(member.len());
    let mut space = false;
    for &b in member {
        if b == b' ' || b == b'\t' {
            space = true;
            continue;
        }
        if space && !matches!(b, b';' | b'=') && !matches!(out.last(), Some(b';' | b'=')) {
            out.push(b' ');
        }
        space = false;
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn vary_names_are_read_over_every_line_and_star_anywhere_matches_nothing() {
        let r = headers(&[("vary", "Accept-Encoding, , accept-encoding"), ("vary", "X-Foo")]);
        assert_eq!(
            names(&r).unwrap(),
            vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("x-foo")]
        );
        for star in [&[("vary", "*")][..], &[("vary", "Foo, *")], &[("vary", ", *")], &[("vary", "foo"), ("vary", "*")]]
        {
            assert_eq!(names(&headers(star)), None, "{star:?}");
        }
    }

    #[test]
    fn requests_match_after_normalisation_only() {
        let names = [HeaderName::from_static("x-foo"), HeaderName::from_static("accept-language")];
        let stored = Selecting::capture(&names, &headers(&[("x-foo", "a, b"), ("accept-language", "en, fr")]));
        assert!(stored.matches(&headers(&[("x-foo", "a"), ("x-foo", "b"), ("accept-language", "FR,en")])));
        assert!(stored.matches(&headers(&[("x-foo", "a,b"), ("accept-language", "fr , en")])));
        assert!(!stored.matches(&headers(&[("x-foo", "a,  b"), ("accept-language", "en ;q=1, fr")])));
        let ua = [HeaderName::from_static("user-agent")];
        let one = Selecting::capture(&ua, &headers(&[("user-agent", "curl/8 (x86  64)")]));
        assert!(one.matches(&headers(&[("user-agent", "curl/8 (x86 64)")])));
        assert!(!one.matches(&headers(&[("user-agent", "curl/8 (x8664)")])));
        assert!(!stored.matches(&headers(&[("x-foo", "b, a"), ("accept-language", "en, fr")])));
        assert!(!stored.matches(&headers(&[("accept-language", "en, fr")])), "a field the original had is missing");
        let absent = Selecting::capture(&names, &HeaderMap::new());
        assert!(absent.matches(&HeaderMap::new()));
        assert!(!absent.matches(&headers(&[("x-foo", "")])), "present-but-empty differs from absent");
    }
}
