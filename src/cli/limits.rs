//! `serve`'s connection limits and client timeouts, for both listeners.

use std::time::Duration;

use clap::Args;

use super::duration;
use crate::net::ConnLimits;

/// Connection caps and client timeouts (defaults as nginx's).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Proxy connections served at once; more are answered 503 and closed (lowered at start if the open
    /// files limit cannot hold them).
    #[arg(long, env = "CACHE_RESERVE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Control API connections served at once: a budget apart from the proxy's, so a flood on the proxy
    /// leaves the API reachable.
    #[arg(long, env = "CACHE_RESERVE_API_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_max_connections: u32,
    /// Time allowed for a request head, from the connection's start or the head's first byte (nginx
    /// `client_header_timeout`); then the connection is closed.
    #[arg(long, env = "CACHE_RESERVE_CLIENT_HEADER_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    pub client_header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request (nginx `keepalive_timeout`).
    #[arg(long, env = "CACHE_RESERVE_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = duration::parse)]
    pub keepalive_timeout: Duration,
    /// Longest wait for the next piece of a request body (nginx `client_body_timeout`); then 408.
    #[arg(long, env = "CACHE_RESERVE_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    pub client_body_timeout: Duration,
    /// Longest wait for a client to take the next bytes of a response (nginx `send_timeout`); then the
    /// connection is closed.
    #[arg(long, env = "CACHE_RESERVE_SEND_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    pub send_timeout: Duration,
}

impl LimitArgs {
    /// The limits of a listener with this connection cap.
    pub fn limits(&self, max_connections: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            header_timeout: self.client_header_timeout,
            idle_timeout: self.keepalive_timeout,
            body_timeout: self.client_body_timeout,
            send_timeout: self.send_timeout,
        }
    }
}
