//! The pull-request generator's GitLab token: a group access token with `read_api` only, on the
//! group that holds the delivered services, kept in Vault at
//! [`KV_GITLAB_GENERATOR_TOKEN`] for External Secrets (`argocd/argocd-gitlab-token`).
//!
//! Why its own token: the generator only lists merge requests, and the token sits in a Secret of
//! the `argocd` namespace, so it must not be the admin token the phases run with (issue 16). A
//! rotation (a renewal, or `--rotate`) uses GitLab's rotate call, which revokes the old token at
//! once; the older Vault versions are destroyed, so `?version=` cannot bring any token back (nor the
//! admin token an older phase 13 stored at this path).

use std::collections::BTreeMap;

use common::contract::{
    KV_GITLAB_GENERATOR_TOKEN, KV_MOUNT, PromoteTokenChange, PromoteTokenObserved,
    access_token_change,
};
use common::gitlab::{GitLabClient, TokenHolder, access};
use common::vault::VaultClient;
use common::{Error, dates, redact};
use secrecy::ExposeSecret;

use crate::settings::Settings;

/// The token's name in GitLab.
pub const GENERATOR_TOKEN_NAME: &str = "argocd-pr-generator";
/// The one scope the generator needs: reading merge requests.
pub const GENERATOR_TOKEN_SCOPES: &[&str] = &["read_api"];
/// Days a token is valid, and the days left at which a rerun renews it.
pub const GENERATOR_TOKEN_DAYS: u32 = 90;
pub const GENERATOR_TOKEN_RENEW_DAYS: u32 = 30;

/// The group whose access token reads every delivered service's merge requests: the deepest group
/// holding all of them (a group token reaches the group and everything below it).
pub fn token_group(settings: &Settings) -> anyhow::Result<String> {
    let namespaces: Vec<Vec<&str>> = settings
        .services
        .iter()
        .map(|s| {
            let mut parts: Vec<&str> = s.project_path.split('/').collect();
            parts.pop();
            parts
        })
        .collect();
    let Some(first) = namespaces.first() else {
        anyhow::bail!("no delivered service: the pull-request generator's token has no group");
    };
    let common_len = namespaces.iter().fold(first.len(), |len, ns| {
        first
            .iter()
            .zip(ns)
            .take(len)
            .take_while(|(a, b)| a == b)
            .count()
    });
    if common_len == 0 {
        let paths: Vec<&str> = settings
            .services
            .iter()
            .map(|s| s.project_path.as_str())
            .collect();
        anyhow::bail!(
            "the delivered services {} share no GitLab group: the pull-request generator's group access token can reach one group; keep them under one group",
            paths.join(", ")
        );
    }
    Ok(first[..common_len].join("/"))
}

/// What GitLab and Vault hold now.
#[derive(Debug, Clone, Default)]
pub struct GeneratorTokenObserved {
    /// The group's id; `None` when the group does not exist (an error at apply).
    pub group_id: Option<u64>,
    pub token: PromoteTokenObserved,
}

/// Reads the group's tokens and Vault's metadata (reads only).
pub async fn observe(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    group_path: &str,
) -> anyhow::Result<GeneratorTokenObserved> {
    let Some(group) = gitlab.group(group_path).await? else {
        return Ok(GeneratorTokenObserved::default());
    };
    let active = gitlab
        .access_tokens(TokenHolder::Group(group.id))
        .await?
        .into_iter()
        .filter(|t| t.name == GENERATOR_TOKEN_NAME && t.active && !t.revoked)
        .max_by_key(|t| t.id);
    let stored_token_id = vault
        .kv2_metadata(KV_MOUNT, KV_GITLAB_GENERATOR_TOKEN)
        .await?
        .filter(|m| !m.current_deleted)
        .and_then(|m| {
            m.custom_metadata
                .get("token-id")
                .and_then(|v| v.parse().ok())
        });
    Ok(GeneratorTokenObserved {
        group_id: Some(group.id),
        token: PromoteTokenObserved {
            active,
            stored_token_id,
        },
    })
}

/// The pure decision (see [`access_token_change`]).
pub fn change(
    o: &GeneratorTokenObserved,
    today: i64,
    rotate_now: bool,
) -> Option<PromoteTokenChange> {
    access_token_change(&o.token, today, GENERATOR_TOKEN_RENEW_DAYS, rotate_now)
}

/// One line for the plan.
pub fn describe(change: &PromoteTokenChange, group_path: &str) -> String {
    match change {
        PromoteTokenChange::Create => format!(
            "create group access token {GENERATOR_TOKEN_NAME} of {group_path} (Reporter, read_api, {GENERATOR_TOKEN_DAYS} days) → kv/{KV_GITLAB_GENERATOR_TOKEN}"
        ),
        PromoteTokenChange::Rotate { reason, .. } => format!(
            "rotate group access token {GENERATOR_TOKEN_NAME} of {group_path} ({reason}) → kv/{KV_GITLAB_GENERATOR_TOKEN}"
        ),
    }
}

/// Creates or rotates the token, stores it, then destroys the older Vault versions.
pub async fn apply(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    group_path: &str,
    change: &PromoteTokenChange,
) -> anyhow::Result<()> {
    let group = gitlab.group(group_path).await?.ok_or_else(|| Error::Precondition {
        operation: format!("creating group access token {GENERATOR_TOKEN_NAME}"),
        message: format!(
            "GitLab has no group {group_path}: phase 12 (gitlab-harden) creates the services' group; run it first"
        ),
    })?;
    let holder = TokenHolder::Group(group.id);
    let expires_at = dates::format(dates::today() + i64::from(GENERATOR_TOKEN_DAYS));
    let token = match change {
        PromoteTokenChange::Create => {
            gitlab
                .create_access_token(
                    holder,
                    GENERATOR_TOKEN_NAME,
                    GENERATOR_TOKEN_SCOPES,
                    access::REPORTER,
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
        operation: format!("storing group access token {GENERATOR_TOKEN_NAME} of {group_path}"),
        message: "GitLab's answer carried no token: rerun to rotate it".into(),
    })?;
    redact::register(secret.expose_secret());
    // Should the write below fail, GitLab holds a token Vault lacks: the next run sees that and
    // rotates it, revoking this one.
    let data: BTreeMap<String, String> =
        [("token".to_owned(), secret.expose_secret().to_owned())].into();
    let meta: BTreeMap<String, String> = [
        (
            "managed-by".to_owned(),
            "cicd-buildout/argo-delivery".to_owned(),
        ),
        ("token-id".to_owned(), token.id.to_string()),
        ("token-name".to_owned(), GENERATOR_TOKEN_NAME.to_owned()),
        ("scopes".to_owned(), GENERATOR_TOKEN_SCOPES.join(",")),
        ("group".to_owned(), group_path.to_owned()),
        (
            "expires-at".to_owned(),
            token.expires_at.clone().unwrap_or(expires_at),
        ),
    ]
    .into();
    vault
        .kv2_put(KV_MOUNT, KV_GITLAB_GENERATOR_TOKEN, &data, &meta)
        .await?;
    let current = vault
        .kv2_metadata(KV_MOUNT, KV_GITLAB_GENERATOR_TOKEN)
        .await?
        .map_or(0, |m| m.current_version);
    let older: Vec<u64> = (1..current).collect();
    vault
        .kv2_destroy_versions(KV_MOUNT, KV_GITLAB_GENERATOR_TOKEN, &older)
        .await?;
    Ok(())
}

/// A token created today and stored in Vault: nothing to do (for other modules' diff tests).
#[cfg(test)]
pub fn converged_for_tests(today: i64) -> GeneratorTokenObserved {
    GeneratorTokenObserved {
        group_id: Some(7),
        token: PromoteTokenObserved {
            active: Some(common::gitlab::ProjectAccessToken {
                id: 41,
                name: GENERATOR_TOKEN_NAME.into(),
                scopes: vec!["read_api".into()],
                access_level: access::REPORTER,
                expires_at: Some(dates::format(today + i64::from(GENERATOR_TOKEN_DAYS))),
                active: true,
                revoked: false,
                token: None,
            }),
            stored_token_id: Some(41),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::gitlab::ProjectAccessToken;

    fn settings_with(paths: &[&str]) -> Settings {
        let mut s = crate::diff_tests::settings();
        let template = s.services[0].clone();
        s.services = paths
            .iter()
            .map(|p| common::contract::DeliveredService {
                project_path: (*p).to_owned(),
                ..template.clone()
            })
            .collect();
        s
    }

    #[test]
    fn the_token_sits_on_the_deepest_group_holding_every_service() {
        assert_eq!(
            token_group(&settings_with(&[
                "platform_services/a",
                "platform_services/b"
            ]))
            .unwrap(),
            "platform_services"
        );
        assert_eq!(
            token_group(&settings_with(&["ps/team/a", "ps/team/b"])).unwrap(),
            "ps/team"
        );
        assert_eq!(
            token_group(&settings_with(&["ps/team/a", "ps/other/b"])).unwrap(),
            "ps"
        );
        let err = token_group(&settings_with(&["a/x", "b/y"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("share no GitLab group"), "{err}");
    }

    fn observed(active_days_left: Option<i64>, stored: bool, today: i64) -> GeneratorTokenObserved {
        GeneratorTokenObserved {
            group_id: Some(7),
            token: PromoteTokenObserved {
                active: active_days_left.map(|d| ProjectAccessToken {
                    id: 41,
                    name: GENERATOR_TOKEN_NAME.into(),
                    scopes: vec!["read_api".into()],
                    access_level: 20,
                    expires_at: Some(dates::format(today + d)),
                    active: true,
                    revoked: false,
                    token: None,
                }),
                stored_token_id: stored.then_some(41),
            },
        }
    }

    #[test]
    fn created_once_renewed_near_expiry_and_rotated_on_request() {
        let today = 20_000;
        assert_eq!(
            change(&observed(None, false, today), today, false),
            Some(PromoteTokenChange::Create)
        );
        assert_eq!(change(&observed(Some(80), true, today), today, false), None);
        assert!(matches!(
            change(&observed(Some(10), true, today), today, false),
            Some(PromoteTokenChange::Rotate { token_id: 41, .. })
        ));
        // An older phase 13 left the admin token there (no token-id): replaced.
        assert!(matches!(
            change(&observed(Some(80), false, today), today, false),
            Some(PromoteTokenChange::Rotate { token_id: 41, .. })
        ));
        let Some(PromoteTokenChange::Rotate { reason, .. }) =
            change(&observed(Some(80), true, today), today, true)
        else {
            panic!("--rotate rotates a fresh token");
        };
        assert!(reason.contains("--rotate"), "{reason}");
    }
}
