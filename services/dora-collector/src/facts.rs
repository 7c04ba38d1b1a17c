//! What the collector keeps of a webhook: small typed facts, each with a de-duplication key.
//!
//! A webhook becomes zero or more facts when it is received (so malformed payloads are refused
//! before anything is stored), and the facts — not the raw bodies — are what the store holds and
//! what a restart replays. GitLab payload shapes follow GitLab's "Webhook events" documentation
//! (`doc/user/project/integrations/webhook_events.md`): pipeline events (`object_attributes`,
//! `builds[]`, `commit`, `source_pipeline`), deployment events (`deployment_id`, `status`,
//! `status_changed_at`, `environment`, `commit_url`) and push events (`commits[]`).
//!
//! De-duplication: GitLab retries a delivery that timed out or failed, and a pipeline sends an
//! event on every status change; the key names the logical fact (a pipeline's terminal status, a
//! deployment's terminal status, a commit), so a retried delivery or a healed API read of the same
//! thing is stored once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::timefmt;

/// A stage's wall time in one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub name: String,
    pub seconds: f64,
}

/// How long one job waited for a runner, and which runner pool (plan §3.1) took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedJob {
    pub runner_type: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// When a commit was made (the start of its lead time).
    Commit {
        project: String,
        sha: String,
        at: f64,
    },
    /// A pipeline reached a terminal status.
    Pipeline {
        project: String,
        id: u64,
        status: String,
        finished_at: f64,
        duration: f64,
        stages: Vec<StageRun>,
        jobs: Vec<QueuedJob>,
    },
    /// A deployment reached a terminal status.
    Deployment {
        project: String,
        id: u64,
        environment: String,
        status: String,
        sha: Option<String>,
        at: f64,
        /// GitLab's `environment_tier` (`deployment_tier` of the job), when the event has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tier: Option<String>,
    },
    /// Argo Rollouts aborted a rollout (a failed change, plan §4.1 `cicd_rollback_total`).
    Rollback {
        service: String,
        environment: String,
        reason: String,
        revision: String,
        at: f64,
    },
    /// Harbor finished a vulnerability scan of an image (`SCANNING_COMPLETED`): its counts by
    /// severity. The newest scan of a service's images is what `cicd_vulnerability_count` shows.
    Scan {
        service: String,
        digest: String,
        /// Harbor's severity names (`Critical`, `High`, …) → count.
        counts: std::collections::BTreeMap<String, u64>,
        at: f64,
    },
    /// An Argo Rollouts notification about one revision of a rollout: `updated` (a rollout
    /// started), `completed`, `aborted` or `analysis-failed` (the collector's template).
    Rollout {
        service: String,
        environment: String,
        strategy: String,
        revision: String,
        event: String,
        /// The canary's analysis template (empty without analysis).
        template: String,
        at: f64,
    },
}

impl Fact {
    /// The key that makes a retried delivery, or the same fact read again from the API, a duplicate.
    pub fn dedupe_key(&self) -> String {
        match self {
            Fact::Commit { project, sha, .. } => format!("commit:{project}:{sha}"),
            Fact::Pipeline {
                project,
                id,
                status,
                ..
            } => format!("pipeline:{project}:{id}:{status}"),
            Fact::Deployment {
                project,
                id,
                status,
                ..
            } => format!("deployment:{project}:{id}:{status}"),
            Fact::Rollback {
                service,
                environment,
                revision,
                ..
            } => format!("rollback:{service}:{environment}:{revision}"),
            Fact::Scan {
                service,
                digest,
                at,
                ..
            } => format!("scan:{service}:{digest}:{at}"),
            Fact::Rollout {
                service,
                environment,
                revision,
                event,
                ..
            } => format!("rollout:{service}:{environment}:{revision}:{event}"),
        }
    }
}

/// The `service` label of a GitLab project: the last segment of its path.
pub fn service_of(project: &str) -> &str {
    project.rsplit('/').next().unwrap_or(project)
}

/// A payload the collector refuses (answered 400, never stored, never counted).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("{kind} event without {field}")]
    Missing { kind: String, field: &'static str },
}

pub const TERMINAL_PIPELINE: &[&str] = &["success", "failed", "canceled", "skipped"];
/// A running deployment is kept too: it makes its service's counters exist (at 0) before the
/// first success, so Prometheus' `increase()` counts that success.
pub const DEPLOYMENT_STATUSES: &[&str] = &["running", "success", "failed", "canceled"];
/// The bounded `reason` label of `cicd_rollback_total`.
pub const ROLLBACK_REASONS: &[&str] = &["analysis", "manual", "other"];
/// Runner tags that name a pool of plan §3.1; a job's queue time is labelled with its pool.
const RUNNER_POOLS: &[&str] = &["security", "build", "test", "shared"];

pub(crate) fn missing(kind: &str, field: &'static str) -> PayloadError {
    PayloadError::Missing {
        kind: kind.to_owned(),
        field,
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn time_at(v: &Value, pointer: &str) -> Option<f64> {
    str_at(v, pointer).and_then(timefmt::parse)
}

/// Facts of one GitLab webhook body (`received_at` stands in for a missing timestamp).
pub fn from_gitlab(body: &[u8], received_at: f64) -> Result<Vec<Fact>, PayloadError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Some(kind) = v.get("object_kind").and_then(Value::as_str) else {
        return Err(missing("webhook", "object_kind"));
    };
    match kind {
        "pipeline" => pipeline(&v, received_at),
        "deployment" => deployment(&v, received_at).map(|d| d.into_iter().collect()),
        "push" => push(&v),
        // Merge request and other events are accepted (the group hook sends them) but carry no
        // metric of §4.1.
        _ => Ok(Vec::new()),
    }
}

fn project_path(v: &Value, kind: &str) -> Result<String, PayloadError> {
    str_at(v, "/project/path_with_namespace")
        .map(str::to_owned)
        .ok_or_else(|| missing(kind, "project.path_with_namespace"))
}

fn pipeline(v: &Value, received_at: f64) -> Result<Vec<Fact>, PayloadError> {
    let project = project_path(v, "pipeline")?;
    let id = v
        .pointer("/object_attributes/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| missing("pipeline", "object_attributes.id"))?;
    let status = str_at(v, "/object_attributes/status")
        .ok_or_else(|| missing("pipeline", "object_attributes.status"))?;
    let mut facts = Vec::new();
    if let (Some(sha), Some(at)) = (
        str_at(v, "/object_attributes/sha").or_else(|| str_at(v, "/commit/id")),
        time_at(v, "/commit/timestamp"),
    ) {
        facts.push(Fact::Commit {
            project: project.clone(),
            sha: sha.to_owned(),
            at,
        });
    }
    // A child pipeline belongs to its parent's run: its commit is useful, its status is not a run.
    let child = str_at(v, "/object_attributes/source") == Some("parent_pipeline");
    if child || !TERMINAL_PIPELINE.contains(&status) {
        return Ok(facts);
    }
    let created = time_at(v, "/object_attributes/created_at");
    let finished_at = time_at(v, "/object_attributes/finished_at").unwrap_or(received_at);
    let duration = v
        .pointer("/object_attributes/duration")
        .and_then(Value::as_f64)
        .or_else(|| created.map(|c| (finished_at - c).max(0.0)))
        .unwrap_or(0.0);
    let builds = v
        .get("builds")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let stages = stage_runs(builds.iter().filter_map(|build| {
        Some((
            str_at(build, "/stage")?,
            time_at(build, "/started_at")?,
            time_at(build, "/finished_at")?,
        ))
    }));
    let jobs = builds
        .iter()
        .filter_map(|build| {
            let seconds = build.get("queued_duration").and_then(Value::as_f64)?;
            let runner = build.get("runner").filter(|r| r.is_object());
            Some(QueuedJob {
                runner_type: runner.map_or_else(
                    || "none".to_owned(),
                    |r| runner_pool(&strings(r.get("tags")), str_at(r, "/runner_type")),
                ),
                seconds,
            })
        })
        .collect();
    facts.push(Fact::Pipeline {
        project,
        id,
        status: status.to_owned(),
        finished_at,
        duration,
        stages,
        jobs,
    });
    Ok(facts)
}

/// Each stage's wall time (first job start → last job end), from `(stage, started, finished)` of
/// the jobs, in the order the stages first appear. Webhook builds and API jobs both use it.
pub fn stage_runs<'a>(jobs: impl Iterator<Item = (&'a str, f64, f64)>) -> Vec<StageRun> {
    let mut stages: Vec<(&str, f64, f64)> = Vec::new();
    for (stage, start, end) in jobs {
        match stages.iter_mut().find(|(name, _, _)| *name == stage) {
            Some(entry) => {
                entry.1 = entry.1.min(start);
                entry.2 = entry.2.max(end);
            }
            None => stages.push((stage, start, end)),
        }
    }
    stages
        .into_iter()
        .map(|(name, start, end)| StageRun {
            name: name.to_owned(),
            seconds: (end - start).max(0.0),
        })
        .collect()
}

/// The strings of a JSON array (absent or not an array: none).
pub fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The §3.1 pool a job ran on, from its runner's (or job's) tags; else GitLab's `runner_type`.
pub fn runner_pool(tags: &[&str], runner_type: Option<&str>) -> String {
    RUNNER_POOLS
        .iter()
        .find(|pool| tags.contains(pool))
        .copied()
        .or(runner_type)
        .unwrap_or("unknown")
        .to_owned()
}

fn deployment(v: &Value, received_at: f64) -> Result<Option<Fact>, PayloadError> {
    let project = project_path(v, "deployment")?;
    let id = v
        .get("deployment_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| missing("deployment", "deployment_id"))?;
    let status = str_at(v, "/status").ok_or_else(|| missing("deployment", "status"))?;
    let environment =
        str_at(v, "/environment").ok_or_else(|| missing("deployment", "environment"))?;
    if !DEPLOYMENT_STATUSES.contains(&status) {
        return Ok(None);
    }
    let sha = str_at(v, "/commit_url")
        .and_then(|url| url.rsplit_once("/commit/"))
        .map(|(_, sha)| sha.to_owned());
    Ok(Some(Fact::Deployment {
        project,
        id,
        environment: environment.to_owned(),
        status: status.to_owned(),
        sha,
        at: time_at(v, "/status_changed_at").unwrap_or(received_at),
        tier: str_at(v, "/environment_tier").map(str::to_owned),
    }))
}

fn push(v: &Value) -> Result<Vec<Fact>, PayloadError> {
    let project = project_path(v, "push")?;
    let commits = v
        .get("commits")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    Ok(commits
        .iter()
        .filter_map(|c| {
            Some(Fact::Commit {
                project: project.clone(),
                sha: str_at(c, "/id")?.to_owned(),
                at: time_at(c, "/timestamp")?,
            })
        })
        .collect())
}

/// Facts of an Argo Rollouts notification. The body is the collector's own template (phase 17's
/// `argo-rollouts-notification-configmap`, docs/dora-collector.md):
/// `{"event", "service", "namespace", "environment", "revision", "strategy", "template",
/// "reason", "at"}`, every string made JSON-safe by the template's `toJson`.
///
/// - `rollout-updated`: a new revision starts rolling out (the start of its duration);
/// - `rollout-completed`: it is fully promoted (duration; a canary's analysis passed);
/// - `rollout-aborted`: it was rolled back (`cicd_rollback_total`, and a failed change);
/// - `analysis-run-failed`: its analysis failed (canary result 0).
///
/// `reason` becomes one of [`ROLLBACK_REASONS`] so the label stays bounded; `environment` falls
/// back to the namespace; `at` (Unix seconds, the controller's clock) to the time received.
pub fn from_rollouts(body: &[u8], received_at: f64) -> Result<Vec<Fact>, PayloadError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let text = |name: &str| str_at(&v, &format!("/{name}")).filter(|s| !s.is_empty());
    let field = |name: &'static str| text(name).ok_or_else(|| missing("rollout", name));
    let event = match field("event")? {
        "rollout-updated" => "updated",
        "rollout-completed" => "completed",
        "rollout-aborted" => "aborted",
        "analysis-run-failed" => "analysis-failed",
        _ => return Ok(Vec::new()),
    };
    let service = field("service")?.to_owned();
    let environment = text("environment")
        .or_else(|| text("namespace"))
        .ok_or_else(|| missing("rollout", "environment"))?
        .to_owned();
    let revision = field("revision")?.to_owned();
    let at = v
        .get("at")
        .and_then(|a| {
            a.as_f64()
                .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|a| a.is_finite() && *a > 0.0)
        .unwrap_or(received_at);
    let strategy = match text("strategy") {
        Some("bluegreen" | "blueGreen") => "bluegreen",
        _ => "canary",
    };
    let mut facts = vec![Fact::Rollout {
        service: service.clone(),
        environment: environment.clone(),
        strategy: strategy.to_owned(),
        revision: revision.clone(),
        event: event.to_owned(),
        template: text("template").unwrap_or_default().to_owned(),
        at,
    }];
    if event == "aborted" {
        // Argo Rollouts' abort message names the metric when analysis failed ("Metric
        // \"success-rate\" assessed Failed …"); a user's abort says only "aborted".
        let message = text("reason").unwrap_or_default().to_ascii_lowercase();
        let reason = if message.contains("metric") || message.contains("analysis") {
            "analysis"
        } else if message.contains("abort") {
            "manual"
        } else {
            "other"
        };
        facts.push(Fact::Rollback {
            service,
            environment,
            reason: reason.to_owned(),
            revision,
            at,
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipeline_event(status: &str, source: &str) -> Vec<u8> {
        json!({
            "object_kind": "pipeline",
            "object_attributes": {"id": 31, "sha": "bcbb5ec3", "status": status, "source": source,
                "created_at": "2016-08-12 15:23:28 UTC", "finished_at": "2016-08-12 15:26:29 UTC",
                "duration": 63, "queued_duration": 12},
            "project": {"id": 1, "name": "packet-relay", "path_with_namespace": "platform_services/packet-relay"},
            "commit": {"id": "bcbb5ec3", "timestamp": "2016-08-12T17:23:21+02:00"},
            "builds": [
                {"id": 380, "stage": "build", "status": "success", "started_at": "2016-08-12 15:23:30 UTC",
                 "finished_at": "2016-08-12 15:24:30 UTC", "queued_duration": 2.5,
                 "runner": {"id": 1, "runner_type": "group_type", "tags": ["build", "kaniko"]}},
                {"id": 381, "stage": "build", "status": "success", "started_at": "2016-08-12 15:23:40 UTC",
                 "finished_at": "2016-08-12 15:24:50 UTC", "queued_duration": 1.0,
                 "runner": {"id": 2, "runner_type": "instance_type", "tags": []}},
                {"id": 382, "stage": "deploy", "status": "created", "started_at": null,
                 "finished_at": null, "runner": null}
            ]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_finished_pipeline_gives_its_commit_stages_and_queue_times() {
        let facts = from_gitlab(&pipeline_event("success", "push"), 0.0).unwrap();
        assert_eq!(facts.len(), 2);
        assert_eq!(
            facts[0].dedupe_key(),
            "commit:platform_services/packet-relay:bcbb5ec3"
        );
        let Fact::Pipeline {
            duration,
            stages,
            jobs,
            status,
            ..
        } = &facts[1]
        else {
            panic!("{facts:?}")
        };
        assert_eq!(status, "success");
        assert!((duration - 63.0).abs() < f64::EPSILON);
        assert_eq!(
            stages,
            &[StageRun {
                name: "build".into(),
                seconds: 80.0
            }]
        );
        assert_eq!(jobs[0].runner_type, "build");
        assert_eq!(jobs[1].runner_type, "instance_type");
    }

    #[test]
    fn running_and_child_pipelines_are_not_runs() {
        assert_eq!(
            from_gitlab(&pipeline_event("running", "push"), 0.0)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            from_gitlab(&pipeline_event("success", "parent_pipeline"), 0.0)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn deployments_take_the_sha_from_the_commit_url() {
        let body = json!({"object_kind": "deployment", "status": "success", "deployment_id": 15,
            "status_changed_at": "2021-04-28 21:50:00 +0200", "environment": "production",
            "project": {"path_with_namespace": "platform_services/packet-relay"},
            "commit_url": "https://gitlab.example.com/platform_services/packet-relay/-/commit/abc123"});
        let facts = from_gitlab(body.to_string().as_bytes(), 0.0).unwrap();
        assert_eq!(
            facts,
            vec![Fact::Deployment {
                project: "platform_services/packet-relay".into(),
                id: 15,
                environment: "production".into(),
                status: "success".into(),
                sha: Some("abc123".into()),
                at: 1_619_639_400.0,
                tier: None
            }]
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert!(matches!(
            from_gitlab(b"{not json", 0.0),
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            from_gitlab(br#"{"object_kind":"deployment","status":"success"}"#, 0.0),
            Err(missing("deployment", "project.path_with_namespace"))
        );
        assert_eq!(
            from_gitlab(b"[1,2]", 0.0),
            Err(missing("webhook", "object_kind"))
        );
        assert_eq!(
            from_gitlab(br#"{"object_kind":"merge_request"}"#, 0.0),
            Ok(vec![])
        );
    }

    #[test]
    fn rollout_reasons_become_a_bounded_label() {
        let body = br#"{"event":"rollout-aborted","service":"packet-relay","environment":"production","revision":"7","reason":"Metric \"success-rate\" assessed Failed"}"#;
        let facts = from_rollouts(body, 5.0).unwrap();
        let Fact::Rollback { reason, .. } = &facts[1] else {
            panic!()
        };
        assert_eq!(reason, "analysis");
        assert!(
            from_rollouts(br#"{"event":"rollout-paused"}"#, 0.0)
                .unwrap()
                .is_empty()
        );
    }
}
