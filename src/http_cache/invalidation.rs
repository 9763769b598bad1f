//! Invalidation by unsafe requests (RFC 9111 §4.4): a non-error response to a request whose method is not
//! safe invalidates the stored responses for its target URI, and for the URIs in its `Location` and
//! `Content-Location` when they have the same origin.

use http::{HeaderMap, Method, StatusCode, Uri, header::CONTENT_LOCATION, header::LOCATION};

/// Whether a method is safe (RFC 9110 §9.2.1). Every other method, unknown ones included, is unsafe.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// The path-and-query of each URI whose stored responses an answer invalidates: empty unless the method is
/// unsafe and the status is 2xx or 3xx; else the request's own, then `Location` and `Content-Location`
/// when they are relative or name `host` (any port, either scheme; the host names the zone here).
pub fn invalidated(method: &Method, status: StatusCode, host: &str, target: &Uri, response: &HeaderMap) -> Vec<String> {
    if is_safe(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let mut out = vec![target.path_and_query().map_or("/", |pq| pq.as_str()).to_owned()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(value) = response.get(name).and_then(|v| v.to_str().ok()) else { continue };
        if let Some(pq) = same_origin_path(value.trim(), host, target)
            && !out.contains(&pq)
        {
            out.push(pq);
        }
    }
    out
}

/// The path-and-query a `Location`-style reference names, resolved against the request's URI (RFC 3986
/// §5.2: dot segments, query-only and scheme-relative references included), if it is on `host`.
fn same_origin_path(reference: &str, host: &str, target: &Uri) -> Option<String> {
    let base =
        url::Url::parse(&format!("http://{host}{}", target.path_and_query().map_or("/", |pq| pq.as_str()))).ok()?;
    let resolved = base.join(reference).ok()?;
    let same = matches!(resolved.scheme(), "http" | "https")
        && resolved.host_str().is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host));
    if !same {
        return None;
    }
    let mut pq = resolved.path().to_owned();
    if let Some(q) = resolved.query() {
        pq.push('?');
        pq.push_str(q);
    }
    Some(pq)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn run(method: &str, status: u16, location: Option<&str>, content_location: Option<&str>) -> Vec<String> {
        let mut h = HeaderMap::new();
        if let Some(l) = location {
            h.insert(LOCATION, HeaderValue::from_str(l).unwrap());
        }
        if let Some(l) = content_location {
            h.insert(CONTENT_LOCATION, HeaderValue::from_str(l).unwrap());
        }
        let target: Uri = "/a/b?x=1".parse().unwrap();
        invalidated(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            StatusCode::from_u16(status).unwrap(),
            "example.com",
            &target,
            &h,
        )
    }

    #[test]
    fn unsafe_methods_that_succeed_invalidate_their_uri_and_same_origin_locations() {
        for m in ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"] {
            assert_eq!(run(m, 200, None, None), ["/a/b?x=1"], "{m}");
        }
        assert_eq!(run("POST", 303, Some("http://EXAMPLE.com:8080/c"), Some("d")), ["/a/b?x=1", "/c", "/a/d"]);
        assert_eq!(run("POST", 201, Some("/e?f"), None), ["/a/b?x=1", "/e?f"]);
        assert_eq!(run("POST", 200, Some("https://other.example/c"), Some("//other.example/d")), ["/a/b?x=1"]);
        assert_eq!(run("POST", 200, Some("../up"), Some("?q=2")), ["/a/b?x=1", "/up", "/a/b?q=2"]);
        assert_eq!(run("POST", 200, Some("//example.com/same"), Some("./d/../e")), ["/a/b?x=1", "/same", "/a/e"]);
    }

    #[test]
    fn safe_methods_and_failures_invalidate_nothing() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert!(run(m, 200, Some("/c"), None).is_empty(), "{m}");
        }
        for s in [400, 404, 500, 503] {
            assert!(run("POST", s, Some("/c"), None).is_empty(), "{s}");
        }
    }
}
