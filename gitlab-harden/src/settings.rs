//! Phase 12 settings (names in `common::env`), with the plan's defaults.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use common::config::Environment;
use common::env;
use common::gitlab::access;
use serde::Deserialize;

/// The plan's "Keycloak Group Sync to GitLab Groups" table (plan §2.6), as GitLab levels: the
/// platform's Harvester and Rancher admins are Maintainers like infra-engineers;
/// `ci-service-accounts` use API tokens only and get no membership.
pub const DEFAULT_GROUP_LEVELS: &str = "platform-admins=50,harvester-admins=40,rancher-admins=40,infra-engineers=40,senior-developers=40,developers=30,viewers=20";
/// Keycloak groups whose GitLab mirrors the approval rules name.
pub const PLATFORM_ADMINS: &str = "platform-admins";
pub const SENIOR_DEVELOPERS: &str = "senior-developers";
/// Staging's second approver group (plan §2.6: "senior-developers OR infra-engineers").
pub const INFRA_ENGINEERS: &str = "infra-engineers";
/// The plan's SEC-1 reviewer of security policies and RBAC: the CI/CD security group (plan §5.4).
pub const CICD_SECURITY: &str = "cicd-security";
/// Role the mirrored approver groups give their members (enough to be an eligible approver).
pub const APPROVER_GROUP_LEVEL: u8 = access::DEVELOPER;
/// The protected branch Argo CD deploys from (plan §2.6).
pub const MAIN_BRANCH: &str = "main";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    /// Merge commit, but only when the branch is rebased on the target (semi-linear history).
    RebaseMerge,
    /// Fast-forward only.
    Ff,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::RebaseMerge => "rebase_merge",
            MergeMethod::Ff => "ff",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(default = "default_groups")]
    gitlab_groups: String,
    #[serde(default = "default_production")]
    gitlab_production_repos: String,
    #[serde(default = "default_infrastructure")]
    gitlab_infrastructure_repos: String,
    #[serde(default = "default_security")]
    gitlab_security_repos: String,
    #[serde(default = "default_merge_method")]
    gitlab_merge_method: MergeMethod,
    #[serde(default = "default_parent")]
    gitlab_approver_group_parent: String,
    #[serde(default = "default_provider")]
    gitlab_oidc_provider: String,
    #[serde(default = "default_levels")]
    gitlab_keycloak_group_levels: String,
    #[serde(default = "yes")]
    gitlab_keycloak_sync: bool,
    #[serde(default = "default_concurrency")]
    gitlab_concurrency: usize,
    #[serde(default = "yes")]
    gitlab_ssh_route: bool,
    #[serde(default = "default_namespace")]
    gitlab_namespace: String,
    #[serde(default = "default_shell")]
    gitlab_shell_service: String,
    #[serde(default = "default_entrypoint")]
    traefik_ssh_entrypoint: String,
}

fn default_groups() -> String {
    common::contract::PLATFORM_GROUP.into()
}
fn default_infrastructure() -> String {
    "*/infrastructure/*,*-terraform".into()
}
fn default_security() -> String {
    "*/security-policies,*/security-policies-*,*-rbac,*/rbac-*".into()
}
fn default_production() -> String {
    "*-manifests,*-gitops,*/production-*".into()
}
fn default_merge_method() -> MergeMethod {
    MergeMethod::RebaseMerge
}
fn default_parent() -> String {
    common::codeowners::DEFAULT_APPROVER_PARENT.into()
}
fn default_provider() -> String {
    "openid_connect".into()
}
fn default_levels() -> String {
    DEFAULT_GROUP_LEVELS.into()
}
fn yes() -> bool {
    true
}
fn default_concurrency() -> usize {
    8
}
fn default_namespace() -> String {
    "gitlab".into()
}
fn default_shell() -> String {
    "gitlab-gitlab-shell".into()
}
fn default_entrypoint() -> String {
    "ssh".into()
}

/// Phase 12 settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Top-level (or nested) groups whose projects are hardened.
    pub groups: Vec<String>,
    /// Globs on `path_with_namespace` for production manifest repositories.
    pub production_repos: Vec<String>,
    /// Globs on `path_with_namespace` for infrastructure (Terraform) repositories.
    pub infrastructure_repos: Vec<String>,
    /// Globs of security-policy and RBAC repositories (`GITLAB_SECURITY_REPOS`).
    pub security_repos: Vec<String>,
    pub merge_method: MergeMethod,
    /// Group holding the approver groups mirrored from Keycloak.
    pub approver_parent: String,
    pub oidc_provider: String,
    /// Keycloak group → GitLab role on the hardened groups.
    pub group_levels: BTreeMap<String, u8>,
    pub keycloak_sync: bool,
    pub concurrency: usize,
    pub ssh_route: bool,
    pub gitlab_namespace: String,
    pub shell_service: String,
    pub ssh_entrypoint: String,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses `group=level,…`; levels are GitLab member roles.
pub fn parse_levels(text: &str) -> anyhow::Result<BTreeMap<String, u8>> {
    let mut levels = BTreeMap::new();
    for pair in list(text) {
        let (group, level) = pair.split_once('=').with_context(|| {
            format!(
                "{}: `{pair}` is not group=level (e.g. developers=30)",
                env::GITLAB_KEYCLOAK_GROUP_LEVELS
            )
        })?;
        let level: u8 = level.trim().parse().ok().filter(|l| [10u8, 20, 30, 40, 50].contains(l)).with_context(|| {
            format!(
                "{}: level `{}` of {group} is not a GitLab role (10 Guest, 20 Reporter, 30 Developer, 40 Maintainer, 50 Owner)",
                env::GITLAB_KEYCLOAK_GROUP_LEVELS,
                level.trim()
            )
        })?;
        levels.insert(group.trim().to_owned(), level);
    }
    Ok(levels)
}

impl Settings {
    /// Phase 12's settings from the platform's environment (`scripts/.env` and the process).
    pub fn load(cfg: &common::config::PlatformConfig) -> anyhow::Result<Self> {
        Self::from_environment(cfg.environment())
    }

    /// The same, from an [`Environment`] (tests build one from a map).
    pub fn from_environment(environment: &Environment) -> anyhow::Result<Self> {
        let raw: Raw = environment.parse()?;
        let groups = list(&raw.gitlab_groups);
        if groups.is_empty() {
            bail!(
                "{} is empty: name at least one GitLab group (e.g. platform_services)",
                env::GITLAB_GROUPS
            );
        }
        if raw.gitlab_concurrency == 0 || raw.gitlab_concurrency > 64 {
            bail!(
                "{}={} must be between 1 and 64",
                env::GITLAB_CONCURRENCY,
                raw.gitlab_concurrency
            );
        }
        let group_levels = parse_levels(&raw.gitlab_keycloak_group_levels)?;
        Ok(Self {
            groups,
            production_repos: list(&raw.gitlab_production_repos),
            infrastructure_repos: list(&raw.gitlab_infrastructure_repos),
            security_repos: list(&raw.gitlab_security_repos),
            merge_method: raw.gitlab_merge_method,
            approver_parent: raw
                .gitlab_approver_group_parent
                .trim_matches('/')
                .to_owned(),
            oidc_provider: raw.gitlab_oidc_provider,
            group_levels,
            keycloak_sync: raw.gitlab_keycloak_sync,
            concurrency: raw.gitlab_concurrency,
            ssh_route: raw.gitlab_ssh_route,
            gitlab_namespace: raw.gitlab_namespace,
            shell_service: raw.gitlab_shell_service,
            ssh_entrypoint: raw.traefik_ssh_entrypoint,
        })
    }

    /// Full path of the GitLab group mirroring Keycloak group `name`.
    pub fn approver_group(&self, name: &str) -> String {
        common::codeowners::approver_group(&self.approver_parent, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_levels_are_the_plan_table() {
        let levels = parse_levels(DEFAULT_GROUP_LEVELS).unwrap();
        assert_eq!(levels["platform-admins"], 50);
        // The plan's table names the platform's Harvester and Rancher admins as Maintainers.
        assert_eq!(levels["harvester-admins"], 40);
        assert_eq!(levels["rancher-admins"], 40);
        assert_eq!(levels.len(), 7, "{levels:?}");
        assert_eq!(levels["infra-engineers"], 40);
        assert_eq!(levels["senior-developers"], 40);
        assert_eq!(levels["developers"], 30);
        assert_eq!(levels["viewers"], 20);
    }

    #[test]
    fn bad_levels_name_the_setting() {
        let e = parse_levels("developers=35").unwrap_err().to_string();
        assert!(
            e.contains("GITLAB_KEYCLOAK_GROUP_LEVELS") && e.contains("35"),
            "{e}"
        );
        let e = parse_levels("developers").unwrap_err().to_string();
        assert!(e.contains("group=level"), "{e}");
    }
}
