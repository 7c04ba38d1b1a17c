//! Phase 17 settings (names in `common::env`, documented in docs/configuration.md).

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use common::config::{Environment, PlatformConfig};
use common::contract::{self, DeliveredService};
use common::env;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(default = "default_namespace")]
    obs_namespace: String,
    #[serde(default = "default_argocd_namespace")]
    argocd_namespace: String,
    #[serde(default = "default_group")]
    obs_webhook_group: String,
    #[serde(default)]
    obs_webhook_url: Option<String>,
    #[serde(default = "default_stale")]
    obs_webhook_stale_after: String,
    #[serde(default)]
    obs_dora_postgres: Option<String>,
    #[serde(default)]
    obs_dora_postgres_external: Option<String>,
    #[serde(default = "default_monitor_labels")]
    obs_monitor_labels: String,
    #[serde(default = "default_ingress")]
    obs_ingress_class: String,
    #[serde(default = "default_ingress")]
    obs_ingress_namespace: String,
    #[serde(default)]
    obs_gitlab_internal_url: Option<String>,
    #[serde(default = "default_namespace")]
    obs_alloy_namespace: String,
    #[serde(default = "default_rollouts_namespace")]
    obs_rollouts_namespace: String,
    #[serde(default = "default_gitlab_namespace")]
    gitlab_namespace: String,
    #[serde(default = "default_runner_namespace")]
    runner_namespace: String,
    #[serde(default)]
    dora_collector_url: Option<String>,
}

fn default_namespace() -> String {
    "monitoring".into()
}
fn default_group() -> String {
    "platform_services".into()
}
fn default_stale() -> String {
    "6h".into()
}
fn default_monitor_labels() -> String {
    "release=kube-prometheus-stack".into()
}
fn default_ingress() -> String {
    "traefik".into()
}
fn default_rollouts_namespace() -> String {
    "argo-rollouts".into()
}
fn default_runner_namespace() -> String {
    common::contract::RUNNER_NAMESPACE.into()
}
fn default_gitlab_namespace() -> String {
    "gitlab".into()
}

/// How the collector stores its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Embedded `SQLite` on a volume: one replica (the default).
    Sqlite,
    /// `PostgreSQL`: the collector's own `CloudNativePG` cluster (or, with
    /// `OBS_DORA_POSTGRES_EXTERNAL`, `database-url` of its Vault secret): two replicas.
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Parent of the approver groups the seeded project's default CODEOWNERS names
    /// (`GITLAB_APPROVER_GROUP_PARENT`, `common::codeowners`).
    pub approver_parent: String,
    pub namespace: String,
    /// GitLab group of the webhook.
    pub webhook_group: String,
    /// Public URL GitLab posts to.
    pub webhook_url: String,
    /// Host of `webhook_url` (the Ingress rule).
    pub webhook_host: String,
    /// Seconds without an accepted GitLab webhook before `DoraWebhooksStale` fires.
    pub stale_after_seconds: u64,
    pub store: Store,
    /// With `PostgreSQL`: an external database at Vault `database-url` (`OBS_DORA_POSTGRES_EXTERNAL`)
    /// instead of the collector's own `CloudNativePG` cluster ([`crate::cnpg`]).
    pub postgres_external: bool,
    /// Labels the Prometheus Operator selects `PrometheusRules` and `ServiceMonitors` by.
    pub monitor_labels: BTreeMap<String, String>,
    pub ingress_class: String,
    pub ingress_namespace: String,
    pub gitlab_namespace: String,
    /// GitLab as the collector reaches it inside the cluster.
    pub gitlab_internal_url: String,
    pub alloy_namespace: String,
    /// The Argo Rollouts controller's namespace (`OBS_ROLLOUTS_NAMESPACE`): its notification
    /// `ConfigMap` and Secret, and the collector's `NetworkPolicy` admits the controller from there.
    pub rollouts_namespace: String,
    /// The runner pools' namespace (`RUNNER_NAMESPACE`, phase 16): the ephemeral overlay admits
    /// the test pool's job pods from there.
    pub runner_namespace: String,
    /// The registry as phase 14 names it: the host of `HARBOR_URL` (a non-default port kept).
    pub harbor_host: String,
    /// The release tag the collector's project is tagged with and production pins: `v<version>`.
    pub release_tag: String,
    /// The collector's entry in the one service list (`common::contract::services`): its GitLab
    /// project, staging and production namespaces and overlays, as phase 15 deploys them.
    pub delivery: DeliveredService,
    /// Probed by the summary.
    pub grafana_url: Option<String>,
    pub prometheus_url: Option<String>,
    pub collector_url: String,
    /// Vault as the feature-flag auditor reaches it (`VAULT_ADDR`).
    pub vault_addr: String,
    /// GitLab's host (`GITLAB_URL`, a non-default port kept), as phase 15 writes every repoURL:
    /// the auditor's Application reads its project from there.
    pub gitlab_host: String,
    /// Argo CD's namespace (`ARGOCD_NAMESPACE`): the auditor's Application.
    pub argocd_namespace: String,
    /// Vault reviews Kubernetes logins with the client's token (`VAULT_K8S_TOKEN_REVIEWER=client`).
    pub token_reviewer_client: bool,
    /// The checkout seeded as `platform_services/cicd-buildout` (`CICD_SOURCE_DIR`).
    pub source_dir: std::path::PathBuf,
    /// The readiness `CronJob`'s settings (`crate::readiness::report_env`).
    pub readiness_env: BTreeMap<String, String>,
    /// The platform CA's PEM (`CICD_CA_BUNDLE`), for the readiness `CronJob`.
    pub ca_pem: Option<String>,
    /// The groups phase 12 hardens (`GITLAB_GROUPS`): one read-only token each for the report.
    pub readiness_groups: Vec<String>,
}

fn default_argocd_namespace() -> String {
    "argocd".into()
}

/// `6h`, `90m`, `1d`, `3600s` or plain seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn truthy(name: &str, value: Option<&str>) -> anyhow::Result<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => bail!("{name}={other} must be true or false"),
    }
}

fn host_of(name: &str, url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("{name}={url} is not a URL"))?;
    parsed
        .host_str()
        .map(str::to_owned)
        .with_context(|| format!("{name}={url} has no host"))
}

/// The collector's version (the workspace's, which phase 17 shares) as its release tag.
fn release_tag() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// The collector's entry of the service list phase 15 delivers.
fn collector_delivery(environment: &Environment) -> anyhow::Result<DeliveredService> {
    contract::services(environment)?
        .into_iter()
        .find(|d| d.name == contract::COLLECTOR)
        .context("common::contract::services() has no dora-collector entry: phase 15 would deploy nothing of the collector (a bug in this build)")
}

impl Settings {
    /// Where Prometheus (kube-prometheus-stack) runs: `OBS_NAMESPACE`, beside the `ServiceMonitor`
    /// and the rules. The collector admits its scrapes from there in every environment.
    pub fn prometheus_namespace(&self) -> &str {
        &self.namespace
    }

    /// `<harbor>/platform-services/dora-collector`: the image repository of the release pipeline.
    pub fn image_repository(&self) -> String {
        format!(
            "{}/{}/{}",
            self.harbor_host, self.delivery.harbor_project, self.delivery.name
        )
    }

    pub fn load(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let raw: Raw = cfg.environment().parse()?;
        let webhook_url = match raw.obs_webhook_url {
            Some(url) => url,
            // Derived as phase 16 derives the Harbor one (one rule for every source's URL).
            None => match common::contract::dora_webhook_url(cfg.environment(), "gitlab") {
                Some(url) => url,
                None => bail!(
                    "{} is not set and cannot be derived: set DOMAIN or {}",
                    env::OBS_WEBHOOK_URL,
                    env::OBS_WEBHOOK_URL
                ),
            },
        };
        let parsed = url::Url::parse(&webhook_url)
            .with_context(|| format!("{}={webhook_url} is not a URL", env::OBS_WEBHOOK_URL))?;
        if parsed.scheme() != "https" {
            bail!(
                "{}={webhook_url} must be https: GitLab verifies the collector's certificate (enable_ssl_verification)",
                env::OBS_WEBHOOK_URL
            );
        }
        let webhook_host = host_of(env::OBS_WEBHOOK_URL, &webhook_url)?;
        let collector_url = raw.dora_collector_url.map_or_else(
            || parsed.origin().ascii_serialization(),
            |u| u.trim_end_matches('/').to_owned(),
        );
        let stale_after_seconds =
            parse_duration(&raw.obs_webhook_stale_after).with_context(|| {
                format!(
                    "{}={} must be a duration such as 6h, 90m or 1d",
                    env::OBS_WEBHOOK_STALE_AFTER,
                    raw.obs_webhook_stale_after
                )
            })?;
        let store = if truthy(env::OBS_DORA_POSTGRES, raw.obs_dora_postgres.as_deref())? {
            Store::Postgres
        } else {
            Store::Sqlite
        };
        let postgres_external = truthy(
            env::OBS_DORA_POSTGRES_EXTERNAL,
            raw.obs_dora_postgres_external.as_deref(),
        )?;
        let mut monitor_labels = BTreeMap::new();
        for pair in raw
            .obs_monitor_labels
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').with_context(|| {
                format!("{}: `{pair}` is not key=value", env::OBS_MONITOR_LABELS)
            })?;
            monitor_labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let delivery = collector_delivery(cfg.environment())?;
        let harbor = cfg.require_url(env::HARBOR_URL)?;
        // The registry as phase 14 names it (the host of HARBOR_URL; a non-default port kept).
        let mut harbor_host = host_of(env::HARBOR_URL, harbor)?;
        if let Some(port) = url::Url::parse(harbor).ok().and_then(|u| u.port()) {
            harbor_host = format!("{harbor_host}:{port}");
        }
        let gitlab = cfg.require_url(env::GITLAB_URL)?;
        let mut gitlab_host = host_of(env::GITLAB_URL, gitlab)?;
        if let Some(port) = url::Url::parse(gitlab).ok().and_then(|u| u.port()) {
            gitlab_host = format!("{gitlab_host}:{port}");
        }
        let gitlab_internal_url = raw.obs_gitlab_internal_url.unwrap_or_else(|| {
            format!(
                "http://gitlab-webservice-default.{}.svc:8181",
                raw.gitlab_namespace
            )
        });
        url::Url::parse(&gitlab_internal_url).with_context(|| {
            format!(
                "{}={gitlab_internal_url} is not a URL",
                env::OBS_GITLAB_INTERNAL_URL
            )
        })?;
        let readiness_groups = contract::hardened_groups(cfg.environment());
        if readiness_groups.is_empty() {
            bail!(
                "{} is empty: name at least one GitLab group (phase 12 hardens them; the readiness report gets a read-only token for each)",
                env::GITLAB_GROUPS
            );
        }
        Ok(Self {
            approver_parent: common::codeowners::approver_parent(cfg.environment()),
            namespace: raw.obs_namespace,
            webhook_group: raw.obs_webhook_group,
            webhook_url,
            webhook_host,
            stale_after_seconds,
            store,
            postgres_external,
            monitor_labels,
            ingress_class: raw.obs_ingress_class,
            ingress_namespace: raw.obs_ingress_namespace,
            gitlab_namespace: raw.gitlab_namespace,
            gitlab_internal_url,
            alloy_namespace: raw.obs_alloy_namespace,
            rollouts_namespace: raw.obs_rollouts_namespace,
            runner_namespace: raw.runner_namespace,
            harbor_host,
            release_tag: release_tag(),
            delivery,
            grafana_url: cfg.grafana_url.clone(),
            prometheus_url: cfg.prometheus_url.clone(),
            collector_url,
            vault_addr: cfg
                .require_url(env::VAULT_ADDR)?
                .trim_end_matches('/')
                .to_owned(),
            gitlab_host,
            argocd_namespace: raw.argocd_namespace,
            token_reviewer_client: common::contract::token_reviewer_is_client(cfg.environment()),
            source_dir: seeded_projects::this_repository::source_dir(
                cfg.environment().get(env::CICD_SOURCE_DIR),
            ),
            readiness_env: crate::readiness::report_env(cfg),
            ca_pem: cfg.ca_pem()?,
            readiness_groups,
        })
    }

    /// The settings with every default, for `DOMAIN=example.com` (tests and the exported data).
    pub fn example() -> Self {
        Self {
            approver_parent: common::codeowners::DEFAULT_APPROVER_PARENT.into(),
            namespace: default_namespace(),
            webhook_group: default_group(),
            webhook_url: "https://dora.example.com/webhooks/gitlab".into(),
            webhook_host: "dora.example.com".into(),
            stale_after_seconds: 21600,
            store: Store::Sqlite,
            postgres_external: false,
            monitor_labels: BTreeMap::from([("release".into(), "kube-prometheus-stack".into())]),
            ingress_class: default_ingress(),
            ingress_namespace: default_ingress(),
            gitlab_namespace: default_gitlab_namespace(),
            gitlab_internal_url: "http://gitlab-webservice-default.gitlab.svc:8181".into(),
            alloy_namespace: default_namespace(),
            rollouts_namespace: default_rollouts_namespace(),
            runner_namespace: default_runner_namespace(),
            harbor_host: "harbor.example.com".into(),
            release_tag: release_tag(),
            delivery: collector_delivery(
                &Environment::load_from(
                    None,
                    [(env::CICD_PLATFORM_DIR.to_owned(), "/nonexistent".to_owned())],
                )
                .expect("no env file to read"),
            )
            .expect("the default service list has the collector"),
            grafana_url: Some("https://grafana.example.com".into()),
            prometheus_url: Some("https://prometheus.example.com".into()),
            collector_url: "https://dora.example.com".into(),
            vault_addr: "https://vault.example.com".into(),
            gitlab_host: "gitlab.example.com".into(),
            argocd_namespace: default_argocd_namespace(),
            token_reviewer_client: false,
            source_dir: seeded_projects::this_repository::built_from(),
            readiness_env: BTreeMap::from([
                (env::DOMAIN.into(), "example.com".into()),
                (env::OBS_NAMESPACE.into(), default_namespace()),
            ]),
            ca_pem: None,
            readiness_groups: vec![contract::PLATFORM_GROUP.to_owned()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6h"), Some(21600));
        assert_eq!(parse_duration("90m"), Some(5400));
        assert_eq!(parse_duration("1d"), Some(86400));
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5w"), None);
    }
}
