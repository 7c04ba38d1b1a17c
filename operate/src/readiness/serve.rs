//! `cicd-readiness serve`: the last saved report as Prometheus gauges and as HTML, behind the
//! hardened server of `common::serve` (limits, deadlines, HTTP/1 framing).
//!
//! Why a `/metrics` of its own rather than the Pushgateway: the report is made once a day by a
//! `CronJob`, and its gauges must stay readable between runs. The kube-prometheus-stack has no
//! Pushgateway, and Prometheus' docs keep it for service-level batch jobs whose result outlives
//! them; here the result is a file (the `CronJob` writes it to a `ConfigMap` the collector's pod
//! mounts), so a small reader next to the collector exports it with nothing more to run.

use std::path::PathBuf;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Largest report file read (a report is a few kilobytes).
const MAX_REPORT_BYTES: u64 = 1 << 20;

fn read_report(path: &std::path::Path) -> Result<serde_json::Value, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_REPORT_BYTES {
        return Err(format!(
            "{} is {size} bytes, over {MAX_REPORT_BYTES}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

async fn metrics(State(path): State<PathBuf>) -> Response {
    match read_report(&path) {
        Ok(report) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            super::prometheus_from_json(&report),
        )
            .into_response(),
        // No report yet: no series (absent), and the reason in the scrape error.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no readiness report: {e}\n"),
        )
            .into_response(),
    }
}

pub fn router(report: PathBuf) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(report)
}

pub async fn run(report: PathBuf, listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, report = %report.display(), "cicd-readiness serving");
    common::serve::serve(
        listener,
        router(report),
        common::serve::ServerLimits::DEFAULT,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await;
    Ok(())
}
