//! The metadata stored beside a reserve object's body: its cache policy (request and response headers,
//! status, response time), versioned so the format can change.

use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct StoredMeta {
    v: u32,
    policy: CachePolicy,
}

pub fn encode(policy: &CachePolicy) -> Vec<u8> {
    serde_json::to_vec(&StoredMeta { v: 1, policy: policy.clone() }).expect("a cache policy serialises")
}

/// The stored policy; `None` for metadata this version cannot read (the object is then a miss).
pub fn decode(meta: &[u8]) -> Option<CachePolicy> {
    serde_json::from_slice::<StoredMeta>(meta).ok().filter(|m| m.v == 1).map(|m| m.policy)
}
