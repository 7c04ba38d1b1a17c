//! The environment variables the dashboard reads. The dashboard ships on its own (its GitLab
//! project has no `common` crate), so its names live here; they are the names the workspace
//! documents in `common::env` and docs/configuration.md, which tests/ checks.

/// Address the dashboard listens on (default `0.0.0.0:8080`).
pub const DASHBOARD_LISTEN_ADDR: &str = "DASHBOARD_LISTEN_ADDR";
/// Routers scraped directly, `name=http://host:port,…` (the local arcade).
pub const DASHBOARD_ROUTERS: &str = "DASHBOARD_ROUTERS";
/// Prometheus queried for link rates in a cluster (when `DASHBOARD_ROUTERS` is unset).
pub const DASHBOARD_PROMETHEUS_URL: &str = "DASHBOARD_PROMETHEUS_URL";
/// Milliseconds between two reads of the counters (default 1000).
pub const DASHBOARD_POLL_MS: &str = "DASHBOARD_POLL_MS";
/// Version shown in the header (default: the crate version).
pub const APP_VERSION: &str = "APP_VERSION";
/// Colour of this release in a blue-green switch, `blue` or `green` (default `blue`).
pub const APP_COLOR: &str = "APP_COLOR";

/// Every name above.
pub const ALL: &[&str] = &[
    DASHBOARD_LISTEN_ADDR,
    DASHBOARD_ROUTERS,
    DASHBOARD_PROMETHEUS_URL,
    DASHBOARD_POLL_MS,
    APP_VERSION,
    APP_COLOR,
];
