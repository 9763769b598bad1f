//! The zone table's two pure rules: which names may serve a host, and which of two reads of a zone wins.

use std::{collections::HashMap, sync::Arc};

use crate::domain::Zone;

/// The names a zone serving `host` may have: `host` itself, then each parent domain, nearest first
/// (`a.b.example.com`, `b.example.com`, `example.com`, `com`).
pub(super) fn candidates(host: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(host), |h| h.split_once('.').map(|(_, parent)| parent)).filter(|h| !h.is_empty())
}

/// Puts `zone` in the table unless the table holds a newer revision for its name; returns what the table
/// holds. A deleted zone stays as a tombstone (lookups skip it), so that a read of it from before the
/// deletion, finishing late, cannot bring it back. Revisions are store-wide, so they order two zones of one
/// name too (one deleted, the other created after).
pub(super) fn install(table: &mut HashMap<String, Arc<Zone>>, zone: Zone) -> Arc<Zone> {
    let slot = table.entry(zone.name.as_str().to_owned()).or_insert_with(|| Arc::new(zone.clone()));
    if slot.id != zone.id {
        if slot.revision < zone.revision {
            *slot = Arc::new(zone);
        }
    } else if slot.revision < zone.revision {
        // A generation only grows; one raised in memory by a Clear stays raised.
        let generation = zone.generation.max(slot.generation);
        *slot = Arc::new(Zone { generation, ..zone });
    }
    slot.clone()
}
