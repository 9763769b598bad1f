//! Integration tests: the real server on port 0 over real HTTP, real SQLite and real files; the real
//! binary where processes matter (crash, CLI).

mod auth;
mod bad_input;
mod clear;
mod cli;
mod crash;
mod helpers;
mod listener;
mod operator;
mod proxy;
mod raw;
mod sdk;
mod settings;
mod tls;
mod zone_lifecycle;
mod zones;
