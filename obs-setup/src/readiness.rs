//! The daily readiness report in the cluster (issue 21, docs/adr/0012):
//! - its image's producer: this repository, seeded as `platform_services/cicd-buildout`
//!   (`seeded_projects::this_repository`): its release tag pipeline builds the root `Dockerfile`
//!   (`cicd-readiness`) and pushes `<harbor>/platform-services/cicd-buildout:<tag>`;
//! - the `CronJob` and the exporter of its gauges, in that project's `deploy/overlays/production`,
//!   deployed by the Argo CD Application `cicd-readiness` into `OBS_NAMESPACE`;
//! - what that tree does not grant itself: the read-only `ClusterRole` `cicd-readiness` (Argo CD's
//!   and the Prometheus Operator's objects, CRDs; no Secret), `get`/`list` of `ConfigMaps` in
//!   `ARGOCD_NAMESPACE`, the exporter's `ServiceMonitor`, and `ConfigMap` `cicd-readiness-env`: the
//!   platform's non-secret settings, so the in-cluster run plans what the operator's run plans.

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
/// Where the `CronJob` keeps the last report (`cicd-readiness --write-configmap`).
pub const REPORT_CONFIGMAP: &str = "cicd-readiness-report";
/// The exporter's port (`cicd-readiness serve --listen`).
pub const EXPORTER_PORT: u16 = 9465;
/// The registry and tag the repository's overlays name, filled in for this platform.
const REGISTRY_PLACEHOLDER: &str = "harbor.example.com";

/// Settings never copied into the `CronJob`'s environment: credentials (the in-cluster run has
/// its own identity) and paths on the operator's machine.
const NOT_COPIED: &[&str] = &[
    env::CICD_ENV_FILE,
    env::CICD_PLATFORM_DIR,
    env::KUBECONFIG,
    env::VAULT_INIT_FILE,
    env::GITLAB_API_TOKEN_FILE,
    env::CICD_CA_BUNDLE,
    env::CICD_SANDBOX_DIR,
    env::CICD_SOURCE_DIR,
    env::CICD_READINESS_ATTESTATIONS,
];

/// Whether a setting is a credential by its name.
fn is_credential(name: &str) -> bool {
    ["TOKEN", "PASSWORD", "SECRET", "PRIVATE_KEY"]
        .iter()
        .any(|w| name.contains(w))
}

/// The `CronJob`'s environment: every documented setting the operator's run has (`env::ALL`),
/// credentials and local paths left out, the service URLs written out.
pub fn report_env(cfg: &common::config::PlatformConfig) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = env::ALL
        .iter()
        .filter(|name| !NOT_COPIED.contains(name) && !is_credential(name))
        .filter_map(|name| {
            cfg.environment()
                .get(name)
                .map(|v| ((*name).to_owned(), v.to_owned()))
        })
        // A value the redactor knows is a secret, whatever its name: never copied.
        .filter(|(_, v)| common::redact::redact(v) == *v)
        .collect();
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

/// What phase 17 wants the project to be: this version's files (the overlays' image pins
/// excepted, promotion owns them), tagged with the release tag production pins.
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
        policy: Policy::Managed,
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

/// What the report reads in Kubernetes, and nothing more: Argo CD's and Argo Rollouts' objects
/// (Applications, `ApplicationSets`, `AppProjects`, analysis templates), the Prometheus Operator's
/// rules and monitors, CRDs (the phases check them). No Secret, no write.
pub fn cluster_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": REPORT, "labels": labels()},
        "rules": [
            {"apiGroups": ["argoproj.io"], "resources": ["applications", "applicationsets", "appprojects", "clusteranalysistemplates", "analysistemplates", "rollouts", "analysisruns"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules", "servicemonitors", "podmonitors"], "verbs": ["get", "list"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]},
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

/// Argo CD's `ConfigMaps` (argocd-rbac-cm, argocd-cm, the service catalog), read only, in its
/// namespace alone.
pub fn argocd_reader(s: &Settings) -> [Value; 2] {
    let name = format!("{REPORT}-reader");
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": s.argocd_namespace, "labels": labels()},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": s.argocd_namespace, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": REPORT, "namespace": s.namespace}],
        }),
    ]
}

/// The `CronJob`'s settings (`envFrom`): no credential (see [`report_env`]).
pub fn env_configmap(s: &Settings) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ENV_CONFIGMAP, "namespace": s.namespace, "labels": labels()},
        "data": s.readiness_env,
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
        let [reader, _] = argocd_reader(&s);
        assert_eq!(reader["metadata"]["namespace"], json!(s.argocd_namespace));
        assert_eq!(reader["rules"][0]["resources"], json!(["configmaps"]));
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
        ])
        .unwrap();
        let vars = report_env(&cfg);
        assert_eq!(vars[env::OBS_NAMESPACE], "obs");
        assert_eq!(vars[env::GITLAB_URL], "https://gitlab.example.com");
        assert_eq!(vars[env::PROMETHEUS_URL], "https://prometheus.example.com");
        let text = format!("{vars:?}");
        for leaked in ["glpat-known-secret", "known-harbor-pw", ".kube/config"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }
}
