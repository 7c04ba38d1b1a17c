//! The feature-flag auditor (plan §7.2, Option A; docs/cicd/adrs/011-feature-flags-vault-kv.md):
//! - its image's producer: the GitLab project `platform_services/feature-flags`, seeded from
//!   `services/feature-flags` like the collector's (its own lock file, `common` carried, the
//!   library pipeline, tagged [`RELEASE_TAG`]);
//! - the weekly `CronJob` in that project's `deploy/overlays/production`, deployed by the Argo CD
//!   Application `feature-flag-auditor` (project `platform`, namespace `OBS_NAMESPACE`);
//! - its Vault access: policy `feature-flag-auditor` (read and list every service's flags, nothing
//!   else) and the Kubernetes auth role of the same name, bound to the `CronJob`'s service account.
//!
//! The services' flag sidecars run the same image (`feature-flags serve`), each with its own
//! policy `feature-flags-<service>` (onboard-service).

use std::collections::BTreeMap;

use anyhow::Context as _;
use common::contract::{self, KV_MOUNT, PLATFORM_GROUP};
use seeded_projects::SourceTree;
use seeded_projects::seed::{self, Policy};
use serde_json::{Value, json};

use crate::settings::Settings;

/// The project's source tree (embedded by `seeded-projects`).
pub const SOURCE: SourceTree = seeded_projects::FEATURE_FLAGS;
/// Its release tag: the image the `CronJob` runs (the production overlay pins it) and the
/// services' flag sidecars run.
pub const RELEASE_TAG: &str = contract::FEATURE_FLAGS_RELEASE_TAG;
/// The `CronJob`, its service account, Vault policy and role, and the Application.
pub const AUDITOR: &str = "feature-flag-auditor";
/// The Kubernetes auth mount phase 13 enables.
pub const K8S_MOUNT: &str = contract::K8S_AUTH_MOUNT;
/// Placeholders of the project's `deploy/` files, filled in for this platform.
const REGISTRY_PLACEHOLDER: &str = "harbor.example.com";
const VAULT_ADDR_PLACEHOLDER: &str = "VAULT_ADDR_PLACEHOLDER";

/// Every file of the project as pushed: the standalone crate, and `deploy/` with this platform's
/// registry and Vault address.
pub fn files(s: &Settings) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = SOURCE
        .standalone_files()
        .context("rendering the feature-flags project")?;
    for (path, text) in &mut out {
        if path.starts_with("deploy/") {
            *text = text
                .replace(REGISTRY_PLACEHOLDER, &s.harbor_host)
                .replace(VAULT_ADDR_PLACEHOLDER, &s.vault_addr)
                .replace("newTag: v0.1.0", &format!("newTag: {RELEASE_TAG}"));
        }
    }
    Ok(out)
}

/// What phase 17 wants the project to be (its files follow this version).
pub fn wanted(s: &Settings) -> anyhow::Result<seed::Wanted> {
    SOURCE.require_lockfile()?;
    Ok(seed::Wanted {
        group: PLATFORM_GROUP.to_owned(),
        name: SOURCE.name.to_owned(),
        description: "Feature flags on Vault KV: the flag sidecar and the stale-flag auditor (managed by cicd-buildout phase 17)".to_owned(),
        files: files(s)?,
        tag: RELEASE_TAG.to_owned(),
        tag_message: format!("feature-flags {RELEASE_TAG}: the image the auditor and the flag sidecars run (cicd-buildout)"),
        commit_message: format!("feature-flags {RELEASE_TAG} (cicd-buildout phase 17)"),
        policy: Policy::Managed,
        approver_parent: s.approver_parent.clone(),
        // Its main pipeline ends in promote-artifact (operator pattern).
        promote_token: true,
    })
}

/// Where the auditor reads the Mattermost webhook (key `url`): the secret phase 16's alerts use
/// (`MATTERMOST_WEBHOOK_VAULT_PATH`'s default). The `CronJob` names the same path.
pub const MATTERMOST_WEBHOOK_PATH: &str = "ci/mattermost-webhook";

/// The auditor's Vault policy: every service's flags and the Mattermost webhook, read only.
pub fn auditor_policy() -> String {
    format!(
        "# The weekly stale-flag auditor (cicd-buildout phase 17): every service's flags, read-only,\n# and the webhook it posts to.\npath \"{KV_MOUNT}/data/feature-flags/*\" {{\n  capabilities = [\"read\"]\n}}\npath \"{KV_MOUNT}/metadata/feature-flags\" {{\n  capabilities = [\"list\"]\n}}\npath \"{KV_MOUNT}/metadata/feature-flags/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\npath \"{KV_MOUNT}/data/{MATTERMOST_WEBHOOK_PATH}\" {{\n  capabilities = [\"read\"]\n}}\n"
    )
}

/// The Kubernetes auth role's body: the `CronJob`'s service account in `OBS_NAMESPACE` only.
pub fn auditor_role(s: &Settings) -> Value {
    service_account_role(AUDITOR, &s.namespace, AUDITOR)
}

/// A Kubernetes auth role for one service account of one namespace, with one policy and short
/// tokens (phase 17's `CronJobs` log in once per run).
pub fn service_account_role(account: &str, namespace: &str, policy: &str) -> Value {
    json!({
        "bound_service_account_names": [account],
        "bound_service_account_namespaces": [namespace],
        "token_policies": [policy],
        "token_ttl": 600,
        "token_max_ttl": 900,
        // Only its own policy: not even Vault's `default` (token self-lookup and the like).
        "token_no_default_policy": true,
    })
}

/// Whether the live role grants what [`auditor_role`] says (Vault adds its own defaults).
pub fn role_matches(live: &Value, want: &Value) -> bool {
    [
        "bound_service_account_names",
        "bound_service_account_namespaces",
        "token_policies",
        "token_ttl",
        "token_max_ttl",
    ]
    .iter()
    .all(|k| live[*k] == want[*k])
}

/// The Argo CD Application that deploys the auditor from its project.
pub fn application(s: &Settings) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": AUDITOR, "namespace": s.argocd_namespace},
        "spec": {
            "project": "platform",
            "source": {
                // As phase 15 writes every repoURL: the `platform` AppProject admits
                // https://<GitLab host>/platform_services/*.
                "repoURL": format!("https://{}/{PLATFORM_GROUP}/{}.git", s.gitlab_host, SOURCE.name),
                "targetRevision": seed::BRANCH,
                "path": "deploy/overlays/production",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": s.namespace},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
    })
}

/// The crd of the Application.
pub const APPLICATION_CRD: &str = contract::ARGOCD_APPLICATION_CRD;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_production_overlay_pins_the_release_tag_the_project_is_tagged_with() {
        let s = Settings::example();
        let files = files(&s).unwrap();
        let production = &files["deploy/overlays/production/kustomization.yaml"];
        assert!(
            production.contains(&format!("newTag: {RELEASE_TAG}")),
            "{production}"
        );
        assert!(production.contains("newName: harbor.example.com/platform-services/feature-flags"));
        let cronjob = &files["deploy/base/cronjob.yaml"];
        assert!(
            cronjob.contains(&format!("value: {}", s.vault_addr))
                && !cronjob.contains("PLACEHOLDER")
        );
        assert!(cronjob.contains("schedule: \"0 9 * * 1\""));
        assert!(cronjob.contains(&format!("value: {MATTERMOST_WEBHOOK_PATH}")));
        assert!(files.contains_key("common/Cargo.toml") && files.contains_key("Cargo.lock"));
        assert!(files.keys().all(|p| !p.starts_with("tests/")));
        let ci = &files[".gitlab-ci.yml"];
        assert!(
            ci.contains("SERVICE_NAME: feature-flags")
                && ci.contains("templates/patterns/operator.yml")
        );
    }

    #[test]
    fn the_auditor_reads_flags_and_nothing_else() {
        let policy = auditor_policy();
        assert!(
            policy.contains("kv/data/feature-flags/*")
                && !policy.contains("\"update\"")
                && !policy.contains("kv/data/*")
        );
        let role = auditor_role(&Settings::example());
        assert_eq!(role["bound_service_account_names"], json!([AUDITOR]));
        assert_eq!(
            role["bound_service_account_namespaces"],
            json!(["monitoring"])
        );
        let mut live = role.clone();
        live["alias_name_source"] = json!("serviceaccount_uid");
        assert!(role_matches(&live, &role));
        live["token_policies"] = json!(["default", AUDITOR]);
        assert!(!role_matches(&live, &role));
    }
}
