//! What phase 16 wants, as data (no I/O): the security runner (plan §3.1) and the values of the
//! four runner pools, its Argo CD Application and runner-token `ExternalSecret`, the runner egress
//! policy (§3.5), Harbor's scanning, gate, allowlist and alerts (§3.3), and the image-signing
//! public key with the verify-images admission policy (§5.2).

use std::collections::BTreeMap;

use anyhow::Context as _;
use common::kube::owned_labels;
use serde_json::{Value, json};

use crate::settings::Settings;

/// The Vault KV v2 mount (phase 13's contract).
pub const KV_MOUNT: &str = "kv";
/// Where the security runner's authentication token lives in Vault (mount `kv`).
pub const RUNNER_TOKEN_PATH: &str = "ci/runners/security";
/// The key of the token in that secret (also the key of the Kubernetes Secret).
pub const RUNNER_TOKEN_KEY: &str = "runner-token";
/// Custom metadata key tying the stored token to the runner it belongs to.
pub const RUNNER_ID_METADATA: &str = "gitlab-runner-id";
/// Marks KV secrets this phase writes.
pub const MANAGED_BY: &str = "cicd-buildout/security-setup";
/// Phase 13's transit mount and signing key (vault-cicd/src/desired.rs).
pub const TRANSIT_MOUNT: &str = "transit";
pub const SIGNING_KEY: &str = "ci-signing-key";
/// The `cicd-buildout/phase` label value.
pub const PHASE_LABEL: &str = "16";
/// The Harbor webhook policy this phase owns in each scanned project.
pub const WEBHOOK_POLICY_NAME: &str = "security-alerts-mattermost";
/// Harbor events that reach Mattermost.
pub const WEBHOOK_EVENTS: &[&str] = &["SCANNING_COMPLETED", "SCANNING_FAILED"];
/// The CRDs the optional objects need.
pub const CILIUM_CRD: &str = "ciliumnetworkpolicies.cilium.io";
pub const KYVERNO_CRD: &str = "clusterpolicies.kyverno.io";
pub const ESO_CRD: &str = "externalsecrets.external-secrets.io";
pub const ARGOCD_APPLICATION_CRD: &str = "applications.argoproj.io";
/// Names of the Kubernetes objects.
pub const RUNNER_TOKEN_SECRET: &str = "security-runner-token";
pub const RUNNER_APPLICATION: &str = "gitlab-runner-security";
pub const COSIGN_CONFIGMAP: &str = "cosign-public-key";
pub const COSIGN_CONFIGMAP_KEY: &str = "cosign.pub";
/// The repository files, as data.
pub const VERIFY_IMAGES_FILE: &str = "security-setup/policies/verify-images.yaml";
pub const VERIFY_IMAGES_POLICY: &str = include_str!("../policies/verify-images.yaml");
pub const EGRESS_POLICY_NAME: &str = "gitlab-runner-egress";

/// One runner pool of plan §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub name: &'static str,
    pub tags: &'static [&'static str],
    /// `harvester-pool` node label.
    pub node_pool: &'static str,
    /// Job pod requests and limits: (cpu, memory).
    pub requests: (&'static str, &'static str),
    pub limits: (&'static str, &'static str),
    /// Runner manager replicas (HPA min, max).
    pub replicas: (u32, u32),
    /// The chart values, `runners/<name>.values.yaml`.
    pub values: &'static str,
}

pub const POOLS: &[Pool] = &[
    Pool {
        name: "shared",
        tags: &["shared", "general"],
        node_pool: "general",
        requests: ("2", "4Gi"),
        limits: ("4", "8Gi"),
        replicas: (3, 10),
        values: include_str!("../runners/shared.values.yaml"),
    },
    Pool {
        name: "build",
        tags: &["build", "docker", "kaniko"],
        node_pool: "compute",
        requests: ("4", "8Gi"),
        limits: ("8", "16Gi"),
        replicas: (2, 8),
        values: include_str!("../runners/build.values.yaml"),
    },
    Pool {
        name: "security",
        tags: &["security", "trivy", "semgrep", "gitleaks"],
        node_pool: "general",
        requests: ("2", "4Gi"),
        limits: ("4", "8Gi"),
        replicas: (1, 4),
        values: include_str!("../runners/security.values.yaml"),
    },
    Pool {
        name: "test",
        tags: &["test", "acceptance", "k6"],
        node_pool: "general",
        requests: ("2", "4Gi"),
        limits: ("4", "8Gi"),
        replicas: (2, 6),
        values: include_str!("../runners/test.values.yaml"),
    },
];

/// The pool this phase deploys.
pub fn security_pool() -> &'static Pool {
    POOLS
        .iter()
        .find(|p| p.name == "security")
        .expect("the security pool is in POOLS")
}

// ----- GitLab runner --------------------------------------------------------------------------

/// The runner attributes this phase owns, as `GET /runners/:id` shows them.
pub fn runner_view(s: &Settings) -> Value {
    let mut tags: Vec<&str> = security_pool().tags.to_vec();
    tags.sort_unstable();
    json!({"description": s.runner_description, "tag_list": tags, "run_untagged": false, "locked": true, "paused": false})
}

/// `POST /user/runners` body for the group runner.
pub fn runner_create_body(s: &Settings, group_id: u64) -> Value {
    json!({
        "runner_type": "group_type",
        "group_id": group_id,
        "description": s.runner_description,
        "tag_list": security_pool().tags,
        "run_untagged": false,
        "locked": true,
        "paused": false,
        "access_level": "not_protected",
    })
}

// ----- Harbor ---------------------------------------------------------------------------------

/// Project metadata this phase owns (Harbor keeps them as strings). Phase 14 owns the rest
/// (`public`, `retention_id`); both set `auto_scan` to `true` for these projects.
pub fn project_metadata(s: &Settings) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("auto_scan", "true".to_owned()),
        ("prevent_vul", s.prevent_vulnerable.to_string()),
        ("severity", s.severity_gate.clone()),
        ("reuse_sys_cve_allowlist", "true".to_owned()),
    ])
}

/// The scan-all `Schedule` body.
pub fn scan_all_schedule(s: &Settings) -> Value {
    json!({"schedule": {"type": s.scan_schedule.kind, "cron": s.scan_schedule.cron}})
}

/// The part of a `Schedule` this phase compares.
pub fn schedule_view(schedule: &Value) -> Value {
    let kind = schedule["schedule"]["type"].as_str().unwrap_or("None");
    let cron = if kind == "None" {
        ""
    } else {
        schedule["schedule"]["cron"].as_str().unwrap_or_default()
    };
    json!({"type": kind, "cron": cron})
}

/// The system `CVEAllowlist` body (never expires).
pub fn cve_allowlist(s: &Settings) -> Value {
    json!({"items": s.cve_allowlist.iter().map(|id| json!({"cve_id": id})).collect::<Vec<_>>(), "expires_at": null})
}

/// Sorted CVE ids of an allowlist.
pub fn allowlist_ids(allowlist: &Value) -> Vec<String> {
    let mut ids: Vec<String> = allowlist["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["cve_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The webhook policy (`WebhookPolicy`) that sends scan results to Mattermost (Slack format).
pub fn webhook_policy(address: &str) -> Value {
    json!({
        "name": WEBHOOK_POLICY_NAME,
        "description": "Scan results to Mattermost #security-alerts (cicd-buildout phase 16)",
        "enabled": true,
        "event_types": WEBHOOK_EVENTS,
        "targets": [{"type": "slack", "address": address, "skip_cert_verify": false}],
    })
}

/// The fields of a webhook policy this phase compares (the address is a secret: compared, never shown).
pub fn webhook_view(policy: &Value) -> Value {
    let mut events: Vec<&str> = policy["event_types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    events.sort_unstable();
    let target = &policy["targets"][0];
    json!({
        "enabled": policy["enabled"].as_bool().unwrap_or(false),
        "event_types": events,
        "targets": policy["targets"].as_array().map_or(0, Vec::len),
        "type": target["type"],
        "address": target["address"],
        "skip_cert_verify": target["skip_cert_verify"].as_bool().unwrap_or(false),
    })
}

// ----- Kubernetes -----------------------------------------------------------------------------

/// The security pool's chart values with the platform's GitLab URL and the token Secret.
pub fn security_values(s: &Settings) -> anyhow::Result<Value> {
    let mut values: Value = serde_saphyr::from_str(security_pool().values)
        .context("parsing security-setup/runners/security.values.yaml")?;
    values["gitlabUrl"] = format!("{}/", s.gitlab_url).into();
    values["runners"]["secret"] = RUNNER_TOKEN_SECRET.into();
    let config = values["runners"]["config"]
        .as_str()
        .unwrap_or_default()
        .replace(
            "namespace = \"gitlab-runners\"",
            &format!("namespace = \"{}\"", s.runner_namespace),
        );
    values["runners"]["config"] = config.into();
    Ok(values)
}

/// The `ExternalSecret` that materialises the runner token (from Vault) as the Secret the chart reads
/// (`runner-token`, and an empty `runner-registration-token` the chart still expects).
pub fn runner_token_external_secret(s: &Settings) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": RUNNER_TOKEN_SECRET, "namespace": s.runner_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault-backend"},
            "target": {
                "name": RUNNER_TOKEN_SECRET,
                "creationPolicy": "Owner",
                "template": {
                    "engineVersion": "v2",
                    // `{{ "" }}` renders empty; a literal "" would read as null on kube-apiserver 1.20.
                    "data": {"runner-token": "{{ .token }}", "runner-registration-token": "{{ \"\" }}"},
                },
            },
            "data": [{"secretKey": "token", "remoteRef": {"key": RUNNER_TOKEN_PATH, "property": RUNNER_TOKEN_KEY}}],
        },
    })
}

/// The Argo CD Application that deploys the security pool with the gitlab-runner chart.
pub fn runner_application(s: &Settings, argocd_namespace: &str) -> anyhow::Result<Value> {
    Ok(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": RUNNER_APPLICATION, "namespace": argocd_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "project": "platform",
            "source": {
                "repoURL": "https://charts.gitlab.io",
                "chart": "gitlab-runner",
                "targetRevision": s.chart_version,
                "helm": {"releaseName": RUNNER_APPLICATION, "valuesObject": security_values(s)?},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": s.runner_namespace},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["ServerSideApply=true"]},
        },
    }))
}

/// Plan §3.5: runner pods reach Harbor, Vault, GitLab, the package registries (by name) and DNS
/// (which `toFQDNs` needs: Cilium learns the names' addresses from the DNS answers it proxies).
pub fn runner_egress_policy(s: &Settings) -> Value {
    let to =
        |name: &str| json!({"toEndpoints": [{"matchLabels": {"app.kubernetes.io/name": name}}]});
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": EGRESS_POLICY_NAME, "namespace": s.runner_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "description": "GitLab runners reach only Harbor, Vault, GitLab and the package registries (plan §3.5)",
            "endpointSelector": {"matchLabels": {"app": "gitlab-runner"}},
            "egress": [
                to("harbor"),
                to("vault"),
                to("gitlab"),
                {
                    "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}}],
                    "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}],
                },
                {
                    "toFQDNs": [
                        {"matchPattern": "*.golang.org"},
                        {"matchPattern": "*.npmjs.org"},
                        {"matchPattern": "*.pypi.org"},
                        {"matchName": "registry.npmjs.org"},
                    ],
                    "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
                },
            ],
        },
    })
}

/// The `ConfigMap` with the signing key's public half (cosign's `--key` for `cosign verify`).
pub fn cosign_configmap(s: &Settings, public_key: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": COSIGN_CONFIGMAP, "namespace": s.cosign_namespace, "labels": owned_labels(PHASE_LABEL),
                     "annotations": {"cicd.platform/source": format!("vault {TRANSIT_MOUNT}/keys/{SIGNING_KEY}")}},
        "data": {COSIGN_CONFIGMAP_KEY: public_key},
    })
}

fn substitute(value: &mut Value, vars: &[(&str, &str)]) {
    match value {
        Value::String(text) => {
            for (name, with) in vars {
                *text = text.replace(&format!("${{{name}}}"), with);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, vars)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, vars)),
        _ => {}
    }
}

/// `policies/verify-images.yaml` with the registry and the public key rendered in.
pub fn verify_images_policy(s: &Settings, public_key: &str) -> anyhow::Result<Value> {
    let mut policy: Value = serde_saphyr::from_str(VERIFY_IMAGES_POLICY)
        .context("parsing policies/verify-images.yaml")?;
    substitute(
        &mut policy,
        &[
            ("HARBOR_REGISTRY", &s.harbor_registry),
            ("COSIGN_PUBLIC_KEY", public_key),
        ],
    );
    policy["metadata"]["labels"] = owned_labels(PHASE_LABEL);
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            runner_group: "platform_services".into(),
            runner_description: "security-runners".into(),
            runner_namespace: "gitlab-runners".into(),
            chart_version: "0.71.0".into(),
            scan_projects: vec!["platform-services".into(), "application-services".into()],
            scan_schedule: crate::settings::ScanSchedule::parse("daily").unwrap(),
            prevent_vulnerable: true,
            severity_gate: "critical".into(),
            cve_allowlist: vec!["CVE-2024-0001".into()],
            mattermost_url: None,
            mattermost_vault_path: "ci/mattermost-webhook".into(),
            cosign_namespace: "gitlab-runners".into(),
            gitlab_url: "https://gitlab.example.com".into(),
            harbor_registry: "harbor.example.com".into(),
        }
    }

    /// Every values file says what the §3.1 table (POOLS) says: node pool, requests, limits,
    /// replicas, non-root, never privileged.
    #[test]
    fn pool_values_follow_the_plan_table() {
        for pool in POOLS {
            let values: Value = serde_saphyr::from_str(pool.values).unwrap();
            let config = values["runners"]["config"].as_str().unwrap();
            for needle in [
                "executor = \"kubernetes\"".to_owned(),
                "privileged = false".to_owned(),
                "run_as_non_root = true".to_owned(),
                format!("cpu_request = \"{}\"", pool.requests.0),
                format!("memory_request = \"{}\"", pool.requests.1),
                format!("cpu_limit = \"{}\"", pool.limits.0),
                format!("memory_limit = \"{}\"", pool.limits.1),
                format!("\"harvester-pool\" = \"{}\"", pool.node_pool),
            ] {
                assert!(config.contains(&needle), "{}: {needle}", pool.name);
            }
            assert!(!config.contains("privileged = true"), "{}", pool.name);
            assert_eq!(values["nodeSelector"]["harvester-pool"], pool.node_pool);
            assert_eq!(values["hpa"]["minReplicas"], pool.replicas.0);
            assert_eq!(values["hpa"]["maxReplicas"], pool.replicas.1);
            assert_eq!(values["securityContext"]["privileged"], false);
            assert_eq!(values["podSecurityContext"]["runAsNonRoot"], true);
            for tag in pool.tags {
                assert!(
                    pool.values.contains(tag),
                    "{}: tag {tag} documented",
                    pool.name
                );
            }
        }
        assert_eq!(POOLS.len(), 4);
    }

    #[test]
    fn the_application_carries_the_rendered_values() {
        let app = runner_application(&settings(), "argocd").unwrap();
        let values = &app["spec"]["source"]["helm"]["valuesObject"];
        assert_eq!(values["gitlabUrl"], "https://gitlab.example.com/");
        assert_eq!(values["runners"]["secret"], RUNNER_TOKEN_SECRET);
        assert_eq!(app["spec"]["source"]["targetRevision"], "0.71.0");
        assert_eq!(app["spec"]["project"], "platform");
    }

    #[test]
    fn the_policy_gets_the_registry_and_key() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let policy = verify_images_policy(&settings(), pem).unwrap();
        let rule = &policy["spec"]["rules"][0]["verifyImages"][0];
        assert_eq!(
            rule["imageReferences"],
            json!([
                "harbor.example.com/platform-services/*",
                "harbor.example.com/application-services/*"
            ])
        );
        assert_eq!(
            rule["attestors"][0]["entries"][0]["keys"]["publicKeys"],
            pem
        );
        assert!(!policy.to_string().contains("${"));
    }

    #[test]
    fn the_runner_is_tagged_and_never_runs_untagged_jobs() {
        let body = runner_create_body(&settings(), 7);
        assert_eq!(body["runner_type"], "group_type");
        assert_eq!(
            body["tag_list"],
            json!(["security", "trivy", "semgrep", "gitleaks"])
        );
        assert_eq!(body["run_untagged"], false);
    }
}
