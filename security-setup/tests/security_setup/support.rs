//! The sandbox as phase 16 finds it after phases 13 and 14: KV v2 at `kv/`, transit with the
//! signing key (as vault-cicd creates them), the Harbor projects of phase 14 with its metadata,
//! and the Mattermost URL in Vault.

use std::sync::atomic::Ordering;

use common::kube::KubeClient;
use sandbox::standins::gitlab::runners::RunnerRecord;
use sandbox::standins::harbor::ProjectRecord;
use sandbox::{Options, PhaseRun, Sandbox};
use security_setup::desired::POOLS;
use serde_json::{Map, Value, json};

pub const MATTERMOST_PATH: &str = "ci/mattermost-webhook";
pub const ALLOWLIST: &str = "CVE-2024-0001,CVE-2023-4444";

pub async fn phase(sandbox: &Sandbox, args: &[&str]) -> PhaseRun {
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_security-setup"),
        &sandbox.env_file(),
        args,
        &[
            ("CICD_HTTP_RETRIES", "1"),
            ("HARBOR_CVE_ALLOWLIST", ALLOWLIST),
            ("CICD_CRD_WAIT_SECS", "20"),
        ],
    )
    .await
}

pub async fn vault(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Option<Value>) {
    let mut req = sandbox::support::vault(sandbox, method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
}

pub async fn vault_get(sandbox: &Sandbox, path: &str) -> Option<Value> {
    sandbox::support::vault_read(sandbox, path).await
}

/// Phase 13's transit mount and signing key.
pub async fn create_signing_key(sandbox: &Sandbox) {
    vault(
        sandbox,
        reqwest::Method::POST,
        "sys/mounts/transit",
        Some(json!({"type": "transit"})),
    )
    .await;
    vault(
        sandbox,
        reqwest::Method::POST,
        "transit/keys/ci-signing-key",
        Some(json!({"type": "ecdsa-p256", "exportable": false})),
    )
    .await;
}

/// The sandbox after phases 13 and 14 (without the signing key when `signing_key` is false).
/// Returns the Mattermost URL stored in Vault.
pub async fn start(signing_key: bool) -> (Sandbox, String) {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("sandbox starts");
    vault(
        &sandbox,
        reqwest::Method::POST,
        "sys/mounts/kv",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    if signing_key {
        create_signing_key(&sandbox).await;
    }
    let url = format!(
        "https://mattermost.sandbox.localhost/hooks/{}",
        sandbox::keys::random_token(26)
    );
    vault(
        &sandbox,
        reqwest::Method::POST,
        &format!("kv/data/{MATTERMOST_PATH}"),
        Some(json!({"data": {"url": url}})),
    )
    .await;
    {
        let mut hb = sandbox.harbor.as_ref().unwrap().lock();
        for (id, name, scan) in [
            (101, "platform-services", "true"),
            (102, "application-services", "true"),
            (103, "ci-cache", "false"),
        ] {
            let mut metadata = Map::new();
            metadata.insert("public".into(), "false".into());
            metadata.insert("auto_scan".into(), scan.into());
            metadata.insert("retention_id".into(), (id + 100).to_string().into());
            hb.projects.insert(
                id,
                ProjectRecord {
                    id,
                    name: name.into(),
                    metadata,
                    immutable_rules: Vec::new(),
                },
            );
        }
    }
    (sandbox, url)
}

/// GitLab, Harbor and Vault writes so far.
pub fn api_writes(s: &Sandbox) -> (u64, u64, usize) {
    let w = |name: &str| {
        s.standin(name)
            .control
            .counters
            .writes
            .load(Ordering::Relaxed)
    };
    (w("gitlab"), w("harbor"), s.vault_writes())
}

pub async fn kube(sandbox: &Sandbox) -> KubeClient {
    KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap()
}

/// References to the Kubernetes objects phase 16 applies on a cluster without Cilium and Kyverno:
/// per pool (in the order of `POOLS`) its `ExternalSecret` and Application, then the `ConfigMap`.
pub fn object_refs() -> Vec<Value> {
    let mut refs = Vec::new();
    for pool in POOLS {
        refs.push(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": format!("{}-runner-token", pool.name), "namespace": "gitlab-runners"}}));
        refs.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": format!("gitlab-runner-{}", pool.name), "namespace": "argocd"}}));
    }
    refs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cosign-public-key", "namespace": "gitlab-runners"}}));
    refs
}

/// (id, token, tags, `run_untagged`, group) of a runner.
pub type RunnerFacts = (u64, String, Vec<String>, bool, Option<u64>);

fn facts(r: &RunnerRecord) -> RunnerFacts {
    (
        r.id,
        r.token.clone(),
        r.tag_list.clone(),
        r.run_untagged,
        r.group_id,
    )
}

/// Every runner described `description`.
pub fn runners(sandbox: &Sandbox, description: &str) -> Vec<RunnerFacts> {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    gl.runners
        .with_description(description)
        .into_iter()
        .map(facts)
        .collect()
}

/// Every runner GitLab has, whatever its description.
pub fn all_runners(sandbox: &Sandbox) -> Vec<RunnerFacts> {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    gl.runners.runners.values().map(facts).collect()
}

/// The runner token Vault holds for a pool (`kv/ci/runners/<pool>`).
pub async fn stored_token(sandbox: &Sandbox, pool: &str) -> Option<String> {
    vault_get(sandbox, &format!("kv/data/ci/runners/{pool}"))
        .await
        .and_then(|d| d["data"]["runner-token"].as_str().map(str::to_owned))
}

/// resourceVersion of each object (None: absent) — a Kubernetes write changes it.
pub async fn versions(kube: &KubeClient, refs: &[Value]) -> Vec<Option<String>> {
    sandbox::support::resource_versions(kube, refs).await
}

/// The only `error:` line of a failed run.
pub fn error_line(run: &PhaseRun) -> String {
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    errors[0].to_owned()
}

pub fn assert_no_secret(runs: &[&PhaseRun], secrets: &[String]) {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    sandbox::support::assert_not_printed(
        runs.iter()
            .flat_map(|r| [r.stdout.as_str(), r.stderr.as_str()]),
        &secrets,
    );
}
