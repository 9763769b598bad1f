//! The Cache Reserve Clear operation: a generation bump recorded with its start, then a reclaim to completion.

use super::{Timestamp, ZoneId};

/// Cloudflare's two states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearState {
    InProgress,
    Completed,
}

impl ClearState {
    /// The wire spelling: `In-progress` or `Completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClearState::InProgress => "In-progress",
            ClearState::Completed => "Completed",
        }
    }
}

/// How much of a Clear is done: counts fixed at start, and what is still stored of the cleared generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClearProgress {
    pub objects_total: u64,
    pub bytes_total: u64,
    pub objects_remaining: u64,
    pub bytes_remaining: u64,
}

impl ClearProgress {
    pub fn objects_deleted(&self) -> u64 {
        self.objects_total.saturating_sub(self.objects_remaining)
    }

    pub fn bytes_deleted(&self) -> u64 {
        self.bytes_total.saturating_sub(self.bytes_remaining)
    }
}

/// One Clear of one zone. It removes every object of generations below `target_generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearOperation {
    pub id: i64,
    pub zone_id: ZoneId,
    /// The zone's generation after the bump: objects of older generations are the ones cleared.
    pub target_generation: i64,
    pub start_ts: Timestamp,
    pub end_ts: Option<Timestamp>,
    pub modified_on: Timestamp,
    pub progress: ClearProgress,
}

impl ClearOperation {
    /// `Completed` exactly when an end time has been recorded.
    pub fn state(&self) -> ClearState {
        if self.end_ts.is_some() { ClearState::Completed } else { ClearState::InProgress }
    }
}
