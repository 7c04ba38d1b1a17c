//! Phase 13 settings (names in `common::env`), with the platform's defaults.

use serde::Deserialize;

pub use common::contract::{JWT_MOUNT, KV_MOUNT, SIGNING_KEY, TRANSIT_MOUNT};
pub const K8S_MOUNT: &str = "kubernetes";
/// Release tags the image and signing roles accept (protected by phase 12: `v*`).
pub const RELEASE_TAGS: &str = common::gitlab::RELEASE_TAG_PATTERN;
/// ESO Helm chart pinned for the Argo CD Application (the CRDs in sandbox/fixtures are v2.9.0).
pub const DEFAULT_ESO_CHART_VERSION: &str = "2.9.0";

/// Who calls Kubernetes' `TokenReview` API when a service account logs in to Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenReviewer {
    /// Vault's own service account (Vault runs in the cluster): it needs system:auth-delegator.
    Vault,
    /// The logging-in service account's own JWT (Vault outside the cluster): each client needs
    /// system:auth-delegator, and no long-lived reviewer token exists anywhere.
    Client,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub vault_jwt_audience: Option<String>,
    #[serde(default = "default_project_paths")]
    pub vault_ci_project_paths: String,
    #[serde(default = "default_refs")]
    pub vault_ci_refs: String,
    #[serde(default = "default_services")]
    pub vault_ci_services: String,
    #[serde(default = "default_k8s_host")]
    pub vault_k8s_host: String,
    pub vault_k8s_ca_cert: Option<String>,
    #[serde(default = "default_reviewer")]
    pub vault_k8s_token_reviewer: TokenReviewer,
    #[serde(default = "default_vault")]
    pub vault_k8s_namespace: String,
    #[serde(default = "default_vault")]
    pub vault_k8s_service_account: String,
    #[serde(default = "default_audit_path")]
    pub vault_audit_file_path: String,
    #[serde(default = "default_pki_mount")]
    pub vault_ci_pki_mount: String,
    pub vault_ci_cert_domains: Option<String>,
    #[serde(default = "default_eso")]
    pub eso_namespace: String,
    #[serde(default = "default_eso")]
    pub eso_service_account: String,
    pub eso_vault_server: Option<String>,
    #[serde(default = "default_chart")]
    pub eso_chart_version: String,
    #[serde(default = "default_wait")]
    pub cicd_crd_wait_secs: u64,
    #[serde(default = "default_human_client")]
    pub vault_human_oidc_client_id: String,
    #[serde(default = "default_human_groups")]
    pub vault_human_group_policies: String,
}

fn default_human_client() -> String {
    "vault".into()
}
fn default_human_groups() -> String {
    "cicd-admins=ci-admin,cicd-security=security-audit".into()
}

fn default_project_paths() -> String {
    "platform_services/*".into()
}
fn default_refs() -> String {
    "main".into()
}
fn default_services() -> String {
    "example-service".into()
}
fn default_k8s_host() -> String {
    "https://kubernetes.default.svc:443".into()
}
fn default_reviewer() -> TokenReviewer {
    TokenReviewer::Vault
}
fn default_vault() -> String {
    "vault".into()
}
fn default_audit_path() -> String {
    "/vault/audit/cicd-audit.log".into()
}
fn default_pki_mount() -> String {
    "pki_int".into()
}
fn default_eso() -> String {
    "external-secrets".into()
}
fn default_chart() -> String {
    DEFAULT_ESO_CHART_VERSION.into()
}
fn default_wait() -> u64 {
    300
}

/// Splits a comma-separated setting, dropping blanks.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Settings {
    /// Phase 13's settings from the platform's environment (`scripts/.env` and the process).
    pub fn load(cfg: &common::config::PlatformConfig) -> common::Result<Self> {
        cfg.environment().parse()
    }
}
