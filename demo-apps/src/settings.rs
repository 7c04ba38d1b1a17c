//! Phase 18 settings (names in `common::env`, documented in docs/configuration.md).

use anyhow::{Context as _, bail};
use common::config::PlatformConfig;
use common::env;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(default = "default_namespace")]
    demo_namespace: String,
    #[serde(default = "default_group")]
    demo_gitlab_group: String,
    #[serde(default = "default_harbor_project")]
    demo_harbor_project: String,
    #[serde(default = "default_argocd_project")]
    demo_argocd_project: String,
    #[serde(default = "default_image_tag")]
    demo_image_tag: String,
    #[serde(default = "default_rate")]
    demo_generator_rate: String,
    #[serde(default = "default_argocd_namespace")]
    argocd_namespace: String,
    #[serde(default = "default_runner_namespace")]
    runner_namespace: String,
}

fn default_runner_namespace() -> String {
    common::contract::RUNNER_NAMESPACE.into()
}

fn default_namespace() -> String {
    "demo-apps".into()
}
fn default_group() -> String {
    "platform_services".into()
}
fn default_harbor_project() -> String {
    "platform-services".into()
}
fn default_argocd_project() -> String {
    "production".into()
}
fn default_image_tag() -> String {
    "v0.1.0".into()
}
fn default_rate() -> String {
    "0.5".into()
}
fn default_argocd_namespace() -> String {
    "argocd".into()
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Parent of the approver groups the seeded project's default CODEOWNERS names
    /// (`GITLAB_APPROVER_GROUP_PARENT`, `common::codeowners`).
    pub approver_parent: String,
    pub namespace: String,
    pub gitlab_group: String,
    pub harbor_project: String,
    pub argocd_project: String,
    pub argocd_namespace: String,
    /// The runner pools' namespace (`RUNNER_NAMESPACE`, phase 16): the ephemeral overlays admit
    /// the test pool's job pods from there.
    pub runner_namespace: String,
    /// Release tag of both projects and their images (`v0.1.0`).
    pub image_tag: String,
    /// Packets per second of the in-cluster traffic generator.
    pub generator_rate: f64,
    /// The platform's base domain (host names of the dashboard and the scenarios' links).
    pub domain: String,
    pub gitlab_url: String,
    /// The registry as phase 14 names it: the host of `HARBOR_URL` (a non-default port kept).
    pub harbor_host: String,
}

/// Harbor accepts these tags once (immutable rule of phase 14); `latest` is never one of them.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag != "latest"
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !tag.starts_with(['.', '-'])
}

impl Settings {
    pub fn load(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let raw: Raw = cfg.environment().parse()?;
        if !valid_tag(&raw.demo_image_tag) {
            bail!(
                "{}={} is not an immutable image tag: use a release tag such as v0.1.0 (never `latest`)",
                env::DEMO_IMAGE_TAG,
                raw.demo_image_tag
            );
        }
        let generator_rate: f64 = raw
            .demo_generator_rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0 && *r <= 10_000.0)
            .with_context(|| {
                format!(
                    "{}={} must be a number of packets per second between 0 and 10000 (e.g. 0.5)",
                    env::DEMO_GENERATOR_RATE,
                    raw.demo_generator_rate
                )
            })?;
        let domain = cfg.domain.clone().with_context(|| {
            format!(
                "{} is not set: the demo's host names (netops.$DOMAIN) derive from it",
                env::DOMAIN
            )
        })?;
        let harbor = cfg.require_url(env::HARBOR_URL)?;
        let parsed = url::Url::parse(harbor)
            .with_context(|| format!("{}={harbor} is not a URL", env::HARBOR_URL))?;
        let mut harbor_host = parsed
            .host_str()
            .with_context(|| format!("{}={harbor} has no host", env::HARBOR_URL))?
            .to_owned();
        if let Some(port) = parsed.port() {
            harbor_host = format!("{harbor_host}:{port}");
        }
        Ok(Self {
            approver_parent: common::codeowners::approver_parent(cfg.environment()),
            namespace: raw.demo_namespace,
            gitlab_group: raw.demo_gitlab_group,
            harbor_project: raw.demo_harbor_project,
            argocd_project: raw.demo_argocd_project,
            argocd_namespace: raw.argocd_namespace,
            runner_namespace: raw.runner_namespace,
            image_tag: raw.demo_image_tag,
            generator_rate,
            domain,
            gitlab_url: cfg.require_url(env::GITLAB_URL)?.to_owned(),
            harbor_host,
        })
    }

    /// Settings with the documented defaults, for tests and `render`.
    pub fn example() -> Self {
        Self {
            approver_parent: common::codeowners::DEFAULT_APPROVER_PARENT.into(),
            namespace: default_namespace(),
            gitlab_group: default_group(),
            harbor_project: default_harbor_project(),
            argocd_project: default_argocd_project(),
            argocd_namespace: default_argocd_namespace(),
            runner_namespace: default_runner_namespace(),
            image_tag: default_image_tag(),
            generator_rate: 0.5,
            domain: "example.com".into(),
            gitlab_url: "https://gitlab.example.com".into(),
            harbor_host: "harbor.example.com".into(),
        }
    }

    /// `harbor.<domain>/<project>/<service>:<tag>`.
    pub fn image(&self, service: &str) -> String {
        format!(
            "{}/{}/{service}:{}",
            self.harbor_host, self.harbor_project, self.image_tag
        )
    }
}

#[cfg(test)]
mod tests {
    use super::valid_tag;

    #[test]
    fn only_immutable_tags_are_accepted() {
        for good in ["v0.1.0", "1.2.3", "v2_rc.1"] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in ["", "latest", "-x", "a b", "v1:2", &"x".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
