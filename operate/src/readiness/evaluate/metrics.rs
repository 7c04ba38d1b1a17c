//! The evidence Prometheus holds: integration, the DORA metrics with their bands, and the
//! operational rows (success rate, runners, drills, CVEs, docs, live data, alerting).

use common::kube::KubeClient;
use serde_json::json;

use super::{
    ALERTING, Attestations, CFR, DAILY, DASHBOARD, DEPLOY_FREQ, DOCS, LEAD_TIME, MTTR,
    PIPELINE_DURATION, Prom, ROLLBACK_TESTED, RUNNERS, Row, RowSpec, SCANNING, SUCCESS_RATE, State,
    alert_rule_loaded, attested, ev, row,
};

pub(super) async fn daily_integration(prom: &Prom) -> Row {
    let expr = "sum by (service) (increase(cicd_pipeline_runs_total[24h]))";
    match prom.query(expr).await {
        Ok(series) if !series.is_empty() => {
            let idle: Vec<String> = series
                .iter()
                .filter(|(_, v)| *v < 1.0)
                .map(|(m, _)| m["service"].as_str().unwrap_or("?").to_owned())
                .collect();
            let e = ev(
                format!(
                    "prometheus: {expr} (pipelines per service a day; the collector counts no merges per developer)"
                ),
                series
                    .iter()
                    .map(|(m, v)| format!("{}={v:.1}", m["service"].as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            if idle.is_empty() {
                row(&DAILY, State::Pass, vec![e], "")
            } else {
                row(
                    &DAILY,
                    State::Fail,
                    vec![e],
                    format!(
                        "no integration in 24 h for {}: merge small changes to main daily",
                        idle.join(", ")
                    ),
                )
            }
        }
        Ok(_) => row(
            &DAILY,
            State::Unknown,
            vec![ev(
                format!("prometheus: {expr}"),
                "no series (the DORA collector has seen no pipeline yet)",
            )],
            "connect GitLab's webhook to the DORA collector (phase 17)",
        ),
        Err(e) => row(
            &DAILY,
            State::Unknown,
            vec![ev(format!("prometheus: {expr}"), e)],
            "set PROMETHEUS_URL",
        ),
    }
}

/// Performance bands (DORA 2023, as the plan's targets): lower is better for times and rates.
pub(super) fn band_lower(v: f64, elite: f64, high: f64, medium: f64) -> &'static str {
    if v < elite {
        "elite"
    } else if v < high {
        "high"
    } else if v < medium {
        "medium"
    } else {
        "low"
    }
}

/// Whether a value meets the initial target, and its band.
type Judge = fn(f64) -> (bool, &'static str);

pub(super) async fn dora_rows(prom: &Prom) -> Vec<Row> {
    const DAY: f64 = 86_400.0;
    let mut rows = Vec::new();
    // (spec, expression (the DORA dashboard's, over 30 days), initial target met, band, unit)
    let cases: [(&RowSpec, &str, Judge, &str); 5] = [
        (
            &DEPLOY_FREQ,
            "sum(increase(cicd_deployment_frequency_total{environment='production'}[30d])) / 30",
            |per_day| {
                let band = if per_day > 1.0 {
                    "elite"
                } else if per_day >= 1.0 / 7.0 {
                    "high"
                } else if per_day >= 1.0 / 30.0 {
                    "medium"
                } else {
                    "low"
                };
                (per_day >= 1.0 / 7.0, band)
            },
            "deployments per day",
        ),
        (
            &LEAD_TIME,
            "histogram_quantile(0.50, sum(rate(cicd_lead_time_seconds_bucket{environment='production'}[30d])) by (le))",
            |s| (s < 7.0 * DAY, band_lower(s, 3600.0, DAY, 7.0 * DAY)),
            "seconds",
        ),
        (
            &CFR,
            "avg(cicd_change_failure_rate{environment='production'})",
            |r| (r < 0.15, band_lower(r, 0.05, 0.15, 0.30)),
            "ratio",
        ),
        (
            &MTTR,
            "histogram_quantile(0.50, sum(rate(cicd_mean_time_to_restore_seconds_bucket{environment='production'}[30d])) by (le))",
            |s| (s < DAY, band_lower(s, 3600.0, DAY, 7.0 * DAY)),
            "seconds",
        ),
        (
            &PIPELINE_DURATION,
            "histogram_quantile(0.95, sum(rate(cicd_pipeline_duration_seconds_bucket{stage='pipeline'}[30d])) by (le))",
            |s| (s < 1200.0, band_lower(s, 600.0, 1200.0, 3600.0)),
            "seconds",
        ),
    ];
    for (spec, expr, judge, unit) in cases {
        let (value, mut e) = prom.scalar(expr).await;
        let r = match value {
            None => row(
                spec,
                State::Unknown,
                vec![e],
                "no data yet: the DORA collector (phase 17) needs GitLab and Argo Rollouts events for 30 days",
            ),
            Some(v) => {
                let (met, band) = judge(v);
                e.value = format!("{} {unit}", e.value);
                let mut r = row(
                    spec,
                    if met { State::Pass } else { State::Fail },
                    vec![e],
                    format!(
                        "below the initial target ({}): see the DORA dashboard's panel and docs/cicd/runbooks",
                        spec.target
                    ),
                );
                r.band = Some(band);
                r
            }
        };
        rows.push(r);
    }
    rows
}

#[allow(clippy::many_single_char_names)] // v: value, e: evidence, a: attestation, as in each row
pub(super) async fn operational_rows(
    obs_ns: &str,
    prom: &Prom,
    kube: Option<&KubeClient>,
    attestations: &Attestations,
    today: i64,
) -> Vec<Row> {
    let mut rows = Vec::new();

    // All pipelines of 7 days together (the collector's per-service gauge would fail the row
    // on one service's bad hour).
    let expr = "sum(increase(cicd_pipeline_runs_total{status='success'}[7d])) / sum(increase(cicd_pipeline_runs_total{status=~'success|failed'}[7d]))";
    let (v, e) = prom.scalar(expr).await;
    rows.push(match v {
        Some(v) if v > 0.95 => row(&SUCCESS_RATE, State::Pass, vec![e], ""),
        Some(_) => row(&SUCCESS_RATE, State::Fail, vec![e], "find the failing pipelines on the DORA dashboard (Pipeline Success Rate) and fix flaky jobs"),
        None => row(&SUCCESS_RATE, State::Unknown, vec![e], "no pipeline data yet (DORA collector, phase 17)"),
    });

    let expr = "avg(avg_over_time(up{job=~\".*gitlab-runner.*\"}[7d]))";
    let (v, e) = prom.scalar(expr).await;
    rows.push(match v {
        Some(v) if v > 0.995 => row(&RUNNERS, State::Pass, vec![e], ""),
        Some(_) => row(&RUNNERS, State::Fail, vec![e], "runner pods were down: see docs/cicd/runbooks (runner pools) and the runner Applications of phase 16"),
        None => row(&RUNNERS, State::Unknown, vec![e], "scrape the runners' metrics (a PodMonitor on gitlab-runners) so uptime can be measured"),
    });

    let mut drills = Vec::new();
    let a = attested(attestations, ROLLBACK_TESTED.check, today, &mut drills);
    let expr = "sum(cicd_rollback_total)";
    let (rolled, e) = prom.scalar(expr).await;
    drills.push(e);
    rows.push(match a {
        Some(a) if a.value.is_some_and(|n| n >= 3.0) => row(&ROLLBACK_TESTED, State::Pass, drills, ""),
        Some(_) => row(&ROLLBACK_TESTED, State::Fail, drills, "fewer than 3 successful drills recorded: run the rollback drill (docs/cicd/runbooks) and record value: <drills>"),
        None => row(&ROLLBACK_TESTED, State::Unknown, drills, format!("run 3 rollback drills and record them (check rollback_tested, value: 3) in the attestation file{}", rolled.map(|r| format!("; the collector counted {r} rollback(s)")).unwrap_or_default())),
    });

    // The newest Harbor scan of each service's images (the collector keeps one per service):
    // what runs in production is the newest promoted image.
    let expr = "sum(cicd_vulnerability_count{severity='CRITICAL'})";
    let (v, e) = prom.scalar(expr).await;
    rows.push(match v {
        Some(v) if v < 1.0 => row(&SCANNING, State::Pass, vec![e], ""),
        Some(_) => row(&SCANNING, State::Fail, vec![e], "critical CVEs in deployed images: rebuild on patched bases (the CriticalVulnerabilityDetected alert names the service)"),
        None => row(&SCANNING, State::Unknown, vec![e], "no scan results yet: Harbor's scan webhooks reach the DORA collector (phases 16–17)"),
    });

    let mut docs = Vec::new();
    let a = attested(attestations, DOCS.check, today, &mut docs);
    let runbooks = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/cicd/runbooks"
    ))
    .map(Iterator::count)
    .ok();
    if let Some(n) = runbooks {
        docs.push(ev(
            "docs/cicd/runbooks of this checkout",
            format!("{n} runbook file(s)"),
        ));
    }
    let stale = matches!(
        attestations.of(DOCS.check, today),
        super::Attested::Stale(_)
    );
    rows.push(match a {
        Some(_) => row(&DOCS, State::Pass, docs, ""),
        None if stale => row(&DOCS, State::Fail, docs, "the last review is older than 90 days: have the ops team review docs/cicd/runbooks again and record it"),
        None => row(&DOCS, State::Unknown, docs, "have the ops team review docs/cicd/runbooks and record it (check documentation) in the attestation file"),
    });

    // Live data: the collector's series present in every hour of the last 7 days, and the
    // dashboard deployed.
    let (hours, e_hours) = prom
        .scalar("count_over_time((count(cicd_pipeline_runs_total))[7d:1h])")
        .await;
    let mut dash = vec![e_hours];
    let mut dashboard_deployed = None;
    if let Some(kube) = kube {
        // By name: the report's account may read that ConfigMap and no other there.
        let name = obs_setup::desired::DASHBOARD_CONFIGMAP;
        let found = kube
            .get(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": obs_ns}}))
            .await;
        if let Ok(live) = &found {
            dashboard_deployed = Some(
                live.as_ref()
                    .is_some_and(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1"),
            );
        }
        dash.push(ev(
            format!("kubernetes: ConfigMap {obs_ns}/{name}"),
            match found {
                Ok(None) => "missing".to_owned(),
                Ok(Some(c)) => format!(
                    "present, label grafana_dashboard={}",
                    c["metadata"]["labels"]["grafana_dashboard"]
                        .as_str()
                        .unwrap_or("(none: the Grafana sidecar ignores it)")
                ),
                Err(e) => e.one_line(),
            },
        ));
    }
    rows.push(match (dashboard_deployed, hours) {
        (Some(false), _) => row(
            &DASHBOARD,
            State::Fail,
            dash,
            "the dashboard ConfigMap grafana-dashboard-dora is missing: run ./scripts/deploy-cluster.sh --only 17",
        ),
        (_, Some(h)) if h >= 168.0 => row(&DASHBOARD, State::Pass, dash, ""),
        (_, Some(_)) => row(
            &DASHBOARD,
            State::Unknown,
            dash,
            "data flows, but not yet in every hour of 7 days",
        ),
        _ => row(
            &DASHBOARD,
            State::Unknown,
            dash,
            "no DORA data yet: connect the webhooks (phase 17) and wait 7 days",
        ),
    });

    let (loaded, rule_ev) = alert_rule_loaded(prom, "PipelineSuccessRateLow").await;
    let mut alert_ev = vec![rule_ev];
    let rule_object = match kube {
        Some(kube) => kube
            .get(&json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": obs_setup::desired::ALERTS_RULE, "namespace": obs_ns}}))
            .await
            .ok()
            .map(|r| r.is_some()),
        None => None,
    };
    if let Some(exists) = rule_object {
        alert_ev.push(ev(
            format!("kubernetes: PrometheusRule {obs_ns}/cicd-alerts"),
            if exists { "exists" } else { "missing" },
        ));
    }
    let not_loaded_fix = if rule_object == Some(true) {
        format!(
            "the PrometheusRule {obs_ns}/cicd-alerts exists but Prometheus loaded none of its alerts: the Prometheus Operator must run and select the rule's labels (OBS_MONITOR_LABELS)"
        )
    } else {
        "the PrometheusRule cicd-alerts is missing: run ./scripts/deploy-cluster.sh --only 17"
            .to_owned()
    };
    let a = attested(attestations, ALERTING.check, today, &mut alert_ev);
    rows.push(match (loaded, a) {
        (Some(true), Some(_)) => row(&ALERTING, State::Pass, alert_ev, ""),
        (Some(false), _) => row(&ALERTING, State::Fail, alert_ev, not_loaded_fix),
        _ => row(&ALERTING, State::Unknown, alert_ev, "fire each alert with a synthetic failure (promtool rules tests in obs-setup/rules/tests, then live) and record it (check alerting)"),
    });
    rows
}
