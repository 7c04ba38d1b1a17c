//! The rows' evidence, read live: the phases' own observations and plans (phase 12 for GitLab
//! settings, 14 for Harbor, 15 for Argo CD), Kubernetes objects, Prometheus queries (the DORA
//! dashboard's own expressions), and the attestation file.

use common::config::PlatformConfig;
use common::env;
use common::kube::KubeClient;
use serde_json::Value;

use super::attest::{Attestations, Attested};
use super::{Evidence, Report, Row, Section, State};
use argo::argo_rows;
use gitlab::gitlab_rows;
use library::harbor_and_library_rows;
use metrics::{daily_integration, dora_rows, operational_rows};

fn ev(source: impl Into<String>, value: impl Into<String>) -> Evidence {
    Evidence {
        source: source.into(),
        value: common::redact::redact(&value.into()),
    }
}

struct RowSpec {
    section: Section,
    check: &'static str,
    requirement: &'static str,
    target: &'static str,
}

fn row(spec: &RowSpec, state: State, evidence: Vec<Evidence>, fix: impl Into<String>) -> Row {
    let fix = fix.into();
    let evidence_empty = evidence.is_empty();
    Row {
        section: spec.section,
        check: spec.check,
        requirement: spec.requirement,
        target: spec.target,
        // No evidence read: never a pass.
        state: if evidence_empty && state == State::Pass {
            State::Unknown
        } else {
            state
        },
        band: None,
        evidence,
        fix: match state {
            State::Pass if evidence_empty => {
                "no evidence was read: rerun with -v to see why".to_owned()
            }
            State::Pass => String::new(),
            _ => fix,
        },
    }
}

macro_rules! spec {
    ($section:ident, $check:literal, $req:literal, $target:literal) => {
        RowSpec {
            section: Section::$section,
            check: $check,
            requirement: $req,
            target: $target,
        }
    };
}

const TRUNK: RowSpec = spec!(
    Minimumcd,
    "trunk_based_development",
    "Trunk-based development",
    "All projects enforce"
);
const DAILY: RowSpec = spec!(
    Minimumcd,
    "daily_integration",
    "Daily integration",
    ">= 1 per dev per day"
);
const TESTING: RowSpec = spec!(
    Minimumcd,
    "automated_testing_before_merge",
    "Automated testing before merge",
    "100% enforced"
);
const SOLE_PATH: RowSpec = spec!(
    Minimumcd,
    "pipeline_sole_deploy_path",
    "Pipeline is sole deploy path",
    "No manual deploys possible"
);
const VERDICT: RowSpec = spec!(
    Minimumcd,
    "pipeline_verdict_definitive",
    "Pipeline verdict is definitive",
    "All gates blocking"
);
const IMMUTABLE: RowSpec = spec!(
    Minimumcd,
    "immutable_artifacts",
    "Immutable artifacts",
    "Enabled on all projects"
);
const WORK_STOPS: RowSpec = spec!(
    Minimumcd,
    "work_stops_when_pipeline_red",
    "Work stops when pipeline red",
    "Configured + tested"
);
const PROD_LIKE: RowSpec = spec!(
    Minimumcd,
    "production_like_test_env",
    "Production-like test env",
    "< 5% config drift"
);
const ROLLBACK: RowSpec = spec!(
    Minimumcd,
    "on_demand_rollback",
    "On-demand rollback",
    "< 5 minutes"
);
const CONFIG: RowSpec = spec!(
    Minimumcd,
    "config_with_artifact",
    "Config with artifact",
    "No manual config changes"
);

const DEPLOY_FREQ: RowSpec = spec!(
    Dora,
    "deployment_frequency",
    "Deployment Frequency",
    "Weekly (elite: multiple per day)"
);
const LEAD_TIME: RowSpec = spec!(Dora, "lead_time", "Lead Time", "< 1 week (elite: < 1 hour)");
const CFR: RowSpec = spec!(
    Dora,
    "change_failure_rate",
    "Change Failure Rate",
    "< 15% (elite: < 5%)"
);
const MTTR: RowSpec = spec!(
    Dora,
    "mean_time_to_restore",
    "Mean Time to Restore",
    "< 1 day (elite: < 1 hour)"
);
const PIPELINE_DURATION: RowSpec = spec!(
    Dora,
    "pipeline_duration",
    "Pipeline Duration",
    "< 20 min (elite: < 10 min)"
);

const SUCCESS_RATE: RowSpec = spec!(
    Operational,
    "pipeline_success_rate",
    "Pipeline success rate",
    "> 95% over 7 days"
);
const RUNNERS: RowSpec = spec!(
    Operational,
    "runner_availability",
    "Runner availability",
    "> 99.5% uptime"
);
const ROLLBACK_TESTED: RowSpec = spec!(
    Operational,
    "rollback_tested",
    "Rollback tested",
    "3 successful drills"
);
const SCANNING: RowSpec = spec!(
    Operational,
    "security_scanning",
    "Security scanning",
    "0 critical CVEs in production images"
);
const DOCS: RowSpec = spec!(
    Operational,
    "documentation",
    "Documentation",
    "All runbooks reviewed by ops team"
);
const DASHBOARD: RowSpec = spec!(
    Operational,
    "dora_dashboard",
    "DORA dashboard",
    "Live data flowing for 7+ days"
);
const ALERTING: RowSpec = spec!(
    Operational,
    "alerting",
    "Alerting",
    "All alerts tested with synthetic failures"
);

/// How to converge a phase, for fixes.
fn rerun(phase: &str) -> String {
    format!("./scripts/deploy-cluster.sh --only {phase}")
}

/// A Prometheus instant query: the result vector, or why there is none.
struct Prom {
    base: Option<String>,
    http: reqwest::Client,
}

impl Prom {
    async fn query(&self, expr: &str) -> Result<Vec<(Value, f64)>, String> {
        let Some(base) = &self.base else {
            return Err(format!("{} is not set", env::PROMETHEUS_URL));
        };
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", common::error::error_chain(&e)))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("GET {url}: {status}, unreadable answer: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("GET {url}: {status} {}", body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let v = s["value"][1].as_str()?.parse::<f64>().ok()?;
                Some((s["metric"].clone(), v))
            })
            .collect())
    }

    /// One number (the first series), with its evidence; `None` when there is no series.
    async fn scalar(&self, expr: &str) -> (Option<f64>, Evidence) {
        match self.query(expr).await {
            Ok(series) => match series.first() {
                Some((_, v)) if v.is_finite() => {
                    (Some(*v), ev(format!("prometheus: {expr}"), format!("{v}")))
                }
                Some((_, v)) => (
                    None,
                    ev(
                        format!("prometheus: {expr}"),
                        format!("{v} (no data in the window)"),
                    ),
                ),
                None => (None, ev(format!("prometheus: {expr}"), "no series")),
            },
            Err(e) => (None, ev(format!("prometheus: {expr}"), e)),
        }
    }
}

/// Evaluates every row against the platform described by `cfg`.
pub async fn evaluate(cfg: &PlatformConfig, attestations: &Attestations) -> anyhow::Result<Report> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let today = common::dates::today();
    let prom = Prom {
        base: cfg.prometheus_url.clone(),
        http: common::http::build_reqwest(cfg)?,
    };
    let kube = KubeClient::connect(cfg, "cicd-readiness")
        .await
        .map_err(|e| e.one_line());

    let mut rows = Vec::new();
    let access = super::credentials::access(cfg).await;
    rows.extend(gitlab_rows(&access.gitlab, &prom).await);
    rows.extend(harbor_and_library_rows(cfg, &access).await);
    rows.extend(
        argo_rows(
            cfg,
            kube.as_ref().map_err(String::as_str),
            attestations,
            today,
            !matches!(access.harbor, super::credentials::HarborAccess::Operator),
        )
        .await,
    );
    rows.push(daily_integration(&prom).await);
    rows.extend(dora_rows(&prom).await);
    let obs_ns = cfg
        .environment()
        .get(env::OBS_NAMESPACE)
        .unwrap_or("monitoring");
    rows.extend(operational_rows(obs_ns, &prom, kube.as_ref().ok(), attestations, today).await);
    // The plan's order within each section.
    let order = [
        TRUNK.check,
        DAILY.check,
        TESTING.check,
        SOLE_PATH.check,
        VERDICT.check,
        IMMUTABLE.check,
        WORK_STOPS.check,
        PROD_LIKE.check,
        ROLLBACK.check,
        CONFIG.check,
        DEPLOY_FREQ.check,
        LEAD_TIME.check,
        CFR.check,
        MTTR.check,
        PIPELINE_DURATION.check,
        SUCCESS_RATE.check,
        RUNNERS.check,
        ROLLBACK_TESTED.check,
        SCANNING.check,
        DOCS.check,
        DASHBOARD.check,
        ALERTING.check,
    ];
    rows.sort_by_key(|r| order.iter().position(|c| *c == r.check));
    Ok(Report {
        generated_at: rfc3339(now),
        generated_at_unix: now,
        rows,
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
fn rfc3339(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        common::dates::format(days),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Whether Prometheus has loaded alert `name`; `None` when Prometheus cannot be read.
async fn alert_rule_loaded(prom: &Prom, name: &str) -> (Option<bool>, Evidence) {
    let Some(base) = &prom.base else {
        return (
            None,
            ev("prometheus: /api/v1/rules", "PROMETHEUS_URL is not set"),
        );
    };
    let url = format!("{}/api/v1/rules?type=alert", base.trim_end_matches('/'));
    match prom.http.get(&url).send().await {
        Ok(r) if !r.status().is_success() => (
            None,
            ev("prometheus: /api/v1/rules", format!("{}", r.status())),
        ),
        Ok(r) => match r.json::<Value>().await {
            Ok(v) if v["status"] != "success" => (
                None,
                ev(
                    "prometheus: /api/v1/rules",
                    format!("status {}: {}", v["status"], v["error"]),
                ),
            ),
            Ok(v) => {
                let names: Vec<String> = v["data"]["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect();
                let loaded = names.iter().any(|n| n == name);
                (
                    Some(loaded),
                    ev(
                        "prometheus: /api/v1/rules",
                        format!(
                            "{} alert rule(s) loaded; {name} {}",
                            names.len(),
                            if loaded { "loaded" } else { "missing" }
                        ),
                    ),
                )
            }
            Err(e) => (
                None,
                ev("prometheus: /api/v1/rules", format!("unreadable: {e}")),
            ),
        },
        Err(e) => (
            None,
            ev("prometheus: /api/v1/rules", common::error::error_chain(&e)),
        ),
    }
}

/// The attestation of `check` as evidence; `Some` when current.
fn attested<'a>(
    attestations: &'a Attestations,
    check: &str,
    today: i64,
    evidence: &mut Vec<Evidence>,
) -> Option<&'a super::attest::Attestation> {
    let source = format!(
        "attestation file {}",
        if attestations.source.is_empty() {
            "(none given)"
        } else {
            &attestations.source
        }
    );
    match attestations.of(check, today) {
        Attested::Missing => {
            evidence.push(ev(
                source,
                format!("no attestation of {check} (no automatic evidence exists for it)"),
            ));
            None
        }
        Attested::Stale(a) => {
            evidence.push(ev(
                source,
                format!(
                    "attested by {} on {}: older than {} days, no longer counts",
                    a.by,
                    a.date,
                    super::attest::MAX_AGE_DAYS
                ),
            ));
            None
        }
        Attested::Current(a) => {
            evidence.push(ev(
                source,
                format!(
                    "attested by {} on {}{}{} (no automatic evidence exists for it)",
                    a.by,
                    a.date,
                    a.value.map(|v| format!(", value {v}")).unwrap_or_default(),
                    a.note
                        .as_ref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                ),
            ));
            Some(a)
        }
    }
}

mod argo;
mod gitlab;
mod library;
mod metrics;
