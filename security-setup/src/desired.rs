//! What phase 16 wants, as data (no I/O): the four runner pools of plan §3.1 (one GitLab group
//! runner each, their chart values, Argo CD Applications and runner-token `ExternalSecret`s), the
//! runner egress policy (§3.5), Harbor's scanning, gate, allowlist and alerts (§3.3), and the
//! image-signing public key with the verify-images admission policy (§5.2).

use std::collections::BTreeMap;

use anyhow::Context as _;
use common::kube::owned_labels;
use serde_json::{Value, json};

use crate::settings::Settings;

/// Where the pools' runner tokens live in Vault (mount `kv`): `ci/runners/<pool>`.
pub const RUNNER_TOKEN_PREFIX: &str = "ci/runners";
/// The key of the token in that secret (also the key of the Kubernetes Secret).
pub const RUNNER_TOKEN_KEY: &str = "runner-token";
/// Custom metadata key tying the stored token to the runner it belongs to.
pub const RUNNER_ID_METADATA: &str = "gitlab-runner-id";
/// Marks KV secrets this phase writes.
pub const MANAGED_BY: &str = "cicd-buildout/security-setup";
/// The `cicd-buildout/phase` label value.
pub const PHASE_LABEL: &str = "16";
/// The Harbor webhook policy this phase owns in each scanned project.
pub const WEBHOOK_POLICY_NAME: &str = "security-alerts-mattermost";
/// Harbor events that reach Mattermost.
pub const WEBHOOK_EVENTS: &[&str] = &["SCANNING_COMPLETED", "SCANNING_FAILED"];
/// The webhook policy that sends scan results to the DORA collector (`cicd_vulnerability_count`).
pub const DORA_WEBHOOK_POLICY_NAME: &str = "dora-collector-scans";
/// The CRDs the optional objects need.
pub const CILIUM_CRD: &str = "ciliumnetworkpolicies.cilium.io";
pub const KYVERNO_CRD: &str = "clusterpolicies.kyverno.io";
/// Names of the Kubernetes objects.
pub const COSIGN_CONFIGMAP: &str = "cosign-public-key";
pub const COSIGN_CONFIGMAP_KEY: &str = "cosign.pub";
/// The repository files, as data.
pub const VERIFY_IMAGES_FILE: &str = "security-setup/policies/verify-images.yaml";
pub const VERIFY_IMAGES_POLICY: &str = include_str!("../policies/verify-images.yaml");
pub const EGRESS_POLICY_NAME: &str = "gitlab-runner-egress";
pub const DEPLOY_EGRESS_POLICY_NAME: &str = "gitlab-runner-egress-deploy";
pub const TESTS_EGRESS_POLICY_NAME: &str = "gitlab-runner-egress-tests";
/// Job pod labels every pool's values set (`[runners.kubernetes.pod_labels]`): `app` is the
/// same for all pools, the pool label names the pool. The egress policy selects by both.
pub const JOB_POD_APP_LABEL: (&str, &str) = ("app", "gitlab-runner");
pub use common::contract::{
    ARGOCD_APPLICATION_CRD, EXTERNAL_SECRET_CRD, JOB_POD_POOL_LABEL, KV_MOUNT, SIGNING_KEY,
    TRANSIT_MOUNT,
};

/// One runner pool of plan §3.1: a GitLab group runner with its tags, deployed by the
/// gitlab-runner chart with `runners/<name>.values.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub name: &'static str,
    /// The runner's tags in GitLab: a tagged job runs here only when all its tags are among these.
    pub tags: &'static [&'static str],
    /// Whether the runner also picks jobs without tags (only `shared`, so a project's own
    /// untagged jobs always have a runner; ADR 0008, decision 8).
    pub run_untagged: bool,
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

/// The four pools of plan §3.1, in the order they are planned.
pub const POOLS: &[Pool] = &[
    Pool {
        name: "shared",
        tags: &["shared", "general"],
        run_untagged: true,
        node_pool: "general",
        requests: ("2", "4Gi"),
        limits: ("4", "8Gi"),
        replicas: (3, 10),
        values: include_str!("../runners/shared.values.yaml"),
    },
    Pool {
        name: "build",
        tags: &["build", "docker", "kaniko"],
        run_untagged: false,
        node_pool: "compute",
        requests: ("4", "8Gi"),
        limits: ("8", "16Gi"),
        replicas: (2, 8),
        values: include_str!("../runners/build.values.yaml"),
    },
    Pool {
        name: "security",
        tags: &["security", "trivy", "semgrep", "gitleaks"],
        run_untagged: false,
        node_pool: "general",
        requests: ("2", "4Gi"),
        limits: ("4", "8Gi"),
        replicas: (1, 4),
        values: include_str!("../runners/security.values.yaml"),
    },
    Pool {
        name: "test",
        tags: &["test", "acceptance", "k6"],
        run_untagged: false,
        node_pool: "general",
        requests: ("2", "4Gi"),
        limits: ("4", "8Gi"),
        replicas: (2, 6),
        values: include_str!("../runners/test.values.yaml"),
    },
];

impl Pool {
    /// Whether this pool's runner picks a job with these tags, by GitLab's rule: a tagged job
    /// only when every one of its tags is a tag of the runner (compared exactly); an untagged
    /// job only when the runner runs untagged jobs.
    pub fn serves(&self, job_tags: &[&str]) -> bool {
        if job_tags.is_empty() {
            self.run_untagged
        } else {
            job_tags.iter().all(|t| self.tags.contains(t))
        }
    }

    /// Where the runner's token lives in Vault (mount `kv`): `ci/runners/<name>`.
    pub fn token_path(&self) -> String {
        format!("{RUNNER_TOKEN_PREFIX}/{}", self.name)
    }

    /// The Kubernetes Secret (and its `ExternalSecret`) with the token: `<name>-runner-token`.
    pub fn token_secret(&self) -> String {
        format!("{}-runner-token", self.name)
    }

    /// The Argo CD Application (and Helm release): `gitlab-runner-<name>`.
    pub fn application(&self) -> String {
        format!("gitlab-runner-{}", self.name)
    }

    /// The values file in the repository.
    pub fn values_file(&self) -> String {
        format!("security-setup/runners/{}.values.yaml", self.name)
    }
}

/// The pool whose runner picks a job with these tags (GitLab's rule, [`Pool::serves`]); `None`
/// when no pool does, so such a job would wait for a runner forever. The pools' tags are
/// disjoint, so at most one pool serves a tagged job; only `shared` serves untagged jobs.
pub fn pool_serving(job_tags: &[&str]) -> Option<&'static Pool> {
    POOLS.iter().find(|pool| pool.serves(job_tags))
}

/// The pool called `name`.
pub fn pool(name: &str) -> Option<&'static Pool> {
    POOLS.iter().find(|p| p.name == name)
}

// ----- GitLab runners -------------------------------------------------------------------------

/// The runner attributes this phase owns, as `GET /runners/:id` shows them (tags sorted).
pub fn runner_view(s: &Settings, pool: &Pool) -> Value {
    let mut tags: Vec<&str> = pool.tags.to_vec();
    tags.sort_unstable();
    json!({"description": s.runner_description(pool), "tag_list": tags, "run_untagged": pool.run_untagged, "locked": true, "paused": false})
}

/// `POST /user/runners` body for the pool's group runner.
pub fn runner_create_body(s: &Settings, pool: &Pool, group_id: u64) -> Value {
    json!({
        "runner_type": "group_type",
        "group_id": group_id,
        "description": s.runner_description(pool),
        "tag_list": pool.tags,
        "run_untagged": pool.run_untagged,
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

/// The webhook policy that sends each finished scan to the DORA collector (Harbor "Default"
/// payload, `Authorization: Bearer <harbor-webhook-secret>`; docs/dora-collector.md).
pub fn dora_webhook_policy(address: &str, secret: &str) -> Value {
    json!({
        "name": DORA_WEBHOOK_POLICY_NAME,
        "description": "Scan results to the DORA collector's cicd_vulnerability_count (cicd-buildout phase 16)",
        "enabled": true,
        "event_types": ["SCANNING_COMPLETED"],
        "targets": [{
            "type": "http",
            "address": address,
            "auth_header": format!("Bearer {secret}"),
            "payload_format": "Default",
            "skip_cert_verify": false,
        }],
    })
}

/// The fields of the DORA policy this phase compares (the auth header is a secret: compared as a
/// fingerprint, never shown).
pub fn dora_webhook_view(policy: &Value) -> Value {
    let mut view = webhook_view(policy);
    let header = policy["targets"][0]["auth_header"]
        .as_str()
        .unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, header.as_bytes());
    view["auth_header"] = json!(
        digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    view
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

/// A pool's chart values with the platform's GitLab URL, its token Secret and the namespace.
pub fn pool_values(s: &Settings, pool: &Pool) -> anyhow::Result<Value> {
    let mut values: Value = serde_saphyr::from_str(pool.values)
        .with_context(|| format!("parsing {}", pool.values_file()))?;
    values["gitlabUrl"] = format!("{}/", s.gitlab_url).into();
    values["runners"]["secret"] = pool.token_secret().into();
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

/// The `ExternalSecret` that materialises a pool's runner token (from Vault) as the Secret the
/// chart reads (`runner-token`, and an empty `runner-registration-token` the chart still expects).
pub fn runner_token_external_secret(s: &Settings, pool: &Pool) -> Value {
    let name = pool.token_secret();
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": s.runner_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": common::contract::SECRET_STORE},
            "target": {
                "name": name,
                "creationPolicy": "Owner",
                "template": {
                    "engineVersion": "v2",
                    // `{{ "" }}` renders empty; a literal "" would read as null on kube-apiserver 1.20.
                    "data": {"runner-token": "{{ .token }}", "runner-registration-token": "{{ \"\" }}"},
                },
            },
            "data": [{"secretKey": "token", "remoteRef": {"key": pool.token_path(), "property": RUNNER_TOKEN_KEY}}],
        },
    })
}

/// The Argo CD Application that deploys a pool with the gitlab-runner chart.
pub fn runner_application(
    s: &Settings,
    pool: &Pool,
    argocd_namespace: &str,
) -> anyhow::Result<Value> {
    let name = pool.application();
    Ok(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": argocd_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "project": "platform",
            "source": {
                "repoURL": "https://charts.gitlab.io",
                "chart": "gitlab-runner",
                "targetRevision": s.chart_version,
                "helm": {"releaseName": name, "valuesObject": pool_values(s, pool)?},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": s.runner_namespace},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["ServerSideApply=true"]},
        },
    }))
}

/// Plan §3.5: the job pods of all four pools (labelled `app: gitlab-runner` and
/// `cicd.platform/runner-pool: <pool>` by each pool's `pod_labels`) reach Harbor, Vault, GitLab,
/// the package registries (by name) and DNS (which `toFQDNs` needs: Cilium learns the names'
/// addresses from the DNS answers it proxies). The runner managers (chart label
/// `app: gitlab-runner-<pool>`) are not selected: they talk to the Kubernetes API, which §3.5
/// does not list.
pub fn runner_egress_policy(s: &Settings) -> Value {
    let to =
        |name: &str| json!({"toEndpoints": [{"matchLabels": {"app.kubernetes.io/name": name}}]});
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": EGRESS_POLICY_NAME, "namespace": s.runner_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "description": "GitLab runners reach only Harbor, Vault, GitLab and the package registries (plan §3.5)",
            "endpointSelector": {
                "matchLabels": {JOB_POD_APP_LABEL.0: JOB_POD_APP_LABEL.1},
                "matchExpressions": [{
                    "key": JOB_POD_POOL_LABEL,
                    "operator": "In",
                    "values": POOLS.iter().map(|p| p.name).collect::<Vec<_>>(),
                }],
            },
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

/// What the delivery jobs reach beyond §3.5's list, each for its own pool only (Cilium policies
/// add up): the `shared` pool's deploy-ephemeral and cleanup-ephemeral call Argo CD (its server
/// pods, and its public name through the ingress); the `test` pool's acceptance-test and
/// k6-performance call the main pipeline's ephemeral environment, in namespaces labelled
/// `cicd.platform/ephemeral=true` (whose overlays admit them: `allow-pipeline-tests`).
pub fn runner_delivery_egress_policies(s: &Settings, argocd_namespace: &str) -> Vec<Value> {
    let for_pool = |name: &str, description: &str, pool: &str, egress: Value| {
        json!({
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": s.runner_namespace, "labels": owned_labels(PHASE_LABEL)},
            "spec": {
                "description": description,
                "endpointSelector": {"matchLabels": {JOB_POD_APP_LABEL.0: JOB_POD_APP_LABEL.1, JOB_POD_POOL_LABEL: pool}},
                "egress": egress,
            },
        })
    };
    let mut to_argocd = vec![json!({"toEndpoints": [{"matchLabels": {
        "k8s:io.kubernetes.pod.namespace": argocd_namespace,
        "app.kubernetes.io/name": "argocd-server",
    }}]})];
    if let Some((name, port)) = &s.argocd_endpoint {
        to_argocd.push(json!({
            "toFQDNs": [{"matchName": name}],
            "toPorts": [{"ports": [{"port": port.to_string(), "protocol": "TCP"}]}],
        }));
    }
    vec![
        for_pool(
            DEPLOY_EGRESS_POLICY_NAME,
            "The shared pool's deploy-ephemeral and cleanup-ephemeral reach Argo CD (cicd-buildout ADR 0008)",
            "shared",
            Value::Array(to_argocd),
        ),
        for_pool(
            TESTS_EGRESS_POLICY_NAME,
            "The test pool's acceptance and k6 jobs reach the ephemeral environments (cicd-buildout ADR 0008)",
            common::contract::TEST_POOL,
            json!([{"toEndpoints": [{"matchLabels": {
                format!("k8s:io.cilium.k8s.namespace.labels.{}", common::contract::EPHEMERAL_LABEL): "true",
            }}]}]),
        ),
    ]
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
            security_runner_description: "security-runners".into(),
            runner_namespace: "gitlab-runners".into(),
            chart_version: "0.71.0".into(),
            scan_projects: vec!["platform-services".into(), "application-services".into()],
            scan_schedule: crate::settings::ScanSchedule::parse("daily").unwrap(),
            prevent_vulnerable: true,
            severity_gate: "critical".into(),
            cve_allowlist: vec!["CVE-2024-0001".into()],
            mattermost_url: None,
            mattermost_vault_path: "ci/mattermost-webhook".into(),
            dora_webhook_url: Some("https://dora.example.com/webhooks/harbor".into()),
            cosign_namespace: "gitlab-runners".into(),
            gitlab_url: "https://gitlab.example.com".into(),
            harbor_registry: "harbor.example.com".into(),
            argocd_endpoint: Some(("argocd.example.com".into(), 443)),
        }
    }

    /// The `[[runners]]` entry of a pool's `runners.config` (TOML), as JSON.
    fn runner_config(pool: &Pool) -> Value {
        let values: Value = serde_saphyr::from_str(pool.values).unwrap();
        let config: Value = toml::from_str(values["runners"]["config"].as_str().unwrap()).unwrap();
        let runners = config["runners"].as_array().unwrap();
        assert_eq!(runners.len(), 1, "{}: one [[runners]] entry", pool.name);
        runners[0].clone()
    }

    /// The build container of the build pool: root, so kaniko can unpack images and run the
    /// Dockerfile's steps, but never privileged, no privilege escalation, and only the
    /// capabilities unpacking needs (ADR 0008, decision 11).
    fn kaniko_build_container() -> Value {
        json!({
            "run_as_non_root": false,
            "run_as_user": 0,
            "run_as_group": 0,
            "privileged": false,
            "allow_privilege_escalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]},
        })
    }

    /// Every values file says what the §3.1 table (POOLS) says: node pool, requests, limits,
    /// replicas, job pod labels, never privileged, non-root pods; the one exception is the
    /// build pool's build container (root for kaniko), checked field by field.
    #[test]
    fn pool_values_follow_the_plan_table() {
        let names: Vec<&str> = POOLS.iter().map(|p| p.name).collect();
        assert_eq!(names, ["shared", "build", "security", "test"]);
        for pool in POOLS {
            let values: Value = serde_saphyr::from_str(pool.values).unwrap();
            let runner = runner_config(pool);
            let k8s = &runner["kubernetes"];
            assert_eq!(runner["executor"], "kubernetes", "{}", pool.name);
            assert_eq!(runner["name"], format!("{}-runners", pool.name));
            assert_eq!(k8s["namespace"], "gitlab-runners", "{}", pool.name);
            assert_eq!(k8s["privileged"], false, "{}", pool.name);
            assert_eq!(k8s["allow_privilege_escalation"], false, "{}", pool.name);
            assert_eq!(k8s["cpu_request"], pool.requests.0, "{}", pool.name);
            assert_eq!(k8s["memory_request"], pool.requests.1, "{}", pool.name);
            assert_eq!(k8s["cpu_limit"], pool.limits.0, "{}", pool.name);
            assert_eq!(k8s["memory_limit"], pool.limits.1, "{}", pool.name);
            assert_eq!(
                k8s["node_selector"],
                json!({"harvester-pool": pool.node_pool}),
                "{}",
                pool.name
            );
            assert_eq!(
                k8s["pod_labels"],
                json!({JOB_POD_APP_LABEL.0: JOB_POD_APP_LABEL.1, JOB_POD_POOL_LABEL: pool.name}),
                "{}",
                pool.name
            );
            // Job pods: non-root for every pool (helper and service containers inherit it).
            assert_eq!(
                k8s["pod_security_context"],
                json!({"run_as_non_root": true, "run_as_user": 1000, "run_as_group": 1000, "fs_group": 1000}),
                "{}",
                pool.name
            );
            for container in [
                "helper_container_security_context",
                "service_container_security_context",
            ] {
                assert!(k8s.get(container).is_none(), "{}: {container}", pool.name);
            }
            // The build container: the pod's non-root user, except in the build pool.
            let build_container = &k8s["build_container_security_context"];
            if pool.name == "build" {
                assert_eq!(*build_container, kaniko_build_container());
            } else {
                assert_eq!(
                    *build_container,
                    json!({"allow_privilege_escalation": false, "capabilities": {"drop": ["ALL"]}}),
                    "{}",
                    pool.name
                );
            }
            assert!(!pool.values.contains("privileged = true"), "{}", pool.name);
            // The runner manager (the chart's Deployment): non-root, never privileged.
            assert_eq!(values["nodeSelector"]["harvester-pool"], pool.node_pool);
            assert_eq!(values["hpa"]["minReplicas"], pool.replicas.0);
            assert_eq!(values["hpa"]["maxReplicas"], pool.replicas.1);
            assert_eq!(values["securityContext"]["privileged"], false);
            assert_eq!(values["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(values["securityContext"]["runAsNonRoot"], true);
            assert_eq!(values["podSecurityContext"]["runAsNonRoot"], true);
            assert_eq!(values["runners"]["secret"], pool.token_secret());
            let header = format!(
                "Runner tags ({}) and run_untagged={} are attributes",
                pool.tags.join(", "),
                pool.run_untagged
            );
            assert!(pool.values.contains(&header), "{}: {header}", pool.name);
        }
        // Only the build pool runs its build container as root.
        let root: Vec<&str> = POOLS
            .iter()
            .filter(|p| {
                runner_config(p)["kubernetes"]["build_container_security_context"]["run_as_user"]
                    == 0
            })
            .map(|p| p.name)
            .collect();
        assert_eq!(root, ["build"]);
    }

    /// The §3.1 tags, and untagged jobs only on the shared pool.
    #[test]
    fn the_pools_carry_the_plan_tags() {
        let table: Vec<(&str, &[&str], bool)> = POOLS
            .iter()
            .map(|p| (p.name, p.tags, p.run_untagged))
            .collect();
        assert_eq!(
            table,
            [
                ("shared", &["shared", "general"][..], true),
                ("build", &["build", "docker", "kaniko"][..], false),
                (
                    "security",
                    &["security", "trivy", "semgrep", "gitleaks"][..],
                    false
                ),
                ("test", &["test", "acceptance", "k6"][..], false),
            ]
        );
    }

    #[test]
    fn pool_serving_follows_gitlabs_rule() {
        let serving = |tags: &[&str]| pool_serving(tags).map(|p| p.name);
        // Untagged jobs: only the shared pool runs them.
        assert_eq!(serving(&[]), Some("shared"));
        assert_eq!(
            POOLS
                .iter()
                .filter(|p| p.serves(&[]))
                .map(|p| p.name)
                .collect::<Vec<_>>(),
            ["shared"]
        );
        // Tagged jobs: every tag must be one of the runner's.
        assert_eq!(serving(&["general", "shared"]), Some("shared"));
        assert_eq!(serving(&["kaniko"]), Some("build"));
        assert_eq!(serving(&["build", "docker", "kaniko"]), Some("build"));
        assert_eq!(serving(&["trivy", "security"]), Some("security"));
        assert_eq!(serving(&["k6", "k6"]), Some("test"));
        assert_eq!(serving(&["build", "security"]), None, "no pool has both");
        assert_eq!(serving(&["shared", "kaniko"]), None);
        assert_eq!(serving(&["gpu"]), None);
        assert_eq!(serving(&["Kaniko"]), None, "tags compare exactly");
        // Each pool, and only it, serves each of its tags and all of them together.
        for pool in POOLS {
            assert_eq!(serving(pool.tags), Some(pool.name));
            for tag in pool.tags {
                let serving_tag: Vec<&str> = POOLS
                    .iter()
                    .filter(|p| p.serves(&[*tag]))
                    .map(|p| p.name)
                    .collect();
                assert_eq!(serving_tag, [pool.name], "{tag}");
            }
        }
    }

    #[test]
    fn each_pool_has_its_own_names() {
        let s = settings();
        let security = pool("security").unwrap();
        // The security pool keeps the names of the installation that deployed only it.
        assert_eq!(s.runner_description(security), "security-runners");
        assert_eq!(security.token_path(), "ci/runners/security");
        assert_eq!(security.token_secret(), "security-runner-token");
        assert_eq!(security.application(), "gitlab-runner-security");
        let build = pool("build").unwrap();
        assert_eq!(s.runner_description(build), "build-runners");
        assert_eq!(build.token_path(), "ci/runners/build");
        assert_eq!(build.token_secret(), "build-runner-token");
        assert_eq!(build.application(), "gitlab-runner-build");
        assert!(pool("gpu").is_none());
    }

    #[test]
    fn the_applications_carry_each_pools_rendered_values() {
        let s = settings();
        for pool in POOLS {
            let app = runner_application(&s, pool, "argocd").unwrap();
            assert_eq!(app["metadata"]["name"], pool.application());
            assert_eq!(
                app["spec"]["source"]["helm"]["releaseName"],
                pool.application()
            );
            let values = &app["spec"]["source"]["helm"]["valuesObject"];
            assert_eq!(values["gitlabUrl"], "https://gitlab.example.com/");
            assert_eq!(values["runners"]["secret"], pool.token_secret());
            assert_eq!(values["hpa"]["maxReplicas"], pool.replicas.1);
            assert_eq!(app["spec"]["source"]["targetRevision"], "0.71.0");
            assert_eq!(app["spec"]["project"], "platform");
            let es = runner_token_external_secret(&s, pool);
            assert_eq!(es["metadata"]["name"], pool.token_secret());
            assert_eq!(es["spec"]["target"]["name"], pool.token_secret());
            assert_eq!(
                es["spec"]["data"][0]["remoteRef"],
                json!({"key": format!("ci/runners/{}", pool.name), "property": "runner-token"})
            );
        }
        let mut other = settings();
        other.runner_namespace = "ci-runners".into();
        let values = pool_values(&other, pool("test").unwrap()).unwrap();
        let config = values["runners"]["config"].as_str().unwrap();
        assert!(config.contains("namespace = \"ci-runners\""), "{config}");
    }

    /// The egress policy selects the job pods of all four pools (labels from the values files)
    /// and nothing else: not the runner managers (chart label `app: gitlab-runner-<pool>`), not
    /// a pod of an unknown pool.
    #[test]
    fn the_egress_policy_selects_the_job_pods_of_every_pool() {
        let policy = runner_egress_policy(&settings());
        let selector = &policy["spec"]["endpointSelector"];
        let selects = |labels: &Value| {
            let labels = labels.as_object().unwrap();
            selector["matchLabels"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
                && selector["matchExpressions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| {
                        assert_eq!(e["operator"], "In");
                        labels
                            .get(e["key"].as_str().unwrap())
                            .is_some_and(|v| e["values"].as_array().unwrap().contains(v))
                    })
        };
        for pool in POOLS {
            let job_pod = &runner_config(pool)["kubernetes"]["pod_labels"];
            assert!(selects(job_pod), "{}: {job_pod}", pool.name);
            let manager = json!({"app": pool.application(), "release": pool.application()});
            assert!(!selects(&manager), "{}: manager", pool.name);
        }
        assert!(!selects(
            &json!({"app": "gitlab-runner", "cicd.platform/runner-pool": "gpu"})
        ));
        assert!(!selects(&json!({"cicd.platform/runner-pool": "build"})));
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
    fn each_runner_is_a_tagged_group_runner_and_only_shared_runs_untagged_jobs() {
        let s = settings();
        for pool in POOLS {
            let body = runner_create_body(&s, pool, 7);
            assert_eq!(body["runner_type"], "group_type");
            assert_eq!(body["group_id"], 7);
            assert_eq!(body["description"], format!("{}-runners", pool.name));
            assert_eq!(body["tag_list"], json!(pool.tags));
            assert_eq!(body["run_untagged"], pool.name == "shared", "{}", pool.name);
            assert_eq!(body["locked"], true);
            let view = runner_view(&s, pool);
            assert_eq!(view["run_untagged"], body["run_untagged"]);
            let mut tags: Vec<&str> = pool.tags.to_vec();
            tags.sort_unstable();
            assert_eq!(view["tag_list"], json!(tags));
        }
        assert_eq!(
            runner_create_body(&s, pool("security").unwrap(), 7)["tag_list"],
            json!(["security", "trivy", "semgrep", "gitleaks"])
        );
    }
}
