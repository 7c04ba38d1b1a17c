//! `cicd-readiness serve`: the last saved report as Prometheus gauges and as HTML, behind the
//! hardened server of `common::serve` (limits, deadlines, HTTP/1 framing).
//!
//! Why a `/metrics` of its own rather than the Pushgateway: the report is made once a day by a
//! `CronJob`, and its gauges must stay readable between runs. The kube-prometheus-stack has no
//! Pushgateway, and Prometheus' docs keep it for service-level batch jobs whose result outlives
//! them; here the result is a file (the `CronJob` keeps it in `ConfigMap` cicd-readiness-report,
//! which the exporter's pod mounts), so a small reader exports it with nothing more to run.

use std::path::PathBuf;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PRESENT_HELP: &str = "# HELP cicd_readiness_report_present Whether a saved report was read (0 before the first daily run).\n# TYPE cicd_readiness_report_present gauge\n";

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
            format!(
                "{}{PRESENT_HELP}cicd_readiness_report_present 1\n",
                super::prometheus_from_json(&report)
            ),
        )
            .into_response(),
        // No report yet (the first daily run is up to a day away): the scrape succeeds, so no
        // target-down alert, and says so; no `cicd_readiness` series (absent, not "fail").
        Err(e) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            format!(
                "# no readiness report: {}\n{PRESENT_HELP}cicd_readiness_report_present 0\n",
                e.replace('\n', " ")
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn scrape(path: PathBuf) -> (u16, String) {
        let resp = metrics(State(path)).await;
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn before_the_first_run_the_scrape_succeeds_and_says_there_is_no_report() {
        let dir = std::env::temp_dir().join(format!("readiness-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("report.json");
        let _ = std::fs::remove_file(&file);
        let (status, body) = scrape(file.clone()).await;
        assert_eq!(status, 200, "no target-down alert before the first run");
        assert!(body.contains("cicd_readiness_report_present 0"), "{body}");
        assert!(!body.contains("cicd_readiness{"), "{body}");
        std::fs::write(
            &file,
            r#"{"generated_at_unix": 1796342400, "rows": [{"section": "dora", "check": "lead_time", "state": "pass"}]}"#,
        )
        .unwrap();
        let (status, body) = scrape(file).await;
        assert_eq!(status, 200);
        assert!(body.contains("cicd_readiness_report_present 1"), "{body}");
        assert!(
            body.contains("cicd_readiness{section=\"dora\",check=\"lead_time\"} 1"),
            "{body}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
