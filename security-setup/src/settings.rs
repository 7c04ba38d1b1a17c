//! Phase 16 settings (names in `common::env`), with the plan's defaults.

use common::config::PlatformConfig;
use common::env;
use secrecy::SecretString;
use serde::Deserialize;

use crate::desired::{POOLS, Pool};

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(default = "default_group")]
    security_runner_group: String,
    #[serde(default = "default_description")]
    security_runner_description: String,
    #[serde(default = "default_namespace")]
    runner_namespace: String,
    #[serde(default = "default_chart")]
    gitlab_runner_chart_version: String,
    #[serde(default = "default_projects")]
    harbor_scan_projects: String,
    #[serde(default = "default_schedule")]
    harbor_scan_all_schedule: String,
    #[serde(default = "default_true")]
    harbor_prevent_vulnerable: String,
    #[serde(default = "default_severity")]
    harbor_severity_gate: String,
    #[serde(default)]
    harbor_cve_allowlist: String,
    #[serde(default = "default_mattermost_path")]
    mattermost_webhook_vault_path: String,
    #[serde(default = "default_namespace")]
    cosign_public_key_namespace: String,
}

fn default_group() -> String {
    "platform_services".into()
}
fn default_description() -> String {
    "security-runners".into()
}
fn default_namespace() -> String {
    common::contract::RUNNER_NAMESPACE.into()
}
fn default_chart() -> String {
    "0.71.0".into()
}
fn default_projects() -> String {
    "platform-services,application-services".into()
}
fn default_schedule() -> String {
    "daily".into()
}
fn default_true() -> String {
    "true".into()
}
fn default_severity() -> String {
    "critical".into()
}
fn default_mattermost_path() -> String {
    "ci/mattermost-webhook".into()
}

/// When Harbor scans every image again (`ScheduleObj`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSchedule {
    /// `Hourly`, `Daily`, `Weekly`, `Custom` or `None`.
    pub kind: &'static str,
    /// Harbor's 6-field cron (sec min hour day month weekday); empty for `None`.
    pub cron: String,
}

impl ScanSchedule {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let t = text.trim();
        let (kind, cron) = match t.to_ascii_lowercase().as_str() {
            "hourly" => ("Hourly", "0 0 * * * *".to_owned()),
            "daily" => ("Daily", "0 0 0 * * *".to_owned()),
            "weekly" => ("Weekly", "0 0 0 * * 0".to_owned()),
            "none" => ("None", String::new()),
            _ if t.split_whitespace().count() == 6 => ("Custom", t.to_owned()),
            _ => anyhow::bail!(
                "{}={text}: use hourly, daily, weekly, none or a 6-field cron (sec min hour day month weekday, e.g. `0 30 2 * * *`)",
                env::HARBOR_SCAN_ALL_SCHEDULE
            ),
        };
        Ok(Self { kind, cron })
    }
}

/// Checked phase 16 settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The GitLab group all four pools' runners are registered to.
    pub runner_group: String,
    /// The security pool's runner description (kept configurable so an existing installation
    /// keeps its runner); the other pools' runners are `<pool>-runners`.
    pub security_runner_description: String,
    pub runner_namespace: String,
    pub chart_version: String,
    /// Harbor projects with scanning, gate and alerts.
    pub scan_projects: Vec<String>,
    pub scan_schedule: ScanSchedule,
    pub prevent_vulnerable: bool,
    pub severity_gate: String,
    /// Sorted, unique.
    pub cve_allowlist: Vec<String>,
    /// From the environment; `None`: read from Vault at `mattermost_vault_path`.
    pub mattermost_url: Option<SecretString>,
    pub mattermost_vault_path: String,
    /// The DORA collector's Harbor webhook URL (`OBS_WEBHOOK_URL`'s origin or
    /// `https://dora.<DOMAIN>`, then `/webhooks/harbor`); `None`: no DORA policy.
    pub dora_webhook_url: Option<String>,
    pub cosign_namespace: String,
    pub gitlab_url: String,
    /// `harbor.<DOMAIN>` (host and port of `HARBOR_URL`).
    pub harbor_registry: String,
    /// Host name and port of `ARGOCD_URL` (the library's `ARGOCD_SERVER`), which
    /// deploy-ephemeral calls; a Cilium FQDN rule takes the name without the port.
    pub argocd_endpoint: Option<(String, u16)>,
}

/// The host name and port (the scheme's default when none is given) of a URL.
pub fn name_and_port(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    Some((u.host_str()?.to_owned(), u.port_or_known_default()?))
}

pub fn host_of(url: &str) -> String {
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

/// `CVE-YYYY-NNNN…` (also GHSA ids, which Trivy reports too).
fn is_vulnerability_id(id: &str) -> bool {
    let cve = id.strip_prefix("CVE-").is_some_and(|rest| {
        rest.split_once('-').is_some_and(|(year, n)| {
            year.len() == 4
                && year.bytes().all(|b| b.is_ascii_digit())
                && n.len() >= 4
                && n.bytes().all(|b| b.is_ascii_digit())
        })
    });
    cve || (id.starts_with("GHSA-") && id.len() == 19 && id.matches('-').count() == 3)
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => anyhow::bail!("{name}={value} is not true or false"),
    }
}

impl Settings {
    /// The description that identifies a pool's runner in GitLab (found by it, never duplicated):
    /// `SECURITY_RUNNER_DESCRIPTION` for the security pool, `<pool>-runners` for the others.
    pub fn runner_description(&self, pool: &Pool) -> String {
        if pool.name == "security" {
            self.security_runner_description.clone()
        } else {
            format!("{}-runners", pool.name)
        }
    }

    pub fn load(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let raw: Raw = cfg.environment().parse()?;
        let severity = raw.harbor_severity_gate.trim().to_ascii_lowercase();
        if !["low", "medium", "high", "critical"].contains(&severity.as_str()) {
            anyhow::bail!(
                "{}={}: use low, medium, high or critical",
                env::HARBOR_SEVERITY_GATE,
                raw.harbor_severity_gate
            );
        }
        let mut cve_allowlist = Vec::new();
        for id in raw
            .harbor_cve_allowlist
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !is_vulnerability_id(id) {
                anyhow::bail!(
                    "{}: `{id}` is not a CVE id (CVE-2024-12345) or GHSA id",
                    env::HARBOR_CVE_ALLOWLIST
                );
            }
            cve_allowlist.push(id.to_owned());
        }
        cve_allowlist.sort();
        cve_allowlist.dedup();
        let scan_projects: Vec<String> = raw
            .harbor_scan_projects
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if scan_projects.is_empty() {
            anyhow::bail!("{} is empty", env::HARBOR_SCAN_PROJECTS);
        }
        let mattermost_url = cfg
            .environment()
            .get(env::MATTERMOST_WEBHOOK_URL)
            .filter(|u| !u.trim().is_empty())
            .map(|u| {
                common::redact::register(u);
                SecretString::from(u.trim().to_owned())
            });
        let security_runner_description = raw.security_runner_description;
        if let Some(other) = POOLS.iter().find(|p| {
            p.name != "security" && format!("{}-runners", p.name) == security_runner_description
        }) {
            anyhow::bail!(
                "{}={security_runner_description} is the description of the {} pool's runner, so both pools would share one runner: choose another description (default security-runners)",
                env::SECURITY_RUNNER_DESCRIPTION,
                other.name
            );
        }
        Ok(Self {
            runner_group: raw.security_runner_group.trim_matches('/').to_owned(),
            security_runner_description,
            runner_namespace: raw.runner_namespace,
            chart_version: raw.gitlab_runner_chart_version,
            scan_projects,
            scan_schedule: ScanSchedule::parse(&raw.harbor_scan_all_schedule)?,
            prevent_vulnerable: parse_bool(
                env::HARBOR_PREVENT_VULNERABLE,
                &raw.harbor_prevent_vulnerable,
            )?,
            severity_gate: severity,
            cve_allowlist,
            mattermost_url,
            mattermost_vault_path: raw.mattermost_webhook_vault_path,
            dora_webhook_url: common::contract::dora_webhook_url(cfg.environment(), "harbor"),
            cosign_namespace: raw.cosign_public_key_namespace,
            gitlab_url: cfg
                .require_url(env::GITLAB_URL)?
                .trim_end_matches('/')
                .to_owned(),
            harbor_registry: host_of(cfg.require_url(env::HARBOR_URL)?),
            // ARGOCD_URL or its default from DOMAIN; without either, only the in-cluster server.
            argocd_endpoint: cfg
                .require_url(env::ARGOCD_URL)
                .ok()
                .and_then(name_and_port),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_map_to_harbor_types() {
        assert_eq!(ScanSchedule::parse("daily").unwrap().kind, "Daily");
        assert_eq!(
            ScanSchedule::parse("0 30 2 * * *").unwrap(),
            ScanSchedule {
                kind: "Custom",
                cron: "0 30 2 * * *".into()
            }
        );
        assert!(ScanSchedule::parse("every night").is_err());
    }

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut process = vec![
            ("CICD_PLATFORM_DIR".to_owned(), "/nonexistent".to_owned()),
            ("DOMAIN".to_owned(), "example.com".to_owned()),
        ];
        process.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let env = common::config::Environment::load_from(None, process)?;
        Settings::load(&PlatformConfig::from_env(&env)?)
    }

    #[test]
    fn each_pool_has_a_runner_description_of_its_own() {
        let s = load(&[]).unwrap();
        let descriptions: Vec<String> = POOLS.iter().map(|p| s.runner_description(p)).collect();
        assert_eq!(
            descriptions,
            [
                "shared-runners",
                "build-runners",
                "security-runners",
                "test-runners"
            ]
        );
        // An installation that renamed its security runner keeps it.
        let s = load(&[(env::SECURITY_RUNNER_DESCRIPTION, "scanners")]).unwrap();
        let security = crate::desired::pool("security").unwrap();
        assert_eq!(s.runner_description(security), "scanners");
        // Two pools can never share one runner.
        let error = load(&[(env::SECURITY_RUNNER_DESCRIPTION, "build-runners")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SECURITY_RUNNER_DESCRIPTION=build-runners"),
            "{error}"
        );
        assert!(error.contains("the build pool's runner"), "{error}");
    }

    #[test]
    fn vulnerability_ids_are_checked() {
        assert!(is_vulnerability_id("CVE-2024-12345"));
        assert!(is_vulnerability_id("GHSA-xxxx-yyyy-zzzz"));
        assert!(!is_vulnerability_id("CVE-24-1"));
        assert!(!is_vulnerability_id("openssl"));
    }
}
