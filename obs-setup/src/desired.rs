//! What phase 17 wants, as data (no I/O): the DORA dashboard (plan §4.2), the CI/CD alert rules
//! (§4.4) plus the collector's own health, the runner log config for Alloy (§4.3) and the GitLab
//! group webhook, which phase 17 applies; and the collector's workload (§4.1), which it no longer
//! applies: [`crate::project`] writes it into the `deploy/` tree of the collector's GitLab project,
//! and Argo CD deploys it (phase 15's Applications, docs/adr/0008).
//!
//! DORA performance levels of the dashboard's colour bands. Source: DORA, "Accelerate State of
//! DevOps Report" 2021 (performance clusters, p. 11) and 2022, as republished at
//! <https://dora.dev/guides/dora-metrics-four-keys/>:
//! - Deployment frequency: Elite on demand (multiple per day), High between once a day and once a
//!   week, Medium between once a week and once a month, Low less than once a month. Panel unit is
//!   deployments per day: Low < 1/30, Medium ≥ 1/30 (0.0333), High ≥ 1/7 (0.1429), Elite ≥ 1.
//! - Lead time for changes: Elite < 1 hour, High < 1 week, Medium < 1 month, Low ≥ 1 month
//!   (steps at 3600 s, 604800 s, 2592000 s).
//! - Change failure rate: Elite 0–15 %, High 16–30 %, Medium up to 45 %, Low 46–60 % and more
//!   (2022 report's Low cluster); steps at 0.15, 0.30, 0.45.
//! - Time to restore service: Elite < 1 hour, High < 1 day, Medium < 1 week, Low ≥ 1 week (steps at
//!   3600 s, 86400 s, 604800 s).
//!
//! Colours: green Elite, yellow High, orange Medium, red Low.

use std::collections::BTreeMap;

use common::contract::PULL_SECRET;
use common::kube::owned_labels;
use serde_json::{Value, json};

use crate::settings::{Settings, Store};

/// The phase label value on every object.
pub const PHASE_LABEL: &str = "17";

/// The Grafana dashboard (plan §4.2: the eight panels and their expressions, unchanged).
pub const DASHBOARD_JSON: &str = include_str!("../dashboards/dora.json");
/// The rule groups of the `PrometheusRule` (plan §4.4 exactly, plus the collector's health).
pub const RULES_YAML: &str = include_str!("../rules/cicd-alerts.yaml");
/// Alloy config for GitLab Runner pod logs (plan §4.3).
pub const ALLOY_CONFIG: &str = include_str!("../alloy/cicd-runner-logs.alloy");

/// The dashboard's `ConfigMap` (the Grafana sidecar loads it by its label `grafana_dashboard`).
pub const DASHBOARD_CONFIGMAP: &str = "grafana-dashboard-dora";
/// The `PrometheusRule` of the CI/CD alerts.
pub const ALERTS_RULE: &str = "cicd-alerts";
/// The collector's name (Deployment, Service, `ServiceMonitor`, …).
pub const COLLECTOR: &str = "dora-collector";
/// The Secret the `ExternalSecret` makes and the collector reads.
pub const SECRET_NAME: &str = "dora-collector-secrets";
pub use common::contract::KV_MOUNT;
pub const KV_PATH: &str = common::contract::KV_DORA_COLLECTOR;
/// Key of the webhook secret (GitLab's `X-Gitlab-Token`, Argo Rollouts' bearer token).
pub const WEBHOOK_SECRET_KEY: &str = "webhook-secret";
/// Key of Argo Rollouts' own bearer token (never GitLab's: whoever reads the notification
/// Secret in the controller's namespace must not be able to forge GitLab events).
pub const ROLLOUTS_SECRET_KEY: &str = "rollouts-webhook-secret";
/// Key of Harbor's own bearer token (the scan webhook, phase 16).
pub const HARBOR_SECRET_KEY: &str = common::contract::DORA_HARBOR_SECRET_KEY;
/// One generated secret per webhook source, all in the collector's Vault secret.
pub const SOURCE_SECRET_KEYS: [&str; 3] =
    [WEBHOOK_SECRET_KEY, ROLLOUTS_SECRET_KEY, HARBOR_SECRET_KEY];
/// Key of the `PostgreSQL` URL (`OBS_DORA_POSTGRES=true`).
pub const DATABASE_URL_KEY: &str = "database-url";
/// Key of the optional GitLab token the collector heals missed webhooks with.
pub const GITLAB_TOKEN_KEY: &str = "gitlab-token";
/// Custom metadata of the Vault secret: `<hook id>:<fingerprint>` of the token last set on the hook.
pub const HOOK_TOKEN_METADATA: &str = "gitlab-hook-token";
pub const MANAGED_BY: &str = "cicd-buildout/obs-setup";
/// Name of the group hook (GitLab 17.1+ shows it; older versions ignore it).
pub const HOOK_NAME: &str = "dora-collector";
/// Port of the collector.
pub const PORT: u16 = 8080;
/// Mount of the collector's writable data directory.
pub const DATA_DIR: &str = "/var/lib/dora-collector";
/// The `SQLite` store's `PersistentVolumeClaim`.
pub const DATA_CLAIM: &str = "dora-collector-data";

/// The dashboard JSON.
pub fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD_JSON).expect("dashboards/dora.json is JSON")
}

/// The rule groups as the `PrometheusRule`'s `.spec`, with the configured stale-webhook time.
pub fn rule_groups(s: &Settings) -> Value {
    let mut spec: Value =
        serde_saphyr::from_str(RULES_YAML).expect("rules/cicd-alerts.yaml is YAML");
    for group in spec["groups"].as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if rule["alert"] == "DoraWebhooksStale" {
                rule["expr"] = json!(format!(
                    "time() - max(dora_collector_last_webhook_timestamp_seconds{{source=\"gitlab\"}}) > {}",
                    s.stale_after_seconds
                ));
            }
        }
    }
    spec
}

pub(crate) fn labels() -> Value {
    owned_labels(PHASE_LABEL)
}

/// Labels of the collector's workload. Not the phase's ownership labels: Argo CD owns these
/// objects, and a phase prunes only what carries its own labels.
fn collector_labels() -> Value {
    json!({"app.kubernetes.io/name": COLLECTOR, "app.kubernetes.io/part-of": "cicd-observability"})
}

fn selector() -> Value {
    json!({"app.kubernetes.io/name": COLLECTOR})
}

fn with_monitor_labels(s: &Settings) -> Value {
    let mut l = labels();
    for (k, v) in &s.monitor_labels {
        l[k] = json!(v);
    }
    l
}

/// The dashboard as a `ConfigMap` the Grafana sidecar loads (label `grafana_dashboard: "1"`).
pub fn dashboard_config_map(s: &Settings) -> Value {
    let mut l = labels();
    l["grafana_dashboard"] = json!("1");
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": DASHBOARD_CONFIGMAP, "namespace": s.namespace, "labels": l,
                     "annotations": {"grafana_folder": "CI/CD"}},
        "data": {"dora.json": DASHBOARD_JSON},
    })
}

pub fn prometheus_rule(s: &Settings) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": ALERTS_RULE, "namespace": s.namespace, "labels": with_monitor_labels(s)},
        "spec": rule_groups(s),
    })
}

pub fn service_monitor(s: &Settings) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": COLLECTOR, "namespace": s.namespace, "labels": with_monitor_labels(s)},
        "spec": {
            // job label = the Service's name: up{job="dora-collector"} in the health alerts.
            "selector": {"matchLabels": selector()},
            "namespaceSelector": {"matchNames": [s.namespace]},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}],
        },
    })
}

/// `dora-collector-secrets` from Vault `kv/monitoring/dora-collector`: every key there
/// (`webhook-secret`, and `database-url` / `gitlab-token` when present) becomes a Secret key.
///
/// The workload's objects carry no namespace: the overlays set it.
pub fn external_secret() -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": SECRET_NAME, "labels": collector_labels()},
        "spec": {
            "refreshInterval": "15m",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": common::contract::SECRET_STORE},
            "target": {"name": SECRET_NAME, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "dataFrom": [{"extract": {"key": KV_PATH}}],
        },
    })
}

/// The Deployment patch of staging and the ephemeral environments, which read no Vault secret:
/// the webhook secret is the pod's UID (downward API), the optional GitLab token is unset.
pub fn without_vault_secret() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": COLLECTOR},
        "spec": {"template": {"spec": {"containers": [{
            "name": "collector",
            "env": [
                // `secretKeyRef: null` removes the base's reference (strategic merge patch).
                {"name": "GITLAB_WEBHOOK_SECRET", "valueFrom": {"secretKeyRef": null, "fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "DORA_GITLAB_TOKEN", "$patch": "delete"},
                {"name": common::env::DORA_ROLLOUTS_WEBHOOK_SECRET, "$patch": "delete"},
                {"name": common::env::DORA_HARBOR_WEBHOOK_SECRET, "$patch": "delete"},
            ],
        }]}}},
    })
}

/// The `SQLite` store's volume (its name is the one earlier versions of phase 17 applied, so Argo
/// CD adopts the existing claim and its data).
pub fn data_claim() -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": DATA_CLAIM, "labels": collector_labels()},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })
}

fn secret_env(name: &str, key: &str, optional: bool) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key, "optional": optional}}})
}

/// The collector's Deployment: `SQLite` on a volume with one replica (Recreate: one writer), or
/// `PostgreSQL` with two replicas spread over nodes. The image is the kustomize image name
/// [`COLLECTOR`]: each overlay pins it (release tag, promoted digest, or the per-MR image).
pub fn deployment(s: &Settings) -> Value {
    let (replicas, strategy, store_env, data_volume) = match s.store {
        Store::Sqlite => (
            1,
            json!({"type": "Recreate"}),
            json!({"name": "DORA_STORE_URL", "value": format!("sqlite://{DATA_DIR}/dora.db")}),
            json!({"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}}),
        ),
        Store::Postgres => (
            2,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
            if s.postgres_external {
                secret_env("DORA_STORE_URL", DATABASE_URL_KEY, false)
            } else {
                crate::cnpg::store_env()
            },
            json!({"name": "data", "emptyDir": {"sizeLimit": "256Mi"}}),
        ),
    };
    let probe = |path: &str, period: u32, failures: u32| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": COLLECTOR, "labels": collector_labels()},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "strategy": strategy,
            "selector": {"matchLabels": selector()},
            "template": {
                "metadata": {"labels": collector_labels()},
                "spec": {
                    "automountServiceAccountToken": false,
                    // Phase 15's ClusterExternalSecret puts it in every namespace labelled
                    // cicd.platform/harbor-pull=true (the collector's included).
                    "imagePullSecrets": [{"name": PULL_SECRET}],
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"labelSelector": {"matchLabels": selector()}, "topologyKey": "kubernetes.io/hostname"},
                    }]}},
                    "containers": [{
                        "name": "collector",
                        "image": COLLECTOR,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/local/bin/dora-collector"],
                        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                        "env": [
                            secret_env("GITLAB_WEBHOOK_SECRET", WEBHOOK_SECRET_KEY, false),
                            secret_env(common::env::DORA_ROLLOUTS_WEBHOOK_SECRET, ROLLOUTS_SECRET_KEY, true),
                            secret_env(common::env::DORA_HARBOR_WEBHOOK_SECRET, HARBOR_SECRET_KEY, true),
                            store_env,
                            {"name": common::env::DORA_LISTEN_ADDR, "value": format!("0.0.0.0:{PORT}")},
                            {"name": "DORA_GITLAB_URL", "value": s.gitlab_internal_url},
                            secret_env("DORA_GITLAB_TOKEN", GITLAB_TOKEN_KEY, true),
                        ],
                        // Replaying the store can take a while on start: liveness waits for it.
                        "startupProbe": probe("/healthz", 5, 60),
                        "livenessProbe": probe("/healthz", 10, 3),
                        "readinessProbe": probe("/readyz", 5, 3),
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "data", "mountPath": DATA_DIR},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [data_volume, {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    })
}

/// The Service the `ServiceMonitor` selects by its labels (`app.kubernetes.io/name`).
pub fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": COLLECTOR, "labels": collector_labels()},
        "spec": {
            "selector": selector(),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

/// policy/v1 (Kubernetes 1.21+): one pod may go at a time (with one replica a drain is allowed).
pub fn pod_disruption_budget() -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": COLLECTOR, "labels": collector_labels()},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector()}},
    })
}

/// Ingress on 8080 only from Prometheus, GitLab and the ingress controller; egress only to DNS,
/// GitLab and (with `PostgreSQL`) port 5432. Every source names its namespace: Prometheus runs in
/// `OBS_NAMESPACE` wherever the collector runs (staging and MR environments are other namespaces).
pub fn network_policy(s: &Settings) -> Value {
    let ns = |name: &str| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}});
    let mut egress = vec![
        json!({"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}),
        json!({"to": [ns(&s.gitlab_namespace)],
               "ports": [{"protocol": "TCP", "port": 8181}, {"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 443}]}),
    ];
    if s.store == Store::Postgres {
        egress.push(json!({"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 5432}]}));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": COLLECTOR, "labels": collector_labels()},
        "spec": {
            "podSelector": {"matchLabels": selector()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.prometheus_namespace()}},
                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
                    ns(&s.gitlab_namespace),
                    ns(&s.ingress_namespace),
                    // Argo Rollouts' notifications (crate::rollouts_notifications).
                    ns(&s.rollouts_namespace),
                ],
                "ports": [{"protocol": "TCP", "port": PORT}],
            }],
            "egress": egress,
        },
    })
}

/// The public route of production: only the webhook endpoints and the readiness check, never
/// `/metrics`.
pub fn ingress(s: &Settings) -> Value {
    let backend = json!({"service": {"name": COLLECTOR, "port": {"name": "http"}}});
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": COLLECTOR, "labels": collector_labels()},
        "spec": {
            "ingressClassName": s.ingress_class,
            "rules": [{"host": s.webhook_host, "http": {"paths": [
                {"path": "/webhooks/", "pathType": "Prefix", "backend": backend},
                {"path": "/readyz", "pathType": "Exact", "backend": backend},
            ]}}],
        },
    })
}

/// The runner-log config as a `ConfigMap` for Alloy's config reloader.
pub fn alloy_config_map(s: &Settings) -> Value {
    let mut l = labels();
    l["app.kubernetes.io/component"] = json!("alloy-config");
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "alloy-cicd-runner-logs", "namespace": s.alloy_namespace, "labels": l},
        "data": {"cicd-runner-logs.alloy": ALLOY_CONFIG},
    })
}

pub const PROMETHEUS_RULE_CRD: &str = "prometheusrules.monitoring.coreos.com";
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// Every Kubernetes object the phase applies (the platform's monitoring configuration) with the
/// CRD it needs, in apply order. The collector's workload is not among them: see [`workload`].
pub fn objects(s: &Settings) -> Vec<(Value, Option<&'static str>)> {
    let mut objects = vec![
        (dashboard_config_map(s), None),
        (prometheus_rule(s), Some(PROMETHEUS_RULE_CRD)),
        (service_monitor(s), Some(SERVICE_MONITOR_CRD)),
        (alloy_config_map(s), None),
        (crate::rollouts_notifications::config_map(s), None),
        (
            crate::rollouts_notifications::external_secret(s),
            Some(common::contract::EXTERNAL_SECRET_CRD),
        ),
    ];
    // The feature-flag auditor, deployed by Argo CD from its project.
    objects.push((
        crate::flags::application(s),
        Some(crate::flags::APPLICATION_CRD),
    ));
    // The daily readiness report, deployed by Argo CD from this repository's project, and what
    // its tree does not grant itself.
    objects.extend([
        (
            crate::readiness::application(s),
            Some(crate::flags::APPLICATION_CRD),
        ),
        (crate::readiness::env_configmap(s), None),
        (crate::readiness::report_configmap(s), None),
        (crate::readiness::cluster_role(), None),
        (crate::readiness::cluster_role_binding(s), None),
        (
            crate::readiness::service_monitor(s),
            Some(SERVICE_MONITOR_CRD),
        ),
    ]);
    objects.extend(crate::readiness::readers(s).into_iter().map(|o| (o, None)));
    objects.extend(crate::readiness::ca_configmap(s).map(|o| (o, None)));
    // Vault outside the cluster reviews logins with the client's token: the auditor's and the
    // readiness report's accounts may then call TokenReview.
    if s.token_reviewer_client {
        for account in [crate::flags::AUDITOR, crate::readiness::REPORT] {
            objects.push((
                common::contract::token_reviewer_binding(
                    &format!("{account}-vault-login"),
                    &[(s.namespace.clone(), account.to_owned())],
                ),
                None,
            ));
        }
    }
    // The collector's own PostgreSQL, unless an external database is configured.
    if s.store == Store::Postgres && !s.postgres_external {
        objects.push((crate::cnpg::cluster(s), Some(crate::cnpg::CLUSTER_CRD)));
    }
    objects
}

/// The collector's workload as production runs it with the configured store, without a
/// namespace and without the Ingress (production's own): the `ExternalSecret`, the volume claim
/// (`SQLite` only), Deployment, Service, `PodDisruptionBudget` and `NetworkPolicy`. Argo CD
/// deploys it from the collector's project ([`crate::project`]).
pub fn workload(s: &Settings) -> Vec<Value> {
    let mut out = vec![external_secret()];
    if s.store == Store::Sqlite {
        out.push(data_claim());
    }
    out.extend([
        deployment(s),
        service(),
        pod_disruption_budget(),
        network_policy(s),
    ]);
    out
}

/// The hook fields this phase manages (`api/group_webhooks` "Add a group hook"), without the token.
pub fn hook_fields(s: &Settings) -> Value {
    json!({
        "url": s.webhook_url,
        "push_events": true,
        "merge_requests_events": true,
        "pipeline_events": true,
        "deployment_events": true,
        "enable_ssl_verification": true,
    })
}

/// The body of an add/edit: the managed fields, name, description and the token.
pub fn hook_body(s: &Settings, token: &str) -> Value {
    let mut body = hook_fields(s);
    body["name"] = json!(HOOK_NAME);
    body["description"] = json!("DORA metrics collector (managed by cicd-buildout phase 17)");
    body["token"] = json!(token);
    body
}

/// What the Vault metadata records of the token set on hook `hook_id`: the hook id and the first
/// 16 hex digits of the token's SHA-256 (the token is 256 random bits: the prefix reveals nothing
/// usable, and GitLab never returns the token itself to compare with).
pub fn token_fingerprint(hook_id: u64, token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let hex = hex(&digest.as_ref()[..8]);
    format!("{hook_id}:{hex}")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A new webhook secret: 32 bytes from the system's CSPRNG, hex-encoded.
pub fn generate_secret() -> anyhow::Result<String> {
    common::contract::generate_webhook_secret()
}

/// The metadata the Vault secret carries (`hook` = the fingerprint entry, when known).
pub fn secret_metadata(
    existing: &BTreeMap<String, String>,
    hook: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out = existing.clone();
    out.insert("managed-by".into(), MANAGED_BY.into());
    if let Some(hook) = hook {
        out.insert(HOOK_TOKEN_METADATA.into(), hook.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_expressions_are_the_dashboard_queries() {
        let d = dashboard();
        let exprs: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] != "row")
            .map(|p| p["targets"][0]["expr"].as_str().unwrap())
            .collect();
        // The plan's eight, then the readiness row's three (issue 21).
        assert_eq!(exprs.len(), 11);
        assert_eq!(
            exprs[0],
            "sum(increase(cicd_deployment_frequency_total{environment='production'}[24h]))"
        );
    }

    #[test]
    fn stale_time_is_configurable() {
        let mut s = Settings::example();
        s.stale_after_seconds = 3600;
        let text = rule_groups(&s).to_string();
        assert!(
            text.contains(
                r#"dora_collector_last_webhook_timestamp_seconds{source=\"gitlab\"}) > 3600"#
            ),
            "{text}"
        );
        assert_eq!(
            rule_groups(&Settings::example()),
            serde_saphyr::from_str::<Value>(RULES_YAML).unwrap(),
            "the defaults are the file"
        );
    }

    #[test]
    fn fingerprints_depend_on_hook_and_token() {
        let a = token_fingerprint(7, "secret-one");
        assert_eq!(a, token_fingerprint(7, "secret-one"));
        assert_ne!(a, token_fingerprint(8, "secret-one"));
        assert_ne!(a, token_fingerprint(7, "secret-two"));
        assert!(!a.contains("secret"));
        let s = generate_secret().unwrap();
        assert_eq!(s.len(), 64);
        assert_ne!(s, generate_secret().unwrap());
    }

    #[test]
    fn postgres_means_two_replicas_and_no_volume_claim() {
        let mut s = Settings::example();
        assert_eq!(deployment(&s)["spec"]["replicas"], 1);
        assert!(
            workload(&s)
                .iter()
                .any(|o| o["kind"] == "PersistentVolumeClaim")
        );
        s.store = Store::Postgres;
        let d = deployment(&s);
        assert_eq!(d["spec"]["replicas"], 2);
        let store_env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "DORA_STORE_URL")
            .unwrap()
            .clone();
        assert_eq!(
            store_env["valueFrom"]["secretKeyRef"],
            json!({"name": "dora-collector-pg-app", "key": "uri", "optional": false}),
            "the collector's own CloudNativePG cluster by default"
        );
        assert!(
            objects(&s)
                .iter()
                .any(|(o, crd)| o["kind"] == "Cluster" && *crd == Some(crate::cnpg::CLUSTER_CRD))
        );
        s.postgres_external = true;
        let external = deployment(&s).to_string();
        assert!(external.contains(DATABASE_URL_KEY), "{external}");
        assert!(!objects(&s).iter().any(|(o, _)| o["kind"] == "Cluster"));
        assert!(
            !workload(&s)
                .iter()
                .any(|o| o["kind"] == "PersistentVolumeClaim")
        );
    }

    #[test]
    fn the_phase_applies_monitoring_config_and_no_workload_of_its_own() {
        let kinds: Vec<String> = objects(&Settings::example())
            .iter()
            .map(|(o, _)| format!("{} {}", o["kind"], o["metadata"]["name"]))
            .collect();
        assert_eq!(
            kinds,
            [
                r#""ConfigMap" "grafana-dashboard-dora""#,
                r#""PrometheusRule" "cicd-alerts""#,
                r#""ServiceMonitor" "dora-collector""#,
                r#""ConfigMap" "alloy-cicd-runner-logs""#,
                r#""ConfigMap" "argo-rollouts-notification-configmap""#,
                r#""ExternalSecret" "argo-rollouts-notification-secret""#,
                // The auditor's Application: Argo CD deploys the CronJob from its project.
                r#""Application" "feature-flag-auditor""#,
                // The readiness report's Application (the CronJob and the exporter come from
                // this repository's project), and the grants and settings its tree does not own.
                r#""Application" "cicd-readiness""#,
                r#""ConfigMap" "cicd-readiness-env""#,
                r#""ConfigMap" "cicd-readiness-report""#,
                r#""ClusterRole" "cicd-readiness""#,
                r#""ClusterRoleBinding" "cicd-readiness""#,
                r#""ServiceMonitor" "cicd-readiness-exporter""#,
                r#""Role" "cicd-readiness-reader""#,
                r#""RoleBinding" "cicd-readiness-reader""#,
                r#""Role" "cicd-readiness-reader""#,
                r#""RoleBinding" "cicd-readiness-reader""#,
            ]
        );
        // The ServiceMonitor selects the Service of the workload by its labels.
        let selector = &service_monitor(&Settings::example())["spec"]["selector"]["matchLabels"];
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(&service()["metadata"]["labels"][key], value, "{key}");
        }
        for object in workload(&Settings::example()) {
            assert!(object["metadata"].get("namespace").is_none(), "{object}");
            assert!(
                object["metadata"]["labels"]
                    .get(common::kube::PHASE_LABEL)
                    .is_none(),
                "Argo CD owns {}: no phase label",
                object["kind"]
            );
        }
    }
}
