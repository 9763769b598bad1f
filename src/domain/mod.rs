//! Domain types: identifiers, permissions, settings and the Clear operation, parsed once at the edge.

pub mod access;
pub mod clear;
pub mod ids;
pub mod purge;
pub mod rules;
pub mod secret;
pub mod timestamp;
pub mod zone;

pub use access::{Access, Permission, Principal, TokenScope};
pub use clear::{ClearOperation, ClearProgress, ClearState};
pub use ids::{TokenId, UserId, ZoneId};
pub use purge::{Invalidation, PurgeAction, PurgeRule, PurgeTarget};
pub use timestamp::Timestamp;
pub use zone::{Zone, ZoneName};
