//! GitLab REST API v4 client: the endpoints the phases call, typed where the phases read fields and
//! raw JSON where they only pass settings through. Built on [`ApiClient`] (retries, pagination,
//! counters, one-line errors) rather than the `gitlab` crate, which has no endpoint to update a
//! protected branch in place (ADR 0006).

mod approvals;
mod branches;
mod ci;
mod hooks;
mod members;
mod pipelines;
mod projects;
mod repository;
mod runners;
mod wikis;

use reqwest::Method;
use serde_json::Value;

use crate::config::{Credential, PlatformConfig};
use crate::env;
use crate::error::{Error, Result};
use crate::http::{ApiClient, Fixes, Retry, build_reqwest};

pub use approvals::{ApprovalRule, RuleBranch, RuleGroup};
pub use branches::{
    AccessLevelEntry, ProtectedBranch, ProtectedTag, RELEASE_TAG_CREATE_LEVEL, RELEASE_TAG_PATTERN,
    TagAccessEntry, protect_tag_body,
};
pub use ci::{CiVariable, ProjectAccessToken, TokenHolder};
pub use hooks::GroupHook;
pub use members::{CurrentUser, Group, Identity, Member, User, UserIndex};
pub use projects::Project;
pub use repository::{TreeEntry, git_blob_id};
pub use runners::{Runner, RunnerToken};
pub use wikis::WikiPage;

const SERVICE: &str = "GitLab";

/// Access levels (GitLab docs: api/members "Roles"; `api/protected_branches` "Valid access levels").
pub mod access {
    /// No access (0): a member with no rights; as a branch level, nobody.
    pub const NO_ACCESS: u8 = 0;
    /// Guest (10): sees issues, not the code of a private project.
    pub const GUEST: u8 = 10;
    /// Reporter (20): reads the repository.
    pub const REPORTER: u8 = 20;
    /// Developer (30): pushes to unprotected branches.
    pub const DEVELOPER: u8 = 30;
    /// Maintainer (40): pushes to and merges into protected `main`, creates release tags.
    pub const MAINTAINER: u8 = 40;
    /// Owner (50) of a group or project.
    pub const OWNER: u8 = 50;
    /// Administrator (60): in protected-branch levels, instance administrators only (phase 12's
    /// unprotect level).
    pub const ADMIN: u8 = 60;

    /// The role name GitLab shows for a level.
    pub fn name(level: u8) -> &'static str {
        match level {
            NO_ACCESS => "No access",
            GUEST => "Guest",
            REPORTER => "Reporter",
            DEVELOPER => "Developer",
            MAINTAINER => "Maintainer",
            OWNER => "Owner",
            ADMIN => "Administrator",
            _ => "custom",
        }
    }
}

/// Which paid features the instance has: approval rules, code-owner approval, merge trains and
/// granular protected-branch access are Premium (GitLab docs: the "Tier" of each API page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// GitLab CE, or EE without a Premium/Ultimate licence.
    Free,
    /// GitLab Premium: every paid feature the phases use.
    Premium,
    /// GitLab Ultimate: Premium's features and more.
    Ultimate,
}

impl Tier {
    /// Whether the Premium features (approval rules, code owners, merge trains) are there.
    pub fn is_paid(self) -> bool {
        self != Tier::Free
    }

    /// The value of `CICD_GITLAB_TIER` that names this tier.
    pub fn setting(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Premium => "premium",
            Tier::Ultimate => "ultimate",
        }
    }
}

/// Percent-encodes a namespaced path for use as `:id` (GitLab docs: api/rest "Namespaced paths").
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// GitLab client bound to one instance and token.
#[derive(Clone, Debug)]
pub struct GitLabClient {
    api: ApiClient,
    /// `CICD_GITLAB_TIER`: the tier to assume when the licence may not be read (403).
    declared_tier: Option<Tier>,
}

impl GitLabClient {
    /// Connects with `GITLAB_URL` (or `https://gitlab.$DOMAIN`) and `GITLAB_API_TOKEN` (or the token file).
    pub fn connect(cfg: &PlatformConfig) -> Result<Self> {
        let url = cfg.require_url(env::GITLAB_URL)?.to_owned();
        let credential = cfg.gitlab_token()?.ok_or_else(|| {
            Error::Config(format!(
                "no GitLab token: set {} or write it to {} (an admin personal access token with the api scope)",
                env::GITLAB_API_TOKEN,
                cfg.gitlab_token_file.display()
            ))
        })?;
        let declared_tier = match cfg.environment().get(env::CICD_GITLAB_TIER) {
            None => None,
            Some(text) => Some(
                [Tier::Free, Tier::Premium, Tier::Ultimate]
                    .into_iter()
                    .find(|t| t.setting().eq_ignore_ascii_case(text.trim()))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{}={text:?}: use free, premium or ultimate",
                            env::CICD_GITLAB_TIER
                        ))
                    })?,
            ),
        };
        let mut client = Self::new(&url, credential, build_reqwest(cfg)?, cfg.http_retries);
        client.declared_tier = declared_tier;
        Ok(client)
    }

    /// A client of the GitLab at `url` (without `/api/v4`) sending `credential` as `PRIVATE-TOKEN`;
    /// [`GitLabClient::connect`] builds one from the configuration.
    pub fn new(url: &str, credential: Credential, reqwest: reqwest::Client, retries: u32) -> Self {
        let fixes = Fixes {
            unauthorized: format!(
                "the GitLab token from {} is invalid, expired or revoked: create an admin personal access token with the api scope",
                credential.source
            ),
            forbidden: format!(
                "the GitLab token from {} lacks the rights for this: use an administrator's token (or an Owner of the groups) with the api scope",
                credential.source
            ),
            unreachable: format!(
                "check {}, that GitLab is up, and for TLS errors set {} to the platform CA bundle",
                env::GITLAB_URL,
                env::CICD_CA_BUNDLE
            ),
        };
        let base = format!("{}/api/v4", url.trim_end_matches('/'));
        let api = ApiClient::new(SERVICE, &base, reqwest, retries)
            .with_auth("private-token", "", credential)
            .with_fixes(fixes);
        Self {
            api,
            declared_tier: None,
        }
    }

    /// The underlying client (request counters, backoff for tests).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// Sets the retry backoff unit (tests shorten it).
    #[must_use]
    pub fn with_backoff(mut self, unit: std::time::Duration) -> Self {
        self.api = self.api.with_backoff(unit);
        self
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, operation: &str, path: &str) -> Result<T> {
        self.api
            .call_json(operation, Method::GET, path, None, Retry::Safe)
            .await
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<Vec<T>> {
        self.api.get_all(operation, path).await
    }

    async fn write<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: &Value,
        retry: Retry,
    ) -> Result<T> {
        self.api
            .call_json(operation, method, path, Some(body), retry)
            .await
    }

    /// The instance's tier: `GET /metadata` (`enterprise`), then `GET /license` (`plan`) on EE
    /// (GitLab docs: api/metadata, api/license). CE and unlicensed EE are Free.
    pub async fn tier(&self) -> Result<Tier> {
        let metadata: Value = self.get("reading instance metadata", "metadata").await?;
        if metadata["enterprise"] != Value::Bool(true) {
            return Ok(Tier::Free);
        }
        let license: Option<Value> = match self
            .api
            .get_optional("reading the licence", "license")
            .await
        {
            // The licence is an administrator's read (api/license "Prerequisites"): a read-only
            // token takes the tier the operator's run recorded (`CICD_GITLAB_TIER`).
            Err(e) if e.status() == Some(403) => match self.declared_tier {
                Some(tier) => return Ok(tier),
                None => {
                    return Err(Error::Precondition {
                        operation: "reading GitLab's licence (the tier)".into(),
                        message: format!(
                            "only administrators may read it: use an administrator's token, or set {} to the instance's tier (free, premium or ultimate)",
                            env::CICD_GITLAB_TIER
                        ),
                    });
                }
            },
            other => other?,
        };
        Ok(
            match license
                .as_ref()
                .and_then(|l| l["plan"].as_str())
                .unwrap_or("")
            {
                "premium" => Tier::Premium,
                "ultimate" => Tier::Ultimate,
                _ => Tier::Free,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_paths_are_encoded() {
        assert_eq!(
            encode_path("platform_services/sub group/x"),
            "platform_services%2Fsub%20group%2Fx"
        );
    }
}
