//! Per-zone counters of the data plane, rendered in the Prometheus text format on the API's `/metrics`.
//!
//! Each server has its own recorder (not the process-global one), and each zone's counter handles are
//! registered once, so counting on the request path is an atomic add.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::domain::{Zone, ZoneId};

/// What `cf-cache-status` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Expired,
    Revalidated,
    /// A stale copy served at once while one request revalidates it in the background
    /// (`stale-while-revalidate`; Cloudflare's `UPDATING`).
    Updating,
    /// A stale copy served because the origin failed (`stale-if-error`, `--use-stale-on-error`).
    Stale,
    Bypass,
    Dynamic,
}

impl CacheStatus {
    pub const ALL: [CacheStatus; 8] = [
        Self::Hit,
        Self::Miss,
        Self::Expired,
        Self::Revalidated,
        Self::Updating,
        Self::Stale,
        Self::Bypass,
        Self::Dynamic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Expired => "EXPIRED",
            Self::Revalidated => "REVALIDATED",
            Self::Updating => "UPDATING",
            Self::Stale => "STALE",
            Self::Bypass => "BYPASS",
            Self::Dynamic => "DYNAMIC",
        }
    }
}

/// Why an origin response was not written to the reserve: `cache_reserve_not_stored_total{reason}` and
/// `x-cache-reserve-reason` (issue #12 A6; the reserve's rules are SPEC §8's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// RFC 9111 forbids storing it (`no-store`, `private`, a status or method that is not cacheable, ...).
    NotStorable,
    /// The zone's reserve is off.
    ReserveOff,
    /// The zone's reserve is on but could not be used (storage unreachable, zone view out of date).
    Unavailable,
    /// Less explicit freshness than `--reserve-min-ttl` (a heuristic lifetime never counts).
    ShortLived,
    /// No `Content-Length`: the reserve takes only bodies whose size is known before they arrive.
    NoContentLength,
    /// Larger than `--max-object-bytes`.
    TooLarge,
    /// Eligible, but `--write-buffer-bytes` was spent by writes in flight: skipped this time.
    WriteBudgetFull,
}

impl NotStored {
    pub const ALL: [NotStored; 7] = [
        Self::NotStorable,
        Self::ReserveOff,
        Self::Unavailable,
        Self::ShortLived,
        Self::NoContentLength,
        Self::TooLarge,
        Self::WriteBudgetFull,
    ];

    /// The label value and `x-cache-reserve-reason`: `not-storable`, `reserve-off`, `unavailable`,
    /// `short-lived`, `no-content-length`, `too-large`, `write-budget-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStorable => "not-storable",
            Self::ReserveOff => "reserve-off",
            Self::Unavailable => "unavailable",
            Self::ShortLived => "short-lived",
            Self::NoContentLength => "no-content-length",
            Self::TooLarge => "too-large",
            Self::WriteBudgetFull => "write-budget-full",
        }
    }
}

/// One zone's counters.
pub struct ZoneCounters {
    /// Responses, by `cf-cache-status` (indexed like [`CacheStatus::ALL`]).
    responses: [Counter; 8],
    /// Origin responses not written to the reserve, by reason (indexed like [`NotStored::ALL`]).
    not_stored: [Counter; 7],
    pub edge_hits: Counter,
    pub edge_misses: Counter,
    pub reserve_hits: Counter,
    pub reserve_misses: Counter,
    /// Writes to the reserve: objects stored and metadata refreshed (Cloudflare's Class A operations).
    pub class_a: Counter,
    /// Reads from the reserve (Cloudflare's Class B operations).
    pub class_b: Counter,
    /// Body bytes served from the reserve, which the origin did not have to send.
    pub reserve_bytes_served: Counter,
    /// Reserve writes given up: the disk fell behind the client, or the body ended short.
    pub writes_abandoned: Counter,
    /// Objects served without filling the edge tier because the edge-fill budget had no room for them.
    pub edge_fills_skipped: Counter,
    /// Background revalidations started for copies served `UPDATING` (`stale-while-revalidate`).
    pub background_revalidations: Counter,
    /// Copies served `UPDATING` whose revalidation was not started because the most background
    /// revalidations the proxy runs at once were under way (a later request starts it).
    pub background_revalidations_skipped: Counter,
    pub evicted: Counter,
    pub origin_requests: Counter,
    pub origin_errors: Counter,
    /// Requests refused because the client's own body failed (malformed, cut short, or too slow: 400/408).
    pub client_body_errors: Counter,
    /// Requests for which the zone's reserve was on but not used: its storage unreachable, or this node's
    /// view of the zones out of date (`x-cache-reserve: UNAVAILABLE`).
    pub reserve_unavailable: Counter,
    stored_objects: Gauge,
    stored_bytes: Gauge,
}

impl ZoneCounters {
    /// Counts an origin response not written to the reserve.
    pub fn not_stored(&self, why: NotStored) {
        let i = NotStored::ALL.iter().position(|s| *s == why).expect("every reason is listed");
        self.not_stored[i].increment(1);
    }

    pub fn response(&self, status: CacheStatus) {
        let i = CacheStatus::ALL.iter().position(|s| *s == status).expect("every status is listed");
        self.responses[i].increment(1);
    }
}

/// Process-wide gauges (no zone label): bytes held by the proxy's memory budgets.
pub const EDGE_FILL_BUFFER: &str = "cache_reserve_edge_fill_buffer_bytes";
/// Segments removed by compaction (process-wide counter).
pub const COMPACTED_SEGMENTS: &str = "cache_reserve_compaction_segments_removed_total";
/// Live bytes compaction copied out of the segments it removed (process-wide counter).
pub const COMPACTION_MOVED_BYTES: &str = "cache_reserve_compaction_moved_bytes_total";
/// Zone generations whose compaction waited for a purge or invalidation rule (process-wide counter).
pub const COMPACTION_DEFERRED: &str = "cache_reserve_compaction_deferred_total";
pub const WRITE_BUFFER: &str = "cache_reserve_write_buffer_bytes";
/// Access log lines dropped because the writer fell behind (process-wide counter).
pub const ACCESS_LOG_DROPPED: &str = "cache_reserve_access_log_dropped_total";
/// Process-wide gauge: purge and invalidation selector values this node still judges copies by.
pub const PURGE_RULES: &str = "cache_reserve_purge_rules";

/// Per zone, by `result` (`started`, `skipped`): background revalidations (`stale-while-revalidate`).
const BACKGROUND: &str = "cache_reserve_background_revalidations_total";
const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Every zone's counters, and the recorder that renders them.
pub struct Metrics {
    recorder: PrometheusRecorder,
    zones: RwLock<HashMap<ZoneId, Arc<ZoneCounters>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let counters: [(&str, &str, Option<Unit>); 23] = [
            ("cache_reserve_responses_total", "Proxy responses, by cf-cache-status.", None),
            (
                "cache_reserve_not_stored_total",
                "Origin responses not written to the reserve, by reason (not-storable, reserve-off, unavailable, short-lived, no-content-length, too-large, write-budget-full).",
                None,
            ),
            (ACCESS_LOG_DROPPED, "Access log lines dropped because the log's writer fell behind.", None),
            ("cache_reserve_tier_lookups_total", "Cache tier lookups, by tier (edge, reserve) and result.", None),
            ("cache_reserve_class_a_operations_total", "Reserve writes (Cloudflare Class A).", None),
            ("cache_reserve_class_b_operations_total", "Reserve reads (Cloudflare Class B).", None),
            (
                "cache_reserve_served_bytes_total",
                "Body bytes served from the reserve instead of the origin.",
                Some(Unit::Bytes),
            ),
            ("cache_reserve_writes_abandoned_total", "Reserve writes given up (disk behind, body short).", None),
            (
                "cache_reserve_edge_fills_skipped_total",
                "Objects served without filling the edge tier: the edge-fill buffer budget was spent.",
                None,
            ),
            (
                BACKGROUND,
                "Background revalidations of copies served UPDATING: started, or skipped because the most that run at once were under way.",
                None,
            ),
            (
                EDGE_FILL_BUFFER,
                "Memory held by bodies gathered for the edge tier (misses, reserve reads); at most --edge-fill-buffer-bytes.",
                Some(Unit::Bytes),
            ),
            (WRITE_BUFFER, "Memory held by reserve writes in flight; at most --write-buffer-bytes.", Some(Unit::Bytes)),
            ("cache_reserve_evicted_objects_total", "Objects evicted after the retention period.", None),
            ("cache_reserve_origin_requests_total", "Requests sent to the origin.", None),
            ("cache_reserve_origin_errors_total", "Origin requests that failed (502/504).", None),
            (
                "cache_reserve_client_body_errors_total",
                "Requests whose own body was malformed, cut short or too slow (400/408).",
                None,
            ),
            (
                "cache_reserve_reserve_unavailable_total",
                "Requests that bypassed a reserve that is on: its storage unreachable, or this node's view of the zones out of date.",
                None,
            ),
            (COMPACTED_SEGMENTS, "Local segment files removed by compaction, their live records copied out.", None),
            (
                COMPACTION_MOVED_BYTES,
                "Live bytes compaction copied out of the segments it removed (records and their headers).",
                Some(Unit::Bytes),
            ),
            (
                COMPACTION_DEFERRED,
                "Zone generations whose compaction was put off while a purge or invalidation rule of the zone was worked.",
                None,
            ),
            ("cache_reserve_stored_objects", "Objects stored in the reserve.", None),
            ("cache_reserve_stored_bytes", "Bytes stored in the reserve.", Some(Unit::Bytes)),
            (
                PURGE_RULES,
                "Purge and invalidation selector values this node judges stored copies by; each is retired once its reserve work is done and every live node has swept its memory for it.",
                None,
            ),
        ];
        for (name, help, unit) in counters {
            let key = KeyName::from(name);
            if name.ends_with("_total") {
                recorder.describe_counter(key, unit, SharedString::from(help));
            } else {
                recorder.describe_gauge(key, unit, SharedString::from(help));
            }
        }
        Self { recorder, zones: RwLock::default() }
    }

    /// The zone's counters, registered on first use.
    pub fn zone(&self, zone: &Zone) -> Arc<ZoneCounters> {
        if let Some(c) = self.zones.read().expect("metrics lock").get(&zone.id) {
            return c.clone();
        }
        let mut zones = self.zones.write().expect("metrics lock");
        zones.entry(zone.id.clone()).or_insert_with(|| Arc::new(self.register(zone))).clone()
    }

    fn register(&self, zone: &Zone) -> ZoneCounters {
        let name = zone.name.as_str().to_owned();
        let counter = |metric: &'static str, extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![Label::new("zone", name.clone())];
            labels.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
            self.recorder.register_counter(&Key::from_parts(metric, labels), &METADATA)
        };
        let lookups = "cache_reserve_tier_lookups_total";
        let gauge = |metric: &'static str| {
            self.recorder.register_gauge(&Key::from_parts(metric, vec![Label::new("zone", name.clone())]), &METADATA)
        };
        ZoneCounters {
            responses: CacheStatus::ALL
                .map(|s| counter("cache_reserve_responses_total", &[("cache_status", s.as_str())])),
            not_stored: NotStored::ALL.map(|r| counter("cache_reserve_not_stored_total", &[("reason", r.as_str())])),
            edge_hits: counter(lookups, &[("tier", "edge"), ("result", "hit")]),
            edge_misses: counter(lookups, &[("tier", "edge"), ("result", "miss")]),
            reserve_hits: counter(lookups, &[("tier", "reserve"), ("result", "hit")]),
            reserve_misses: counter(lookups, &[("tier", "reserve"), ("result", "miss")]),
            class_a: counter("cache_reserve_class_a_operations_total", &[]),
            class_b: counter("cache_reserve_class_b_operations_total", &[]),
            reserve_bytes_served: counter("cache_reserve_served_bytes_total", &[]),
            writes_abandoned: counter("cache_reserve_writes_abandoned_total", &[]),
            edge_fills_skipped: counter("cache_reserve_edge_fills_skipped_total", &[]),
            background_revalidations: counter(BACKGROUND, &[("result", "started")]),
            background_revalidations_skipped: counter(BACKGROUND, &[("result", "skipped")]),
            evicted: counter("cache_reserve_evicted_objects_total", &[]),
            origin_requests: counter("cache_reserve_origin_requests_total", &[]),
            origin_errors: counter("cache_reserve_origin_errors_total", &[]),
            client_body_errors: counter("cache_reserve_client_body_errors_total", &[]),
            reserve_unavailable: counter("cache_reserve_reserve_unavailable_total", &[]),
            stored_objects: gauge("cache_reserve_stored_objects"),
            stored_bytes: gauge("cache_reserve_stored_bytes"),
        }
    }

    /// A process-wide gauge, such as [`EDGE_FILL_BUFFER`].
    pub fn gauge(&self, name: &'static str) -> Gauge {
        self.recorder.register_gauge(&Key::from_static_name(name), &METADATA)
    }

    /// A process-wide counter, such as [`COMPACTED_SEGMENTS`].
    pub fn counter(&self, name: &'static str) -> Counter {
        self.recorder.register_counter(&Key::from_static_name(name), &METADATA)
    }

    /// Sets a zone's stored objects and bytes (read from the index when rendering).
    pub fn set_stored(&self, zone: &Zone, objects: u64, bytes: u64) {
        let c = self.zone(zone);
        c.stored_objects.set(objects as f64);
        c.stored_bytes.set(bytes as f64);
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}
