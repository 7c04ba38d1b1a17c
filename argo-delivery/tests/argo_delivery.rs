//! Phase 15 against real servers: kube-apiserver v1.20 with the Argo CD and Argo Rollouts CRDs
//! (server-side apply; a rejection by the server fails the test), Prometheus scraping a real
//! exporter for the analysis gates, and Casbin with Argo CD's own model for the RBAC matrix.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argo_delivery::desired::{self, Verdict};
use argo_delivery::settings::Thresholds;
use common::kube::KubeClient;
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use sandbox::PhaseRun as Run;

/// The bash phase 15's leftovers, adopted (a file of its own: this one is long already).
#[path = "argo_delivery/adoption.rs"]
mod adoption;
/// The pull-request generator's `read_api` token, minted and rotated.
#[path = "argo_delivery/generator_token.rs"]
mod generator_token;

async fn phase(sandbox: &Sandbox, args: &[&str]) -> Run {
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_argo-delivery"),
        &sandbox.env_file(),
        args,
        &[("CICD_CRD_WAIT_SECS", "30")],
    )
    .await
}

/// The delivered services, in the list's order.
const SERVICES: &[&str] = &["dora-collector", "packet-relay", "netops-dashboard"];

/// Index of an object in [`refs`].
fn index_of(kind: &str, name: &str) -> usize {
    refs()
        .iter()
        .position(|r| r["kind"] == kind && r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in refs()"))
}

fn refs() -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": "argocd"}}),
    ];
    for p in ["production", "staging", "ephemeral", "platform"] {
        out.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": p, "namespace": "argocd"}}));
    }
    for t in ["success-rate", "latency-check", "error-rate", "smoke-test"] {
        out.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate", "metadata": {"name": t}}));
    }
    out.push(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "argocd-gitlab-token", "namespace": "argocd"}}));
    // The delivered services' namespaces (common::contract::services), labelled for pulling.
    for ns in [
        "demo-apps",
        "monitoring",
        "staging-dora-collector",
        "staging-netops-arcade",
    ] {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    out.push(json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret", "metadata": {"name": "harbor-pull"}}));
    for s in SERVICES {
        for app in [format!("{s}-staging"), (*s).to_owned()] {
            out.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": app, "namespace": "argocd"}}));
        }
    }
    for s in SERVICES {
        out.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": format!("ephemeral-{s}"), "namespace": "argocd"}}));
    }
    out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cicd-system"}}));
    out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "namespace-cleaner", "namespace": "cicd-system"}}));
    out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cicd-namespace-cleaner"}}));
    out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "cicd-namespace-cleaner"}}));
    out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "namespace-cleaner", "namespace": "cicd-system"}}));
    out
}

/// A sandbox with kube-apiserver only, and a client with field manager `manager`.
async fn kube_sandbox(manager: &str) -> (Sandbox, KubeClient) {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        vault: false,
        prometheus: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), manager)
        .await
        .unwrap();
    (sandbox, kube)
}

/// resourceVersion of each object (None: absent).
async fn versions(kube: &KubeClient) -> Vec<Option<String>> {
    sandbox::support::resource_versions(kube, &refs()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn applied_by_server_side_apply_once_and_merged_with_argocd_keys() {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        prometheus: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    // Phase 13's KV v2 mount, where the phase keeps CI's Argo CD token.
    let http = reqwest::Client::new();
    sandbox::support::mount_kv(&sandbox).await;
    // An older phase 13 stored the admin token where the generator's token goes.
    generator_token::plant_the_admin_token(&sandbox).await;
    // Argo CD's Helm chart owns argocd-rbac-cm already, with keys of its own.
    let helm = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "helm")
        .await
        .unwrap();
    helm.apply(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": "argocd"},
                "data": {"policy.csv": "g, admin, role:admin\n", "policy.matchMode": "glob"}}),
        false,
    )
    .await
    .unwrap();

    let before = versions(&kube).await;
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    // Every object, CI's Argo CD token and the generator's GitLab token.
    assert_eq!(titles.len(), refs().len() + 2, "{titles:?}");
    assert!(
        titles.iter().any(|t| t.starts_with("gitlab group access token create group access token argocd-pr-generator of platform_services")),
        "{titles:?}"
    );
    assert!(
        titles.contains(
            &"argocd project token proj:ephemeral:pipeline → kv/ci/argocd-token".to_owned()
        ),
        "{titles:?}"
    );
    let vault_writes_before = sandbox.vault_writes();
    // kube-apiserver 1.20 has no batch/v1 CronJob: said, skipped (checked against the 1.32 schema below).
    assert!(
        doc["warnings"].to_string().contains(
            "CronJob cicd-system/namespace-cleaner: the cluster does not serve batch/v1 CronJob"
        ),
        "{}",
        doc["warnings"]
    );
    assert!(titles.contains(&"kubernetes ConfigMap argocd/argocd-rbac-cm".to_owned()));
    assert_eq!(versions(&kube).await, before, "plan writes nothing");
    assert_eq!(sandbox.vault_writes(), vault_writes_before, "nor to Vault");

    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let cm = kube.get(&refs()[0]).await.unwrap().unwrap();
    assert_eq!(
        cm["data"]["policy.matchMode"], "glob",
        "keys owned by others are kept"
    );
    assert_eq!(cm["data"]["scopes"], "[groups]");
    assert_eq!(cm["data"]["policy.csv"], desired::POLICY_CSV);
    let production = kube.get(&refs()[1]).await.unwrap().unwrap();
    assert_eq!(production["spec"]["syncWindows"][0]["kind"], "allow");
    assert_eq!(
        production["spec"]["roles"][1]["groups"],
        json!(["ci-service-accounts"])
    );
    assert!(
        sandbox.vault_writes() > vault_writes_before,
        "apply stored the token"
    );
    let appset = kube
        .get(&refs()[index_of("ApplicationSet", "ephemeral-packet-relay")])
        .await
        .unwrap()
        .unwrap();
    let template = &appset["spec"]["template"];
    // The MR environment runs the image its own pipeline built (build-image in an MR pipeline
    // pushes <harbor>/ci-scratch/<service>:<MR head>).
    let harbor = url::Url::parse(sandbox.get("HARBOR_URL")).unwrap();
    assert_eq!(
        template["spec"]["source"]["kustomize"]["images"],
        json!([format!(
            "packet-relay={}:{}/ci-scratch/packet-relay:{{{{ .head_sha }}}}",
            harbor.host_str().unwrap(),
            harbor.port().unwrap()
        )])
    );
    assert_eq!(
        template["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]["cicd.platform/harbor-pull"],
        "true"
    );
    // Staging and production of every delivered service, from main.
    let staging = kube
        .get(&refs()[index_of("Application", "packet-relay-staging")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staging["spec"]["source"]["path"], "deploy/overlays/staging");
    assert_eq!(
        staging["spec"]["destination"]["namespace"],
        "staging-netops-arcade"
    );
    let production = kube
        .get(&refs()[index_of("Application", "dora-collector")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(production["spec"]["project"], "production");
    assert_eq!(production["spec"]["destination"]["namespace"], "monitoring");
    let project = kube.get(&refs()[1]).await.unwrap().unwrap();
    let destinations: Vec<&str> = project["spec"]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["namespace"].as_str())
        .collect();
    assert_eq!(destinations, ["prod-*", "monitoring", "demo-apps"]);
    let pull = kube
        .get(&refs()[index_of("ClusterExternalSecret", "harbor-pull")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pull["spec"]["externalSecretSpec"]["target"]["template"]["type"],
        "kubernetes.io/dockerconfigjson"
    );
    // CI's Argo CD token: in Vault, accepted by Argo CD for project ephemeral only.
    let stored = sandbox::support::vault_read(&sandbox, "kv/data/ci/argocd-token")
        .await
        .expect("CI's Argo CD token in Vault");
    let ci_token = stored["data"]["token"].as_str().unwrap().to_owned();
    assert!(!apply.stdout.contains(&ci_token) && !apply.stderr.contains(&ci_token));
    let argocd = sandbox.get("ARGOCD_URL");
    let create = |project: &str, namespace: &str| {
        http.post(format!("{argocd}/api/v1/applications"))
            .bearer_auth(&ci_token)
            .json(&json!({"metadata": {"name": format!("probe-{project}")}, "spec": {
                "project": project,
                "source": {"repoURL": "https://gitlab.example/platform_services/x.git", "path": "deploy/overlays/ephemeral", "targetRevision": "main"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}}}))
            .send()
    };
    assert_eq!(
        create("ephemeral", "ephemeral-x-main-1")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(create("production", "prod-x").await.unwrap().status(), 403);
    let appset_token = &appset;
    assert_eq!(
        template["metadata"]["name"],
        "packet-relay-mr-{{ .number }}"
    );
    assert_eq!(
        template["spec"]["destination"]["namespace"],
        "ephemeral-packet-relay-mr-{{ .number }}"
    );
    assert_eq!(
        template["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]["cicd.platform/ttl"],
        "4h"
    );
    assert_eq!(
        appset["spec"]["generators"][0]["pullRequest"]["gitlab"]["tokenRef"]["secretName"],
        "argocd-gitlab-token"
    );
    let _ = appset_token;
    let token = kube.get(&refs()[9]).await.unwrap().unwrap();
    assert_eq!(
        token["spec"]["data"][0]["remoteRef"],
        json!({"key": "ci/gitlab-api-token", "property": "token"})
    );
    let success = kube.get(&refs()[5]).await.unwrap().unwrap();
    assert_eq!(
        success["spec"]["metrics"][0]["failureCondition"],
        "len(result) > 0 && !isNaN(result[0]) && result[0] < 0.95"
    );

    let after = versions(&kube).await;
    assert!(after.iter().all(Option::is_some));
    let vault_writes_applied = sandbox.vault_writes();
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(versions(&kube).await, after, "second apply writes nothing");
    assert_eq!(sandbox.vault_writes(), vault_writes_applied, "nor to Vault");
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // A token revoked in Argo CD is replaced by the next apply.
    sandbox.argocd.as_ref().unwrap().lock().tokens.clear();
    let check = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(check.code, 2);
    let doc: Value = serde_json::from_str(&check.stdout).unwrap();
    assert!(
        doc["changes"][0]["after"]["reason"]
            .to_string()
            .contains("no longer lists"),
        "{doc}"
    );
    assert_eq!(phase(&sandbox, &["apply"]).await.code, 0);
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // A threshold edited by hand shows as that field and is restored.
    let mut edited = success.clone();
    edited["spec"]["metrics"][0]["failureCondition"] = json!("result[0] < 0.5");
    let hand = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "kubectl-edit")
        .await
        .unwrap();
    hand.apply(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate", "metadata": {"name": "success-rate"}, "spec": edited["spec"]}), false)
        .await
        .unwrap();
    let check = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(check.code, 2);
    let doc: Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(
        sandbox::change_titles(&doc),
        vec!["kubernetes ClusterAnalysisTemplate success-rate"]
    );
    assert!(
        doc["changes"][0]["diff"]
            .to_string()
            .contains("result[0] < 0.5"),
        "{}",
        doc["changes"][0]["diff"]
    );
    assert_eq!(phase(&sandbox, &["apply"]).await.code, 0);
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    let mut outputs = vec![
        plan.stdout.clone(),
        plan.stderr.clone(),
        apply.stdout.clone(),
        apply.stderr.clone(),
    ];
    generator_token::check(&sandbox, &mut outputs).await;

    // A custom resource the server rejects fails the plan with the server's message.
    let invalid = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "broken", "namespace": "argocd"},
                         "spec": {"clusterResourceWhitelist": [{"group": "rbac.authorization.k8s.io"}]}});
    let err = kube.diff(&invalid).await.unwrap_err().to_string();
    assert!(
        err.contains("422") && err.contains("spec.clusterResourceWhitelist.kind: Required value"),
        "{err}"
    );
}

/// Python with jsonschema and casbin (scripts/setup-test-env.sh).
fn tools_python() -> std::path::PathBuf {
    common::config::tools_dir().join("venv/bin/python")
}

/// The cleaner's script against the real API server: only expired, labelled namespaces go.
#[tokio::test(flavor = "multi_thread")]
async fn the_cleaner_deletes_only_expired_ephemeral_namespaces() {
    let (sandbox, kube) = kube_sandbox("argo-cd").await;
    let cases = [
        ("ephemeral-api-mr-1", Some("true"), "1s"),   // expired
        ("ephemeral-api-mr-2", Some("true"), "4h"),   // still alive
        ("team-scratch", None, "1s"),                 // not ephemeral: never touched
        ("ephemeral-api-mr-3", Some("true"), "soon"), // malformed TTL: kept, reported
    ];
    for (name, ephemeral, ttl) in cases {
        let mut labels = json!({"cicd.platform/ttl": ttl});
        if let Some(e) = ephemeral {
            labels["cicd.platform/ephemeral"] = json!(e);
        }
        kube.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}), false)
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/cleaner/clean-ephemeral-namespaces.sh"
    );
    let run = |dry: bool| {
        std::process::Command::new("bash")
            .arg(script)
            .env("KUBECONFIG", sandbox.kubeconfig())
            .env("DRY_RUN", dry.to_string())
            .output()
            .expect("bash and kubectl")
    };
    let names: Vec<&str> = cases.iter().map(|(n, ..)| *n).collect();
    let dry = run(true);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        text.contains("would delete ephemeral-api-mr-1") && text.contains("1 expired, 2 kept"),
        "{text}"
    );
    assert!(
        terminating(&kube, &names).await.is_empty(),
        "a dry run deletes nothing"
    );

    let real = run(false);
    let text = String::from_utf8_lossy(&real.stdout);
    assert!(
        real.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert!(
        text.contains("keep ephemeral-api-mr-3: TTL 'soon'"),
        "{text}"
    );
    assert_eq!(terminating(&kube, &names).await, vec!["ephemeral-api-mr-1"]);
}

/// Namespaces of `names` that are being deleted.
async fn terminating(kube: &KubeClient, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let ns = kube
            .get(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .await
            .unwrap()
            .unwrap();
        if !ns["metadata"]["deletionTimestamp"].is_null() {
            out.push((*name).to_owned());
        }
    }
    out
}

/// kube-apiserver 1.20 has no batch/v1 `CronJob`: the cleaner's `CronJob` is checked against the
/// Kubernetes 1.32 JSON schema instead (strict: no unknown fields).
#[test]
fn the_cleaner_cron_job_validates_against_the_kubernetes_schema() {
    let cron = desired::cleaner_cron_job();
    assert_eq!(schema_errors(&cron, "cronjob-batch-v1.json"), None);
    assert!(!cron.to_string().contains(":latest"));
    // The schema is strict: a misspelt field fails.
    let mut bad = cron.clone();
    bad["spec"]["schedul"] = json!("* * * * *");
    assert!(schema_errors(&bad, "cronjob-batch-v1.json").is_some());
}

/// Why `object` fails the Kubernetes 1.32 JSON schema `schema` (tests/k8s-schemas); `None` when valid.
fn schema_errors(object: &Value, schema: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let out = std::process::Command::new(tools_python())
        .args(["-c", "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))"])
        .arg(&file)
        .arg(format!("{}/tests/k8s-schemas/{schema}", env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("python with jsonschema (run ./scripts/setup-test-env.sh)");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Each RBAC request of the matrix with the answer Argo CD must give.
const MATRIX: &[(&str, &str, &str, bool)] = &[
    ("platform-admins", "sync", "production/api", true),
    ("platform-admins", "delete", "production/api", true),
    ("infra-engineers", "sync", "production/api", true),
    ("infra-engineers", "override", "production/api", true),
    ("infra-engineers", "delete", "production/api", false),
    ("senior-developers", "get", "production/api", true),
    ("senior-developers", "sync", "production/api", false),
    ("senior-developers", "sync", "staging/api", true),
    ("senior-developers", "sync", "ephemeral/api-mr-7", true),
    ("senior-developers", "delete", "staging/api", false),
    ("developers", "get", "production/api", true),
    ("developers", "sync", "production/api", false),
    ("developers", "sync", "staging/api", false),
    ("viewers", "get", "staging/api", true),
    ("viewers", "sync", "ephemeral/api-mr-7", false),
    ("ci-service-accounts", "sync", "production/api", true),
    ("ci-service-accounts", "delete", "production/api", false),
    ("ci-service-accounts", "override", "production/api", false),
    ("nobody-in-particular", "get", "production/api", false),
];

#[tokio::test]
async fn policy_csv_grants_exactly_the_matrix_under_argocds_model() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let requests: Vec<Value> = MATRIX
        .iter()
        .map(|(s, a, o, _)| json!([s, "applications", a, o]))
        .collect();
    let tools = std::env::var_os("CICD_TOOLS_DIR").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/cicd-buildout/tools")
        },
        std::path::PathBuf::from,
    );
    let mut child = tokio::process::Command::new(tools.join("venv/bin/python"))
        .arg(format!("{dir}/rbac_matrix.py"))
        .arg(format!("{dir}/argocd-rbac/model.conf"))
        .arg(format!("{dir}/argocd-rbac/builtin-policy.csv"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac/policy.csv"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python with casbin (run ./scripts/setup-test-env.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(requests).to_string().as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
    let wrong: Vec<String> = MATRIX
        .iter()
        .zip(&answers)
        .filter(|((.., want), got)| want != *got)
        .map(|((s, a, o, want), _)| format!("{s} {a} {o}: want {want}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Request counters of one service as the exporter serves them.
#[derive(Default)]
struct Traffic {
    ok: AtomicU64,
    errors: AtomicU64,
    /// Observations per latency bucket upper bound (index into BUCKETS).
    buckets: [AtomicU64; 6],
}

const BUCKETS: [&str; 6] = ["0.05", "0.1", "0.5", "1", "2.5", "+Inf"];

/// Serves `http_requests_total{service,status}` and `http_request_duration_seconds_bucket` for
/// four services; every scrape adds one second of traffic: healthy (99.5 % 2xx, ~0.1 s),
/// failing (85 % 2xx, 15 % 5xx, ~2 s), idle (counters that never move) and nothing for `absent`.
async fn exporter() -> String {
    let services: Arc<BTreeMap<&'static str, Traffic>> = Arc::new(
        ["healthy", "failing", "idle"]
            .into_iter()
            .map(|s| (s, Traffic::default()))
            .collect(),
    );
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let services = services.clone();
            async move {
                let add = |t: &Traffic, ok: u64, err: u64, bucket: usize| {
                    t.ok.fetch_add(ok, Ordering::Relaxed);
                    t.errors.fetch_add(err, Ordering::Relaxed);
                    t.buckets[bucket].fetch_add(ok + err, Ordering::Relaxed);
                };
                add(&services["healthy"], 995, 5, 1);
                add(&services["failing"], 850, 150, 4);
                let mut text = String::from("# TYPE http_requests_total counter\n");
                for (name, t) in services.iter() {
                    text.push_str(&format!("http_requests_total{{service=\"{name}\",status=\"200\"}} {}\n", t.ok.load(Ordering::Relaxed)));
                    text.push_str(&format!("http_requests_total{{service=\"{name}\",status=\"500\"}} {}\n", t.errors.load(Ordering::Relaxed)));
                }
                text.push_str("# TYPE http_request_duration_seconds histogram\n");
                for (name, t) in services.iter() {
                    let mut cumulative = 0;
                    for (i, le) in BUCKETS.iter().enumerate() {
                        cumulative += t.buckets[i].load(Ordering::Relaxed);
                        text.push_str(&format!("http_request_duration_seconds_bucket{{service=\"{name}\",le=\"{le}\"}} {cumulative}\n"));
                    }
                    text.push_str(&format!("http_request_duration_seconds_count{{service=\"{name}\"}} {cumulative}\n"));
                }
                text
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn query(prometheus: &str, promql: &str) -> Vec<f64> {
    sandbox::support::PrometheusApi::new(prometheus)
        .values(promql, None)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn analysis_queries_parse_and_give_the_expected_verdicts_on_real_prometheus() {
    common::cli::install_crypto_provider();
    let gates = desired::gates(&Thresholds::default());
    // promtool parses every query (as recording rules, the form it checks).
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let rules: String = gates
        .iter()
        .map(|g| {
            format!(
                "      - record: cicd:{}\n        expr: |\n{}",
                g.metric.replace('-', "_"),
                indent(&g.query_for("any"))
            )
        })
        .collect();
    let file = dir.join("analysis-rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: analysis\n    rules:\n{rules}"),
    )
    .unwrap();
    let check = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let sandbox = Sandbox::start(Options {
        kube: false,
        vault: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let target = exporter().await;
    sandbox
        .add_scrape_target("canaries", &target)
        .await
        .unwrap();
    let prometheus = sandbox.get("PROMETHEUS_URL").to_owned();
    // Wait until Prometheus has at least three scrapes of the exporter.
    for _ in 0..60 {
        let samples = query(
            &prometheus,
            "count_over_time(http_requests_total{service=\"healthy\",status=\"200\"}[5m])",
        )
        .await;
        if samples.first().is_some_and(|n| *n >= 3.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut verdicts = BTreeMap::new();
    for gate in &gates {
        for service in ["healthy", "failing", "idle", "absent"] {
            let result = query(&prometheus, &gate.query_for(service)).await;
            verdicts.insert((gate.template, service), (gate.verdict(&result), result));
        }
    }
    for gate in &gates {
        let v = |s: &str| verdicts[&(gate.template, s)].0;
        assert_eq!(
            v("healthy"),
            Verdict::Successful,
            "{} healthy: {:?}",
            gate.template,
            verdicts[&(gate.template, "healthy")]
        );
        assert_eq!(
            v("failing"),
            Verdict::Failed,
            "{} failing: {:?}",
            gate.template,
            verdicts[&(gate.template, "failing")]
        );
        assert_eq!(
            v("idle"),
            Verdict::Inconclusive,
            "{} with no traffic (NaN): {:?}",
            gate.template,
            verdicts[&(gate.template, "idle")]
        );
        assert_eq!(
            v("absent"),
            Verdict::Inconclusive,
            "{} with no series: {:?}",
            gate.template,
            verdicts[&(gate.template, "absent")]
        );
    }
    assert!(
        verdicts[&("success-rate", "idle")]
            .1
            .first()
            .is_some_and(|x| x.is_nan()),
        "0/0 is NaN in Prometheus"
    );
    assert!(verdicts[&("success-rate", "absent")].1.is_empty());
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("          {l}\n")).collect()
}

const SERVICE_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../service-template/deploy");

/// Renders an overlay with `kubectl kustomize` (the test's tool; the phases never need kubectl).
fn kustomize(overlay: &str) -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .args([
            "kustomize",
            &format!("{SERVICE_TEMPLATE}/overlays/{overlay}"),
        ])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("\n---")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("YAML"))
        .collect()
}

/// Every overlay of the service template builds; the kinds kube-apiserver 1.20 serves (Rollout
/// and `HTTPRoute` with their real CRDs, core kinds) pass its server-side validation (dry run); HPA
/// (autoscaling/v2) and PDB (policy/v1), which 1.20 lacks, pass the Kubernetes 1.32 JSON schemas.
#[tokio::test(flavor = "multi_thread")]
async fn every_overlay_of_the_service_template_builds_and_validates() {
    // Kept alive to the end: dropping the sandbox stops its servers.
    let (_sandbox, kube) = kube_sandbox("template-check").await;
    let mut validated = BTreeMap::new();
    for overlay in [
        "ephemeral",
        "staging",
        "production",
        "production-blue-green",
    ] {
        let namespace = format!("template-{overlay}");
        kube.apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            false,
        )
        .await
        .unwrap();
        let objects = kustomize(overlay);
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"Rollout")
                && kinds.contains(&"HTTPRoute")
                && kinds.contains(&"NetworkPolicy"),
            "{overlay}: {kinds:?}"
        );
        for object in &objects {
            let text = object.to_string();
            assert!(!text.contains(":latest"), "{overlay}: a moving tag");
            let kind = object["kind"].as_str().unwrap();
            match kind {
                "HorizontalPodAutoscaler" | "PodDisruptionBudget" => {
                    let schema = if kind == "PodDisruptionBudget" {
                        "poddisruptionbudget-policy-v1.json"
                    } else {
                        "horizontalpodautoscaler-autoscaling-v2.json"
                    };
                    assert_eq!(schema_errors(object, schema), None, "{overlay} {kind}");
                }
                _ => {
                    let mut object = object.clone();
                    object["metadata"]["namespace"] = json!(namespace);
                    kube.apply(&object, true)
                        .await
                        .unwrap_or_else(|e| panic!("{overlay} {kind}: {e}"));
                }
            }
            *validated.entry(overlay).or_insert(0) += 1;
        }
        let rollout = objects.iter().find(|o| o["kind"] == "Rollout").unwrap();
        let container = &rollout["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["resources"]["limits"].is_object(),
            "{overlay}: resource limits"
        );
        assert_eq!(
            rollout["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        match overlay {
            "ephemeral" => {
                assert_eq!(rollout["spec"]["replicas"], 1);
                assert!(
                    !kinds.contains(&"HorizontalPodAutoscaler")
                        && !kinds.contains(&"PodDisruptionBudget")
                );
                assert!(kinds.contains(&"ResourceQuota") && kinds.contains(&"LimitRange"));
            }
            "production" => {
                assert_eq!(rollout["spec"]["replicas"], 4);
                assert_eq!(
                    rollout["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]
                        ["httpRoute"],
                    "example-service-route"
                );
                assert!(
                    container["image"].as_str().unwrap().contains("@sha256:"),
                    "pinned by digest"
                );
            }
            "production-blue-green" => {
                assert_eq!(
                    rollout["spec"]["strategy"]["blueGreen"]["autoPromotionEnabled"],
                    false
                );
                assert_eq!(
                    rollout["spec"]["strategy"]["blueGreen"]["prePromotionAnalysis"]["templates"]
                        [0]["templateName"],
                    "smoke-test"
                );
            }
            _ => {}
        }
    }
    assert_eq!(validated.len(), 4);
}
