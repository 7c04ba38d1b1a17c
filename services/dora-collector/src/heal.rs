//! Heals gaps: a webhook GitLab gave up on (the collector was down, the hook was disabled) is
//! read back from GitLab's API as the same facts with the same de-duplication keys, so what the
//! webhooks already delivered is not counted twice. Each pass reads, for every project of the
//! group, deployments and pipelines updated since the last pass (the first pass reads
//! `DORA_HEAL_LOOKBACK_SECS` back), and the commits that successful deployments still wait for.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use common::config::Credential;
use common::env;
use common::gitlab::GitLabClient;
use secrecy::SecretString;
use serde_json::Value;

use crate::facts::{self, Fact, QueuedJob};
use crate::server::App;
use crate::timefmt;

pub struct HealSettings {
    pub url: String,
    pub token: SecretString,
    pub group: String,
    pub interval: Duration,
    pub lookback: f64,
    pub ca_bundle: Option<String>,
}

impl HealSettings {
    /// `None` when `DORA_GITLAB_URL` is unset (healing off).
    pub fn load(
        get: &impl Fn(&str) -> Option<String>,
        number: &impl Fn(&str, u64) -> anyhow::Result<u64>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = get(env::DORA_GITLAB_URL).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let token = get(env::DORA_GITLAB_TOKEN)
            .filter(|t| !t.is_empty())
            .with_context(|| {
                format!(
                    "{} is set but {} is not: healing needs a GitLab token with read_api",
                    env::DORA_GITLAB_URL,
                    env::DORA_GITLAB_TOKEN
                )
            })?;
        #[allow(clippy::cast_precision_loss)]
        Ok(Some(Self {
            url,
            token: token.into(),
            group: get(env::DORA_GITLAB_GROUP).unwrap_or_else(|| "platform_services".into()),
            interval: Duration::from_secs(number(env::DORA_HEAL_INTERVAL_SECS, 900)?.max(1)),
            lookback: number(env::DORA_HEAL_LOOKBACK_SECS, 7 * 86_400)? as f64,
            ca_bundle: get(env::CICD_CA_BUNDLE).filter(|p| !p.is_empty()),
        }))
    }
}

/// ISO 8601 (UTC) for `updated_after`.
fn iso(unix: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let text = timefmt::format_gitlab(unix.floor() as i64);
    // "YYYY-MM-DD HH:MM:SS UTC" → "YYYY-MM-DDTHH:MM:SSZ"
    format!("{}T{}Z", &text[..10], &text[11..19])
}

fn client(settings: &HealSettings) -> anyhow::Result<GitLabClient> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // The healer's GitLab token must not follow a redirect to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dora-collector/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &settings.ca_bundle {
        let pem =
            std::fs::read(path).with_context(|| format!("reading {path} (CICD_CA_BUNDLE)"))?;
        builder = builder.tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{path} is not a PEM bundle"))?,
        );
    }
    Ok(GitLabClient::new(
        &settings.url,
        Credential {
            value: settings.token.clone(),
            source: env::DORA_GITLAB_TOKEN.into(),
        },
        builder.build()?,
        2,
    ))
}

/// Heals every `interval` until the process ends; a failed pass is logged and retried next time.
pub async fn run(settings: HealSettings, app: Arc<App>) {
    let gitlab = match client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "healing is off");
            return;
        }
    };
    let mut since = crate::now() - settings.lookback;
    loop {
        let started = crate::now();
        match pass(&gitlab, &settings.group, since, &app).await {
            Ok(stored) => {
                tracing::info!(stored, since = %iso(since), "heal pass done");
                // Overlap one interval: an object updated during the pass is read again next time.
                since = started - settings.interval.as_secs_f64();
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "heal pass failed; retrying next interval");
            }
        }
        tokio::time::sleep(settings.interval).await;
    }
}

/// One pass; returns how many new facts it stored.
pub async fn pass(
    gitlab: &GitLabClient,
    group: &str,
    since: f64,
    app: &App,
) -> anyhow::Result<usize> {
    let Some(group) = gitlab.group(group).await? else {
        anyhow::bail!("group {group} not found: set DORA_GITLAB_GROUP to the CI group");
    };
    let after = iso(since);
    let mut facts = Vec::new();
    for project in gitlab.group_projects(&group).await? {
        let path = &project.path_with_namespace;
        for d in gitlab.deployments_updated_after(project.id, &after).await? {
            facts.extend(deployment_facts(path, &d));
        }
        for listed in gitlab.pipelines_updated_after(project.id, &after).await? {
            let status = listed.get("status").and_then(Value::as_str).unwrap_or("");
            let child = listed.get("source").and_then(Value::as_str) == Some("parent_pipeline");
            let Some(id) = listed.get("id").and_then(Value::as_u64) else {
                continue;
            };
            if child || !facts::TERMINAL_PIPELINE.contains(&status) {
                continue;
            }
            let Some(detail) = gitlab.pipeline(project.id, id).await? else {
                continue;
            };
            let jobs = gitlab.pipeline_jobs(project.id, id).await?;
            facts.extend(pipeline_fact(path, &detail, &jobs));
        }
    }
    let wanted = app
        .aggregator
        .lock()
        .map(|a| a.commits_wanted())
        .unwrap_or_default();
    for (project, sha) in wanted {
        if let Some(commit) = gitlab.commit_by_sha(&project, &sha).await? {
            if let Some(at) = commit
                .get("committed_date")
                .or_else(|| commit.get("created_at"))
                .and_then(Value::as_str)
                .and_then(timefmt::parse)
            {
                facts.push(Fact::Commit { project, sha, at });
            }
        }
    }
    let (stored, _) = app
        .store("heal", facts)
        .await
        .map_err(|_| anyhow::anyhow!("the store refused the healed facts"))?;
    Ok(stored)
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// doc/api/deployments.md: `id`, `status`, `sha`, `environment.name`, `updated_at`,
/// `finished_at` (newer versions), `deployable.commit.created_at`.
fn deployment_facts(project: &str, d: &Value) -> Vec<Fact> {
    let mut facts = Vec::new();
    let (Some(id), Some(status), Some(environment)) = (
        d.get("id").and_then(Value::as_u64),
        str_of(d, "/status"),
        str_of(d, "/environment/name"),
    ) else {
        return facts;
    };
    let sha = str_of(d, "/sha").map(str::to_owned);
    if let (Some(sha), Some(at)) = (
        &sha,
        str_of(d, "/deployable/commit/created_at").and_then(timefmt::parse),
    ) {
        facts.push(Fact::Commit {
            project: project.to_owned(),
            sha: sha.clone(),
            at,
        });
    }
    let at = str_of(d, "/finished_at")
        .or_else(|| str_of(d, "/updated_at"))
        .and_then(timefmt::parse);
    if let (true, Some(at)) = (facts::DEPLOYMENT_STATUSES.contains(&status), at) {
        facts.push(Fact::Deployment {
            project: project.to_owned(),
            id,
            environment: environment.to_owned(),
            status: status.to_owned(),
            sha,
            at,
            // doc/api/deployments.md: the environment object carries its `tier`.
            tier: str_of(d, "/environment/tier").map(str::to_owned),
        });
    }
    facts
}

/// doc/api/pipelines.md "Get a single pipeline" + doc/api/jobs.md "List pipeline jobs" (`stage`,
/// `started_at`, `finished_at`, `queued_duration`, `tag_list`, `runner.runner_type`).
fn pipeline_fact(project: &str, p: &Value, jobs: &[Value]) -> Option<Fact> {
    let id = p.get("id").and_then(Value::as_u64)?;
    let status = str_of(p, "/status")?;
    let finished_at = str_of(p, "/finished_at")
        .or_else(|| str_of(p, "/updated_at"))
        .and_then(timefmt::parse)?;
    let stages = facts::stage_runs(jobs.iter().filter_map(|job| {
        Some((
            str_of(job, "/stage")?,
            str_of(job, "/started_at").and_then(timefmt::parse)?,
            str_of(job, "/finished_at").and_then(timefmt::parse)?,
        ))
    }));
    let queued = jobs
        .iter()
        .filter_map(|job| {
            Some(QueuedJob {
                seconds: job.get("queued_duration").and_then(Value::as_f64)?,
                runner_type: facts::runner_pool(
                    &facts::strings(job.get("tag_list")),
                    str_of(job, "/runner/runner_type"),
                ),
            })
        })
        .collect();
    Some(Fact::Pipeline {
        project: project.to_owned(),
        id,
        status: status.to_owned(),
        finished_at,
        duration: p.get("duration").and_then(Value::as_f64).unwrap_or(0.0),
        stages,
        jobs: queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_objects_become_the_webhooks_facts() {
        assert_eq!(iso(1_471_015_408.7), "2016-08-12T15:23:28Z");
        let d = json!({"id": 15, "status": "success", "sha": "abc", "environment": {"name": "production"},
            "updated_at": "2016-08-12T15:30:00.000Z",
            "deployable": {"commit": {"created_at": "2016-08-12T14:30:00.000Z"}}});
        let facts = deployment_facts("g/p", &d);
        assert_eq!(facts.len(), 2);
        // Same key as the deployment webhook's fact, so the two are one.
        assert_eq!(facts[1].dedupe_key(), "deployment:g/p:15:success");
    }
}
