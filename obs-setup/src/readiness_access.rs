//! The in-cluster readiness report's own credentials (issue 21, docs/adr/0012 decision 8):
//! - one group access token per hardened group (`GITLAB_GROUPS`, phase 12's), named
//!   [`TOKEN_NAME`], scope `read_api`, role Maintainer, 90 days, renewed 30 days before it
//!   expires: what phase 12's project observation reads (protected branches, merge settings,
//!   approval rules, CODEOWNERS), and no write. Maintainer because GitLab lets only Maintainers
//!   read protected branches and tags (`authorize_admin_project`,
//!   sandbox/fixtures/gitlab-docs/protected-refs-read.md); `read_api` because the role alone
//!   could change them. Why group tokens: GitLab scopes them to one group and its projects, they
//!   need no user seat, and they exist on every tier of a self-managed GitLab; an
//!   administrator's `read_api` token would read every project and the instance's settings.
//!   What the role still reads that the report does not need (accepted, ADR 0012 decision 8): the
//!   CI/CD variables of the group and its projects, webhooks, lists of deploy and access tokens;
//! - kept in Vault at `kv/monitoring/cicd-readiness` (key `gitlab-tokens`, a JSON object group →
//!   token), older versions destroyed;
//! - Vault policy and Kubernetes auth role `cicd-readiness`: that secret and phase 14's robot
//!   for the report, read-only, for the `CronJob`'s service account in `OBS_NAMESPACE` only. The report logs in itself: no Kubernetes
//!   Secret holds the tokens, so no `get secrets` grant in the namespace reaches them.
//!
//! The licence is an administrator's read: the report's run takes the tier from
//! `CICD_GITLAB_TIER`, which this phase writes into `cicd-readiness-env`.

use std::collections::BTreeMap;

use common::contract::{
    self, KV_MOUNT, KV_READINESS_CREDENTIALS, PromoteTokenChange, PromoteTokenObserved,
    READINESS_GITLAB_TOKENS_KEY, READINESS_VAULT_ROLE, access_token_change,
};
use common::gitlab::{GitLabClient, TokenHolder, access};
use common::vault::VaultClient;
use common::{Error, dates, redact};
use secrecy::ExposeSecret as _;
use serde_json::Value;

use crate::settings::Settings;

/// The tokens' name in GitLab.
pub const TOKEN_NAME: &str = "cicd-readiness";
/// Reading only.
pub const TOKEN_SCOPES: &[&str] = &["read_api"];
/// Days a token is valid, and the days left at which a rerun renews it.
pub const TOKEN_DAYS: u32 = 90;
pub const TOKEN_RENEW_DAYS: u32 = 30;
/// Custom metadata key of the Vault secret recording which GitLab token it holds for `group`.
fn token_id_key(group: &str) -> String {
    format!("token-id:{group}")
}

/// The report's Vault policy: its own credentials, read-only; nothing else. Its GitLab tokens
/// (this phase's) and its Harbor robot (phase 14's).
pub fn policy() -> String {
    format!(
        "# The in-cluster readiness report (cicd-buildout phase 17): its own read-only credentials.\npath \"{KV_MOUNT}/data/{KV_READINESS_CREDENTIALS}\" {{\n  capabilities = [\"read\"]\n}}\npath \"{KV_MOUNT}/data/{}\" {{\n  capabilities = [\"read\"]\n}}\n",
        contract::KV_READINESS_HARBOR
    )
}

/// The Kubernetes auth role's body: the `CronJob`'s service account in `OBS_NAMESPACE` only.
pub fn role(s: &Settings) -> Value {
    crate::flags::service_account_role(crate::readiness::REPORT, &s.namespace, READINESS_VAULT_ROLE)
}

/// One group's token as GitLab and Vault hold it.
#[derive(Debug, Clone, Default)]
pub struct GroupToken {
    /// `None`: the group does not exist (phase 12 creates it): nothing to plan yet.
    pub group_id: Option<u64>,
    /// Ours: the newest active token named [`TOKEN_NAME`] with exactly [`TOKEN_SCOPES`] and the
    /// Maintainer role; `stored_token_id` only when Vault's data holds that group's token too.
    pub token: PromoteTokenObserved,
    /// Active tokens of that name with other rights (made by hand): never adopted, named in a
    /// warning, since rotating one would keep its rights.
    pub foreign: Vec<String>,
}

/// What GitLab and Vault hold now (reads only).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub tokens: BTreeMap<String, GroupToken>,
    /// Groups whose token Vault's secret holds (its keys), to drop groups no longer hardened.
    pub stored_groups: Vec<String>,
    pub policy: Option<String>,
    pub role: Option<Value>,
    /// Today (days since the epoch): tokens are renewed [`TOKEN_RENEW_DAYS`] before they expire.
    pub today: i64,
}

pub async fn observe(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    s: &Settings,
    k8s_auth_enabled: bool,
) -> anyhow::Result<Observed> {
    let meta = vault
        .kv2_metadata(KV_MOUNT, KV_READINESS_CREDENTIALS)
        .await?
        .filter(|m| !m.current_deleted);
    // The groups whose token Vault's data holds: metadata alone survives a `vault kv put` by hand.
    let held = stored_tokens(vault).await?;
    let stored_groups: Vec<String> = held.keys().cloned().collect();
    let mut tokens = BTreeMap::new();
    for group_path in &s.readiness_groups {
        let Some(group) = gitlab.group(group_path).await? else {
            tokens.insert(group_path.clone(), GroupToken::default());
            continue;
        };
        let (ours, foreign): (Vec<_>, Vec<_>) = gitlab
            .access_tokens(TokenHolder::Group(group.id))
            .await?
            .into_iter()
            .filter(|t| t.name == TOKEN_NAME && t.active && !t.revoked)
            .partition(|t| t.scopes == TOKEN_SCOPES && t.access_level == access::MAINTAINER);
        let stored_token_id = meta
            .as_ref()
            .filter(|_| held.contains_key(group_path))
            .and_then(|m| m.custom_metadata.get(&token_id_key(group_path)))
            .and_then(|v| v.parse().ok());
        tokens.insert(
            group_path.clone(),
            GroupToken {
                group_id: Some(group.id),
                token: PromoteTokenObserved {
                    active: ours.into_iter().max_by_key(|t| t.id),
                    stored_token_id,
                },
                foreign: foreign
                    .iter()
                    .map(|t| {
                        format!(
                            "id {} ({}, role {})",
                            t.id,
                            t.scopes.join(","),
                            t.access_level
                        )
                    })
                    .collect(),
            },
        );
    }
    let policy = vault.policy(READINESS_VAULT_ROLE).await?;
    let role = if k8s_auth_enabled {
        vault
            .read(
                "reading the readiness report's Kubernetes role",
                &format!(
                    "auth/{}/role/{READINESS_VAULT_ROLE}",
                    contract::K8S_AUTH_MOUNT
                ),
            )
            .await?
    } else {
        None
    };
    Ok(Observed {
        tokens,
        stored_groups,
        policy,
        role,
        today: dates::today(),
    })
}

/// The token changes, group by group (pure).
pub fn token_changes(o: &Observed) -> Vec<(String, PromoteTokenChange)> {
    o.tokens
        .iter()
        .filter(|(_, t)| t.group_id.is_some())
        .filter_map(|(group, t)| {
            access_token_change(&t.token, o.today, TOKEN_RENEW_DAYS, false)
                .map(|c| (group.clone(), c))
        })
        .collect()
}

/// Groups whose token Vault still holds though phase 12 no longer hardens them.
pub fn dropped_groups<'a>(o: &'a Observed, s: &Settings) -> Vec<&'a str> {
    o.stored_groups
        .iter()
        .filter(|g| !s.readiness_groups.contains(g))
        .map(String::as_str)
        .collect()
}

/// One line of the plan per change.
pub fn describe(group: &str, change: &PromoteTokenChange) -> String {
    match change {
        PromoteTokenChange::Create => format!(
            "create group access token {TOKEN_NAME} of {group} (Maintainer, read_api only, {TOKEN_DAYS} days) → kv/{KV_READINESS_CREDENTIALS}"
        ),
        PromoteTokenChange::Rotate { reason, .. } => format!(
            "rotate group access token {TOKEN_NAME} of {group} ({reason}) → kv/{KV_READINESS_CREDENTIALS}"
        ),
    }
}

/// Creates or rotates the tokens of `changes`, then writes one new version of the Vault secret
/// with every hardened group's token (groups no longer hardened dropped, their tokens revoked
/// after the write) and destroys the older versions. Should the write fail, GitLab holds tokens Vault lacks: the next run sees that and
/// rotates them.
pub async fn apply(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    s: &Settings,
    changes: &[(String, PromoteTokenChange)],
) -> anyhow::Result<()> {
    let mut kept = stored_tokens(vault).await?;
    let existing = vault
        .kv2_metadata(KV_MOUNT, KV_READINESS_CREDENTIALS)
        .await?;
    let read_version = existing.as_ref().map_or(0, |m| m.current_version);
    let mut meta: BTreeMap<String, String> =
        existing.map(|m| m.custom_metadata).unwrap_or_default();
    // Groups no longer hardened: their tokens leave the secret and are revoked after the write.
    let dropped: Vec<(String, u64)> = meta
        .iter()
        .filter_map(|(k, v)| {
            let group = k.strip_prefix("token-id:")?;
            if s.readiness_groups.iter().any(|g| g == group) {
                return None;
            }
            Some((group.to_owned(), v.parse().ok()?))
        })
        .collect();
    kept.retain(|group, _| s.readiness_groups.contains(group));
    // A token id is recorded only for a token the data holds.
    meta.retain(|k, _| {
        k.strip_prefix("token-id:")
            .is_none_or(|g| kept.contains_key(g))
    });
    let expires_at = dates::format(dates::today() + i64::from(TOKEN_DAYS));
    for (group_path, change) in changes {
        let group = gitlab.group(group_path).await?.ok_or_else(|| Error::Precondition {
            operation: format!("creating group access token {TOKEN_NAME} of {group_path}"),
            message: format!(
                "GitLab has no group {group_path}: phase 12 (gitlab-harden) creates the hardened groups; run it first"
            ),
        })?;
        let holder = TokenHolder::Group(group.id);
        let token = match change {
            PromoteTokenChange::Create => {
                gitlab
                    .create_access_token(
                        holder,
                        TOKEN_NAME,
                        TOKEN_SCOPES,
                        access::MAINTAINER,
                        &expires_at,
                    )
                    .await?
            }
            PromoteTokenChange::Rotate { token_id, .. } => {
                gitlab
                    .rotate_access_token(holder, *token_id, &expires_at)
                    .await?
            }
        };
        let secret = token.token.as_ref().ok_or_else(|| Error::Precondition {
            operation: format!("storing group access token {TOKEN_NAME} of {group_path}"),
            message: "GitLab's answer carried no token: rerun to rotate it".into(),
        })?;
        redact::register(secret.expose_secret());
        kept.insert(group_path.clone(), secret.expose_secret().to_owned());
        meta.insert(token_id_key(group_path), token.id.to_string());
    }
    meta.insert("managed-by".into(), "cicd-buildout/obs-setup".into());
    meta.insert("token-name".into(), TOKEN_NAME.into());
    meta.insert("scopes".into(), TOKEN_SCOPES.join(","));
    let data: BTreeMap<String, String> = [(
        READINESS_GITLAB_TOKENS_KEY.to_owned(),
        serde_json::to_string(&kept)?,
    )]
    .into();
    // Check-and-set on the version read: a concurrent run cannot lose a group's token.
    vault
        .kv2_put_cas(
            KV_MOUNT,
            KV_READINESS_CREDENTIALS,
            &data,
            &meta,
            u32::try_from(read_version).unwrap_or(u32::MAX),
        )
        .await?;
    let version = vault
        .kv2_metadata(KV_MOUNT, KV_READINESS_CREDENTIALS)
        .await?
        .map_or(0, |m| m.current_version);
    let older: Vec<u64> = (1..version).collect();
    vault
        .kv2_destroy_versions(KV_MOUNT, KV_READINESS_CREDENTIALS, &older)
        .await?;
    // After the write: should a revoke fail, the secret no longer names the token, and GitLab
    // ends it at its expiry (at most 90 days).
    for (group_path, token_id) in dropped {
        if let Some(group) = gitlab.group(&group_path).await? {
            gitlab
                .revoke_access_token(TokenHolder::Group(group.id), token_id)
                .await?;
        }
    }
    Ok(())
}

/// The group tokens Vault's data holds (group → token), registered for redaction; an error when
/// the key is not a JSON object of strings (a hand edit), so that nothing is dropped silently.
async fn stored_tokens(vault: &VaultClient) -> anyhow::Result<BTreeMap<String, String>> {
    let data = vault
        .kv2_read(KV_MOUNT, KV_READINESS_CREDENTIALS)
        .await?
        .unwrap_or_default();
    let Some(value) = data.get(READINESS_GITLAB_TOKENS_KEY) else {
        return Ok(BTreeMap::new());
    };
    let tokens: BTreeMap<String, String> = value
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "Vault {KV_MOUNT}/{KV_READINESS_CREDENTIALS} key {READINESS_GITLAB_TOKENS_KEY} is not a JSON object of group → token (edited by hand?): delete the secret (vault kv metadata delete {KV_MOUNT}/{KV_READINESS_CREDENTIALS}) and rerun phase 17, which rotates every group's token into it"
            )
        })?;
    for token in tokens.values() {
        redact::register(token);
    }
    Ok(tokens)
}
