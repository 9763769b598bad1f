//! `cache-reserve stats ZONE`: one zone's proxy counters, read from the server's `/metrics`.

use std::{collections::BTreeMap, time::Duration};

use clap::Args;

use reqwest::Method;

use super::client::{ApiClient, ClientArgs, ClientError};
use crate::domain::{ZoneId, ZoneName};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Zone name (e.g. example.com), or zone id (looked up through the API, so credentials are needed).
    pub zone: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The rows printed, in order: label, metric, extra label filter.
const ROWS: [(&str, &str, &str); 27] = [
    ("responses HIT", "cache_reserve_responses_total", "cache_status=\"HIT\""),
    ("responses MISS", "cache_reserve_responses_total", "cache_status=\"MISS\""),
    ("responses EXPIRED", "cache_reserve_responses_total", "cache_status=\"EXPIRED\""),
    ("responses REVALIDATED", "cache_reserve_responses_total", "cache_status=\"REVALIDATED\""),
    ("responses UPDATING", "cache_reserve_responses_total", "cache_status=\"UPDATING\""),
    ("responses STALE", "cache_reserve_responses_total", "cache_status=\"STALE\""),
    ("background revalidations", "cache_reserve_background_revalidations_total", "result=\"started\""),
    ("background revalidations skipped", "cache_reserve_background_revalidations_total", "result=\"skipped\""),
    ("responses BYPASS", "cache_reserve_responses_total", "cache_status=\"BYPASS\""),
    ("responses DYNAMIC", "cache_reserve_responses_total", "cache_status=\"DYNAMIC\""),
    ("edge tier hits", "cache_reserve_tier_lookups_total", "tier=\"edge\",result=\"hit\""),
    ("edge tier misses", "cache_reserve_tier_lookups_total", "tier=\"edge\",result=\"miss\""),
    ("reserve hits", "cache_reserve_tier_lookups_total", "tier=\"reserve\",result=\"hit\""),
    ("reserve misses", "cache_reserve_tier_lookups_total", "tier=\"reserve\",result=\"miss\""),
    ("reserve writes (Class A)", "cache_reserve_class_a_operations_total", ""),
    ("reserve reads (Class B)", "cache_reserve_class_b_operations_total", ""),
    ("objects stored", "cache_reserve_stored_objects", ""),
    ("bytes stored", "cache_reserve_stored_bytes", ""),
    ("bytes served from reserve", "cache_reserve_served_bytes_total", ""),
    ("origin requests", "cache_reserve_origin_requests_total", ""),
    ("not stored: not storable", "cache_reserve_not_stored_total", "reason=\"not-storable\""),
    ("not stored: reserve off", "cache_reserve_not_stored_total", "reason=\"reserve-off\""),
    ("not stored: unavailable", "cache_reserve_not_stored_total", "reason=\"unavailable\""),
    ("not stored: short-lived", "cache_reserve_not_stored_total", "reason=\"short-lived\""),
    ("not stored: no length", "cache_reserve_not_stored_total", "reason=\"no-content-length\""),
    ("not stored: too large", "cache_reserve_not_stored_total", "reason=\"too-large\""),
    ("not stored: write budget", "cache_reserve_not_stored_total", "reason=\"write-budget-full\""),
];

impl StatsArgs {
    pub async fn run(self) -> Result<(), ClientError> {
        let base = self.client.base_url.trim_end_matches('/').to_owned();
        let root = base.strip_suffix("/client/v4").ok_or_else(|| {
            ClientError::Usage(format!("the base URL {base} does not end in /client/v4, so /metrics cannot be found"))
        })?;
        let zone = match ZoneName::parse(&self.zone) {
            Ok(name) if ZoneId::parse(&self.zone).is_err() => name,
            _ if ZoneId::parse(&self.zone).is_ok() => {
                let api = ApiClient::new(self.client.clone())?;
                let found = api.call(Method::GET, &format!("/zones/{}", self.zone), None).await?;
                let name = found["name"].as_str().unwrap_or_default();
                ZoneName::parse(name).map_err(|_| ClientError::Usage(format!("zone {} has no name", self.zone)))?
            }
            _ => return Err(ClientError::Usage(format!("{:?} is neither a zone name nor a zone id", self.zone))),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(ClientError::transport(&base))?;
        let resp = http.get(format!("{root}/metrics")).send().await.map_err(ClientError::transport(&base))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(ClientError::transport(&base))?;
        if status != 200 {
            return Err(ClientError::Protocol { base, status, detail: text.chars().take(200).collect() });
        }
        let samples = zone_samples(&text, zone.as_str());
        if samples.is_empty() {
            return Err(ClientError::Usage(format!(
                "the server has no counters for {zone} (no traffic yet, or no such zone)"
            )));
        }
        println!("zone {zone}");
        for (label, metric, filter) in ROWS {
            let value: f64 = samples
                .iter()
                .filter(|((m, labels), _)| m == metric && (filter.is_empty() || labels.contains(filter)))
                .map(|(_, v)| v)
                .sum();
            println!("  {label:<28}{value}");
        }
        Ok(())
    }
}

/// The samples labelled `zone="{zone}"`: (metric, labels) → value.
fn zone_samples(text: &str, zone: &str) -> BTreeMap<(String, String), f64> {
    let wanted = format!("zone=\"{zone}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{')?;
            let labels = labels.strip_suffix('}')?;
            if !labels.split(',').any(|l| l == wanted) {
                return None;
            }
            Some(((metric.to_owned(), labels.to_owned()), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_one_zones_samples() {
        let text = "# HELP x\ncache_reserve_class_a_operations_total{zone=\"a.com\"} 3\n\
                    cache_reserve_class_a_operations_total{zone=\"b.com\"} 5\n\
                    cache_reserve_responses_total{zone=\"a.com\",cache_status=\"HIT\"} 7\n";
        let s = zone_samples(text, "a.com");
        assert_eq!(s.len(), 2);
        assert_eq!(s[&("cache_reserve_class_a_operations_total".into(), "zone=\"a.com\"".into())], 3.0);
    }
}
