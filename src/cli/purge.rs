//! `cache-reserve purge` and `cache-reserve invalidate`: Cloudflare's `purge_cache` and `invalidate_cache`
//! through the API (SPEC §10), one selector per call, as the API takes them.

use clap::{ArgGroup, Args};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ApiClient, ClientArgs, ClientError};

/// What to purge or invalidate: exactly one selector.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("selector").required(true).args(["urls", "tags", "hosts", "prefixes", "everything"])))]
pub struct PurgeArgs {
    /// Zone id or name.
    pub zone: String,
    /// A full URL, e.g. https://example.com/app.js (every stored variant of it); repeat for more.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// A Cache-Tag value (case-insensitive); repeat for more.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A hostname of the zone, e.g. static.example.com; repeat for more.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// A host/path prefix without scheme or query, e.g. example.com/assets/; repeat for more.
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<String>,
    /// Everything the zone has cached.
    #[arg(long)]
    pub everything: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl PurgeArgs {
    /// The request body: the one selector given.
    fn body(&self) -> Value {
        if self.everything {
            json!({"purge_everything": true})
        } else if !self.urls.is_empty() {
            json!({"files": self.urls})
        } else if !self.tags.is_empty() {
            json!({"tags": self.tags})
        } else if !self.hosts.is_empty() {
            json!({"hosts": self.hosts})
        } else {
            json!({"prefixes": self.prefixes})
        }
    }

    /// Sends the call to `endpoint` (`purge_cache` or `invalidate_cache`) and prints the result.
    pub async fn run(self, endpoint: &str) -> Result<(), ClientError> {
        let body = self.body();
        let api = ApiClient::new(self.client)?;
        let path = format!("/zones/{}/{endpoint}", api.zone_id(&self.zone).await?);
        let result = api.call(Method::POST, &path, Some(body)).await?;
        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string()));
        Ok(())
    }
}
