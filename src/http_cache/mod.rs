//! HTTP caching semantics, as pure functions over header maps and a clock: what may be stored (RFC 9111 §3),
//! how fresh a stored response is (§4.2), when and how it is validated (§4.3), how a `304` updates it
//! (§3.2, §4.3.4), what an unsafe request invalidates (§4.4), and which directives are in force when
//! `CDN-Cache-Control` (RFC 9213), `Cloudflare-CDN-Cache-Control` or `Surrogate-Control` is present. No
//! I/O: the proxy asks, these answer.
//!
//! These semantics are what the product is for, so they are our own code rather than a library's (see the
//! README's design section): every rule here names its RFC section, and the tests beside each file check
//! the rule, not the implementation.

pub mod cache_tag;
pub mod codec;
pub mod date;
pub mod directives;
mod freshness;
pub mod invalidation;
pub mod range;
mod stale;
mod storable;
mod stored;
mod validation;
mod vary;

pub use freshness::Freshness;
pub use stale::StaleUse;
pub use storable::NotStorable;
pub use stored::{CONSUMED, CacheRules, Reuse, StoredResponse};
