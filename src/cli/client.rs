//! Client commands: talk to a Cloudflare v4 API (this server or api.cloudflare.com), configured with the
//! same environment variables as Cloudflare's SDKs.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use super::{duration, watch};
use crate::domain::ZoneId;

/// This server's API at `serve`'s default address: the default of every client command, so that a
/// forgotten `CLOUDFLARE_BASE_URL` never sends a local token to api.cloudflare.com.
pub const LOCAL_API: &str = "http://127.0.0.1:8787/client/v4";

/// Where the API is and how to authenticate, as Cloudflare's SDKs read them.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Base URL of the v4 API. Default: this server on `serve`'s default address. For Cloudflare's own:
    /// https://api.cloudflare.com/client/v4.
    #[arg(long, env = "CLOUDFLARE_BASE_URL", default_value = LOCAL_API)]
    pub base_url: String,
    /// API token (sent as Authorization: Bearer).
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// E-mail for a global API key (with --api-key).
    #[arg(long, env = "CLOUDFLARE_EMAIL")]
    pub email: Option<String>,
    /// Global API key (with --email).
    #[arg(long, env = "CLOUDFLARE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// One error of a failure envelope, with its `error_chain` (Cloudflare nests the precise cause there, e.g.
/// 6003 "Invalid request headers" holding 6103 "Invalid format for X-Auth-Key header").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrorItem {
    pub code: i64,
    pub message: String,
    pub chain: Vec<ApiErrorItem>,
}

impl ApiErrorItem {
    fn from_json(e: &Value) -> Self {
        let chain = e["error_chain"].as_array().map(|c| c.iter().map(Self::from_json).collect()).unwrap_or_default();
        Self { code: e["code"].as_i64().unwrap_or(0), message: e["message"].as_str().unwrap_or("").to_owned(), chain }
    }
}

impl std::fmt::Display for ApiErrorItem {
    /// `error 6003: Invalid request headers (error 6103: Invalid format for X-Auth-Key header)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)?;
        if !self.chain.is_empty() {
            let inner: Vec<String> = self.chain.iter().map(ToString::to_string).collect();
            write!(f, " ({})", inner.join("; "))?;
        }
        Ok(())
    }
}

/// What a client command can fail with. Each names the API it talked to.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error.
    #[error("{}{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "), hint_for(base, errors))]
    Api { base: String, status: u16, errors: Vec<ApiErrorItem> },
    /// The API could not be reached; the message keeps the cause ("Connection refused").
    #[error("cannot reach the API at {base}: {}", causes(source))]
    Transport {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not Cloudflare's envelope.
    #[error("unexpected answer from {base} (HTTP {status}): {detail}")]
    Protocol { base: String, status: u16, detail: String },
    /// The command was used wrongly.
    #[error("{0}")]
    Usage(String),
}

/// The error and every cause under it, joined: reqwest's own message alone is "error sending request".
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// After an API's errors: who answered, and a hint when the likely cause is the base URL.
fn hint_for(base: &str, errors: &[ApiErrorItem]) -> String {
    let mut out = format!(" (from {base})");
    if errors.iter().any(|e| e.code == 7000) && !base.trim_end_matches('/').ends_with("/client/v4") {
        out.push_str("; the base URL should end in /client/v4, e.g. ");
        out.push_str(LOCAL_API);
    }
    out
}

impl ClientError {
    /// The error for a failed request to `base`.
    pub fn transport(base: &str) -> impl FnOnce(reqwest::Error) -> Self + '_ {
        move |source| ClientError::Transport { base: base.to_owned(), source }
    }
}

/// A small v4 API client.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    args: ClientArgs,
}

impl ApiClient {
    pub fn new(args: ClientArgs) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if args.api_token.is_none() && (args.email.is_none() || args.api_key.is_none()) {
            return Err(ClientError::Usage(
                "no credentials: set CLOUDFLARE_API_TOKEN, or CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("cache-reserve/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(ClientError::transport(&args.base_url))?;
        Ok(Self { http, base: args.base_url.trim_end_matches('/').to_owned(), args })
    }

    /// Sends a request and returns the envelope's `result`.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match (&self.args.api_token, &self.args.email, &self.args.api_key) {
            (Some(token), _, _) => req.bearer_auth(token),
            (None, Some(email), Some(key)) => req.header("X-Auth-Email", email).header("X-Auth-Key", key),
            _ => req,
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        let base = &self.base;
        let resp = req.send().await.map_err(ClientError::transport(base))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(ClientError::transport(base))?;
        let protocol = |detail: String| ClientError::Protocol { base: base.clone(), status, detail };
        let envelope: Value = serde_json::from_str(&text).map_err(|_| protocol(text.chars().take(200).collect()))?;
        if envelope["success"] == json!(true) {
            return Ok(envelope["result"].clone());
        }
        let errors: Vec<ApiErrorItem> = envelope["errors"]
            .as_array()
            .map(|errs| errs.iter().map(ApiErrorItem::from_json).collect())
            .unwrap_or_default();
        if errors.is_empty() {
            return Err(protocol("failure without errors".into()));
        }
        Err(ClientError::Api { base: base.clone(), status, errors })
    }

    /// A zone's id, from an id or a name (looked up with `GET /zones?name=`).
    pub async fn zone_id(&self, id_or_name: &str) -> Result<String, ClientError> {
        if ZoneId::parse(id_or_name).is_ok() {
            return Ok(id_or_name.to_owned());
        }
        let name: String = form_encode(id_or_name);
        let zones = self.call(Method::GET, &format!("/zones?name={name}"), None).await?;
        zones
            .as_array()
            .and_then(|z| z.first())
            .and_then(|z| z["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Usage(format!("no zone named {id_or_name:?} is visible to these credentials")))
    }
}

fn form_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|q| q.trim_start_matches('=').to_owned()).unwrap_or_default()
}

fn print(result: &Value) {
    println!("{}", serde_json::to_string_pretty(result).unwrap_or_else(|_| result.to_string()));
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ReserveAction {
    /// Show the setting.
    Get,
    /// Turn the reserve on (refused while a Clear runs).
    On,
    /// Turn the reserve off (required before a Clear).
    Off,
}

#[derive(Args, Debug)]
pub struct ReserveArgs {
    pub action: ReserveAction,
    /// Zone id or name.
    pub zone: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl ReserveArgs {
    pub async fn run(self) -> Result<(), ClientError> {
        let api = ApiClient::new(self.client)?;
        let path = format!("/zones/{}/cache/cache_reserve", api.zone_id(&self.zone).await?);
        let result = match self.action {
            ReserveAction::Get => api.call(Method::GET, &path, None).await?,
            ReserveAction::On => api.call(Method::PATCH, &path, Some(json!({"value": "on"}))).await?,
            ReserveAction::Off => api.call(Method::PATCH, &path, Some(json!({"value": "off"}))).await?,
        };
        print(&result);
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum ClearCommand {
    /// Start a Clear (the reserve must be off). Prints the operation.
    Start {
        /// Zone id or name.
        zone: String,
        /// Wait until the Clear is Completed, showing progress.
        #[arg(long)]
        wait: bool,
        /// How often to poll with --wait.
        #[arg(long, default_value = "1s", value_parser = duration::parse)]
        interval: Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the latest Clear of a zone.
    Status {
        /// Zone id or name.
        zone: String,
        /// Wait until that Clear is Completed, showing progress (never starts one).
        #[arg(long)]
        wait: bool,
        /// How often to poll with --wait.
        #[arg(long, default_value = "1s", value_parser = duration::parse)]
        interval: Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wait for the latest Clear of a zone to be Completed, showing progress (never starts one): the same as
    /// `clear status --wait`, to re-attach to a Clear started elsewhere.
    Wait {
        /// Zone id or name.
        zone: String,
        /// How often to poll.
        #[arg(long, default_value = "1s", value_parser = duration::parse)]
        interval: Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl ClearCommand {
    pub async fn run(self) -> Result<(), ClientError> {
        match self {
            ClearCommand::Start { zone, wait, interval, client } => {
                let api = ApiClient::new(client)?;
                let path = format!("/zones/{}/smart_shield/cache_reserve_clear", api.zone_id(&zone).await?);
                let started = api.call(Method::POST, &path, None).await?;
                let result = if wait { watch::until_completed(&api, &path, started, interval).await? } else { started };
                print(&result);
            }
            ClearCommand::Status { zone, wait, interval, client } => status(zone, wait, interval, client).await?,
            ClearCommand::Wait { zone, interval, client } => status(zone, true, interval, client).await?,
        }
        Ok(())
    }
}

/// `clear status [--wait]` and `clear wait`: only ever GETs.
async fn status(zone: String, wait: bool, interval: Duration, client: ClientArgs) -> Result<(), ClientError> {
    let api = ApiClient::new(client)?;
    let path = format!("/zones/{}/smart_shield/cache_reserve_clear", api.zone_id(&zone).await?);
    let op = api.call(Method::GET, &path, None).await?;
    let result = if wait { watch::until_completed(&api, &path, op, interval).await? } else { op };
    print(&result);
    Ok(())
}
