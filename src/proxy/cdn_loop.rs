//! Forwarding-loop detection with `CDN-Loop` (RFC 8586). Every request this cache forwards carries its own
//! cdn-id appended to the `CDN-Loop` it arrived with (Cloudflare appends `cloudflare` the same way); a request
//! that arrives already carrying it has come back round — a zone whose origin leads back to this cache — and
//! is refused, as is one that has passed through more than [`MAX_HOPS`] CDNs, so a loop through several
//! installations ends too.

use std::path::Path;

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::storage::ControlStore;

/// Most cdn-ids a request may already carry in `CDN-Loop` (this cache's would be one more). Cloudflare, Fastly
/// and Akamai each add one or a few per pass; sixteen is far beyond any legitimate chain, and small enough
/// that a loop through installations that do not know each other stops after a few hops each.
pub const MAX_HOPS: usize = 16;

/// The file in which earlier versions kept the cdn-id in the data directory; it is carried over.
const LEGACY_FILE: &str = "cdn-id";

/// The control store's key for the cdn-id.
const KEY: &str = "cdn_id";

const CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// This installation's cdn-id (RFC 8586 §2, a pseudonym): `cache-reserve-` and 16 random hex digits, made on
/// first start and kept in the control store, so it survives restarts and every node sharing the store
/// uses the same one (a request that passes through two nodes of one installation has looped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnId(String);

impl CdnId {
    /// Reads the cdn-id kept in the control store, making one on first use (or taking the one an earlier
    /// version kept in `legacy_dir`).
    pub async fn load_or_create(control: &dyn ControlStore, legacy_dir: Option<&Path>) -> anyhow::Result<Self> {
        let legacy = legacy_dir.map(|d| d.join(LEGACY_FILE));
        let proposed = match legacy.as_ref().map(std::fs::read_to_string) {
            Some(Ok(kept)) => kept.trim().to_owned(),
            _ => {
                let mut random = [0u8; 8];
                getrandom::fill(&mut random).expect("the operating system's random source failed");
                format!("cache-reserve-{}", hex::encode(random))
            }
        };
        let id = control.installation_value(KEY, &proposed).await.context("cannot read the cdn-id")?;
        anyhow::ensure!(
            !id.is_empty() && id.bytes().all(is_tchar),
            "the control store's cdn-id {id:?} is not a token (RFC 8586); delete the `cdn_id` row of the meta table \
             to make a new one"
        );
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a request was refused as a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looped {
    /// It carries this cache's own cdn-id: it has been here before.
    Ours,
    /// It carries more than [`MAX_HOPS`] cdn-ids.
    TooManyHops,
}

impl Looped {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ours => "it already carries this cache's cdn-id",
            Self::TooManyHops => "it has passed through more than 16 CDNs",
        }
    }
}

/// Checks a request's `CDN-Loop` (all lines) and appends this cache's cdn-id to it, as one line. Fails, leaving
/// the headers alone, for a request that has looped.
pub fn enter(headers: &mut HeaderMap, ours: &CdnId) -> Result<(), Looped> {
    let mut chain: Vec<u8> = Vec::new();
    let mut hops = 0;
    for line in headers.get_all(&CDN_LOOP) {
        for member in line.as_bytes().split(|&b| b == b',') {
            // cdn-info = cdn-id *( OWS ";" OWS parameter )
            let id = member.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
            if id.is_empty() {
                continue;
            }
            if id.eq_ignore_ascii_case(ours.0.as_bytes()) {
                return Err(Looped::Ours);
            }
            hops += 1;
        }
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(line.as_bytes());
    }
    if hops > MAX_HOPS {
        return Err(Looped::TooManyHops);
    }
    if !chain.trim_ascii().is_empty() {
        chain.extend_from_slice(b", ");
    } else {
        chain.clear();
    }
    chain.extend_from_slice(ours.0.as_bytes());
    let value = HeaderValue::from_bytes(&chain).expect("field values and a token make a valid field value");
    headers.insert(CDN_LOOP, value);
    Ok(())
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> CdnId {
        CdnId("cache-reserve-0011223344556677".into())
    }

    #[test]
    fn appends_to_every_line_and_refuses_its_own_id_or_too_many_hops() {
        let mut h = HeaderMap::new();
        assert_eq!(enter(&mut h, &ours()), Ok(()));
        assert_eq!(h["cdn-loop"], "cache-reserve-0011223344556677");

        let mut h = HeaderMap::new();
        h.append("cdn-loop", HeaderValue::from_static("cloudflare, foo; a=b"));
        h.append("cdn-loop", HeaderValue::from_static("Fastly"));
        assert_eq!(enter(&mut h, &ours()), Ok(()));
        assert_eq!(h.get_all("cdn-loop").iter().count(), 1);
        assert_eq!(h["cdn-loop"], "cloudflare, foo; a=b, Fastly, cache-reserve-0011223344556677");
        assert_eq!(enter(&mut h, &ours()), Err(Looped::Ours), "its own id, now last");

        let mut h = HeaderMap::new();
        h.insert("cdn-loop", HeaderValue::from_static("a, CACHE-RESERVE-0011223344556677 ; x=1, b"));
        assert_eq!(enter(&mut h, &ours()), Err(Looped::Ours));

        let sixteen = vec!["other"; MAX_HOPS].join(", ");
        let mut h = HeaderMap::new();
        h.insert("cdn-loop", HeaderValue::from_str(&sixteen).unwrap());
        assert_eq!(enter(&mut h, &ours()), Ok(()));
        assert_eq!(enter(&mut h.clone(), &CdnId("another".into())), Err(Looped::TooManyHops));
    }

    #[tokio::test]
    async fn the_cdn_id_is_made_once_kept_in_the_store_and_carried_over_from_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::sql::SqlStore::open_sqlite(&dir.path().join("a.db")).await.unwrap();
        let first = CdnId::load_or_create(&store, Some(dir.path())).await.unwrap();
        assert!(first.as_str().starts_with("cache-reserve-") && first.as_str().len() == 30, "{first:?}");
        assert_eq!(CdnId::load_or_create(&store, None).await.unwrap(), first);
        let other = crate::storage::sql::SqlStore::open_sqlite(&dir.path().join("b.db")).await.unwrap();
        assert_ne!(CdnId::load_or_create(&other, None).await.unwrap(), first);
        std::fs::write(dir.path().join(LEGACY_FILE), "cache-reserve-0123456789abcdef\n").unwrap();
        let upgraded = crate::storage::sql::SqlStore::open_sqlite(&dir.path().join("c.db")).await.unwrap();
        assert_eq!(
            CdnId::load_or_create(&upgraded, Some(dir.path())).await.unwrap().as_str(),
            "cache-reserve-0123456789abcdef"
        );
    }
}
