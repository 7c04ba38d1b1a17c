//! Phase 14 settings (names in `common::env`), with the plan's defaults.

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::env;
use serde::Deserialize;

// The fields are the `CI_*` settings as serde reads them from the environment.
#[allow(clippy::struct_field_names)]
#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(default = "default_project")]
    ci_templates_project: String,
    #[serde(default = "default_group")]
    ci_variables_group: String,
    #[serde(default = "default_coverage")]
    ci_coverage_threshold: String,
    #[serde(default = "default_severity")]
    ci_trivy_severity: String,
}

fn default_project() -> String {
    "platform_services/gitlab-ci-templates".into()
}
fn default_group() -> String {
    "platform_services".into()
}
fn default_coverage() -> String {
    "80".into()
}
fn default_severity() -> String {
    "CRITICAL,HIGH".into()
}

/// Checked phase 14 settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Parent of the approver groups the library's default CODEOWNERS names
    /// (`GITLAB_APPROVER_GROUP_PARENT`, `common::codeowners`).
    pub approver_parent: String,
    /// Full path of the library's GitLab project.
    pub templates_project: String,
    /// Group whose CI/CD variables carry plan §1.3's group-level values.
    pub variables_group: String,
    pub coverage_threshold: String,
    pub trivy_severity: String,
    /// Registry host for image names (`harbor.<DOMAIN>`), from `HARBOR_URL`.
    pub harbor_registry: String,
    pub vault_addr: String,
    /// Argo CD host for the `argocd` CLI, from `ARGOCD_URL`.
    pub argocd_server: String,
    pub domain: String,
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                u.port()
                    .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
            })
        })
        .unwrap_or_else(|| url.to_owned())
}

impl Settings {
    pub fn load(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let raw: Raw = cfg.environment().parse()?;
        // Checked here; the group variable keeps the text as configured.
        raw.ci_coverage_threshold
            .parse::<f64>()
            .ok()
            .filter(|c| (0.0..=100.0).contains(c))
            .with_context(|| {
                format!(
                    "{}={} is not a percentage (0–100)",
                    env::CI_COVERAGE_THRESHOLD,
                    raw.ci_coverage_threshold
                )
            })?;
        for severity in raw.ci_trivy_severity.split(',') {
            if !["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"].contains(&severity.trim()) {
                anyhow::bail!(
                    "{}={}: `{severity}` is not a trivy severity (UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)",
                    env::CI_TRIVY_SEVERITY,
                    raw.ci_trivy_severity
                );
            }
        }
        if raw.ci_templates_project.matches('/').count() < 1 {
            anyhow::bail!(
                "{}={} must be a group/project path (e.g. platform_services/gitlab-ci-templates)",
                env::CI_TEMPLATES_PROJECT,
                raw.ci_templates_project
            );
        }
        Ok(Self {
            approver_parent: common::codeowners::approver_parent(cfg.environment()),
            templates_project: raw.ci_templates_project.trim_matches('/').to_owned(),
            variables_group: raw.ci_variables_group.trim_matches('/').to_owned(),
            coverage_threshold: raw.ci_coverage_threshold,
            trivy_severity: raw.ci_trivy_severity,
            harbor_registry: host_of(cfg.require_url(env::HARBOR_URL)?),
            vault_addr: cfg.require_url(env::VAULT_ADDR)?.to_owned(),
            argocd_server: host_of(cfg.require_url(env::ARGOCD_URL)?),
            domain: cfg.domain.clone().unwrap_or_default(),
        })
    }

    /// The library project's namespace and name.
    pub fn templates_namespace(&self) -> (&str, &str) {
        self.templates_project
            .rsplit_once('/')
            .unwrap_or(("", self.templates_project.as_str()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_keep_their_port() {
        assert_eq!(
            super::host_of("https://harbor.example.com"),
            "harbor.example.com"
        );
        assert_eq!(super::host_of("http://127.0.0.1:8443/x"), "127.0.0.1:8443");
    }
}
