//! Background work that outlives a request: the Clear reclaimer and the retention sweeper.

pub mod purge;
pub mod reclaim;
pub mod retention;

pub use purge::PurgeReclaimer;
pub use reclaim::{ReclaimConfig, Reclaimer};
pub use retention::{AccessLog, Retention, RetentionConfig};
