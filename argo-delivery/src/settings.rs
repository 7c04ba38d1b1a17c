//! Phase 15 settings (names in `common::env`), with the plan's defaults (§2.4).

use anyhow::{Context as _, bail};
use common::config::PlatformConfig;
use common::contract::DeliveredService;
use common::env;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(default = "default_namespace")]
    argocd_namespace: String,
    #[serde(default = "default_prometheus")]
    analysis_prometheus_url: String,
    #[serde(default = "default_success_target")]
    analysis_success_rate_target: f64,
    #[serde(default = "default_success_min")]
    analysis_success_rate_min: f64,
    #[serde(default = "default_p99_target")]
    analysis_p99_target_seconds: f64,
    #[serde(default = "default_p99_max")]
    analysis_p99_max_seconds: f64,
    #[serde(default = "default_error_target")]
    analysis_error_rate_target: f64,
    #[serde(default = "default_error_max")]
    analysis_error_rate_max: f64,
    #[serde(default = "default_ttl")]
    ephemeral_ttl: String,
}

fn default_ttl() -> String {
    "4h".into()
}

fn default_namespace() -> String {
    "argocd".into()
}
fn default_prometheus() -> String {
    "http://prometheus-server.monitoring.svc:9090".into()
}
fn default_success_target() -> f64 {
    0.98
}
fn default_success_min() -> f64 {
    0.95
}
fn default_p99_target() -> f64 {
    0.5
}
fn default_p99_max() -> f64 {
    1.0
}
fn default_error_target() -> f64 {
    0.02
}
fn default_error_max() -> f64 {
    0.05
}

/// Thresholds of the canary analysis: pass at `target`, fail beyond `limit`, inconclusive between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub success_rate_target: f64,
    pub success_rate_min: f64,
    pub p99_target_seconds: f64,
    pub p99_max_seconds: f64,
    pub error_rate_target: f64,
    pub error_rate_max: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            success_rate_target: default_success_target(),
            success_rate_min: default_success_min(),
            p99_target_seconds: default_p99_target(),
            p99_max_seconds: default_p99_max(),
            error_rate_target: default_error_target(),
            error_rate_max: default_error_max(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub argocd_namespace: String,
    /// Prometheus as Argo Rollouts reaches it.
    pub prometheus_url: String,
    pub thresholds: Thresholds,
    /// GitLab host the manifests come from (for `AppProject` source repositories).
    pub gitlab_host: String,
    /// GitLab URL (the pull-request generator's API).
    pub gitlab_url: String,
    /// The services delivered through staging and production (`common::contract::services`):
    /// each gets its Applications and a per-MR `ApplicationSet`.
    pub services: Vec<DeliveredService>,
    /// Harbor's registry host (the images the per-MR environments run, the pull Secret's auths).
    pub harbor_registry: String,
    /// `<n>[smhd]`.
    pub ephemeral_ttl: String,
    /// Rotate the pull-request generator's GitLab token on this run (`--rotate`), not a setting.
    pub rotate_tokens: bool,
}

impl Settings {
    pub fn load(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let raw: Raw = cfg.environment().parse()?;
        let t = Thresholds {
            success_rate_target: raw.analysis_success_rate_target,
            success_rate_min: raw.analysis_success_rate_min,
            p99_target_seconds: raw.analysis_p99_target_seconds,
            p99_max_seconds: raw.analysis_p99_max_seconds,
            error_rate_target: raw.analysis_error_rate_target,
            error_rate_max: raw.analysis_error_rate_max,
        };
        let ratio = |name: &str, v: f64| -> anyhow::Result<()> {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name}={v} must be a ratio between 0 and 1");
            }
            Ok(())
        };
        ratio(env::ANALYSIS_SUCCESS_RATE_TARGET, t.success_rate_target)?;
        ratio(env::ANALYSIS_SUCCESS_RATE_MIN, t.success_rate_min)?;
        ratio(env::ANALYSIS_ERROR_RATE_TARGET, t.error_rate_target)?;
        ratio(env::ANALYSIS_ERROR_RATE_MAX, t.error_rate_max)?;
        if t.success_rate_min > t.success_rate_target {
            bail!(
                "{} ({}) is above {} ({}): the failure line must not be above the pass line",
                env::ANALYSIS_SUCCESS_RATE_MIN,
                t.success_rate_min,
                env::ANALYSIS_SUCCESS_RATE_TARGET,
                t.success_rate_target
            );
        }
        if t.p99_target_seconds <= 0.0 || t.p99_target_seconds > t.p99_max_seconds {
            bail!(
                "{} must be positive and not above {}",
                env::ANALYSIS_P99_TARGET_SECONDS,
                env::ANALYSIS_P99_MAX_SECONDS
            );
        }
        if t.error_rate_target > t.error_rate_max {
            bail!(
                "{} must not be above {}",
                env::ANALYSIS_ERROR_RATE_TARGET,
                env::ANALYSIS_ERROR_RATE_MAX
            );
        }
        url::Url::parse(&raw.analysis_prometheus_url).with_context(|| {
            format!(
                "{}={} is not a URL",
                env::ANALYSIS_PROMETHEUS_URL,
                raw.analysis_prometheus_url
            )
        })?;
        let gitlab = cfg.require_url(env::GITLAB_URL)?;
        let gitlab_host = url::Url::parse(gitlab)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| gitlab.to_owned());
        let ttl_ok = raw.ephemeral_ttl.len() > 1
            && raw.ephemeral_ttl[..raw.ephemeral_ttl.len() - 1]
                .chars()
                .all(|c| c.is_ascii_digit())
            && raw.ephemeral_ttl.ends_with(['s', 'm', 'h', 'd']);
        if !ttl_ok {
            bail!(
                "{}={} must be <n>s, <n>m, <n>h or <n>d (e.g. 4h)",
                env::EPHEMERAL_TTL,
                raw.ephemeral_ttl
            );
        }
        let services = common::contract::services(cfg.environment())?;
        let harbor = cfg.require_url(env::HARBOR_URL)?;
        let harbor_registry = url::Url::parse(harbor)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    u.port()
                        .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
                })
            })
            .with_context(|| format!("{}={harbor} is not a URL", env::HARBOR_URL))?;
        Ok(Self {
            argocd_namespace: raw.argocd_namespace,
            prometheus_url: raw.analysis_prometheus_url,
            thresholds: t,
            gitlab_url: gitlab.trim_end_matches('/').to_owned(),
            gitlab_host,
            services,
            harbor_registry,
            ephemeral_ttl: raw.ephemeral_ttl,
            rotate_tokens: false,
        })
    }
}
