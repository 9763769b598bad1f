//! cache-reserve: a self-hosted Cache Reserve with a Cloudflare v4-compatible control API.
//!
//! Layers, with dependencies pointing one way: [`domain`] ← [`storage`] ← {[`reserve`], [`jobs`], [`api`]}
//! ← [`server`] and [`cli`]. Only [`server`] names a concrete backend.

pub mod api;
pub mod cli;
pub mod directory;
pub mod domain;
pub mod http_cache;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod purge;
pub mod reserve;
pub mod server;
pub mod storage;
