//! The rules of the reserve setting and the Clear (SPEC §5, §6), as pure decisions over the state a backend
//! read inside its transaction. Every backend calls these, so the rules live in one place; what a backend
//! owns is reading that state under the locks that keep it true until commit.

use super::{ClearOperation, Zone};

/// What `POST …/cache_reserve_clear` does, given the zone and its latest Clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearDecision {
    /// Bump the generation and record a new operation.
    Start,
    /// A Clear is `In-progress`: answer it unchanged (idempotent; our choice, SPEC §6).
    AlreadyRunning,
    /// The reserve is on: refuse (Cloudflare 1152).
    ReserveOn,
}

/// Decides a Clear request. A running Clear wins over the setting: while one runs the setting is off anyway
/// ([`decide_set_reserve`] refuses `on`).
pub fn decide_start_clear(zone: &Zone, latest: Option<&ClearOperation>) -> ClearDecision {
    if latest.is_some_and(|c| c.end_ts.is_none()) {
        ClearDecision::AlreadyRunning
    } else if zone.reserve_on {
        ClearDecision::ReserveOn
    } else {
        ClearDecision::Start
    }
}

/// What a change of the reserve setting does, given the zone's latest Clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveDecision {
    Apply,
    /// `on` while a Clear is `In-progress`: refuse (Cloudflare 1153). `off` is always applied.
    ClearInProgress,
}

/// Decides a change of the reserve setting to `on` (true) or `off`.
pub fn decide_set_reserve(on: bool, latest: Option<&ClearOperation>) -> ReserveDecision {
    if on && latest.is_some_and(|c| c.end_ts.is_none()) {
        ReserveDecision::ClearInProgress
    } else {
        ReserveDecision::Apply
    }
}

/// Whether a body written into `written_generation` may be recorded in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDecision {
    Record,
    /// A Clear moved the zone to a newer generation after the write began: recording it would put an object
    /// into a cleared generation, after the Clear counted it.
    Superseded,
    /// The reserve was switched off: it takes no writes (SPEC §5).
    ReserveOff,
    /// A purge or invalidation committed after the filling request began: the content may predate it, and
    /// the rule's background work may already have passed this key (SPEC §10: a fill never resurrects).
    Purged,
}

/// The zone as a write is judged against: its generation, setting and latest purge revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTarget {
    pub generation: i64,
    pub reserve_on: bool,
    pub purge_revision: i64,
}

/// Decides whether a write into `written_generation`, filled under zone revision `fill_revision`, may be
/// recorded.
pub fn decide_record(zone: RecordTarget, written_generation: i64, fill_revision: i64) -> RecordDecision {
    if zone.generation != written_generation {
        RecordDecision::Superseded
    } else if !zone.reserve_on {
        RecordDecision::ReserveOff
    } else if fill_revision < zone.purge_revision {
        RecordDecision::Purged
    } else {
        RecordDecision::Record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClearProgress, Timestamp, ZoneId};

    fn clear(done: bool) -> ClearOperation {
        ClearOperation {
            id: 1,
            zone_id: ZoneId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            target_generation: 2,
            start_ts: Timestamp::from_micros(1),
            end_ts: done.then(|| Timestamp::from_micros(2)),
            modified_on: Timestamp::from_micros(1),
            progress: ClearProgress::default(),
        }
    }

    #[test]
    fn clear_needs_the_reserve_off_and_is_idempotent_while_running() {
        let off = Zone::example(1, 1, false);
        let on = Zone::example(1, 1, true);
        assert_eq!(decide_start_clear(&on, None), ClearDecision::ReserveOn);
        assert_eq!(decide_start_clear(&off, None), ClearDecision::Start);
        assert_eq!(decide_start_clear(&off, Some(&clear(true))), ClearDecision::Start);
        assert_eq!(decide_start_clear(&off, Some(&clear(false))), ClearDecision::AlreadyRunning);
    }

    #[test]
    fn on_is_refused_while_a_clear_runs_and_off_never_is() {
        assert_eq!(decide_set_reserve(true, Some(&clear(false))), ReserveDecision::ClearInProgress);
        assert_eq!(decide_set_reserve(true, Some(&clear(true))), ReserveDecision::Apply);
        assert_eq!(decide_set_reserve(true, None), ReserveDecision::Apply);
        assert_eq!(decide_set_reserve(false, Some(&clear(false))), ReserveDecision::Apply);
    }

    #[test]
    fn a_write_is_recorded_only_into_the_current_generation_of_a_zone_that_is_on() {
        let zone = |generation, reserve_on| RecordTarget { generation, reserve_on, purge_revision: 7 };
        assert_eq!(decide_record(zone(2, true), 2, 7), RecordDecision::Record);
        assert_eq!(decide_record(zone(3, true), 2, 7), RecordDecision::Superseded);
        assert_eq!(decide_record(zone(3, false), 2, 7), RecordDecision::Superseded);
        assert_eq!(decide_record(zone(2, false), 2, 7), RecordDecision::ReserveOff);
        assert_eq!(decide_record(zone(2, true), 2, 6), RecordDecision::Purged, "filled before the purge");
        assert_eq!(decide_record(zone(2, true), 2, 9), RecordDecision::Record);
    }
}
