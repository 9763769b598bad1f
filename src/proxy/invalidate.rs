//! Invalidation after unsafe requests (RFC 9111 §4.4): a 2xx or 3xx answer to a POST, PUT, DELETE or any
//! other unsafe method removes the stored responses for its URI, and for same-host `Location` and
//! `Content-Location` URIs, from every tier — before the answer goes back, so the client's next request
//! sees the change.

use http::response;

use super::{Ctx, client_headers::keyed, request::cache_key};
use crate::http_cache::invalidation;

impl Ctx {
    /// Applies §4.4 for the origin's answer `head` to this (unsafe) request.
    pub(super) async fn invalidate(&self, head: &response::Parts) {
        let p = &*self.proxy;
        let host = &self.forwarded.host;
        // The URI's plain key and its key with this request's keyed fields (`Origin`), each for both schemes
        // (a change through one is a change through the other). Copies keyed by other `Origin` values stay,
        // as at Cloudflare, where a purge by URL names the `Origin` it purges.
        let own = keyed(&self.parts.headers);
        let variants = if own.is_empty() { vec![String::new()] } else { vec![String::new(), own] };
        let mut keys = Vec::new();
        for pq in invalidation::invalidated(&self.parts.method, head.status, host, &self.parts.uri, &head.headers) {
            for secure in [false, true] {
                keys.extend(variants.iter().map(|k| cache_key(host, &pq, secure, k)));
            }
        }
        for key in keys {
            // Fills that began before this wait or never land; the copies in memory go.
            let clear = || {
                p.edge.remove(&key);
                p.index_cache.forget(&key);
            };
            p.invalidations.invalidate(&key, clear).await;
            // Even while the reserve is off: a copy left there would be served again once it is on.
            match p.reserve.delete_if_present(&self.zone.id, &key).await {
                Ok(true) => self.counters.class_a.increment(1),
                Ok(false) => {}
                Err(e) => tracing::warn!(zone = %self.zone.name, error = %e, "could not invalidate a reserve object"),
            }
            // A request that looked the key up after the first count, while the reserve copy was still
            // there, may have put that copy back in memory: count again and clear again, now that the
            // reserve no longer has it.
            p.invalidations.invalidate(&key, clear).await;
        }
    }
}
