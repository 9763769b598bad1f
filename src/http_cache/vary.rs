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

/// More selecting fields than this and a response is treated as `Vary: *` (never reused): bounds the work
/// an origin can cause per request, and the stored record.
const MAX_NAMES: usize = 32;

/// The field names a response's `Vary` lists (lower-case, each once). `None` for `Vary: *` in any line,
/// which no request can match, or for more than [`MAX_NAMES`] names.
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
                if names.len() == MAX_NAMES {
                    return None;
                }
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

/// The digest of a request's value for one selecting field, after the normalisation RFC 9111 §4.1 allows:
/// only what is known to leave the meaning alone. Field lines are combined and each list member trimmed
/// (a field sent on several lines is a list, and whitespace around list commas is insignificant); for the
/// `Accept*` fields, whose tokens are case-insensitive and allow whitespace around `;`, members are also
/// lower-cased and that whitespace dropped. Order is kept: an origin may break ties between equal weights by
/// it.
fn digest(name: &HeaderName, request: &HeaderMap) -> Option<FieldDigest> {
    let mut lines = request.get_all(name).iter().peekable();
    lines.peek()?;
    let accept = matches!(name.as_str(), "accept" | "accept-language" | "accept-encoding" | "accept-charset");
    let mut h = Sha256::new();
    for member in lines.flat_map(|line| line.as_bytes().split(|&b| b == b',')) {
        let member = member.trim_ascii();
        if member.is_empty() {
            continue;
        }
        let member: Vec<u8> = if accept {
            member.split(|&b| b == b';').map(|p| p.trim_ascii().to_ascii_lowercase()).collect::<Vec<_>>().join(&b';')
        } else {
            member.to_vec()
        };
        h.update((member.len() as u64).to_be_bytes());
        h.update(&member);
    }
    let full = h.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    Some(out)
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
        let stored = Selecting::capture(&names, &headers(&[("x-foo", "a, b"), ("accept-language", "en, fr;q=0.5")]));
        assert!(stored.matches(&headers(&[("x-foo", "a"), ("x-foo", "b"), ("accept-language", "EN,Fr ; Q=0.5")])));
        assert!(stored.matches(&headers(&[("x-foo", "a,b"), ("accept-language", "en , fr;q=0.5")])));
        assert!(!stored.matches(&headers(&[("x-foo", "b, a"), ("accept-language", "en, fr;q=0.5")])));
        assert!(!stored.matches(&headers(&[("x-foo", "a, b"), ("accept-language", "fr;q=0.5, en")])), "order kept");
        assert!(
            !stored.matches(&headers(&[("accept-language", "en, fr;q=0.5")])),
            "a field the original had is missing"
        );
        let ua = [HeaderName::from_static("user-agent")];
        let one = Selecting::capture(&ua, &headers(&[("user-agent", "curl/8 (x86  64)")]));
        assert!(!one.matches(&headers(&[("user-agent", "curl/8 (x86 64)")])), "inside a member, bytes count");
        assert!(one.matches(&headers(&[("user-agent", " curl/8 (x86  64) ")])));
        let absent = Selecting::capture(&names, &HeaderMap::new());
        assert!(absent.matches(&HeaderMap::new()));
        assert!(!absent.matches(&headers(&[("x-foo", "")])), "present-but-empty differs from absent");
    }
}
