//! The environment variables the relay and the traffic generator read. The relay ships on its
//! own (its GitLab project has no `common` crate), so its names live here; they are the names the
//! workspace documents in `common::env` and docs/configuration.md, which tests/ checks.

/// This router's name: the hop it appends and the `service` label of its metrics.
pub const ROUTER_NAME: &str = "ROUTER_NAME";
/// Where packets go next: `http://host:port` or `name=http://host:port`, comma-separated.
pub const NEXT_HOPS: &str = "NEXT_HOPS";
/// Listen address (default `0.0.0.0:8080`).
pub const RELAY_LISTEN_ADDR: &str = "RELAY_LISTEN_ADDR";
/// Per-hop timeout in milliseconds (default 2000).
pub const RELAY_HOP_TIMEOUT_MS: &str = "RELAY_HOP_TIMEOUT_MS";
/// Largest packet body in bytes (default 65536).
pub const RELAY_MAX_BODY_BYTES: &str = "RELAY_MAX_BODY_BYTES";
/// Connections served at once (default 1024, at most 2,048: the buffers of 2,048 connections and the shared budget stay inside 64 Mi).
pub const RELAY_MAX_CONNECTIONS: &str = "RELAY_MAX_CONNECTIONS";
/// Milliseconds a request head gets from its first byte, a body from its head, an answer to be
/// written (default 10000).
pub const RELAY_READ_TIMEOUT_MS: &str = "RELAY_READ_TIMEOUT_MS";
/// Milliseconds a connection may wait for its next request (default 60000).
pub const RELAY_IDLE_TIMEOUT_MS: &str = "RELAY_IDLE_TIMEOUT_MS";
/// Seconds in-flight packets get after SIGTERM (default 10).
pub const RELAY_SHUTDOWN_GRACE_SECS: &str = "RELAY_SHUTDOWN_GRACE_SECS";
/// Version in `relay_build_info` (default: the crate version).
pub const APP_VERSION: &str = "APP_VERSION";
/// Generator: where packets go (default `http://router-west:8080/relay`).
pub const GENERATOR_TARGET: &str = "GENERATOR_TARGET";
/// Generator: packets per second (default 10).
pub const GENERATOR_RATE: &str = "GENERATOR_RATE";
/// Generator: TTL of each packet (default 8).
pub const GENERATOR_TTL: &str = "GENERATOR_TTL";
/// Generator: packets in flight at most (default 64).
pub const GENERATOR_CONCURRENCY: &str = "GENERATOR_CONCURRENCY";

/// Every name above.
pub const ALL: &[&str] = &[
    ROUTER_NAME,
    NEXT_HOPS,
    RELAY_LISTEN_ADDR,
    RELAY_HOP_TIMEOUT_MS,
    RELAY_MAX_BODY_BYTES,
    RELAY_MAX_CONNECTIONS,
    RELAY_READ_TIMEOUT_MS,
    RELAY_IDLE_TIMEOUT_MS,
    RELAY_SHUTDOWN_GRACE_SECS,
    APP_VERSION,
    GENERATOR_TARGET,
    GENERATOR_RATE,
    GENERATOR_TTL,
    GENERATOR_CONCURRENCY,
];
