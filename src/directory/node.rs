//! How a node takes part in the zone sync: its configuration and its name.

use std::time::Duration;

/// How the zone table keeps in step with the store.
#[derive(Debug, Clone, Copy)]
pub struct SyncConfig {
    /// How often to read the change feed when not woken by a notification.
    pub interval: Duration,
    /// How long after the start of its last successful sync the view may be used for the reserve; also
    /// the longest an acknowledged change waits for a silent node.
    pub view_ttl: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self { interval: Duration::from_millis(250), view_ttl: Duration::from_secs(1) }
    }
}

/// A name for this node in leases and the node table: host name, process id and a random suffix, so a
/// restarted process is a new node.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    format!("{}-{}-{}", if host.is_empty() { "node" } else { host }, std::process::id(), hex::encode(random))
}
