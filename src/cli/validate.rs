//! `serve`'s whole configuration checked once after parsing: every duration and size against the range the
//! server can honour, so a value out of range is refused at start with its limits named, instead of a panic,
//! a busy loop or a timestamp past year 9999 later.

use std::time::Duration;

use super::ServeArgs;

/// Longest duration any flag takes (ten years): beyond it timers, caches and timestamps overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Largest memory budget any flag takes (1 TiB).
const MAX_MEMORY: u64 = 1 << 40;

/// Largest object S3 stores (5 TiB), the limit of `--max-object-bytes`.
const MAX_OBJECT: u64 = 5 << 40;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Checks every flag of `serve`; the error lists each value out of range with the range allowed.
pub fn check(args: &ServeArgs) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut duration = |flag: &str, value: Duration, min: Duration, max: Duration| {
        if value < min || value > max {
            problems.push(format!("--{flag} {} is out of range: {} to {}", show(value), show(min), show(max)));
        }
    };
    duration("reclaim-pause", args.reclaim_pause, Duration::ZERO, HOUR);
    duration("compaction-interval", args.compaction_interval, 10 * MS, DAY);
    duration("reserve-min-ttl", args.reserve_min_ttl, Duration::ZERO, MAX_DURATION);
    duration("retention", args.retention, MINUTE, MAX_DURATION);
    duration("origin-connect-timeout", args.origin_connect_timeout, MS, DAY);
    duration("origin-timeout", args.origin_timeout, MS, DAY);
    duration("origin-read-timeout", args.origin_read_timeout, MS, DAY);
    duration("coalesce-timeout", args.coalesce_timeout, Duration::ZERO, HOUR);
    duration("heuristic-max", args.heuristic_max, Duration::ZERO, MAX_DURATION);
    duration("use-stale-on-error", args.use_stale_on_error, Duration::ZERO, MAX_DURATION);
    duration("zone-sync-interval", args.zone_sync_interval, MS, HOUR);
    duration("zone-view-ttl", args.zone_view_ttl, MS, DAY);
    duration("reclaim-lease", args.reclaim_lease, SEC, DAY);
    duration("client-header-timeout", args.limits.client_header_timeout, MS, DAY);
    duration("keepalive-timeout", args.limits.keepalive_timeout, MS, DAY);
    duration("client-body-timeout", args.limits.client_body_timeout, MS, DAY);
    duration("send-timeout", args.limits.send_timeout, MS, DAY);

    let mut size = |flag: &str, value: u64, min: u64, max: u64| {
        if value < min || value > max {
            problems.push(format!("--{flag} {} is out of range: {} to {}", bytes(value), bytes(min), bytes(max)));
        }
    };
    size("edge-cache-bytes", args.edge_cache_bytes, 0, MAX_MEMORY);
    size("index-cache-bytes", args.index_cache_bytes, 0, MAX_MEMORY);
    size("write-buffer-bytes", args.write_buffer_bytes, 0, MAX_MEMORY);
    if let Some(fill) = args.edge_fill_buffer_bytes {
        size("edge-fill-buffer-bytes", fill, 0, MAX_MEMORY);
    }
    size("max-object-bytes", args.max_object_bytes, 1, MAX_OBJECT);
    size("cache-tag-max-bytes", args.cache_tag_max_bytes, 0, 1 << 20);
    size("segment-bytes", args.stores.segment_bytes, 1 << 20, 1 << 40);

    if args.zone_view_ttl <= args.zone_sync_interval {
        problems.push(format!(
            "--zone-view-ttl ({}) must be longer than --zone-sync-interval ({}), or the view expires between syncs",
            show(args.zone_view_ttl),
            show(args.zone_sync_interval)
        ));
    }
    if problems.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("{}", problems.join("\n"))) }
}

/// A duration in the largest unit that states it exactly: `250ms`, `90s`, `15m`, `12h`, `30d`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= per && ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// A size in the largest binary unit that states it exactly: `1MiB`, `1536KiB`, `7B`.
fn bytes(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve(extra: &[&str]) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(["cache-reserve", "serve"].iter().chain(extra)).expect("parses");
        let Command::Serve(args) = cli.command else { unreachable!() };
        check(&args)
    }

    #[test]
    fn defaults_are_in_range() {
        serve(&[]).unwrap();
    }

    #[test]
    fn every_value_out_of_range_is_named_with_its_limits() {
        let err = serve(&["--retention", "400000d", "--compaction-interval", "0s", "--max-object-bytes", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--retention 400000d is out of range: 1m to 3650d"), "{err}");
        assert!(err.contains("--compaction-interval 0ms is out of range: 10ms to 1d"), "{err}");
        assert!(err.contains("--max-object-bytes 0B is out of range: 1B to 5TiB"), "{err}");
    }

    #[test]
    fn view_ttl_must_outlast_the_sync_interval() {
        let err = serve(&["--zone-sync-interval", "2s", "--zone-view-ttl", "2s"]).unwrap_err().to_string();
        assert!(err.contains("--zone-view-ttl (2s) must be longer than --zone-sync-interval (2s)"), "{err}");
    }

    #[test]
    fn shows_in_the_largest_exact_unit() {
        assert_eq!(show(Duration::from_millis(250)), "250ms");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(bytes(1536 << 10), "1536KiB");
        assert_eq!(bytes(5 << 40), "5TiB");
    }
}
