//! Purge and invalidate on the data plane (SPEC §10): every node holds the rules of its zones in memory
//! ([`PurgeBook`]), fed by the same change feed as the zones, and judges each stored copy it finds against
//! them before serving it.
//!
//! **Logically instant.** A rule carries the store-wide revision of the call that made it; every stored
//! copy (edge and reserve) carries the revision its filling node had applied when the request began. A rule
//! applies to copies filled under an older revision: such a copy may predate the purge. A purge answers
//! only once every live node holds its rules ([`crate::directory::ZoneDirectory::publish_purge`]), so no
//! request that starts afterwards, on any node, gets a purged copy.
//!
//! **Bounded look-ups.** The rules are kept per selector value, and per value only the latest revision of
//! each action counts (a later purge of a value covers every copy an earlier one did). Judging a copy is a
//! handful of hash look-ups — its host, its URL, its tags, each length at which a prefix rule exists — and
//! does not grow with the number of purges made (Varnish's ban list does).
//!
//! **No resurrection.** A fill that began before a rule lands in no tier after it: the edge tier's landing
//! checks the zone's latest rule revision under the book's lock ([`PurgeBook::land`]), and the reserve's
//! index refuses the write in the transaction that would record it (its zone's `purge_revision`).

mod book;

pub use book::{PurgeBook, Subject, Verdict};
