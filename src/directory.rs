//! The zones the proxy routes by, held in memory: looked up by hostname on every request without a
//! database read.
//!
//! Freshness: the API refreshes a zone here after each change it commits, before it answers, so a PATCH of
//! the reserve setting or a Clear's POST is in force for every request that starts after the response. A
//! background poll picks up changes made elsewhere (the admin commands, another node) within
//! `refresh_interval`; a hostname not yet known is looked up in the store when first requested.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    domain::{Zone, ZoneId, ZoneName},
    storage::{ControlStore, Page, StoreResult, ZoneFilter},
};

/// Puts `zone` in the table unless the table holds a newer revision; returns what the table holds.
fn install(table: &mut HashMap<String, Arc<Zone>>, zone: Zone) -> Arc<Zone> {
    let slot = table.entry(zone.name.as_str().to_owned()).or_insert_with(|| Arc::new(zone.clone()));
    if slot.id != zone.id {
        *slot = Arc::new(zone);
    } else if slot.revision < zone.revision {
        // A generation only grows; one raised in memory by a Clear stays raised.
        let generation = zone.generation.max(slot.generation);
        *slot = Arc::new(Zone { generation, ..zone });
    }
    slot.clone()
}

/// The in-memory zone table; cheap to clone.
#[derive(Clone)]
pub struct ZoneDirectory {
    control: Arc<dyn ControlStore>,
    by_name: Arc<RwLock<HashMap<String, Arc<Zone>>>>,
}

impl ZoneDirectory {
    pub fn new(control: Arc<dyn ControlStore>) -> Self {
        Self { control, by_name: Arc::default() }
    }

    /// The zone named `host` (already lower-cased, without port), from memory, else from the store.
    pub async fn resolve(&self, host: &str) -> StoreResult<Option<Arc<Zone>>> {
        if let Some(zone) = self.by_name.read().expect("zone table lock").get(host) {
            return Ok(Some(zone.clone()));
        }
        let Ok(name) = ZoneName::parse(host) else {
            return Ok(None);
        };
        Ok(self.control.zone_by_name(&name).await?.map(|z| self.insert(z)))
    }

    /// Every zone known in memory.
    pub fn zones(&self) -> Vec<Arc<Zone>> {
        self.by_name.read().expect("zone table lock").values().cloned().collect()
    }

    /// Records that a Clear moved the zone to `generation`, without a store read (so it cannot fail after
    /// the Clear committed).
    pub fn raise_generation(&self, id: &ZoneId, generation: i64) {
        let mut table = self.by_name.write().expect("zone table lock");
        if let Some(slot) = table.values_mut().find(|z| z.id == *id)
            && slot.generation < generation
        {
            *slot = Arc::new(Zone { generation, ..(**slot).clone() });
        }
    }

    /// Installs `zone` as read from the store, unless a newer read of it is already installed (reads
    /// race: a poll may finish after the API's refresh of a later change).
    pub fn insert(&self, zone: Zone) -> Arc<Zone> {
        let mut table = self.by_name.write().expect("zone table lock");
        install(&mut table, zone)
    }

    /// Brings every zone in the store up to date.
    pub async fn reload(&self) -> StoreResult<()> {
        let (zones, _) = self.control.list_zones(&ZoneFilter::default(), Page { page: 1, per_page: u32::MAX }).await?;
        let mut table = self.by_name.write().expect("zone table lock");
        for zone in zones {
            install(&mut table, zone);
        }
        Ok(())
    }

    /// Reloads every `interval` until `stop`.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "could not reload the zone table");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_older_read_never_replaces_a_newer_one() {
        let mut table = HashMap::new();
        install(&mut table, Zone::example(3, 2, false));
        // A poll that read before the change finishes after the API installed it.
        let kept = install(&mut table, Zone::example(2, 1, true));
        assert_eq!((kept.revision, kept.generation, kept.reserve_on), (3, 2, false));
        let newer = install(&mut table, Zone::example(4, 2, true));
        assert!(newer.reserve_on);
    }

    #[test]
    fn a_generation_raised_in_memory_stays_raised() {
        let mut table = HashMap::new();
        install(&mut table, Zone::example(1, 1, false));
        let slot = table.get_mut("example.com").unwrap();
        *slot = Arc::new(Zone { generation: 2, ..(**slot).clone() });
        // A newer revision read before the Clear's bump committed.
        let z = install(&mut table, Zone::example(2, 1, false));
        assert_eq!((z.revision, z.generation), (2, 2));
    }
}
