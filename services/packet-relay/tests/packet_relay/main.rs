//! `packet-relay` as real processes on loopback (the binary cargo builds), with stand-in next
//! hops written here and, for the canary scenarios, the sandbox's real Prometheus.

mod abuse;
mod canary;
mod generator;
mod http;
mod promtool;
mod relay;
mod shutdown;
mod support;

/// The relay keeps its own env names (it ships without the workspace's `common`); they are
/// exactly the ones `common::env` documents for it, so docs/configuration.md and the manifests
/// stay right.
#[test]
fn env_names_are_the_documented_ones() {
    assert_eq!(
        packet_relay::env::ALL,
        [
            common::env::ROUTER_NAME,
            common::env::NEXT_HOPS,
            common::env::RELAY_LISTEN_ADDR,
            common::env::RELAY_HOP_TIMEOUT_MS,
            common::env::RELAY_MAX_BODY_BYTES,
            common::env::RELAY_MAX_CONNECTIONS,
            common::env::RELAY_READ_TIMEOUT_MS,
            common::env::RELAY_IDLE_TIMEOUT_MS,
            common::env::RELAY_SHUTDOWN_GRACE_SECS,
            common::env::APP_VERSION,
            common::env::GENERATOR_TARGET,
            common::env::GENERATOR_RATE,
            common::env::GENERATOR_TTL,
            common::env::GENERATOR_CONCURRENCY,
        ]
    );
    for name in packet_relay::env::ALL {
        assert!(
            common::env::ALL.contains(name),
            "{name} is not documented in common::env"
        );
    }
}
