//! `x-cache-reserve` for a response fetched from the origin (issue #12 A6): `MISS` when it is written to
//! the reserve, else why not — `OFF`/`UNAVAILABLE` by the zone's state, `INELIGIBLE` or a skipped write with
//! `x-cache-reserve-reason` — each counted in `cache_reserve_not_stored_total{reason}`.

use super::{Ctx, admit::ReserveSkip, respond::ReserveTag};
use crate::metrics::NotStored;

impl Ctx {
    /// `x-cache-reserve` for a response fetched from the origin, given what admission said of the reserve and
    /// whether a write started; counts the reason when it was not written.
    pub(super) fn reserve_tag(&self, judged: Result<u64, ReserveSkip>, writing: bool) -> ReserveTag {
        let why = match judged {
            Ok(_) if writing => return ReserveTag::Miss,
            Ok(_) => NotStored::WriteBudgetFull,
            Err(ReserveSkip::NotStorable(_)) => NotStored::NotStorable,
            Err(ReserveSkip::Off) if self.zone.reserve_on => NotStored::Unavailable,
            Err(ReserveSkip::Off) => NotStored::ReserveOff,
            Err(ReserveSkip::ShortLived) => NotStored::ShortLived,
            Err(ReserveSkip::NoLength) => NotStored::NoContentLength,
            Err(ReserveSkip::TooLarge) => NotStored::TooLarge,
        };
        self.counters.not_stored(why);
        match why {
            NotStored::ReserveOff | NotStored::Unavailable => ReserveTag::miss(self.zone.reserve_on, self.use_reserve),
            NotStored::WriteBudgetFull => ReserveTag::NotWritten(why),
            _ => ReserveTag::Ineligible(why),
        }
    }
}
