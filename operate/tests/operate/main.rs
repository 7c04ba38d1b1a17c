//! `cicd-readiness` against the sandbox's real Prometheus: the DORA and operational rows read the
//! dashboard's own queries, judge them against the plan's targets and name the band; a metric
//! with no series is `unknown`, never `pass`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use operate::readiness::{Attestations, State, evaluate};
use sandbox::{Options, Sandbox};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The collector's metrics as a busy platform would expose them, growing at every scrape:
/// 1,000 production deployments per scrape (elite), lead times under 30 min (elite), a change
/// failure rate of 20 % (fails the initial < 15 %, band medium), whole pipelines of 10–25 min
/// (p95 over 20 min: fails, band medium), success rate 97 % (passes), 2 critical CVEs (fails).
/// No time-to-restore series at all.
fn exposition(n: u64) -> String {
    format!(
        "cicd_deployment_frequency_total{{service=\"shop\",environment=\"production\"}} {}\n\
         cicd_lead_time_seconds_bucket{{service=\"shop\",environment=\"production\",le=\"1800\"}} {}\n\
         cicd_lead_time_seconds_bucket{{service=\"shop\",environment=\"production\",le=\"+Inf\"}} {}\n\
         cicd_change_failure_rate{{service=\"shop\",environment=\"production\"}} 0.2\n\
         cicd_pipeline_duration_seconds_bucket{{service=\"shop\",stage=\"pipeline\",status=\"success\",le=\"600\"}} 0\n\
         cicd_pipeline_duration_seconds_bucket{{service=\"shop\",stage=\"pipeline\",status=\"success\",le=\"1500\"}} {}\n\
         cicd_pipeline_duration_seconds_bucket{{service=\"shop\",stage=\"pipeline\",status=\"success\",le=\"+Inf\"}} {}\n\
         cicd_pipeline_runs_total{{service=\"shop\",status=\"success\"}} {}\n\
         cicd_pipeline_runs_total{{service=\"shop\",status=\"failed\"}} {}\n\
         cicd_vulnerability_count{{service=\"shop\",severity=\"CRITICAL\"}} 2\n",
        n * 1000,
        n * 10,
        n * 10,
        n * 10,
        n * 10,
        n * 97,
        n * 3
    )
}

/// A minimal scrape target: every request gets the next exposition.
async fn serve_metrics() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let scrapes = Arc::new(AtomicU64::new(1));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = scrapes.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = exposition(n);
                let _ = socket
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dora_and_operational_rows_are_judged_from_prometheus() {
    common::install_crypto_provider();
    let sandbox = Sandbox::start(Options::prometheus_only())
        .await
        .expect("the sandbox's Prometheus");
    let port = serve_metrics().await;
    sandbox
        .add_scrape_target("collector", &format!("127.0.0.1:{port}"))
        .await
        .expect("scrape target");
    // Four scrapes of the target at least (rates need two samples).
    sandbox::support::PrometheusApi::new(sandbox.get(common::env::PROMETHEUS_URL))
        .wait_for("count_over_time(cicd_change_failure_rate[5m])", 4.0)
        .await;

    let vars: Vec<(String, String)> = [
        common::env::PROMETHEUS_URL,
        common::env::GITLAB_URL,
        common::env::HARBOR_URL,
        common::env::VAULT_ADDR,
    ]
    .iter()
    .map(|k| ((*k).to_owned(), sandbox.get(k).to_owned()))
    .chain([(common::env::CICD_HTTP_RETRIES.to_owned(), "0".to_owned())])
    .collect();
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = common::config::PlatformConfig::example(&refs).expect("settings");
    let report = evaluate(&cfg, &Attestations::default())
        .await
        .expect("a report");
    let row = |check: &str| {
        report
            .rows
            .iter()
            .find(|r| r.check == check)
            .unwrap_or_else(|| panic!("row {check}"))
    };
    let expect = |check: &str, state: State, band: Option<&str>| {
        let r = row(check);
        assert_eq!((r.state, r.band), (state, band), "{check}: {r:#?}");
        assert!(
            r.evidence
                .iter()
                .any(|e| e.source.starts_with("prometheus: ")),
            "{check}: the query is its evidence"
        );
    };
    expect("deployment_frequency", State::Pass, Some("elite"));
    expect("lead_time", State::Pass, Some("elite"));
    expect("change_failure_rate", State::Fail, Some("medium"));
    expect("mean_time_to_restore", State::Unknown, None);
    expect("pipeline_duration", State::Fail, Some("medium"));
    expect("pipeline_success_rate", State::Pass, None);
    expect("security_scanning", State::Fail, None);
    assert!(row("change_failure_rate").fix.contains("< 15%"));
    assert!(
        row("mean_time_to_restore").evidence[0]
            .value
            .contains("no series"),
        "{:#?}",
        row("mean_time_to_restore")
    );
    // Without an attestation file, nothing that needs one passes.
    for check in [
        "documentation",
        "rollback_tested",
        "on_demand_rollback",
        "alerting",
    ] {
        assert_ne!(row(check).state, State::Pass, "{check}");
    }
}
