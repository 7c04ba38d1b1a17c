//! The daily readiness report in the cluster (issue 21, docs/adr/0012):
//! - its image's producer: this repository, seeded as `platform_services/cicd-buildout`
//!   (`seeded_projects::this_repository`): its release tag pipeline builds the root `Dockerfile`
//!   (`cicd-readiness`) and pushes `<harbor>/platform-services/cicd-buildout:<tag>`;
//! - the `CronJob` and the exporter of its gauges, in that project's `deploy/overlays/production`,
//!   deployed by the Argo CD Application `cicd-readiness` into `OBS_NAMESPACE`;
//! - what that tree does not grant itself: the read-only `ClusterRole` `cicd-readiness`
//!   (`ClusterAnalysisTemplates`) and the reader Roles in `ARGOCD_NAMESPACE` and `OBS_NAMESPACE`
//!   (named objects where Kubernetes allows it; no Secret), the exporter's `ServiceMonitor`, the
//!   empty report `ConfigMap`, and `ConfigMap` `cicd-readiness-env`: the platform's non-secret
//!   settings, so the in-cluster run plans what the operator's run plans.

use std::collections::BTreeMap;

use anyhow::Context as _;
use common::contract::PLATFORM_GROUP;
use common::env;
use seeded_projects::seed::{self, Policy};
use seeded_projects::this_repository;
use serde_json::{Value, json};

use crate::settings::Settings;

/// The `CronJob`, its service account, `ClusterRole`, Application.
pub const REPORT: &str = "cicd-readiness";
/// The exporter's Deployment, Service and `ServiceMonitor`.
pub const EXPORTER: &str = "cicd-readiness-exporter";
/// The platform's settings the `CronJob` reads (`envFrom`).
pub const ENV_CONFIGMAP: &str = "cicd-readiness-env";
/// The platform's private CA (key `ca.crt`), when the operator's run trusts one
/// (`CICD_CA_BUNDLE`): mounted by the `CronJob` at [`CA_MOUNT`].
pub const CA_CONFIGMAP: &str = "cicd-readiness-ca";
/// Where the `CronJob` mounts [`CA_CONFIGMAP`] (deploy/base/cronjob.yaml).
pub const CA_MOUNT: &str = "/etc/cicd-readiness/ca";
/// Where the `CronJob` keeps the last report (`cicd-readiness --write-configmap`).
pub const REPORT_CONFIGMAP: &str = "cicd-readiness-report";
/// The exporter's port (`cicd-readiness serve --listen`).
pub const EXPORTER_PORT: u16 = 9465;
/// The registry and tag the repository's overlays name, filled in for this platform.
const REGISTRY_PLACEHOLDER: &str = "harbor.example.com";

/// Settings never copied into the `CronJob`'s environment besides those [`is_credential`] and
/// [`is_local_path`] catch: URLs that carry a secret (a Mattermost webhook, a database DSN).
const NOT_COPIED: &[&str] = &[
    env::KUBECONFIG,
    env::CICD_CA_BUNDLE,
    env::CICD_READINESS_ATTESTATIONS,
    env::MATTERMOST_WEBHOOK_URL,
    env::DORA_STORE_URL,
];

/// Whether a setting is a credential by its name (`VAULT_K8S_TOKEN_REVIEWER` is a mode, kept).
fn is_credential(name: &str) -> bool {
    name != env::VAULT_K8S_TOKEN_REVIEWER
        && ["TOKEN", "PASSWORD", "SECRET", "PRIVATE_KEY"]
            .iter()
            .any(|w| name.contains(w))
}

/// Whether a setting names a file or folder on the operator's machine.
fn is_local_path(name: &str) -> bool {
    name.ends_with("_DIR") || name.ends_with("_FILE") || name.ends_with("_FILE_PATH")
}

/// Whether a value is a URL with credentials in it (`scheme://user:password@host`).
fn has_userinfo(value: &str) -> bool {
    value.split_once("://").is_some_and(|(_, rest)| {
        rest.split('/')
            .next()
            .is_some_and(|host| host.contains('@'))
    })
}

/// The `CronJob`'s environment: every documented setting the operator's run has (`env::ALL`),
/// credentials and local paths left out, the service URLs written out.
pub fn report_env(cfg: &common::config::PlatformConfig) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = env::ALL
        .iter()
        .filter(|name| !NOT_COPIED.contains(name) && !is_credential(name) && !is_local_path(name))
        .filter_map(|name| {
            cfg.environment()
                .get(name)
                .map(|v| ((*name).to_owned(), v.to_owned()))
        })
        // A value the redactor knows is a secret, or a URL with credentials: never copied.
        .filter(|(_, v)| common::redact::redact(v) == *v && !has_userinfo(v))
        .collect();
    // The report logs in to Vault as its own role to read its read-only GitLab tokens
    // (`crate::readiness_access`).
    out.insert(
        env::CICD_READINESS_VAULT_ROLE.to_owned(),
        common::contract::READINESS_VAULT_ROLE.to_owned(),
    );
    // The platform CA as the pod mounts it (its PEM goes to [`CA_CONFIGMAP`]).
    if cfg.ca_bundle.is_some() {
        out.insert(env::CICD_CA_BUNDLE.to_owned(), format!("{CA_MOUNT}/ca.crt"));
    }
    for (name, url) in [
        (env::GITLAB_URL, &cfg.gitlab_url),
        (env::VAULT_ADDR, &cfg.vault_addr),
        (env::HARBOR_URL, &cfg.harbor_url),
        (env::KEYCLOAK_URL, &cfg.keycloak_url),
        (env::ARGOCD_URL, &cfg.argocd_url),
        (env::PROMETHEUS_URL, &cfg.prometheus_url),
        (env::GRAFANA_URL, &cfg.grafana_url),
    ] {
        if let Some(url) = url {
            out.insert(name.to_owned(), url.clone());
        }
    }
    out
}

/// Every file of the project as pushed: this checkout's tracked files, the overlays naming this
/// platform's registry and the release tag.
pub fn files(s: &Settings) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = this_repository::files(&s.source_dir)
        .with_context(|| format!("reading {} to seed it", s.source_dir.display()))?;
    let uncommitted = this_repository::uncommitted(&s.source_dir);
    if !uncommitted.is_empty() {
        tracing::warn!(
            "{} file(s) of {} changed since its last commit are not pushed to {PLATFORM_GROUP}/{} (commit them): {}",
            uncommitted.len(),
            s.source_dir.display(),
            this_repository::NAME,
            uncommitted.join(", ")
        );
    }
    let tag = this_repository::release_tag();
    for (path, text) in &mut out {
        if path.starts_with("deploy/overlays/") {
            *text = text
                .replace(REGISTRY_PLACEHOLDER, &s.harbor_host)
                .replace("newTag: v0.1.0", &format!("newTag: {tag}"));
        }
    }
    Ok(out)
}

/// What phase 17 wants the project to be: this version's files and no other (the overlays' image
/// pins excepted, promotion owns them), tagged with the release tag production pins.
pub fn wanted(s: &Settings) -> anyhow::Result<seed::Wanted> {
    let tag = this_repository::release_tag();
    Ok(seed::Wanted {
        group: PLATFORM_GROUP.to_owned(),
        name: this_repository::NAME.to_owned(),
        description: "cicd-buildout, the CI/CD layer of the platform: its phases, and the image of the daily readiness report (managed by cicd-buildout phase 17)".to_owned(),
        files: files(s)?,
        tag: tag.clone(),
        tag_message: format!("cicd-buildout {tag}: the image of the daily readiness report (cicd-buildout)"),
        commit_message: format!("cicd-buildout {tag} (cicd-buildout phase 17)"),
        // A file deleted here must not linger there (and still compile in its pipeline).
        policy: Policy::Mirror,
        approver_parent: s.approver_parent.clone(),
        // Its main pipeline ends in promote-artifact (operator pattern).
        promote_token: true,
    })
}

/// The Argo CD Application that deploys the report from the project.
pub fn application(s: &Settings) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": REPORT, "namespace": s.argocd_namespace},
        "spec": {
            "project": "platform",
            "source": {
                "repoURL": format!("https://{}/{PLATFORM_GROUP}/{}.git", s.gitlab_host, this_repository::NAME),
                "targetRevision": seed::BRANCH,
                "path": "deploy/overlays/production",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": s.namespace},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
    })
}

/// The phase's ownership labels (it prunes what carries them) and the report's name.
fn labels() -> Value {
    let mut l = crate::desired::labels();
    l["app.kubernetes.io/name"] = json!(REPORT);
    l
}

/// The one cluster-scoped read: the `ClusterAnalysisTemplates` (the rollback row). No Secret, no
/// write; everything else the report reads is granted by name in its namespace ([`readers`]).
pub fn cluster_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": REPORT, "labels": labels()},
        "rules": [
            {"apiGroups": ["argoproj.io"], "resources": ["clusteranalysistemplates"], "verbs": ["get", "list"]},
        ],
    })
}

/// Binds [`cluster_role`] to the report's service account.
pub fn cluster_role_binding(s: &Settings) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": REPORT, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": REPORT},
        "subjects": [{"kind": "ServiceAccount", "name": REPORT, "namespace": s.namespace}],
    })
}

fn reader(s: &Settings, namespace: &str, rules: &Value) -> [Value; 2] {
    let name = format!("{REPORT}-reader");
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace, "labels": labels()},
            "rules": rules,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": REPORT, "namespace": s.namespace}],
        }),
    ]
}

/// What the report reads in its namespaces, by name where Kubernetes allows it:
/// - `ARGOCD_NAMESPACE`: Applications and `ApplicationSets` (listed: self-heal, per-MR
///   environments), `AppProjects` by name (compared with phase 15's), `ConfigMaps` argocd-rbac-cm
///   and the service catalog (not argocd-cm, which may hold OIDC settings);
/// - `OBS_NAMESPACE`: the `PrometheusRule` of the CI/CD alerts and the dashboard's `ConfigMap`.
pub fn readers(s: &Settings) -> Vec<Value> {
    let mut out = Vec::new();
    out.extend(reader(
        s,
        &s.argocd_namespace,
        &json!([
            {"apiGroups": ["argoproj.io"], "resources": ["applications", "applicationsets"], "verbs": ["get", "list"]},
            // Phase 15's AppProjects, compared with its desired ones (no list: read by name).
            {"apiGroups": ["argoproj.io"], "resources": ["appprojects"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["argocd-rbac-cm", common::contract::SERVICE_CATALOG], "verbs": ["get"]},
        ]),
    ));
    out.extend(reader(
        s,
        &s.namespace,
        &json!([
            {"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules"], "resourceNames": [crate::desired::ALERTS_RULE], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [crate::desired::DASHBOARD_CONFIGMAP], "verbs": ["get"]},
        ]),
    ));
    out
}

/// Writes the tier phase 17 read into [`ENV_CONFIGMAP`] (`CICD_GITLAB_TIER`): the report's
/// read-only tokens may not read GitLab's licence. Other objects are left as they are.
pub fn record_tier(object: &mut Value, tier: common::gitlab::Tier) {
    if object["kind"] == "ConfigMap" && object["metadata"]["name"] == ENV_CONFIGMAP {
        object["data"][env::CICD_GITLAB_TIER] = json!(tier.setting());
    }
}

/// The `CronJob`'s settings (`envFrom`): no credential (see [`report_env`]).
pub fn env_configmap(s: &Settings) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ENV_CONFIGMAP, "namespace": s.namespace, "labels": labels()},
        "data": s.readiness_env,
    })
}

/// The platform CA's `ConfigMap` (a CA certificate is public; only when one is configured).
pub fn ca_configmap(s: &Settings) -> Option<Value> {
    s.ca_pem.as_ref().map(|pem| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CA_CONFIGMAP, "namespace": s.namespace, "labels": labels()},
            "data": {"ca.crt": pem},
        })
    })
}

/// The report's `ConfigMap`, created empty: the `CronJob` may patch that one object by name, and
/// Kubernetes cannot limit `create` to a name. Its `data` is the `CronJob`'s (another field
/// manager), never this phase's drift.
pub fn report_configmap(s: &Settings) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": REPORT_CONFIGMAP, "namespace": s.namespace, "labels": labels()},
    })
}

/// The exporter's `ServiceMonitor` (the Prometheus Operator selects it by the monitor labels).
pub fn service_monitor(s: &Settings) -> Value {
    let mut l = labels();
    for (k, v) in &s.monitor_labels {
        l[k] = json!(v);
    }
    json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": EXPORTER, "namespace": s.namespace, "labels": l},
        "spec": {
            "selector": {"matchLabels": {"app": EXPORTER}},
            "namespaceSelector": {"matchNames": [s.namespace]},
            // A report changes once a day: a slow scrape is plenty.
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "5m", "scrapeTimeout": "10s"}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_reads_and_never_writes_outside_its_configmap() {
        let role = cluster_role();
        for rule in role["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(
                verbs.iter().all(|v| ["get", "list", "watch"].contains(v)),
                "{rule}"
            );
            assert!(
                !rule["resources"].to_string().contains("secrets"),
                "no Secret: {rule}"
            );
        }
        let s = Settings::example();
        let readers = readers(&s);
        for role in readers.iter().filter(|o| o["kind"] == "Role") {
            for rule in role["rules"].as_array().unwrap() {
                assert!(
                    rule["verbs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|v| v == "get" || v == "list"),
                    "{rule}"
                );
                // ConfigMaps only by name: argocd-cm and others stay unread.
                if rule["resources"] == json!(["configmaps"]) {
                    assert!(rule["resourceNames"].is_array(), "{rule}");
                }
            }
        }
        assert_eq!(
            readers
                .iter()
                .map(|o| o["metadata"]["namespace"].as_str().unwrap())
                .collect::<Vec<_>>(),
            [
                s.argocd_namespace.as_str(),
                &s.argocd_namespace,
                &s.namespace,
                &s.namespace
            ]
        );
        // The tree's own grant: patch of its one ConfigMap, by name.
        let tree = std::fs::read_to_string(
            seeded_projects::this_repository::built_from()
                .join("deploy/base/report-writer-role.yaml"),
        )
        .unwrap();
        assert!(tree.contains("resourceNames: [cicd-readiness-report]"));
        assert!(tree.contains("verbs: [get, patch]"));
    }

    #[test]
    fn the_cronjob_gets_settings_and_no_credential() {
        let cfg = common::config::PlatformConfig::example(&[
            (env::GITLAB_API_TOKEN, "glpat-known-secret"),
            (env::HARBOR_ADMIN_PASSWORD, "known-harbor-pw"),
            (env::OBS_NAMESPACE, "obs"),
            (env::KUBECONFIG, "/home/op/.kube/config"),
            (
                env::MATTERMOST_WEBHOOK_URL,
                "https://chat.example.com/hooks/known-hook-key",
            ),
            (
                env::DORA_STORE_URL,
                "postgres://dora:known-db-pw@db.example.com/dora",
            ),
            (env::CICD_TOOLS_DIR, "/home/op/tools"),
            (env::SOP_WIKI_DOCS_DIR, "/home/op/docs"),
            (env::VAULT_K8S_TOKEN_REVIEWER, "client"),
            (env::GITLAB_GROUPS, "platform_services,apps"),
        ])
        .unwrap();
        let vars = report_env(&cfg);
        assert_eq!(vars[env::OBS_NAMESPACE], "obs");
        assert_eq!(vars[env::GITLAB_URL], "https://gitlab.example.com");
        assert_eq!(vars[env::PROMETHEUS_URL], "https://prometheus.example.com");
        let text = format!("{vars:?}");
        // Settings the phases plan with are kept.
        assert_eq!(vars[env::VAULT_K8S_TOKEN_REVIEWER], "client");
        assert_eq!(vars[env::GITLAB_GROUPS], "platform_services,apps");
        for leaked in [
            "glpat-known-secret",
            "known-harbor-pw",
            ".kube/config",
            "known-hook-key",
            "known-db-pw",
            "/home/op",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }
}
