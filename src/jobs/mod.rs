//! Background work that outlives a request: the Clear reclaimer.

pub mod reclaim;

pub use reclaim::{ReclaimConfig, Reclaimer};
