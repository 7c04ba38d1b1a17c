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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use crate::facts::{Fact, ROLLBACK_REASONS, service_of};

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

/// Commits older than this (relative to the newest seen) can no longer start a lead time.
const COMMIT_HORIZON_SECONDS: f64 = 90.0 * 86_400.0;

#[derive(Debug, Clone)]
pub struct Histogram {
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

/// Outcomes inside a sliding time window: `(time, failed)`, oldest first.
#[derive(Debug, Default, Clone)]
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

/// Everything `/metrics` shows, built by applying facts in store order.
#[derive(Debug)]
pub struct Aggregator {
    change_failure_window: f64,
    success_rate_window: f64,
    deployments: BTreeMap<ServiceEnv, u64>,
    lead_time: BTreeMap<ServiceEnv, Histogram>,
    restore: BTreeMap<ServiceEnv, Histogram>,
    changes: BTreeMap<ServiceEnv, Window>,
    open_failure: HashMap<ServiceEnv, f64>,
    pipeline_duration: BTreeMap<(String, String, String), Histogram>,
    queue_time: BTreeMap<(String, String), Histogram>,
    pipeline_runs: BTreeMap<(String, String), u64>,
    pipelines: BTreeMap<String, Window>,
    rollbacks: BTreeMap<(String, String), u64>,
    /// Commit time by (project, sha), to start lead times.
    commits: HashMap<(String, String), f64>,
    newest_commit: f64,
    /// Successful deployments whose commit time is not known yet: (project, sha) → (env, time).
    awaiting_commit: HashMap<(String, String), Vec<(String, f64)>>,
    applied: u64,
}

impl Aggregator {
    pub fn new(change_failure_window: f64, success_rate_window: f64) -> Self {
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

    /// Successful deployments still waiting for their commit's time (the healer looks these up).
    pub fn commits_wanted(&self) -> Vec<(String, String)> {
        self.awaiting_commit.keys().cloned().collect()
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
                let service = service_of(project).to_owned();
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
                for stage in stages {
                    observe(&stage.name, stage.seconds);
                }
                for job in jobs {
                    self.queue_time
                        .entry((service.clone(), job.runner_type.clone()))
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
                ..
            } => {
                let key = (service_of(project).to_owned(), environment.clone());
                self.ensure_series(&key);
                match status.as_str() {
                    "success" => {
                        *self.deployments.entry(key.clone()).or_default() += 1;
                        self.changes
                            .entry(key.clone())
                            .or_default()
                            .push(*at, false);
                        if let Some(failed_at) = self.open_failure.remove(&key) {
                            self.restore
                                .entry(key.clone())
                                .or_insert_with(|| Histogram::new(RESTORE_BUCKETS))
                                .observe((at - failed_at).max(0.0));
                        }
                        if let Some(sha) = sha {
                            let commit = (project.clone(), sha.clone());
                            match self.commits.get(&commit) {
                                Some(committed) => self.observe_lead_time(&key, *at - committed),
                                None => self
                                    .awaiting_commit
                                    .entry(commit)
                                    .or_default()
                                    .push((environment.clone(), *at)),
                            }
                        }
                    }
                    "failed" => {
                        self.changes.entry(key.clone()).or_default().push(*at, true);
                        self.open_failure.entry(key).or_insert(*at);
                    }
                    _ => {}
                }
            }
            Fact::Rollback {
                service,
                environment,
                reason,
                at,
                ..
            } => {
                *self
                    .rollbacks
                    .entry((service.clone(), reason.clone()))
                    .or_default() += 1;
                let key = (service.clone(), environment.clone());
                let window = self.changes.entry(key.clone()).or_default();
                if !window.fail_latest_success() {
                    window.push(*at, true);
                }
                self.open_failure.entry(key).or_insert(*at);
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
            for (environment, deployed) in waiting {
                let service_env = (service_of(project).to_owned(), environment);
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
    }
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
            environment: "production".into(),
            status: status.into(),
            sha: Some(sha.into()),
            at,
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
            environment: "production".into(),
            reason: "analysis".into(),
            revision: "3".into(),
            at: 20_100.0,
        });
        agg.apply(&deployment(3, "success", "c", 21_000.0));
        let text = render(&mut agg, 21_000.0);
        let lines = [
            "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"} 2",
            // 1800 s lead time falls in le=1800.
            "cicd_lead_time_seconds_bucket{service=\"packet-relay\",environment=\"production\",le=\"1800\"} 1",
            // deployment 1 rolled back + deployment 2 failed, of 3 changes.
            "cicd_change_failure_rate{service=\"packet-relay\",environment=\"production\"} 0.6666666666666666",
            // first failure 20000 → success 21000.
            "cicd_mean_time_to_restore_seconds_sum{service=\"packet-relay\",environment=\"production\"} 1000",
            "cicd_rollback_total{service=\"packet-relay\",reason=\"analysis\"} 1",
        ];
        for line in lines {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        // Outside the window the rate disappears rather than going stale.
        let later = render(&mut agg, 21_000.0 + 31.0 * 86_400.0);
        assert!(!later.contains("cicd_change_failure_rate{"), "{later}");
    }
}
