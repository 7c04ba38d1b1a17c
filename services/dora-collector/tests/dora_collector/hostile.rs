//! The collector's HTTP server under slow and flooding clients (issue 18): the same slowloris
//! and flood cases as packet-relay's abuse suite (`sandbox::raw_http::slowloris_and_floods`),
//! against the real process. Its limits come from `common::serve` (10 s deadlines, 1,024
//! connections); its memory limit in the cluster is 256 Mi (obs-setup's Deployment).

use std::time::Duration;

use sandbox::raw_http::{HostileTarget, slowloris_and_floods};

use crate::support::{Collector, SECRET};

/// Proves the collector closes slow and broken connections within its deadlines, holds no more
/// connections than its cap, stays under 256 Mi and answers again after each flood.
#[tokio::test]
async fn slow_clients_and_floods_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("dora.db").display());
    let c = Collector::start(&store, dir.path(), &[("RUST_LOG", "warn")]).await;
    let addr = c.url.trim_start_matches("http://").to_owned();
    let report = slowloris_and_floods(&HostileTarget {
        addr: &addr,
        pid: c.pid(),
        memory_limit_kib: 256 * 1024,
        max_connections: common::serve::ServerLimits::DEFAULT.max_connections,
        deadline: Duration::from_secs(10),
        post_path: "/webhooks/gitlab",
        // A valid token and event: the collector reads the body (a 401 would not).
        post_headers: &format!("X-Gitlab-Token: {SECRET}\r\nX-Gitlab-Event: Push Hook\r\n"),
        well_formed: (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
    })
    .await;
    eprintln!("dora-collector:\n  {}", report.join("\n  "));
}
