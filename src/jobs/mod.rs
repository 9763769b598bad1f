//! Background work that outlives a request: the Clear reclaimer, the purge reclaimer, the retention
//! sweeper and the compaction of local segments.

pub mod compact;
pub mod purge;
pub mod reclaim;
pub mod retention;

pub use compact::{CompactConfig, Compactor};
pub use purge::PurgeReclaimer;
pub use reclaim::{ReclaimConfig, Reclaimer};
pub use retention::{AccessLog, Retention, RetentionConfig};
