//! Every `PromQL` expression of the DORA dashboard (plan §4.2) and of the alert rules (§4.4 and
//! the collector's own) evaluated by a real Prometheus (the sandbox's, scraping every second)
//! that scrapes this real collector, fed a recorded event stream with known answers.
//!
//! Counters and histograms of a service exist at 0 from its first running deployment, so the
//! expected numbers are exact: Prometheus does not extrapolate `increase()`/`rate()` back past a
//! series' first sample when that sample is 0, and the queries are evaluated at the timestamp of
//! the latest scrape.

use std::time::Duration;

use dora_collector::payloads::{self, Build, DEPLOYMENT_HOOK, PIPELINE_HOOK, PUSH_HOOK};
use sandbox::support::PrometheusApi;
use sandbox::{Options, Sandbox};
use serde_json::Value;

use crate::support::{Collector, value};

const RELAY: &str = "platform_services/packet-relay";
/// Lead times of the 12 production deployments; the 6th smallest (lower median) is 2700 s, and
/// with the buckets 900/1800/3600/7200 `histogram_quantile(0.5)` interpolates to exactly 2700.
const LEAD_TIMES: [i64; 12] = [
    600, 700, 800, 2100, 2400, 2700, 3000, 3300, 3600, 5000, 6000, 7000,
];

fn sample_value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

/// Equal up to float rounding (`PromQL`'s interpolation divides).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[track_caller]
fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    assert!(
        actual.is_some_and(|a| close(a, expected)),
        "{what}: {actual:?}, expected {expected}"
    );
}

fn only(result: &[Value]) -> Option<f64> {
    (result.len() == 1).then(|| sample_value(&result[0]))
}

#[tokio::test]
async fn dashboard_and_alert_expressions_give_the_known_answers() {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        kube: false,
        vault: false,
        prometheus: true,
        ..Options::default()
    })
    .await
    .expect("sandbox with Prometheus starts");
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        &format!("sqlite://{}/dora.db", dir.path().display()),
        dir.path(),
        &[],
    )
    .await;
    sandbox
        .add_scrape_target("dora-collector", c.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let prom = PrometheusApi::new(sandbox.get("PROMETHEUS_URL"));
    #[allow(clippy::cast_possible_truncation)]
    let t0 = dora_collector::now() as i64 - 20 * 3600;

    // Wave A: the 12 deployments start (running), and 10 pipelines (9 pass, 1 fails).
    for k in 0..12_u64 {
        let body = payloads::deployment(RELAY, 100 + k, "production", "running", "", t0);
        assert_eq!(c.send(DEPLOYMENT_HOOK, &body).await.0, 200);
    }
    let pipelines = |first: u64| {
        (first..first + 10).map(move |id| {
            let failed = id % 10 == 3;
            let (status, took) = if failed {
                ("failed", 1000)
            } else {
                ("success", 100)
            };
            let build = [Build {
                stage: "build",
                started: t0,
                finished: t0 + 50,
                queued: 2.0,
                runner_tags: &["build"],
            }];
            let times = payloads::Times {
                committed: t0 - 60,
                created: t0,
                finished: t0 + took,
            };
            payloads::pipeline(RELAY, id, status, "abc", times, &build)
        })
    };
    for body in pipelines(500) {
        assert_eq!(c.send(PIPELINE_HOOK, &body).await.0, 200);
    }
    c.settled_metrics().await;
    // Two scrapes of the zero-valued counters and of wave A's histograms.
    prom.wait_for(
        "count_over_time(cicd_deployment_frequency_total{environment=\"production\"}[10m])",
        2.0,
    )
    .await;
    prom.wait_for("count_over_time(cicd_pipeline_duration_seconds_count{stage=\"pipeline\",status=\"failed\"}[10m])", 2.0).await;

    // Wave B: the deployments succeed (a failure after the 6th is restored 2700 s later by the
    // 7th), 10 more pipelines of the same mix, 4 rollbacks by analysis in staging, one delivery
    // with a wrong token.
    for k in 0..12_i64 {
        let sha = format!("c0ffee{k:02}");
        let deployed = t0 + k * 3600;
        let id = 100 + u64::try_from(k).unwrap();
        assert_eq!(
            c.send(
                PUSH_HOOK,
                &payloads::push(
                    RELAY,
                    &[(&sha, deployed - LEAD_TIMES[usize::try_from(k).unwrap()])]
                )
            )
            .await
            .0,
            200
        );
        if k == 6 {
            let failed =
                payloads::deployment(RELAY, 112, "production", "failed", "bad", deployed - 2700);
            assert_eq!(c.send(DEPLOYMENT_HOOK, &failed).await.0, 200);
        }
        let body = payloads::deployment(RELAY, id, "production", "success", &sha, deployed);
        assert_eq!(c.send(DEPLOYMENT_HOOK, &body).await.0, 200);
    }
    for body in pipelines(510) {
        assert_eq!(c.send(PIPELINE_HOOK, &body).await.0, 200);
    }
    let http = reqwest::Client::new();
    let notify = |body: String| {
        let request = http
            .post(format!("{}/webhooks/argo-rollouts", c.url))
            .header(
                "Authorization",
                format!("Bearer {}", crate::support::ROLLOUTS_SECRET),
            )
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Three rollbacks in the earlier body shape (still accepted)…
    for revision in 1..=3 {
        let body = format!(
            r#"{{"event":"rollout-aborted","service":"packet-relay","environment":"staging","revision":"{revision}","reason":"Metric \"success-rate\" assessed Failed"}}"#
        );
        assert_eq!(notify(body).await, 200);
    }
    // …and a release through phase 17's notification templates, rendered by the Rollouts
    // controller's engine (Go text/template + sprig): revision 20 starts, its analysis fails with
    // a message full of quotes, it is aborted (the 4th rollback); revision 21 starts and completes.
    let message = r#"RolloutAborted: Rollout aborted update to revision 20: Metric "success-rate" assessed Failed due to failed (1) > failureLimit (0)"#;
    for (event, revision, status_message) in [
        ("rollout-updated", "20", ""),
        ("analysis-run-failed", "20", message),
        ("rollout-aborted", "20", message),
        ("rollout-updated", "21", ""),
        ("rollout-completed", "21", "Rollout is healthy"),
    ] {
        let body = rendered_notification(event, revision, status_message);
        let parsed: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{event}: the rendered body is not JSON ({e}):\n{body}"));
        if event == "rollout-aborted" {
            assert_eq!(parsed["reason"], message, "quotes survive the template");
        }
        assert_eq!(notify(body).await, 200, "{event}");
    }
    // A Harbor scan of the service's image with one critical (the vendored payload).
    let r = http
        .post(format!("{}/webhooks/harbor", c.url))
        .header(
            "Authorization",
            format!("Bearer {}", crate::support::HARBOR_SECRET),
        )
        .body(include_str!(
            "../../fixtures/harbor/scanning-completed.json"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        c.post(DEPLOYMENT_HOOK, Some("wrong"), b"{}".to_vec())
            .await
            .0,
        401
    );
    let m = c.settled_metrics().await;
    assert_eq!(
        value(
            &m,
            "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"}"
        ),
        Some(12.0)
    );
    prom.wait_for(
        "cicd_deployment_frequency_total{environment=\"production\"}",
        12.0,
    )
    .await;
    prom.wait_for(
        "sum(dora_collector_webhooks_total{outcome=\"rejected_token\"})",
        1.0,
    )
    .await;
    prom.wait_for("sum(cicd_rollback_total)", 4.0).await;
    prom.wait_for("sum(cicd_vulnerability_count)", 9.0).await;
    for (series, expected) in [
        (
            "cicd_rollout_duration_seconds_count{service=\"packet-relay\",strategy=\"canary\"}",
            1.0,
        ),
        (
            "cicd_canary_analysis_result{service=\"packet-relay\",template=\"success-rate\"}",
            1.0,
        ),
        (
            "cicd_vulnerability_count{service=\"packet-relay\",severity=\"CRITICAL\"}",
            1.0,
        ),
    ] {
        assert_eq!(value(&m, series), Some(expected), "{series}\n{m}");
    }
    // Evaluate everything at the latest scrape.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = prom
        .scalar("timestamp(up{job=\"dora-collector\"})")
        .await
        .unwrap();

    // The dashboard: every panel's expression, with its expected answer.
    let dashboard = obs_setup::dashboard();
    let (mut panels, mut readiness_panels) = (0, 0);
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            // The readiness row (issue 21) shows cicd-readiness's gauges, not the collector's:
            // here they have no series; the system step "readiness report" scrapes them.
            if expr.contains("cicd_readiness") {
                readiness_panels += 1;
                assert!(
                    prom.query(expr, Some(at)).await.is_empty(),
                    "{title}: the collector exports no readiness gauge"
                );
                continue;
            }
            panels += 1;
            let result = prom.query(expr, Some(at)).await;
            let by = |label: &str, v: &str| {
                result
                    .iter()
                    .find(|s| s["metric"][label] == v)
                    .map(sample_value)
            };
            // One expectation per panel, even where two happen to agree.
            #[allow(clippy::match_same_arms)]
            match title {
                "Deployment Frequency" => assert_close(only(&result), 12.0, title),
                "Lead Time for Changes" => assert_close(only(&result), 2700.0, title),
                "Change Failure Rate" => assert_close(only(&result), 1.0 / 13.0, title),
                "Mean Time to Restore" => assert_close(only(&result), 2700.0, title),
                "Pipeline Duration Trend" => {
                    // p95 of wave B: 9 × 100 s and 1 × 1000 s → bucket (900, 1200] → 1050;
                    // builds of 50 s → bucket (30, 60] → 58.5.
                    assert_eq!(result.len(), 2, "{title}: {result:?}");
                    assert_close(by("stage", "pipeline"), 1050.0, title);
                    assert_close(by("stage", "build"), 58.5, title);
                }
                "Pipeline Success Rate" => assert_close(only(&result), 0.9, title),
                // The Harbor scan: 1 critical, 3 high, 2 medium, 3 low, 0 negligible and unknown.
                "Vulnerability Trend" => {
                    assert_eq!(result.len(), 6, "{title}: {result:?}");
                    assert_close(by("severity", "CRITICAL"), 1.0, title);
                    assert_close(by("severity", "HIGH"), 3.0, title);
                    assert_close(by("severity", "MEDIUM"), 2.0, title);
                    assert_close(by("severity", "LOW"), 3.0, title);
                    assert_close(by("severity", "UNKNOWN"), 0.0, title);
                }
                "Rollback Frequency" => assert_close(only(&result), 4.0, title),
                other => panic!("a dashboard panel without an expected answer: {other}"),
            }
        }
    }
    assert_eq!(panels, 8);
    assert_eq!(readiness_panels, 3);

    // The alert rules: which fire now, with which value.
    let groups = obs_setup::alert_rule_groups();
    let mut rules = 0;
    for rule in groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let (Some(alert), Some(expr)) = (rule["alert"].as_str(), rule["expr"].as_str()) else {
            continue;
        };
        rules += 1;
        let result = prom.query(expr, Some(at)).await;
        let firing: Vec<(Value, f64)> = result
            .iter()
            .map(|s| (s["metric"].clone(), sample_value(s)))
            .collect();
        match alert {
            // 1 failing pipeline with 1000 s: p95 of that series interpolates to 1185 > 900.
            "PipelineDurationHigh" => {
                assert_eq!(firing.len(), 1, "{alert}: {firing:?}");
                assert_eq!(
                    (
                        firing[0].0["stage"].as_str(),
                        firing[0].0["status"].as_str()
                    ),
                    (Some("pipeline"), Some("failed"))
                );
                assert_close(Some(firing[0].1), 1185.0, alert);
            }
            "DeploymentRollbackFrequent" => {
                assert_eq!(firing.len(), 1, "{alert}: {firing:?}");
                assert_eq!(firing[0].0["reason"].as_str(), Some("analysis"));
                assert_close(Some(firing[0].1), 4.0, alert);
            }
            "DoraWebhookTokenRejected" => {
                assert_eq!(firing.len(), 1, "{alert}: {firing:?}");
                assert_eq!(firing[0].0["source"].as_str(), Some("gitlab"));
                assert_close(Some(firing[0].1), 1.0, alert);
            }
            // The Harbor scan's one critical vulnerability.
            "CriticalVulnerabilityDetected" => {
                assert_eq!(firing.len(), 1, "{alert}: {firing:?}");
                assert_eq!(firing[0].0["service"].as_str(), Some("packet-relay"));
                assert_close(Some(firing[0].1), 1.0, alert);
            }
            // Success rate exactly 0.9 is not below 0.90; median lead time 2700 s is not over a day;
            // the collector is up, present, error-free, caught up and fed.
            "PipelineSuccessRateLow"
            | "LeadTimeRegression"
            | "DoraCollectorDown"
            | "DoraCollectorAbsent"
            | "DoraCollectorStoreErrors"
            | "DoraCollectorProcessingLag"
            | "DoraWebhooksStale" => {
                assert!(firing.is_empty(), "{alert} should not fire: {firing:?}");
            }
            // The readiness report's health (issue 21): this Prometheus scrapes no readiness
            // exporter, so its target is absent and the report's own series are missing.
            "CicdReadinessExporterAbsent" => {
                assert_eq!(firing.len(), 1, "{alert}: {firing:?}");
                assert_eq!(firing[0].0["job"].as_str(), Some("cicd-readiness-exporter"));
                assert_close(Some(firing[0].1), 1.0, alert);
            }
            "CicdReadinessReportStale"
            | "CicdReadinessReportMissing"
            | "CicdReadinessCheckFailing" => {
                assert!(firing.is_empty(), "{alert} has no series here: {firing:?}");
            }
            other => panic!("an alert without an expected answer: {other}"),
        }
    }
    assert_eq!(rules, 15);
}

/// One body of phase 17's notification template for `event`, rendered as the Argo Rollouts
/// controller renders it (`sandbox::support::render_notification`: Go text/template with sprig)
/// for a canary Rollout of packet-relay in its staging namespace (the Rollout's fields as in the
/// Argo Rollouts CRD: revision annotation, canary analysis templates, `status.message`).
fn rendered_notification(event: &str, revision: &str, message: &str) -> String {
    let template = obs_setup::rollouts_notifications::body_template(event);
    let vars = serde_json::json!({"rollout": {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "packet-relay", "namespace": "netops-arcade-staging",
                     "annotations": {"rollout.argoproj.io/revision": revision}},
        "spec": {"strategy": {"canary": {
            "analysis": {"templates": [{"templateName": "success-rate"}]},
            "steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}],
        }}},
        "status": {"phase": "Progressing", "message": message},
    }});
    sandbox::support::render_notification(&template, &vars)
        .unwrap_or_else(|e| panic!("rendering {event}: {e}\n{template}"))
}
