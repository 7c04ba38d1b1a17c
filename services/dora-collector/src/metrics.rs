//! The §4.1 metrics, aggregated in memory from the stored facts, and rendered in the Prometheus
//! text format. Aggregates are small (one entry per label set), so `/metrics` costs the same with
//! a thousand stored facts or a million; the windows (change failure rate, pipeline success rate)
//! keep one 16-byte entry per deployment or pipeline inside the window.
//!
//! Definitions (plan §4.1 names and labels):
//! - `cicd_deployment_frequency_total{service,environment}`: successful deployments.
//! - `cicd_lead_time_seconds{service,environment}`: commit time → successful deployment.
//! - `cicd_change_failure_rate{service,environment}`: failed changes / deployments in the window,
//!   where a failed change is a failed deployment or a successful one later rolled back.
//! - `cicd_mean_time_to_restore_seconds{service,environment}`: first failure → next success.
//! - `cicd_pipeline_duration_seconds{service,stage,status}`: each stage's wall time, and the whole
//!   pipeline as `stage="pipeline"`.
//! - `cicd_pipeline_queue_time_seconds{service,runner_type}`: per job, by runner pool.
//! - `cicd_pipeline_success_rate{service}`: success / (success + failed) in the window.
//! - `cicd_pipeline_runs_total{service,status}`, `cicd_rollback_total{service,reason}`.
//! - `cicd_vulnerability_count{service,severity}`: the newest Harbor scan of the service's images.
//! - `cicd_rollout_duration_seconds{service,strategy}`: Rollouts' update → completed, per revision.
//! - `cicd_canary_analysis_result{service,template}`: 1 when the last rollout's analysis passed
//!   (completed), 0 when it failed.
//!
//! Deployments come from GitLab's deployment events (the library's deploy and promote jobs) and,
//! for the production tier, from Argo Rollouts (`completed`; `aborted` is a failed change): Argo
//! CD deploys production, so on this platform GitLab sees no production deployment, and a staging
//! rollout (which the promote job already reported) is not counted twice. Every label is bounded
//! ([`crate::labels`]): `environment` is the tier.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::facts::{Fact, ROLLBACK_REASONS, service_of};
use crate::harbor::SEVERITIES;
use crate::labels::{self, LIBRARY_STAGES, LabelCap, OTHER};

pub const LEAD_TIME_BUCKETS: &[f64] = &[
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14_400.0,
    28_800.0,
    86_400.0,
    172_800.0,
    604_800.0,
    2_592_000.0,
];
pub const RESTORE_BUCKETS: &[f64] = &[
    300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 86_400.0, 604_800.0,
];
pub const PIPELINE_BUCKETS: &[f64] = &[
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];
pub const QUEUE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
pub const ROLLOUT_BUCKETS: &[f64] = &[
    60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0,
];

/// Label caps (`DORA_MAX_SERVICES`, `DORA_MAX_STAGES`): distinct services, and distinct stage
/// names beyond the library's, that get a series of their own; the rest are `other`.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub services: usize,
    pub stages: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            services: 500,
            stages: 30,
        }
    }
}

/// Deployments waiting for their commit, and rollouts waiting for their end, kept at most (the
/// oldest half is dropped past it): a commit that never arrives must not cost memory forever.
const MAX_WAITING: usize = 10_000;
/// Commits the healer looks up per pass at most (the newest deployments first).
pub const MAX_COMMITS_WANTED: usize = 200;
/// Runner types kept as they are; any other `runner_type` is `other`.
const RUNNER_TYPES: &[&str] = &[
    "security",
    "build",
    "test",
    "shared",
    "instance_type",
    "group_type",
    "project_type",
    "none",
    "unknown",
];

/// Commits older than this (relative to the newest seen) can no longer start a lead time.
const COMMIT_HORIZON_SECONDS: f64 = 90.0 * 86_400.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    /// Restored from the checkpoint's copy of the bounds (one of the `*_BUCKETS` above).
    #[serde(with = "bucket_bounds")]
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// The bucket bounds of a histogram in a checkpoint: the list itself, mapped back to the
/// constant with the same values (a checkpoint with other bounds is refused, and replay runs).
mod bucket_bounds {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bounds: &&'static [f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(bounds.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static [f64], D::Error> {
        let given = Vec::<f64>::deserialize(d)?;
        [
            super::LEAD_TIME_BUCKETS,
            super::RESTORE_BUCKETS,
            super::PIPELINE_BUCKETS,
            super::QUEUE_BUCKETS,
            super::ROLLOUT_BUCKETS,
        ]
        .into_iter()
        .find(|b| *b == given.as_slice())
        .ok_or_else(|| serde::de::Error::custom("histogram bounds of another version"))
    }
}

/// Maps with tuple keys as lists of `[key, value]` pairs (JSON object keys are strings).
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<'a, M, K, V, S>(map: &'a M, s: S) -> Result<S::Ok, S::Error>
    where
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize + 'a,
        V: Serialize + 'a,
        S: Serializer,
    {
        s.collect_seq(map)
    }

    pub fn deserialize<'de, M, K, V, D>(d: D) -> Result<M, D::Error>
    where
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Outcomes inside a sliding time window: `(time, failed)`, oldest first.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Window {
    entries: VecDeque<(f64, bool)>,
    failed: u64,
}

impl Window {
    fn push(&mut self, at: f64, failed: bool) {
        // Facts arrive nearly in time order; an older one is inserted in place.
        let pos = self.entries.partition_point(|(t, _)| *t <= at);
        self.entries.insert(pos, (at, failed));
        self.failed += u64::from(failed);
    }

    /// Marks the newest successful entry as failed (a rollback of that deployment).
    fn fail_latest_success(&mut self) -> bool {
        match self.entries.iter_mut().rev().find(|(_, failed)| !failed) {
            Some(entry) => {
                entry.1 = true;
                self.failed += 1;
                true
            }
            None => false,
        }
    }

    fn prune(&mut self, oldest: f64) {
        while let Some(&(t, failed)) = self.entries.front() {
            if t >= oldest {
                break;
            }
            self.entries.pop_front();
            self.failed -= u64::from(failed);
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn failed_ratio(&self) -> Option<f64> {
        (!self.entries.is_empty()).then(|| self.failed as f64 / self.entries.len() as f64)
    }
}

type ServiceEnv = (String, String);

/// Everything `/metrics` shows, built by applying facts in store order. Serializable: a
/// checkpoint of it plus the facts stored after is what a restart reads, not every fact.
#[derive(Debug, Serialize, Deserialize)]
pub struct Aggregator {
    change_failure_window: f64,
    success_rate_window: f64,
    #[serde(with = "pairs")]
    deployments: BTreeMap<ServiceEnv, u64>,
    #[serde(with = "pairs")]
    lead_time: BTreeMap<ServiceEnv, Histogram>,
    #[serde(with = "pairs")]
    restore: BTreeMap<ServiceEnv, Histogram>,
    #[serde(with = "pairs")]
    changes: BTreeMap<ServiceEnv, Window>,
    #[serde(with = "pairs")]
    open_failure: HashMap<ServiceEnv, f64>,
    #[serde(with = "pairs")]
    pipeline_duration: BTreeMap<(String, String, String), Histogram>,
    #[serde(with = "pairs")]
    queue_time: BTreeMap<(String, String), Histogram>,
    #[serde(with = "pairs")]
    pipeline_runs: BTreeMap<(String, String), u64>,
    pipelines: BTreeMap<String, Window>,
    #[serde(with = "pairs")]
    rollbacks: BTreeMap<(String, String), u64>,
    /// Newest scan per service: (time, count by severity).
    vulnerabilities: BTreeMap<String, (f64, BTreeMap<String, u64>)>,
    /// Rollouts started: (service, environment, revision) → start time.
    #[serde(with = "pairs")]
    rollout_started: HashMap<(String, String, String), f64>,
    #[serde(with = "pairs")]
    rollout_duration: BTreeMap<(String, String), Histogram>,
    #[serde(with = "pairs")]
    canary: BTreeMap<(String, String), u8>,
    services: LabelCap,
    stages: LabelCap,
    templates: LabelCap,
    /// Commit time by (project, sha), to start lead times.
    #[serde(with = "pairs")]
    commits: HashMap<(String, String), f64>,
    newest_commit: f64,
    /// Successful deployments whose commit time is not known yet: (project, sha) → (env, time).
    #[serde(with = "pairs")]
    awaiting_commit: HashMap<(String, String), Vec<(String, f64)>>,
    applied: u64,
}

/// A checkpoint's format: a checkpoint of another format, or made with other windows or caps,
/// is ignored and the store is replayed from the start.
const CHECKPOINT_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CheckpointBody {
    format: u32,
    caps: (usize, usize),
    aggregator: Aggregator,
}

impl Aggregator {
    pub fn new(change_failure_window: f64, success_rate_window: f64) -> Self {
        Self::with_caps(change_failure_window, success_rate_window, Caps::default())
    }

    pub fn with_caps(change_failure_window: f64, success_rate_window: f64, caps: Caps) -> Self {
        Self {
            change_failure_window,
            success_rate_window,
            deployments: BTreeMap::new(),
            lead_time: BTreeMap::new(),
            restore: BTreeMap::new(),
            changes: BTreeMap::new(),
            open_failure: HashMap::new(),
            pipeline_duration: BTreeMap::new(),
            queue_time: BTreeMap::new(),
            pipeline_runs: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            rollbacks: BTreeMap::new(),
            vulnerabilities: BTreeMap::new(),
            rollout_started: HashMap::new(),
            rollout_duration: BTreeMap::new(),
            canary: BTreeMap::new(),
            services: LabelCap::new(caps.services, &[]),
            stages: LabelCap::new(caps.stages, LIBRARY_STAGES),
            templates: LabelCap::new(caps.services, &[]),
            commits: HashMap::new(),
            newest_commit: 0.0,
            awaiting_commit: HashMap::new(),
            applied: 0,
        }
    }

    /// Facts applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The aggregates as a checkpoint body (JSON).
    pub fn checkpoint(&self) -> String {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            format: u32,
            caps: (usize, usize),
            aggregator: &'a Aggregator,
        }
        serde_json::to_string(&Borrowed {
            format: CHECKPOINT_FORMAT,
            caps: (self.services.cap(), self.stages.cap()),
            aggregator: self,
        })
        .unwrap_or_default()
    }

    /// Replaces these (empty) aggregates with a checkpoint's, if it was made by this format with
    /// the same windows and caps; `false` (and nothing changed) otherwise: replay everything.
    pub fn load_checkpoint(&mut self, body: &str) -> bool {
        let Ok(parsed) = serde_json::from_str::<CheckpointBody>(body) else {
            return false;
        };
        let mut a = parsed.aggregator;
        #[allow(clippy::float_cmp)] // the same settings give the same bits
        let same = parsed.format == CHECKPOINT_FORMAT
            && parsed.caps == (self.services.cap(), self.stages.cap())
            && a.change_failure_window == self.change_failure_window
            && a.success_rate_window == self.success_rate_window;
        if !same {
            return false;
        }
        // The always-kept values are code, not data.
        a.stages.keep_always(LIBRARY_STAGES);
        *self = a;
        true
    }

    /// Successful deployments still waiting for their commit's time (the healer looks these up).
    /// At most [`MAX_COMMITS_WANTED`], those of the newest deployments first.
    pub fn commits_wanted(&self) -> Vec<(String, String)> {
        let mut wanted: Vec<(f64, &(String, String))> = self
            .awaiting_commit
            .iter()
            .map(|(k, v)| (v.iter().map(|(_, t)| *t).fold(0.0, f64::max), k))
            .collect();
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
        wanted
            .into_iter()
            .take(MAX_COMMITS_WANTED)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Series of the `cicd_*` families (what the label caps bound).
    pub fn series(&self) -> usize {
        self.deployments.len()
            + self.lead_time.len()
            + self.restore.len()
            + self.changes.len()
            + self.pipeline_duration.len()
            + self.queue_time.len()
            + self.pipeline_runs.len()
            + self.pipelines.len()
            + self.rollbacks.len()
            + self.vulnerabilities.len() * SEVERITIES.len()
            + self.rollout_duration.len()
            + self.canary.len()
    }

    /// Deployments waiting for their commit (bounded by `MAX_WAITING`).
    pub fn awaiting(&self) -> usize {
        self.awaiting_commit.len()
    }

    fn service(&mut self, name: &str) -> String {
        self.services.admit(name)
    }

    pub fn apply(&mut self, fact: &Fact) {
        self.applied += 1;
        match fact {
            Fact::Commit { project, sha, at } => self.commit(project, sha, *at),
            Fact::Pipeline {
                project,
                status,
                finished_at,
                duration,
                stages,
                jobs,
                ..
            } => {
                let service = self.service(service_of(project));
                let stages: Vec<(String, f64)> = stages
                    .iter()
                    .map(|s| (self.stages.admit(&s.name), s.seconds))
                    .collect();
                *self
                    .pipeline_runs
                    .entry((service.clone(), status.clone()))
                    .or_default() += 1;
                let mut observe = |stage: &str, seconds: f64| {
                    self.pipeline_duration
                        .entry((service.clone(), stage.to_owned(), status.clone()))
                        .or_insert_with(|| Histogram::new(PIPELINE_BUCKETS))
                        .observe(seconds);
                };
                observe("pipeline", *duration);
                for (stage, seconds) in &stages {
                    observe(stage, *seconds);
                }
                for job in jobs {
                    let runner = if RUNNER_TYPES.contains(&job.runner_type.as_str()) {
                        job.runner_type.clone()
                    } else {
                        OTHER.to_owned()
                    };
                    self.queue_time
                        .entry((service.clone(), runner))
                        .or_insert_with(|| Histogram::new(QUEUE_BUCKETS))
                        .observe(job.seconds);
                }
                // Canceled and skipped pipelines say nothing about the code's health.
                if status == "success" || status == "failed" {
                    self.pipelines
                        .entry(service)
                        .or_default()
                        .push(*finished_at, status == "failed");
                }
            }
            Fact::Deployment {
                project,
                environment,
                status,
                sha,
                at,
                tier,
                ..
            } => {
                let tier = labels::tier(environment, tier.as_deref());
                let key = (self.service(service_of(project)), tier.to_owned());
                self.deployment(&key, status, *at, sha.as_ref().map(|s| (project, s)));
            }
            Fact::Rollback {
                service,
                environment,
                reason,
                at,
                ..
            } => {
                let service = self.service(service);
                let reason = if ROLLBACK_REASONS.contains(&reason.as_str()) {
                    reason.clone()
                } else {
                    OTHER.to_owned()
                };
                *self.rollbacks.entry((service.clone(), reason)).or_default() += 1;
                let key = (service, labels::tier(environment, None).to_owned());
                let window = self.changes.entry(key.clone()).or_default();
                if !window.fail_latest_success() {
                    window.push(*at, true);
                }
                self.open_failure.entry(key).or_insert(*at);
            }
            Fact::Scan {
                service,
                counts,
                at,
                ..
            } => {
                let service = self.service(service);
                let newest = self
                    .vulnerabilities
                    .get(&service)
                    .is_none_or(|(t, _)| *at >= *t);
                if newest {
                    let counts = SEVERITIES
                        .iter()
                        .map(|s| ((*s).to_owned(), counts.get(*s).copied().unwrap_or(0)))
                        .collect();
                    self.vulnerabilities.insert(service, (*at, counts));
                }
            }
            Fact::Rollout {
                service,
                environment,
                strategy,
                revision,
                event,
                template,
                at,
            } => self.rollout(
                service,
                environment,
                strategy,
                revision,
                event,
                template,
                *at,
            ),
        }
    }

    /// A deployment of `key` (service, tier) with GitLab's status words.
    fn deployment(
        &mut self,
        key: &ServiceEnv,
        status: &str,
        at: f64,
        commit: Option<(&String, &String)>,
    ) {
        self.ensure_series(key);
        match status {
            "success" => {
                *self.deployments.entry(key.clone()).or_default() += 1;
                self.changes.entry(key.clone()).or_default().push(at, false);
                if let Some(failed_at) = self.open_failure.remove(key) {
                    self.restore
                        .entry(key.clone())
                        .or_insert_with(|| Histogram::new(RESTORE_BUCKETS))
                        .observe((at - failed_at).max(0.0));
                }
                if let Some((project, sha)) = commit {
                    let commit = (project.clone(), sha.clone());
                    if let Some(committed) = self.commits.get(&commit) {
                        self.observe_lead_time(key, at - committed);
                    } else {
                        self.awaiting_commit
                            .entry(commit)
                            .or_default()
                            .push((key.1.clone(), at));
                        if self.awaiting_commit.len() > MAX_WAITING {
                            forget_oldest_half(&mut self.awaiting_commit, |v| {
                                v.iter().map(|(_, t)| *t).fold(0.0, f64::max)
                            });
                        }
                    }
                }
            }
            "failed" => {
                self.changes.entry(key.clone()).or_default().push(at, true);
                self.open_failure.entry(key.clone()).or_insert(at);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rollout(
        &mut self,
        service: &str,
        environment: &str,
        strategy: &str,
        revision: &str,
        event: &str,
        template: &str,
        at: f64,
    ) {
        let service = self.service(service);
        let tier = labels::tier(environment, None);
        let strategy = if strategy == "bluegreen" {
            "bluegreen"
        } else {
            "canary"
        };
        let started = (service.clone(), tier.to_owned(), revision.to_owned());
        let template = if template.is_empty() {
            "none".to_owned()
        } else {
            self.templates.admit(template)
        };
        match event {
            "updated" => {
                self.rollout_started.entry(started).or_insert(at);
                if self.rollout_started.len() > MAX_WAITING {
                    forget_oldest_half(&mut self.rollout_started, |t| *t);
                }
                if tier == "production" {
                    self.ensure_series(&(service, tier.to_owned()));
                }
            }
            "completed" => {
                if let Some(start) = self.rollout_started.remove(&started) {
                    self.rollout_duration
                        .entry((service.clone(), strategy.to_owned()))
                        .or_insert_with(|| Histogram::new(ROLLOUT_BUCKETS))
                        .observe((at - start).max(0.0));
                }
                if strategy == "canary" {
                    self.canary.insert((service.clone(), template), 1);
                }
                if tier == "production" {
                    self.deployment(&(service, tier.to_owned()), "success", at, None);
                }
            }
            "analysis-failed" => {
                self.canary.insert((service, template), 0);
            }
            // The rollback itself is the Rollback fact of the same notification.
            _ => {
                self.rollout_started.remove(&started);
            }
        }
    }

    /// Creates a service's deployment series at 0 (first seen with a running deployment), so
    /// that Prometheus sees the counters start from 0 and `increase()` counts the first event.
    fn ensure_series(&mut self, key: &ServiceEnv) {
        self.deployments.entry(key.clone()).or_default();
        self.lead_time
            .entry(key.clone())
            .or_insert_with(|| Histogram::new(LEAD_TIME_BUCKETS));
        self.restore
            .entry(key.clone())
            .or_insert_with(|| Histogram::new(RESTORE_BUCKETS));
        for reason in ROLLBACK_REASONS {
            self.rollbacks
                .entry((key.0.clone(), (*reason).to_owned()))
                .or_default();
        }
    }

    fn commit(&mut self, project: &str, sha: &str, at: f64) {
        let key = (project.to_owned(), sha.to_owned());
        if let Some(waiting) = self.awaiting_commit.remove(&key) {
            let service = self.service(service_of(project));
            for (environment, deployed) in waiting {
                let service_env = (service.clone(), environment);
                self.observe_lead_time(&service_env, deployed - at);
            }
        }
        self.commits.entry(key).or_insert(at);
        if at > self.newest_commit {
            self.newest_commit = at;
            // Bounded memory: forget commits no deployment can still start a lead time from.
            if self.commits.len() > 100_000 {
                let horizon = self.newest_commit - COMMIT_HORIZON_SECONDS;
                self.commits.retain(|_, t| *t >= horizon);
            }
        }
    }

    fn observe_lead_time(&mut self, key: &ServiceEnv, seconds: f64) {
        self.lead_time
            .entry(key.clone())
            .or_insert_with(|| Histogram::new(LEAD_TIME_BUCKETS))
            .observe(seconds.max(0.0));
    }

    /// The §4.1 families in the Prometheus text format, windows evaluated at `now`.
    pub fn render(&mut self, now: f64, out: &mut String) {
        family(
            out,
            "cicd_deployment_frequency_total",
            "counter",
            "Successful deployments.",
        );
        for ((service, env), n) in &self.deployments {
            sample(
                out,
                "cicd_deployment_frequency_total",
                &[("service", service), ("environment", env)],
                *n,
            );
        }
        family(
            out,
            "cicd_lead_time_seconds",
            "histogram",
            "Commit to successful deployment.",
        );
        for ((service, env), h) in &self.lead_time {
            histogram(
                out,
                "cicd_lead_time_seconds",
                &[("service", service), ("environment", env)],
                h,
            );
        }
        family(
            out,
            "cicd_change_failure_rate",
            "gauge",
            "Failed changes / deployments in the change-failure window.",
        );
        let oldest = now - self.change_failure_window;
        for ((service, env), window) in &mut self.changes {
            window.prune(oldest);
            if let Some(ratio) = window.failed_ratio() {
                sample(
                    out,
                    "cicd_change_failure_rate",
                    &[("service", service), ("environment", env)],
                    ratio,
                );
            }
        }
        family(
            out,
            "cicd_mean_time_to_restore_seconds",
            "histogram",
            "First failure to the next successful deployment.",
        );
        for ((service, env), h) in &self.restore {
            histogram(
                out,
                "cicd_mean_time_to_restore_seconds",
                &[("service", service), ("environment", env)],
                h,
            );
        }
        family(
            out,
            "cicd_pipeline_duration_seconds",
            "histogram",
            "Stage wall time; stage=\"pipeline\" is the whole pipeline.",
        );
        for ((service, stage, status), h) in &self.pipeline_duration {
            histogram(
                out,
                "cicd_pipeline_duration_seconds",
                &[("service", service), ("stage", stage), ("status", status)],
                h,
            );
        }
        family(
            out,
            "cicd_pipeline_queue_time_seconds",
            "histogram",
            "Time a job waited for a runner, by runner pool.",
        );
        for ((service, runner), h) in &self.queue_time {
            histogram(
                out,
                "cicd_pipeline_queue_time_seconds",
                &[("service", service), ("runner_type", runner)],
                h,
            );
        }
        family(
            out,
            "cicd_pipeline_success_rate",
            "gauge",
            "Successful / (successful + failed) pipelines in the success-rate window.",
        );
        let oldest = now - self.success_rate_window;
        for (service, window) in &mut self.pipelines {
            window.prune(oldest);
            if let Some(failed) = window.failed_ratio() {
                sample(
                    out,
                    "cicd_pipeline_success_rate",
                    &[("service", service)],
                    1.0 - failed,
                );
            }
        }
        family(
            out,
            "cicd_pipeline_runs_total",
            "counter",
            "Pipelines that reached a terminal status.",
        );
        for ((service, status), n) in &self.pipeline_runs {
            sample(
                out,
                "cicd_pipeline_runs_total",
                &[("service", service), ("status", status)],
                *n,
            );
        }
        family(
            out,
            "cicd_rollback_total",
            "counter",
            "Rollouts aborted by Argo Rollouts.",
        );
        for ((service, reason), n) in &self.rollbacks {
            sample(
                out,
                "cicd_rollback_total",
                &[("service", service), ("reason", reason)],
                *n,
            );
        }
        family(
            out,
            "cicd_vulnerability_count",
            "gauge",
            "Vulnerabilities of the newest Harbor scan of the service's images, by severity.",
        );
        for (service, (_, counts)) in &self.vulnerabilities {
            for (severity, n) in counts {
                // Upper case, as the plan's CriticalVulnerabilityDetected rule matches it.
                let severity = severity.to_ascii_uppercase();
                sample(
                    out,
                    "cicd_vulnerability_count",
                    &[("service", service), ("severity", &severity)],
                    *n,
                );
            }
        }
        family(
            out,
            "cicd_rollout_duration_seconds",
            "histogram",
            "Argo Rollouts: a revision's update to its completion.",
        );
        for ((service, strategy), h) in &self.rollout_duration {
            histogram(
                out,
                "cicd_rollout_duration_seconds",
                &[("service", service), ("strategy", strategy)],
                h,
            );
        }
        family(
            out,
            "cicd_canary_analysis_result",
            "gauge",
            "The last canary analysis: 1 passed (rollout completed), 0 failed.",
        );
        for ((service, template), result) in &self.canary {
            sample(
                out,
                "cicd_canary_analysis_result",
                &[("service", service), ("template", template)],
                *result,
            );
        }
    }
}

/// Drops the older half of `map` by the time `at` gives each entry.
fn forget_oldest_half<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    at: impl Fn(&V) -> f64,
) {
    let mut times: Vec<f64> = map.values().map(&at).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    map.retain(|_, v| at(v) > median);
}

pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    inner.join(",")
}

pub fn sample(out: &mut String, name: &str, pairs: &[(&str, &str)], value: impl std::fmt::Display) {
    if pairs.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{}}} {value}", labels(pairs));
    }
}

fn histogram(out: &mut String, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
    let base = labels(pairs);
    let mut cumulative = 0;
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{base},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{base},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{base}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{base}}} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(id: u64, status: &str, sha: &str, at: f64) -> Fact {
        Fact::Deployment {
            project: "g/packet-relay".into(),
            id,
            environment: "staging".into(),
            status: status.into(),
            sha: Some(sha.into()),
            at,
            tier: None,
        }
    }

    fn render(agg: &mut Aggregator, now: f64) -> String {
        let mut out = String::new();
        agg.render(now, &mut out);
        out
    }

    #[test]
    fn lead_time_waits_for_a_late_commit_and_failures_restore() {
        let mut agg = Aggregator::new(30.0 * 86_400.0, 7.0 * 86_400.0);
        agg.apply(&deployment(1, "success", "a", 10_000.0));
        assert_eq!(agg.commits_wanted().len(), 1);
        agg.apply(&Fact::Commit {
            project: "g/packet-relay".into(),
            sha: "a".into(),
            at: 8_200.0,
        });
        assert!(agg.commits_wanted().is_empty());
        agg.apply(&deployment(2, "failed", "b", 20_000.0));
        agg.apply(&Fact::Rollback {
            service: "packet-relay".into(),
            environment: "staging".into(),
            reason: "analysis".into(),
            revision: "3".into(),
            at: 20_100.0,
        });
        agg.apply(&deployment(3, "success", "c", 21_000.0));
        let text = render(&mut agg, 21_000.0);
        let lines = [
            "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"staging\"} 2",
            // 1800 s lead time falls in le=1800.
            "cicd_lead_time_seconds_bucket{service=\"packet-relay\",environment=\"staging\",le=\"1800\"} 1",
            // deployment 1 rolled back + deployment 2 failed, of 3 changes.
            "cicd_change_failure_rate{service=\"packet-relay\",environment=\"staging\"} 0.6666666666666666",
            // first failure 20000 → success 21000.
            "cicd_mean_time_to_restore_seconds_sum{service=\"packet-relay\",environment=\"staging\"} 1000",
            "cicd_rollback_total{service=\"packet-relay\",reason=\"analysis\"} 1",
        ];
        for line in lines {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        // Outside the window the rate disappears rather than going stale.
        let later = render(&mut agg, 21_000.0 + 31.0 * 86_400.0);
        assert!(!later.contains("cicd_change_failure_rate{"), "{later}");
    }

    fn rollout(event: &str, revision: &str, at: f64) -> Fact {
        Fact::Rollout {
            service: "packet-relay".into(),
            environment: "netops-arcade-production".into(),
            strategy: "canary".into(),
            revision: revision.into(),
            event: event.into(),
            template: "success-rate".into(),
            at,
        }
    }

    /// Production deployments come from Argo Rollouts; a staging rollout is not a deployment
    /// (the promote job's GitLab deployment is).
    #[test]
    fn production_is_what_rollouts_report() {
        let mut agg = Aggregator::new(30.0 * 86_400.0, 7.0 * 86_400.0);
        let mut staging = rollout("completed", "6", 50.0);
        if let Fact::Rollout { environment, .. } = &mut staging {
            *environment = "netops-arcade-staging".into();
        }
        agg.apply(&staging);
        agg.apply(&rollout("updated", "7", 100.0));
        agg.apply(&rollout("completed", "7", 400.0));
        agg.apply(&rollout("updated", "8", 500.0));
        agg.apply(&rollout("analysis-failed", "8", 560.0));
        let text = render(&mut agg, 600.0);
        for line in [
            "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"} 1",
            "cicd_rollout_duration_seconds_sum{service=\"packet-relay\",strategy=\"canary\"} 300",
            "cicd_canary_analysis_result{service=\"packet-relay\",template=\"success-rate\"} 0",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn labels_stay_bounded() {
        let caps = Caps {
            services: 3,
            stages: 2,
        };
        let mut agg = Aggregator::with_caps(30.0 * 86_400.0, 7.0 * 86_400.0, caps);
        for i in 0..2_000_u64 {
            #[allow(clippy::cast_precision_loss)]
            let at = i as f64;
            agg.apply(&Fact::Deployment {
                project: format!("g/svc-{}", i % 7),
                id: i,
                environment: format!("review/branch-{i}"),
                status: "success".into(),
                sha: Some(format!("sha{i}")),
                at,
                tier: None,
            });
            agg.apply(&Fact::Pipeline {
                project: "g/svc-0".into(),
                id: i,
                status: "success".into(),
                finished_at: at,
                duration: 1.0,
                stages: vec![crate::facts::StageRun {
                    name: format!("stage-{i}"),
                    seconds: 1.0,
                }],
                jobs: vec![crate::facts::QueuedJob {
                    runner_type: format!("runner-{i}"),
                    seconds: 1.0,
                }],
            });
        }
        let text = render(&mut agg, 2_000.0);
        assert!(!text.contains("review/"), "environments are tiers");
        assert!(text.contains("service=\"other\""), "services past the cap");
        assert!(text.contains("stage=\"other\""), "stages past the cap");
        assert!(text.contains("runner_type=\"other\""));
        assert!(agg.series() < 60, "{} series", agg.series());
        assert!(agg.awaiting() <= MAX_WAITING);
        assert!(agg.commits_wanted().len() <= MAX_COMMITS_WANTED);
    }

    /// A checkpoint gives back the same aggregates; other caps or windows refuse it.
    #[test]
    fn a_checkpoint_restores_the_same_metrics() {
        let mut agg = Aggregator::new(30.0 * 86_400.0, 7.0 * 86_400.0);
        agg.apply(&deployment(1, "success", "a", 10_000.0));
        agg.apply(&deployment(2, "failed", "b", 20_000.0));
        agg.apply(&rollout("updated", "7", 100.0));
        agg.apply(&rollout("completed", "7", 400.0));
        agg.apply(&Fact::Commit {
            project: "g/packet-relay".into(),
            sha: "zzz".into(),
            at: 5.0,
        });
        let body = agg.checkpoint();
        let mut restored = Aggregator::new(30.0 * 86_400.0, 7.0 * 86_400.0);
        assert!(restored.load_checkpoint(&body), "{body}");
        assert_eq!(restored.applied(), agg.applied());
        assert_eq!(render(&mut restored, 30_000.0), render(&mut agg, 30_000.0));
        // Facts after the checkpoint apply as they would have.
        agg.apply(&deployment(3, "success", "a", 21_000.0));
        restored.apply(&deployment(3, "success", "a", 21_000.0));
        assert_eq!(render(&mut restored, 30_000.0), render(&mut agg, 30_000.0));
        let mut other = Aggregator::with_caps(
            30.0 * 86_400.0,
            7.0 * 86_400.0,
            Caps {
                services: 1,
                stages: 1,
            },
        );
        assert!(!other.load_checkpoint(&body), "other caps: replay");
        let mut window = Aggregator::new(86_400.0, 7.0 * 86_400.0);
        assert!(!window.load_checkpoint(&body), "another window: replay");
        assert!(!window.load_checkpoint("{not json"));
    }
}
