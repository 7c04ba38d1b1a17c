//! The dashboard's HTTP server under slow and flooding clients (issue 18): the same slowloris
//! and flood cases as packet-relay's abuse suite (`sandbox::raw_http::slowloris_and_floods`),
//! against the real process. Its limits are `netops_dashboard::HTTP_LIMITS` (10 s deadlines, 512
//! connections, 16 KiB heads); its memory limit in the cluster is 64 Mi
//! (deploy/base/rollout.yaml).

use std::time::Duration;

use sandbox::raw_http::{HostileTarget, slowloris_and_floods};

use crate::support::Dashboard;

/// Proves the dashboard closes slow and broken connections within its deadlines, holds no more
/// connections than its cap, stays under 64 Mi and answers again after each flood.
#[tokio::test]
async fn slow_clients_and_floods_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Its sources do not matter here: one router that is not there.
    let nowhere = sandbox::support::DeadPort::new();
    let dash = Dashboard::start(
        "dashboard-hostile",
        &[(
            "DASHBOARD_ROUTERS",
            format!("router-core=http://127.0.0.1:{}", nowhere.port),
        )],
        dir.path(),
    )
    .await;
    let addr = dash.url.trim_start_matches("http://").to_owned();
    let report = slowloris_and_floods(&HostileTarget {
        addr: &addr,
        pid: dash.proc.pid(),
        memory_limit_kib: 64 * 1024,
        max_connections: netops_dashboard::HTTP_LIMITS.max_connections,
        deadline: Duration::from_secs(10),
        // The dashboard takes no body anywhere: a POST is refused (405) without reading one.
        post_path: "/api/topology",
        post_headers: "",
        well_formed: (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
    })
    .await;
    eprintln!("netops-dashboard:\n  {}", report.join("\n  "));
}
