//! The platform's bash phases 12–18 (docs/research/upstream-bash-phases.md, section 3), as tests need
//! them: each leftover created the way the bash phase creates it — the same endpoints and bodies,
//! real `kubectl apply` of its manifests (written here from the research note, in our words: the
//! platform's repository has no licence) — so that a phase's adoption (docs/adr/0010) is tested
//! against what it will meet. Shared by the phases' own tests and the system test.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::Sandbox;

// --- Phase 12 (section 3.7) -------------------------------------------------------------------------

/// The body the bash helper `gitlab_add_approval_rule` POSTs.
pub fn approval_rule_body() -> Value {
    json!({"name": "Senior Review Required", "approvals_required": 2})
}

/// `POST /projects/:id/approval_rules` as the bash helper sends it: (status, answer).
pub async fn post_approval_rule(sandbox: &Sandbox, project: u64) -> (u16, Value) {
    gitlab_post(
        sandbox,
        &format!("projects/{project}/approval_rules"),
        &approval_rule_body(),
    )
    .await
}

/// A GitLab API POST with the admin token, as the bash `gitlab_api` helper makes it.
pub async fn gitlab_post(sandbox: &Sandbox, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v4/{path}", sandbox.get("GITLAB_URL")))
        .header("PRIVATE-TOKEN", sandbox.get("GITLAB_API_TOKEN"))
        .json(body)
        .send()
        .await
        .expect("the GitLab stand-in answers");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

// --- Phase 14 (section 3.6) -------------------------------------------------------------------------

/// A Harbor API call as the bash helpers make it (admin basic auth): (status, answer).
pub async fn harbor_post(sandbox: &Sandbox, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2.0/{path}", sandbox.get("HARBOR_URL")))
        .basic_auth("admin", Some(sandbox.get("HARBOR_ADMIN_PASSWORD")))
        .json(body)
        .send()
        .await
        .expect("the Harbor stand-in answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The robot body of the bash helper `create_harbor_robot`, at `level`: repository `actions` per
/// project.
pub fn harbor_robot_body(name: &str, level: &str, grants: &[(&str, &[&str])]) -> Value {
    let permissions: Vec<Value> = grants
        .iter()
        .map(|(namespace, actions)| {
            let access: Vec<Value> = actions
                .iter()
                .map(|a| json!({"resource": "repository", "action": a}))
                .collect();
            json!({"kind": "project", "namespace": namespace, "access": access})
        })
        .collect();
    json!({"name": name, "duration": -1, "level": level, "permissions": permissions})
}

/// What the bash phase 14 leaves in Harbor and Vault: its two projects, the system robots
/// `ci-push` and `argocd-pull` (`"level":"system"`, as its helper sends them), the project robots
/// of `platform-services` the issue describes (older variants of the helper), and the ci-push
/// secret at `kv/ci/harbor-push` (the `kv` mount must exist). Returns the robots' full names and
/// the secrets Harbor answered.
pub async fn phase_14(sandbox: &Sandbox) -> (Vec<String>, Vec<String>) {
    for project in ["platform-services", "ci-cache"] {
        let (status, answer) = harbor_post(
            sandbox,
            "projects",
            &json!({"project_name": project, "public": false, "metadata": {"public": "false"}}),
        )
        .await;
        assert!(status == 201 || status == 409, "{status} {answer}");
    }
    let push_pull: &[&str] = &["push", "pull"];
    let pull: &[&str] = &["pull"];
    let bodies = [
        harbor_robot_body(
            "ci-push",
            "system",
            &[("platform-services", push_pull), ("ci-cache", push_pull)],
        ),
        harbor_robot_body("argocd-pull", "system", &[("platform-services", pull)]),
        harbor_robot_body("ci-push", "project", &[("platform-services", push_pull)]),
        harbor_robot_body("argocd-pull", "project", &[("platform-services", pull)]),
    ];
    let mut names = Vec::new();
    let mut secrets = Vec::new();
    for body in &bodies {
        let (status, created) = harbor_post(sandbox, "robots", body).await;
        assert_eq!(status, 201, "{created}");
        names.push(created["name"].as_str().unwrap_or_default().to_owned());
        secrets.push(created["secret"].as_str().unwrap_or_default().to_owned());
    }
    // The bash phase stores the ci-push robot's name and secret for CI.
    let resp = crate::support::vault(sandbox, reqwest::Method::POST, "kv/data/ci/harbor-push")
        .json(&json!({"data": {"username": names[0], "password": secrets[0]}}))
        .send()
        .await
        .expect("OpenBao answers");
    assert!(resp.status().is_success(), "{}", resp.status());
    (names, secrets)
}

// --- Phase 15 (sections 3.1–3.4) --------------------------------------------------------------------

/// `kubectl` against the sandbox (the test's tool: the phase never needs kubectl).
pub fn kubectl(sandbox: &Sandbox, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", sandbox.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl (scripts/setup-test-env.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The three `AppProjects` of the bash phase (section 3.4), one `kubectl apply` of one heredoc.
pub const APP_PROJECTS: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: production
  namespace: argocd
spec:
  description: "Production workloads — platform-admins only"
  sourceRepos:
    - "git@gitlab.*:platform_services/*"
    - "https://gitlab.*:platform_services/*"
  destinations:
    - {server: "https://kubernetes.default.svc", namespace: demo-apps}
    - {server: "https://kubernetes.default.svc", namespace: "production-*"}
  roles:
    - name: admin
      description: Full production access
      groups: [platform-admins]
      policies: ["p, proj:production:admin, applications, *, production/*, allow"]
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: staging
  namespace: argocd
spec:
  description: "Staging workloads — infra-engineers and senior-developers"
  sourceRepos: ["*"]
  destinations:
    - {server: "https://kubernetes.default.svc", namespace: "staging-*"}
  roles:
    - name: deployer
      description: Staging deploy access
      groups: [infra-engineers, senior-developers]
      policies: ["p, proj:staging:deployer, applications, *, staging/*, allow"]
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: ephemeral
  namespace: argocd
spec:
  description: "Ephemeral MR environments — developers can sync"
  sourceRepos: ["*"]
  destinations:
    - {server: "https://kubernetes.default.svc", namespace: "ephemeral-*"}
  roles:
    - name: developer
      description: Ephemeral env access
      groups: [developers, senior-developers, infra-engineers]
      policies: ["p, proj:ephemeral:developer, applications, *, ephemeral/*, allow"]
"#;

/// The bash cleaner (section 3.1). The bash manifest says `batch/v1`; the sandbox's kube-apiserver
/// 1.20 serves `CronJob` only as `batch/v1beta1` (one stored object either way), so it is applied
/// through that version here: every field of its identity is the same.
pub const CLEANER: &str = r#"apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: ephemeral-ns-cleaner
  namespace: argocd
spec:
  schedule: "*/30 * * * *"
  successfulJobsHistoryLimit: 1
  failedJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          serviceAccountName: argocd-server
          restartPolicy: Never
          containers:
            - name: cleaner
              image: bitnami/kubectl:latest
              command:
                - /bin/bash
                - -c
                - |
                  # namespaces labelled ephemeral-ttl and older than 4 h are deleted
                  kubectl get ns -l ephemeral-ttl -o json | jq -r '.items[].metadata.name' |
                    while read -r ns; do kubectl delete namespace "$ns" --wait=false; done
"#;

/// The bash `ApplicationSet` (section 3.3), `${DOMAIN}` expanded as the heredoc does.
pub const APPLICATION_SET: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: ephemeral-mr-envs
  namespace: argocd
spec:
  generators:
    - pullRequest:
        gitlab:
          project: "platform_services"
          api: https://gitlab.sandbox.localhost
          tokenRef: {secretName: argocd-gitlab-token, key: token}
        requeueAfterSeconds: 60
  template:
    metadata:
      name: "ephemeral-{{branch_slug}}"
    spec:
      project: ephemeral
      source:
        repoURL: "{{clone_url}}"
        targetRevision: "{{head_sha}}"
        path: deploy/overlays/rke2-prod
      destination:
        server: https://kubernetes.default.svc
        namespace: "ephemeral-{{number}}"
      syncPolicy:
        automated: {prune: true, selfHeal: true}
        syncOptions: [CreateNamespace=true]
"#;

/// The bash phase 15 as it runs: `kubectl apply` of its heredocs (`AppProjects`, the cleaner, the
/// `ApplicationSet`) and the literal token Secret piped from `kubectl create secret … --dry-run=client
/// -o yaml` into `kubectl apply -f -` (section 3.2), holding `token`.
pub fn phase_15(sandbox: &Sandbox, token: &str) {
    kubectl(sandbox, &["apply", "-f", "-"], Some(APP_PROJECTS));
    kubectl(sandbox, &["apply", "-f", "-"], Some(CLEANER));
    let token_literal = format!("--from-literal=token={token}");
    let secret = kubectl(
        sandbox,
        &[
            "create",
            "secret",
            "generic",
            "argocd-gitlab-token",
            "--namespace=argocd",
            &token_literal,
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    );
    kubectl(sandbox, &["apply", "-f", "-"], Some(&secret));
    kubectl(sandbox, &["apply", "-f", "-"], Some(APPLICATION_SET));
}

// --- Phase 16 (section 3.5) -------------------------------------------------------------------------

/// The body the bash phase POSTs to `/user/runners` on every run (`tag_list` a comma-separated
/// string).
pub fn security_runner_body() -> Value {
    json!({
        "runner_type": "instance_type",
        "description": "security-scanner-runner",
        "tag_list": "security,trivy,semgrep,gitleaks",
        "run_untagged": false,
    })
}

/// The Helm release of the bash security runner. The chart cannot be fetched here, so this lays
/// out what `helm install` and one `helm upgrade` leave (helm/helm `pkg/storage/driver/secrets.go`:
/// one Secret per revision, type `helm.sh/release.v1`, labels `owner`, `name`, `status`,
/// `version`, `data.release` = the release JSON gzipped and base64-encoded — made with the real
/// `gzip` and `base64` tools — and `pkg/action/install.go`: every applied object annotated
/// `meta.helm.sh/release-name` and `meta.helm.sh/release-namespace`, labelled
/// `app.kubernetes.io/managed-by=Helm`).
pub const HELM_RELEASE: &str = "gitlab-runner-security";
/// The release's namespace.
pub const HELM_NAMESPACE: &str = "gitlab-runners";
/// The runner token `helm install --set runnerToken=…` put in the release values and the chart's
/// Secret.
pub const HELM_RUNNER_TOKEN: &str = "glrt-bash-security-runner-0042";

/// The latest revision's manifest as Helm stores it: `# Source:` headers, no namespaces (Helm
/// installs into the release namespace), the chart's labels. The Service is listed too, but its
/// live copy (below) is someone else's now.
pub const HELM_MANIFEST: &str = r#"---
# Source: gitlab-runner/templates/service-account.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: gitlab-runner-security
  labels: {app: gitlab-runner-security, chart: gitlab-runner-0.86.0, release: "gitlab-runner-security", heritage: "Helm"}
---
# Source: gitlab-runner/templates/secrets.yaml
apiVersion: v1
kind: Secret
metadata:
  name: gitlab-runner-security
  labels: {app: gitlab-runner-security, chart: gitlab-runner-0.86.0, release: "gitlab-runner-security", heritage: "Helm"}
type: Opaque
data:
  runner-token: "Z2xydC1iYXNoLXNlY3VyaXR5LXJ1bm5lci0wMDQy"
  runner-registration-token: ""
---
# Source: gitlab-runner/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: gitlab-runner-security
  labels: {app: gitlab-runner-security, chart: gitlab-runner-0.86.0, release: "gitlab-runner-security", heritage: "Helm"}
data:
  config.template.toml: |
    [[runners]]
      [runners.kubernetes]
        namespace = "gitlab-runners"
        image = "alpine:3.21"
---
# Source: gitlab-runner/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: gitlab-runner-security
spec:
  ports: [{name: metrics, port: 9252, targetPort: 9252, protocol: TCP}]
  selector: {app: gitlab-runner-security}
---
# Source: gitlab-runner/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gitlab-runner-security
  labels: {app: gitlab-runner-security, chart: gitlab-runner-0.86.0, release: "gitlab-runner-security", heritage: "Helm"}
spec:
  replicas: 1
  selector:
    matchLabels: {app: gitlab-runner-security}
  template:
    metadata:
      labels: {app: gitlab-runner-security}
    spec:
      serviceAccountName: gitlab-runner-security
      containers:
        - name: gitlab-runner-security
          image: registry.gitlab.com/gitlab-org/gitlab-runner:alpine-v18.6.0
"#;

/// `gzip | base64` of `text`, as Helm encodes a stored release.
pub fn helm_encode(text: &str) -> String {
    let run = |program: &str, args: &[&str], input: &[u8]| {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{program}");
        out.stdout
    };
    let gzipped = run("gzip", &["-c", "-n"], text.as_bytes());
    String::from_utf8(run("base64", &["-w0"], &gzipped)).unwrap()
}

/// Revision `n`'s Secret (`stringData`: the API server base64-encodes it into `data`).
pub fn helm_release_secret(n: u64, status: &str, manifest: &str) -> Value {
    let release = json!({
        "name": HELM_RELEASE, "namespace": HELM_NAMESPACE, "version": n,
        "info": {"status": status, "description": if n == 1 { "Install complete" } else { "Upgrade complete" }},
        "chart": {"metadata": {"name": "gitlab-runner", "version": "0.86.0"}},
        "config": {"runnerToken": HELM_RUNNER_TOKEN, "gitlabUrl": "https://gitlab.sandbox.localhost"},
        "manifest": manifest,
    });
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": format!("sh.helm.release.v1.{HELM_RELEASE}.v{n}"), "namespace": HELM_NAMESPACE,
                     "labels": {"name": HELM_RELEASE, "owner": "helm", "status": status, "version": n.to_string(), "modifiedAt": "1767225600"}},
        "stringData": {"release": helm_encode(&release.to_string())},
    })
}

/// The manifest's objects as `helm install` applied them: in the release namespace, with Helm's
/// ownership metadata; the Service instead as another owner re-created it (no Helm metadata).
pub fn helm_installed_objects() -> Vec<Value> {
    HELM_MANIFEST
        .split("\n---\n")
        .filter(|d| d.contains("kind:"))
        .map(|document| {
            let mut object: Value = serde_saphyr::from_str(document).unwrap();
            object["metadata"]["namespace"] = json!(HELM_NAMESPACE);
            if object["kind"] != "Service" {
                object["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("Helm");
                object["metadata"]["annotations"] = json!({
                    "meta.helm.sh/release-name": HELM_RELEASE,
                    "meta.helm.sh/release-namespace": HELM_NAMESPACE,
                });
            }
            object
        })
        .collect()
}

/// Everything the release left: revision 1 (superseded, an older runner image) and revision 2
/// (deployed) of the release, and the latest manifest's objects as installed.
pub fn helm_release_leftovers() -> Vec<Value> {
    let v1_manifest = HELM_MANIFEST.replace("alpine-v18.6.0", "alpine-v18.5.0");
    let mut out = vec![
        helm_release_secret(1, "superseded", &v1_manifest),
        helm_release_secret(2, "deployed", HELM_MANIFEST),
    ];
    out.extend(helm_installed_objects());
    out
}
