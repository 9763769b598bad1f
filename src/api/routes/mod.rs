//! One file per resource family of the v4 API.

pub mod cache_reserve;
pub mod clear;
pub mod health;
pub mod metrics;
pub mod purge;
pub mod smart_shield;
pub mod user_tokens;
pub mod zones;
