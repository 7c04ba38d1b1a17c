//! `vault-cicd doctor`: can External Secrets Operator really log in and read its paths? Each check
//! names the exact cause of the failures seen on the platform:
//! - "serviceaccount not found": the `ClusterSecretStore`'s `serviceAccountRef` has no namespace, so
//!   ESO looks for its service account in each `ExternalSecret`'s namespace (ESO CRD docs:
//!   "defaults to the namespace of the referent"), or ESO runs under another name.
//! - 403 "permission denied" at login: the `TokenReview` caller lacks `system:auth-delegator`, or
//!   the role binds other service-account names/namespaces, or Vault reaches another cluster.

use common::error::Error;
use serde::Serialize;
use serde_json::Value;

use crate::reconcile::VaultCicd;
use crate::settings::{K8S_MOUNT, KV_MOUNT, TokenReviewer};

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
    }
}

/// Runs every check; stops early only where later checks cannot mean anything.
pub async fn doctor(phase: &VaultCicd) -> anyhow::Result<Vec<Check>> {
    let s = &phase.settings;
    let (ns, sa) = (s.eso_namespace.as_str(), s.eso_service_account.as_str());
    let mut checks = Vec::new();

    let sa_exists = phase.kube.service_account_exists(ns, sa).await?;
    checks.push(check(
        "ESO service account exists",
        sa_exists,
        if sa_exists {
            format!("{ns}/{sa}")
        } else {
            format!("serviceaccount {ns}/{sa} not found: ESO is not installed yet (Argo CD Application external-secrets not synced) or runs under another name (set ESO_NAMESPACE / ESO_SERVICE_ACCOUNT)")
        },
    ));

    // Both stores log in as ESO's service account (docs/adr/0008: the pull store reads only the
    // pull robot).
    let stores: Vec<Value> = phase
        .desired
        .kube_objects
        .iter()
        .filter(|(o, _)| o["kind"] == "ClusterSecretStore")
        .map(|(o, _)| o.clone())
        .collect();
    for css in &stores {
        let name = css["metadata"]["name"].as_str().unwrap_or_default();
        match phase.kube.get(css).await {
            Ok(Some(live)) => {
                let sa_ref =
                    &live["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"];
                let ok =
                    sa_ref["namespace"].as_str() == Some(ns) && sa_ref["name"].as_str() == Some(sa);
                checks.push(check(
                    &format!("ClusterSecretStore {name} names ESO's service account and namespace"),
                    ok,
                    if ok {
                        format!("serviceAccountRef {ns}/{sa}")
                    } else {
                        format!(
                            "serviceAccountRef is {sa_ref}: without namespace {ns}, ESO looks for the account in each ExternalSecret's namespace and fails with \"serviceaccount not found\"; run `vault-cicd apply`"
                        )
                    },
                ));
            }
            Ok(None) => checks.push(check(
                &format!("ClusterSecretStore {name} exists"),
                false,
                "not found: run `vault-cicd apply`",
            )),
            Err(e) => checks.push(check(
                &format!("ClusterSecretStore {name} exists"),
                false,
                e.to_string(),
            )),
        }
    }

    let role = phase
        .vault
        .read(
            "reading kubernetes role external-secrets",
            &format!("auth/{K8S_MOUNT}/role/external-secrets"),
        )
        .await?;
    let bound = |key: &str| -> Vec<String> {
        role.as_ref()
            .and_then(|r| r[key].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (names, namespaces) = (
        bound("bound_service_account_names"),
        bound("bound_service_account_namespaces"),
    );
    let role_ok = role.is_some()
        && (names.iter().any(|n| n == sa || n == "*"))
        && namespaces.iter().any(|n| n == ns || n == "*");
    checks.push(check(
        "Vault role external-secrets binds ESO's service account",
        role_ok,
        if role.is_none() {
            "role auth/kubernetes/role/external-secrets does not exist: run `vault-cicd apply`".to_owned()
        } else if role_ok {
            format!("binds {names:?} in {namespaces:?}")
        } else {
            format!("binds {names:?} in {namespaces:?} but ESO runs as {ns}/{sa}: logins fail with 403 \"service account name not authorized\"; run `vault-cicd apply`")
        },
    ));

    let reviewer = match s.vault_k8s_token_reviewer {
        TokenReviewer::Vault => (
            s.vault_k8s_namespace.clone(),
            s.vault_k8s_service_account.clone(),
        ),
        TokenReviewer::Client => (ns.to_owned(), sa.to_owned()),
    };
    let crb = phase
        .desired
        .kube_objects
        .iter()
        .find(|(o, _)| o["kind"] == "ClusterRoleBinding")
        .map_or(Value::Null, |(o, _)| o.clone());
    let delegated = phase.kube.get(&crb).await?.is_some_and(|live| {
        live["roleRef"]["name"] == "system:auth-delegator"
            && live["subjects"].as_array().is_some_and(|subs| {
                subs.iter().any(|x| {
                    x["name"] == reviewer.1.as_str() && x["namespace"] == reviewer.0.as_str()
                })
            })
    });
    checks.push(check(
        "TokenReview caller has system:auth-delegator",
        delegated,
        if delegated {
            format!("{}/{} may call TokenReview", reviewer.0, reviewer.1)
        } else {
            format!("{}/{} is not bound to system:auth-delegator: Vault's TokenReview is forbidden and every login fails with 403 \"permission denied\"; run `vault-cicd apply`", reviewer.0, reviewer.1)
        },
    ));

    if !sa_exists {
        return Ok(checks);
    }
    let token = phase.kube.token_request(ns, sa, &[], 600).await?;
    let login = phase
        .vault
        .login(
            K8S_MOUNT,
            "external-secrets",
            secrecy::ExposeSecret::expose_secret(&token),
        )
        .await;
    match login {
        Ok(login) => {
            checks.push(check(
                "ESO logs in through auth/kubernetes",
                true,
                format!("policies {:?}", login.policies),
            ));
            let as_eso = phase
                .vault
                .with_token(&login.token, "the ESO login token")?;
            // Only what the platform's ExternalSecrets read: CI credentials are meant to be out
            // of ESO's reach.
            for seed in phase.desired.kv_seeds.iter().filter(|s| s.eso_reads) {
                let path = format!("{KV_MOUNT}/data/{}", seed.path);
                let result = as_eso.kv2_read(KV_MOUNT, &seed.path).await;
                let (ok, detail) = match result {
                    Ok(Some(_)) => (true, "readable".to_owned()),
                    Ok(None) => (
                        false,
                        "not found: run `vault-cicd apply` to create it".to_owned(),
                    ),
                    Err(Error::Api { status: 403, .. }) => (
                        false,
                        "403: policy external-secrets does not grant read here".to_owned(),
                    ),
                    Err(e) => (false, e.to_string()),
                };
                checks.push(check(&format!("ESO reads {path}"), ok, detail));
            }
        }
        Err(e) => {
            let message = e.to_string();
            let cause = if message.contains("not authorized") {
                "the role's bound service-account names or namespaces do not include ESO's"
            } else if message.contains("permission denied") {
                "TokenReview was refused: the reviewer lacks system:auth-delegator, or Vault's kubernetes_host/CA points at another cluster"
            } else if message.contains("audience") {
                "the token's audience does not match the role's audience"
            } else {
                "see Vault's answer"
            };
            checks.push(check(
                "ESO logs in through auth/kubernetes",
                false,
                format!("{message} — cause: {cause}"),
            ));
        }
    }
    Ok(checks)
}
