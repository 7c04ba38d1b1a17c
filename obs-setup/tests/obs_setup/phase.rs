//! Phase 17 against the sandbox: kube-apiserver v1.20 with the Prometheus Operator and External
//! Secrets CRDs (server-side apply; the server validates every object it serves), real `OpenBao`
//! (the webhook secret and the promotion token in KV v2; writes counted from its audit log), real
//! Prometheus (the live summary probes it) and the GitLab stand-in's group hooks
//! (`doc/api/group_webhooks.md`), projects, protected branches and tags, repository files, commits,
//! tags and project access tokens (the collector's project, seeded).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use common::kube::KubeClient;
use obs_setup::desired;
use obs_setup::settings::Settings;
use sandbox::PhaseRun as Run;
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

async fn phase(sandbox: &Sandbox, args: &[&str]) -> Run {
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_obs-setup"),
        &sandbox.env_file(),
        args,
        &[("CICD_CRD_WAIT_SECS", "30"), ("CICD_HTTP_RETRIES", "1")],
    )
    .await
}

/// The sandbox after phase 13's part phase 17 needs: KV v2 at `kv/`.
async fn start() -> Sandbox {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options::default())
        .await
        .expect("sandbox starts");
    sandbox::support::mount_kv(&sandbox).await;
    sandbox
}

fn vault(sandbox: &Sandbox, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    sandbox::support::vault(sandbox, method, path)
}

async fn vault_json(sandbox: &Sandbox, path: &str) -> Option<Value> {
    sandbox::support::vault_read(sandbox, path).await
}

fn gitlab_writes(sandbox: &Sandbox) -> u64 {
    sandbox
        .standin("gitlab")
        .control
        .counters
        .writes
        .load(Ordering::Relaxed)
}

/// Every object the phase applies.
fn refs() -> Vec<Value> {
    // The sandbox's Vault reviews Kubernetes logins with the client's token.
    let mut s = Settings::example();
    s.token_reviewer_client = true;
    desired::objects(&s)
        .into_iter()
        .map(|(o, _)| o)
        .map(|o| {
            json!({"apiVersion": o["apiVersion"], "kind": o["kind"],
                   "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]}})
        })
        .collect()
}

async fn versions(kube: &KubeClient) -> Vec<Option<String>> {
    sandbox::support::resource_versions(kube, &refs()).await
}

/// (GitLab writes, Vault writes, resourceVersion of each object).
async fn state(sandbox: &Sandbox, kube: &KubeClient) -> (u64, usize, Vec<Option<String>>) {
    (
        gitlab_writes(sandbox),
        sandbox.vault_writes(),
        versions(kube).await,
    )
}

/// The hooks of `platform_services` in the stand-in: (url, token, fields).
fn hooks(sandbox: &Sandbox) -> Vec<(String, String, serde_json::Map<String, Value>)> {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    let group = gl.group_by_path("platform_services").unwrap().id;
    gl.hooks
        .of_group(group)
        .into_iter()
        .map(|h| (h.url.clone(), h.token.clone(), h.fields.clone()))
        .collect()
}

fn titles(run: &Run) -> Vec<String> {
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    sandbox::change_titles(&doc)
}

const PROJECT: &str = "platform_services/dora-collector";

/// The seeding steps of the collector's project as the plan titles them (`create`: the project
/// does not exist yet).
fn seeding_titles(create: bool) -> Vec<String> {
    seeding_titles_of(PROJECT, create)
}

fn seeding_titles_of(project: &str, create: bool) -> Vec<String> {
    let mut out = Vec::new();
    if create {
        out.push(format!("gitlab project {project}"));
    }
    out.extend([
        format!("gitlab release protection {project}"),
        format!("gitlab promotion token {project}"),
        format!("gitlab commit {project}@main"),
        format!("gitlab tag {project}:v0.1.0"),
    ]);
    if create {
        // Phase 12's hardening of the new project (skipped here: this sandbox has no phase 12).
        out.push(format!("gitlab hardening (phase 12) {project}"));
    }
    out
}

/// The feature-flag auditor's project and Vault access (issue 20), and the readiness report's
/// producer, this repository (issue 21).
fn auditor_titles() -> Vec<String> {
    let mut out = seeding_titles_of("platform_services/feature-flags", true);
    out.extend(seeding_titles_of("platform_services/cicd-buildout", true));
    // Its Kubernetes role waits for phase 13's Kubernetes auth, which this sandbox lacks (a plan
    // warning says so; the system test has the role made and used).
    out.push("vault policy feature-flag-auditor".to_owned());
    // The readiness report's own read-only access (ADR 0012 decision 8): its policy, and one
    // group token per group of GITLAB_GROUPS (the role waits as the auditor's does).
    out.push("vault policy cicd-readiness".to_owned());
    out.push("gitlab group access token platform_services/cicd-readiness".to_owned());
    out
}

/// The collector's project in the stand-in: id, files, commits (oldest first), tags.
struct Seeded {
    id: u64,
    files: BTreeMap<String, String>,
    commits: Vec<String>,
    tags: BTreeMap<String, String>,
}

fn seeded(sandbox: &Sandbox) -> Seeded {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    let project = gl
        .project_by_path(PROJECT)
        .expect("the collector's project");
    let repo = &project.repository;
    Seeded {
        id: project.id,
        files: repo.files.clone(),
        commits: repo.commits.iter().map(|(sha, _)| sha.clone()).collect(),
        tags: repo.tags.clone(),
    }
}

/// Every file under `dir`, by path relative to it.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// `obs-setup render` with the sandbox's settings: the project as the phase pushes it.
async fn rendered(sandbox: &Sandbox, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_obs-setup"),
        &sandbox.env_file(),
        &["-q", "render", "--out", out],
        extra,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "render prints nothing: {}",
        run.stdout
    );
    read_tree(&dir.path().join("dora-collector"))
}

/// The promotion token Vault holds for project `id` (`kv/ci/projects/<id>/promote`).
async fn promote_token(sandbox: &Sandbox, id: u64) -> Option<String> {
    vault_json(sandbox, &format!("kv/data/ci/projects/{id}/promote"))
        .await
        .map(|d| d["data"]["token"].as_str().unwrap().to_owned())
}

/// The stand-in's answer to `GET /projects/<id>` with `token`.
async fn project_status_with(sandbox: &Sandbox, token: &str, id: u64) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/api/v4/projects/{id}",
            sandbox.get("GITLAB_URL")
        ))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The registry as phase 14 names it: the host (and port) of `HARBOR_URL`.
fn harbor_host(sandbox: &Sandbox) -> String {
    sandbox
        .get("HARBOR_URL")
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_rerun_drift_and_rotation_against_the_sandbox() {
    let sandbox = start().await;
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    let hook_url = "https://dora.sandbox.localhost/webhooks/gitlab";
    let mut runs: Vec<Run> = Vec::new();
    // The stand-in's demo instance has an empty project of that name: this platform has none yet.
    sandbox
        .gitlab
        .as_ref()
        .unwrap()
        .lock()
        .projects
        .retain(|_, p| p.path_with_namespace != PROJECT);

    // plan: everything listed, nothing written anywhere.
    let before = state(&sandbox, &kube).await;
    assert!(before.2.iter().all(Option::is_none));
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let planned = titles(&plan);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let mut expected = vec![
        "vault secret kv/monitoring/dora-collector".to_owned(),
        "gitlab group hook platform_services/dora-collector".to_owned(),
    ];
    // The collector's project: created, protected before its release tag, seeded in one commit,
    // tagged, with its promotion token; the workload is the project's, not applied by the phase.
    expected.extend(seeding_titles(true));
    expected.extend(auditor_titles());
    let commit = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"] == "gitlab commit")
        .expect("the seeding commit");
    for file in [
        "+ Cargo.lock",
        "+ Dockerfile",
        "+ .gitlab-ci.yml",
        "+ common/src/gitlab/mod.rs",
        "+ deploy/base/deployment.yaml",
        "+ deploy/overlays/production/kustomization.yaml",
    ] {
        assert!(commit.to_string().contains(file), "{file}: {commit}");
    }
    let protection = doc["changes"].to_string();
    assert!(
        protection.contains(r#""create_access_level":40"#) && protection.contains(r#""name":"v*""#),
        "{protection}"
    );
    for r in refs() {
        let name = r["metadata"]["name"].as_str().unwrap();
        expected.push(match r["metadata"]["namespace"].as_str() {
            Some(namespace) => format!(
                "kubernetes {} {namespace}/{name}",
                r["kind"].as_str().unwrap()
            ),
            // Cluster-scoped: the auditor's ClusterRoleBinding (Vault reviews with the client).
            None => format!("kubernetes {} {name}", r["kind"].as_str().unwrap()),
        });
    }
    assert_eq!(planned, expected);
    assert!(
        !planned.iter().any(|t| [
            "Deployment",
            "Service ",
            "Ingress",
            "ExternalSecret monitoring/",
            "PersistentVolumeClaim",
            "NetworkPolicy",
            "PodDisruptionBudget"
        ]
        .iter()
        .any(|kind| t.contains(kind))),
        "the workload is Argo CD's now: {planned:?}"
    );
    // What Argo Rollouts needs to notify the collector (issue 17) lives in its namespace.
    for object in [
        "kubernetes ConfigMap argo-rollouts/argo-rollouts-notification-configmap",
        "kubernetes ExternalSecret argo-rollouts/argo-rollouts-notification-secret",
    ] {
        assert!(planned.iter().any(|t| t == object), "{object}: {planned:?}");
    }
    assert_eq!(
        state(&sandbox, &kube).await,
        before,
        "plan: 0 GitLab, 0 Vault, 0 Kubernetes writes"
    );
    let pending = phase(&sandbox, &["check"]).await;
    assert_eq!(
        pending.code, 2,
        "check: changes pending\n{}",
        pending.stdout
    );
    assert_eq!(state(&sandbox, &kube).await, before, "check: 0 writes");
    runs.push(pending);
    // With --output json the summary is a JSON line on stderr.
    let summary: Value = serde_json::from_str(plan.stderr.lines().last().unwrap()).unwrap();
    let probes: Vec<(&str, bool)> = summary["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["up"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        probes,
        vec![
            ("Grafana", false),
            ("Prometheus", true),
            ("Prometheus rules cicd-alerts", false),
            ("Prometheus target dora-collector", false),
            ("DORA collector /readyz", false),
            ("GitLab group hook", false),
        ],
        "{summary}"
    );
    runs.push(plan);

    // apply, then read the end state back.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let applied = state(&sandbox, &kube).await;
    assert_eq!(
        applied.0 - before.0,
        20,
        "GitLab: one hook; for the collector's, the auditor's and this repository's project each: the project, protected main, protected v*, one commit, the tag, the promotion token; the readiness report's group token"
    );
    assert_eq!(
        applied.1 - before.1,
        13,
        "Vault: the secret (cas=0), its metadata, the hook's token fingerprint; each of the 3 projects' promotion token and its metadata; the auditor's policy; the readiness report's policy, its secret and that secret's metadata"
    );
    // The readiness report's token: read-only, Maintainer (to read protected branches), in Vault.
    let stored = vault_json(&sandbox, "kv/data/monitoring/cicd-readiness")
        .await
        .expect("the readiness report's credentials stored");
    let tokens: std::collections::BTreeMap<String, String> = serde_json::from_str(
        stored["data"]["gitlab-tokens"]
            .as_str()
            .expect("key gitlab-tokens"),
    )
    .expect("group → token");
    assert_eq!(tokens.keys().collect::<Vec<_>>(), ["platform_services"]);
    {
        let data = sandbox.gitlab.as_ref().unwrap().lock();
        let group = data.group_by_path("platform_services").expect("the group");
        let minted: Vec<_> = group
            .access_tokens
            .iter()
            .filter(|t| t.name == "cicd-readiness" && t.active)
            .collect();
        assert_eq!(minted.len(), 1);
        assert_eq!(minted[0].scopes, ["read_api"]);
        assert_eq!(minted[0].access_level, 40);
        assert_eq!(minted[0].secret, tokens["platform_services"]);
    }
    let secret = vault_json(&sandbox, "kv/data/monitoring/dora-collector")
        .await
        .expect("secret stored")["data"]["webhook-secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64, "32 random bytes, hex");
    let hooks_now = hooks(&sandbox);
    assert_eq!(hooks_now.len(), 1);
    let (url, token, fields) = &hooks_now[0];
    assert_eq!(url, hook_url);
    assert_eq!(token, &secret, "the hook's token is the Vault secret");
    for flag in [
        "pipeline_events",
        "deployment_events",
        "merge_requests_events",
        "push_events",
        "enable_ssl_verification",
    ] {
        assert_eq!(fields[flag], true, "{flag}");
    }
    let meta = vault_json(&sandbox, "kv/metadata/monitoring/dora-collector")
        .await
        .unwrap();
    assert_eq!(
        meta["custom_metadata"]["managed-by"],
        "cicd-buildout/obs-setup"
    );
    let fingerprint = meta["custom_metadata"]["gitlab-hook-token"]
        .as_str()
        .unwrap();
    assert!(
        !fingerprint.contains(&secret[..16]),
        "a hash, not the secret"
    );
    for r in refs() {
        let live = kube.get(&r).await.unwrap();
        assert!(live.is_some(), "{r} applied");
    }
    let rule = kube.get(&refs()[1]).await.unwrap().unwrap();
    assert_eq!(rule["spec"]["groups"][0]["name"], "cicd-alerts");
    assert_eq!(
        rule["spec"]["groups"][0]["rules"].as_array().unwrap().len(),
        5
    );
    let monitor = kube.get(&refs()[2]).await.unwrap().unwrap();
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "dora-collector"
    );

    // The collector's project: exactly `obs-setup render`'s files, in one commit, tagged there.
    let project = seeded(&sandbox);
    let mut wanted = rendered(&sandbox, &[]).await;
    // The seeded commit also carries a service's default CODEOWNERS (issue 16), so that phase 12's
    // rerun finds one and writes nothing.
    wanted.insert(
        common::codeowners::DEFAULT_LOCATION.to_owned(),
        common::codeowners::render(
            common::codeowners::OwnersKind::Service,
            common::codeowners::DEFAULT_APPROVER_PARENT,
        ),
    );
    assert_eq!(
        project.files.keys().collect::<Vec<_>>(),
        wanted.keys().collect::<Vec<_>>(),
        "exactly the rendered files"
    );
    for (path, content) in &wanted {
        assert_eq!(&project.files[path], content, "{path}: byte for byte");
    }
    assert_eq!(project.commits.len(), 1, "seeded in one commit");
    assert_eq!(
        project.tags,
        BTreeMap::from([("v0.1.0".to_owned(), project.commits[0].clone())]),
        "the release tag points at the seeded commit"
    );
    assert!(
        !project
            .files
            .keys()
            .any(|f| f.starts_with("tests/") || f.starts_with("benches/")),
        "the workspace's tests stay here"
    );
    let manifest = &project.files["Cargo.toml"];
    assert!(
        !manifest.contains("workspace = true") && manifest.contains("path = \"common\""),
        "standalone, carrying common: {manifest}"
    );
    assert!(
        project.files["deploy/overlays/production/kustomization.yaml"].contains(&format!(
            "newName: {}/platform-services/dora-collector\n    newTag: v0.1.0\n",
            harbor_host(&sandbox)
        )),
        "production pins the release tag in the registry of HARBOR_URL, as phase 14 names it"
    );
    {
        let gl = sandbox.gitlab.as_ref().unwrap().lock();
        let record = gl.project_by_path(PROJECT).unwrap();
        let main = record
            .protected_branches
            .iter()
            .find(|b| b.name == "main")
            .expect("main protected");
        assert_eq!(
            (
                main.push[0].access_level,
                main.merge[0].access_level,
                main.allow_force_push
            ),
            (40, 40, false)
        );
        let tags: Vec<(String, Vec<Option<u8>>)> = record
            .protected_tags
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.create.iter().map(|a| a.access_level).collect(),
                )
            })
            .collect();
        assert_eq!(
            tags,
            [("v*".to_owned(), vec![Some(40)])],
            "v* tags: Maintainers create"
        );
    }
    // The promotion token: in Vault under the project's id, valid for this project only.
    let token = promote_token(&sandbox, project.id)
        .await
        .expect("kv/ci/projects/<id>/promote");
    assert_eq!(project_status_with(&sandbox, &token, project.id).await, 200);
    let other = sandbox
        .gitlab
        .as_ref()
        .unwrap()
        .lock()
        .project_by_path("platform_services/packet-relay")
        .unwrap()
        .id;
    assert_eq!(
        project_status_with(&sandbox, &token, other).await,
        404,
        "another project is invisible to it"
    );
    let meta = vault_json(
        &sandbox,
        &format!("kv/metadata/ci/projects/{}/promote", project.id),
    )
    .await
    .unwrap();
    assert_eq!(meta["custom_metadata"]["project"], PROJECT);
    // The live summary: Prometheus runs here, Grafana and the collector do not.
    assert!(
        apply.stderr.contains("up   Prometheus "),
        "{}",
        apply.stderr
    );
    assert!(apply.stderr.contains("DOWN Grafana "), "{}", apply.stderr);
    assert!(
        apply.stderr.contains("DOWN DORA collector /readyz"),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("up   GitLab group hook")
            && apply.stderr.contains(&format!("posts to {hook_url}")),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("DOWN Prometheus rules cicd-alerts")
            && apply.stderr.contains("not loaded"),
        "no operator here to load the PrometheusRule: {}",
        apply.stderr
    );
    runs.push(apply);

    // A collector target that does not answer: the summary says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    sandbox
        .add_scrape_target("dora-collector", &dead)
        .await
        .unwrap();
    let targets = format!("{}/api/v1/targets", sandbox.get("PROMETHEUS_URL"));
    for _ in 0..50 {
        let t: Value = reqwest::get(&targets).await.unwrap().json().await.unwrap();
        if t.to_string().contains("\"health\":\"down\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Rerun: no change, 0 writes anywhere; check exits 0.
    let after = state(&sandbox, &kube).await;
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(
        state(&sandbox, &kube).await,
        after,
        "second apply: 0 writes"
    );
    assert!(
        rerun
            .stderr
            .contains("DOWN Prometheus target dora-collector")
            && rerun.stderr.contains("0/1 up"),
        "{}",
        rerun.stderr
    );
    runs.push(rerun);
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert_eq!(state(&sandbox, &kube).await, after, "check: 0 writes");
    runs.push(check);

    // Drift: hook events edited by hand in GitLab, a rule edited by hand in the cluster.
    {
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let hook = gl.hooks.hooks.values_mut().next().unwrap();
        hook.fields.insert("pipeline_events".into(), json!(false));
        hook.fields.insert("deployment_events".into(), json!(false));
    }
    let mut edited = rule.clone();
    edited["spec"]["groups"][0]["rules"][0]["expr"] = json!("cicd_pipeline_success_rate < 0.5");
    let hand = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "kubectl-edit")
        .await
        .unwrap();
    hand.apply(
        &json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": "cicd-alerts", "namespace": "monitoring"}, "spec": edited["spec"]}),
        false,
    )
    .await
    .unwrap();
    let drift = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(drift.code, 2, "{}", drift.stderr);
    assert_eq!(
        titles(&drift),
        vec![
            "gitlab group hook platform_services/dora-collector",
            "kubernetes PrometheusRule monitoring/cicd-alerts"
        ]
    );
    let doc: Value = serde_json::from_str(&drift.stdout).unwrap();
    let hook_diff = doc["changes"][0]["diff"].to_string();
    assert!(
        hook_diff.contains("pipeline_events: false -> true")
            && hook_diff.contains("deployment_events: false -> true")
            && !hook_diff.contains("token"),
        "only the edited fields: {hook_diff}"
    );
    // The rule's before/after carry the hand edit (the text diff shortens long arrays).
    assert!(
        doc["changes"][1]["before"]
            .to_string()
            .contains("cicd_pipeline_success_rate < 0.5")
            && doc["changes"][1]["after"]
                .to_string()
                .contains("cicd_pipeline_success_rate < 0.90"),
        "{}",
        doc["changes"][1]
    );
    runs.push(drift);
    let fix = phase(&sandbox, &["apply"]).await;
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    runs.push(fix);
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);
    assert_eq!(hooks(&sandbox)[0].1, secret, "token kept");

    // Promotion pins staging's digest (a commit in GitLab): the overlay's kustomization.yaml is
    // promotion's, a rerun keeps it and is no drift. A changed source file is drift: restored.
    let staging = "deploy/overlays/staging/kustomization.yaml";
    let promoted = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let edit = |path: &str, content: String| {
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let repo = &mut gl.project_by_path_mut(PROJECT).unwrap().repository;
        repo.files.insert(path.to_owned(), content);
    };
    let pinned = seeded(&sandbox).files[staging].replace(
        "digest: sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &format!("digest: {promoted}"),
    );
    assert!(pinned.contains(promoted));
    edit(staging, pinned.clone());
    let writes = state(&sandbox, &kube).await;
    let check = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(check.code, 0, "promotion is not drift: {}", check.stdout);
    let kept = phase(&sandbox, &["apply"]).await;
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert_eq!(state(&sandbox, &kube).await, writes, "0 writes");
    assert_eq!(
        seeded(&sandbox).files[staging],
        pinned,
        "promotion's pin kept"
    );
    runs.push(check);
    runs.push(kept);
    let main_rs = seeded(&sandbox).files["src/main.rs"].clone();
    edit("src/main.rs", format!("{main_rs}// edited in GitLab\n"));
    let drift = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(drift.code, 2, "{}", drift.stderr);
    assert_eq!(titles(&drift), [format!("gitlab commit {PROJECT}@main")]);
    let doc: Value = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(
        doc["changes"][0]["after"]["files"],
        json!(["~ src/main.rs"]),
        "only the source file, never promotion's overlay"
    );
    runs.push(drift);
    let writes = gitlab_writes(&sandbox);
    let restore = phase(&sandbox, &["apply"]).await;
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(gitlab_writes(&sandbox), writes + 1, "one commit");
    let project = seeded(&sandbox);
    assert_eq!(project.files["src/main.rs"], main_rs, "restored");
    assert_eq!(project.files[staging], pinned, "still promotion's");
    assert_eq!(project.commits.len(), 2);
    assert_eq!(project.tags.len(), 1, "the release tag stays where it was");
    runs.push(restore);
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // Rotation: a new GitLab secret written to Vault by hand (the other sources' secrets kept)
    // → the hook (and only it) is updated.
    let rotated = "rotated-webhook-secret-0123456789abcdef0123456789abcdef";
    let mut data = sandbox::support::vault_read(&sandbox, "kv/data/monitoring/dora-collector")
        .await
        .expect("phase 17's secret")["data"]
        .clone();
    for key in ["rollouts-webhook-secret", "harbor-webhook-secret"] {
        assert!(
            data[key].as_str().is_some_and(|v| v.len() == 64),
            "{key} generated"
        );
    }
    data["webhook-secret"] = json!(rotated);
    let resp = vault(
        &sandbox,
        reqwest::Method::POST,
        "kv/data/monitoring/dora-collector",
    )
    .json(&json!({ "data": data }))
    .send()
    .await
    .unwrap();
    assert!(resp.status().is_success());
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(
        titles(&plan),
        vec!["gitlab group hook platform_services/dora-collector"]
    );
    assert!(plan.stdout.contains("token"), "{}", plan.stdout);
    runs.push(plan);
    let writes = gitlab_writes(&sandbox);
    let rotate = phase(&sandbox, &["apply"]).await;
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    assert_eq!(gitlab_writes(&sandbox), writes + 1, "one hook edit");
    assert_eq!(
        hooks(&sandbox)[0].1,
        rotated,
        "the hook has the rotated secret"
    );
    runs.push(rotate);
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);
    runs.push(check);

    // The secrets (webhook, first and rotated; the promotion token; the readiness report's group
    // token; the phase's GitLab token) never appear in any output.
    for run in &runs {
        for s in [
            secret.as_str(),
            rotated,
            token.as_str(),
            tokens["platform_services"].as_str(),
            sandbox.get("GITLAB_API_TOKEN"),
        ] {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "a secret was printed:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }

    readiness_tokens_follow_gitlab_groups(&sandbox).await;
}

/// The readiness report's tokens follow `GITLAB_GROUPS` (ADR 0012 decision 8): a second group
/// gets its own token; a group dropped leaves the Vault secret and its token is revoked in GitLab;
/// a hand-edited secret stops the plan with the fix instead of losing tokens silently.
async fn readiness_tokens_follow_gitlab_groups(sandbox: &Sandbox) {
    let env_file = sandbox.env_file();
    let run = |groups: &'static str, args: &'static [&'static str]| {
        let env_file = env_file.clone();
        async move {
            sandbox::run_phase_binary(
                env!("CARGO_BIN_EXE_obs-setup"),
                &env_file,
                args,
                &[
                    ("CICD_CRD_WAIT_SECS", "30"),
                    ("CICD_HTTP_RETRIES", "1"),
                    ("GITLAB_GROUPS", groups),
                ],
            )
            .await
        }
    };
    let created = reqwest::Client::new()
        .post(format!("{}/api/v4/groups", sandbox.get("GITLAB_URL")))
        .header("PRIVATE-TOKEN", sandbox.get("GITLAB_API_TOKEN"))
        .json(&json!({"name": "team-apps", "path": "team-apps"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let stored = || async {
        let secret = vault_json(sandbox, "kv/data/monitoring/cicd-readiness")
            .await
            .expect("the secret");
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(
            secret["data"]["gitlab-tokens"].as_str().unwrap(),
        )
        .unwrap()
    };
    let active = |group: &str| -> Vec<u64> {
        let data = sandbox.gitlab.as_ref().unwrap().lock();
        data.group_by_path(group)
            .unwrap()
            .access_tokens
            .iter()
            .filter(|t| t.name == "cicd-readiness" && t.active)
            .map(|t| t.id)
            .collect()
    };

    let apply = run(
        "platform_services,team-apps",
        &["--output", "json", "apply"],
    )
    .await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        titles(&apply).contains(&"gitlab group access token team-apps/cicd-readiness".to_owned()),
        "{}",
        apply.stdout
    );
    assert_eq!(
        stored().await.keys().collect::<Vec<_>>(),
        ["platform_services", "team-apps"]
    );
    let team_token = active("team-apps");
    assert_eq!(team_token.len(), 1);
    let rerun = run("platform_services,team-apps", &["--output", "json", "plan"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(titles(&rerun).is_empty(), "{}", rerun.stdout);

    // Dropped: out of the secret, revoked in GitLab; platform_services' token untouched.
    let kept = active("platform_services");
    let apply = run("platform_services", &["--output", "json", "apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    // The report's settings follow too: it checks that every group of GITLAB_GROUPS has a token.
    assert_eq!(
        titles(&apply),
        [
            "vault secret kv/monitoring/cicd-readiness",
            "kubernetes ConfigMap monitoring/cicd-readiness-env"
        ],
        "{}",
        apply.stdout
    );
    assert_eq!(
        stored().await.keys().collect::<Vec<_>>(),
        ["platform_services"]
    );
    assert!(
        active("team-apps").is_empty(),
        "the dropped group's token is revoked"
    );
    assert_eq!(active("platform_services"), kept);
    let rerun = run("platform_services", &["--output", "json", "plan"]).await;
    assert!(titles(&rerun).is_empty(), "{}", rerun.stdout);

    // Edited by hand: the plan stops and says how to recover.
    let edited = vault(
        sandbox,
        reqwest::Method::POST,
        "kv/data/monitoring/cicd-readiness",
    )
    .json(&json!({"data": {"gitlab-tokens": "not json"}}))
    .send()
    .await
    .unwrap();
    assert!(edited.status().is_success(), "{}", edited.status());
    let plan = run("platform_services", &["plan"]).await;
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stderr.contains("not a JSON object of group → token")
            && plan
                .stderr
                .contains("vault kv metadata delete kv/monitoring/cicd-readiness"),
        "{}",
        plan.stderr
    );
}

/// `OBS_DORA_POSTGRES=true` without `database-url` in Vault fails the plan with the fix; with it,
/// the seeded production overlay runs two replicas reading the URL from the Secret, without a
/// volume claim (built by kustomize, checked by the server's dry run), while staging keeps `SQLite`.
#[tokio::test(flavor = "multi_thread")]
async fn an_external_postgres_needs_the_database_url_in_vault() {
    let sandbox = start().await;
    let run = |args: &'static [&'static str]| {
        let sandbox = &sandbox;
        async move {
            sandbox::run_phase_binary(
                env!("CARGO_BIN_EXE_obs-setup"),
                &sandbox.env_file(),
                args,
                &[
                    ("OBS_DORA_POSTGRES", "true"),
                    ("OBS_DORA_POSTGRES_EXTERNAL", "true"),
                    ("CICD_HTTP_RETRIES", "1"),
                ],
            )
            .await
        }
    };
    let plan = run(&["-q", "plan"]).await;
    assert_eq!(plan.code, 1);
    assert!(
        plan.stderr
            .contains("has no `database-url` starting with postgres://"),
        "{}",
        plan.stderr
    );
    let url = "postgres://dora:pg-secret-password-42@postgres.db.svc:5432/dora";
    let resp = vault(
        &sandbox,
        reqwest::Method::POST,
        "kv/data/monitoring/dora-collector",
    )
    .json(&json!({"data": {"database-url": url}}))
    .send()
    .await
    .unwrap();
    assert!(resp.status().is_success());
    let plan = run(&["-q", "--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    assert_eq!(titles[0], "vault secret kv/monitoring/dora-collector");
    assert_eq!(
        doc["changes"][0]["action"], "update",
        "the key is added next to database-url"
    );
    assert!(!titles.iter().any(|t| t.contains("PersistentVolumeClaim")));
    assert!(
        titles.contains(&format!("gitlab commit {PROJECT}@main")),
        "{titles:?}"
    );
    let apply = run(&["-q", "apply"]).await;
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let data = vault_json(&sandbox, "kv/data/monitoring/dora-collector")
        .await
        .unwrap();
    assert_eq!(data["data"]["database-url"], url, "kept");
    assert_eq!(data["data"]["webhook-secret"].as_str().unwrap().len(), 64);
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    // The project as seeded, built like Argo CD builds it.
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in seeded(&sandbox).files {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let production = crate::kustomize(&dir.path().join("deploy/overlays/production"));
    let d = production
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    kube.apply(d, true)
        .await
        .expect("kube-apiserver accepts the Deployment (dry run)");
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    let store = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DORA_STORE_URL")
        .unwrap();
    assert_eq!(
        store,
        &json!({"name": "DORA_STORE_URL", "valueFrom": {"secretKeyRef": {"name": "dora-collector-secrets", "key": "database-url", "optional": false}}})
    );
    assert!(
        !production
            .iter()
            .any(|o| o["kind"] == "PersistentVolumeClaim"),
        "no volume claim with PostgreSQL"
    );
    let staging = crate::kustomize(&dir.path().join("deploy/overlays/staging"));
    let d = staging.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(d["spec"]["replicas"], 1, "staging keeps its own SQLite");
    assert!(staging.iter().any(|o| o["kind"] == "PersistentVolumeClaim"));
    assert!(
        !staging
            .iter()
            .any(|o| o.to_string().contains("database-url"))
    );
    for out in [&plan.stdout, &plan.stderr, &apply.stdout, &apply.stderr] {
        assert!(!out.contains("pg-secret-password-42"));
    }
}

/// ADR 0008: a project's `v*` tags are protected before its release tag is pushed (the tag
/// pipeline's `ref_protected` is fixed at the push). When protecting fails, apply stops there: no
/// commit and no tag; the rerun protects, then seeds and tags. The protection then admits
/// Maintainers (create level 40) and refuses Developers, admins or not.
#[tokio::test(flavor = "multi_thread")]
async fn the_release_tag_waits_for_release_protection() {
    let sandbox = start().await;
    let id = seeded(&sandbox).id;
    let gitlab = sandbox.standin("gitlab");
    gitlab.control.add_fault(sandbox::standins::Fault {
        method: Some("POST".into()),
        path_prefix: format!("/api/v4/projects/{id}/protected_tags"),
        status: 403,
        ..sandbox::standins::Fault::default()
    });
    let failed = phase(&sandbox, &["apply"]).await;
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    let line = failed.stderr.lines().last().unwrap();
    assert!(
        line.starts_with("error: ")
            && line.contains(&format!("gitlab release protection {PROJECT}"))
            && line.contains("rerun apply"),
        "names the operation, the project and the fix: {line}"
    );
    let project = seeded(&sandbox);
    assert!(
        project.tags.is_empty() && project.commits.is_empty(),
        "nothing pushed before v* is protected"
    );
    assert!(promote_token(&sandbox, id).await.is_none());

    gitlab.control.clear_faults();
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    let planned = titles(&plan);
    let seeding: Vec<&String> = planned
        .iter()
        .filter(|t| t.starts_with("gitlab ") && t.contains(PROJECT) && !t.contains("hook"))
        .collect();
    assert_eq!(seeding, seeding_titles(false).iter().collect::<Vec<_>>());
    assert!(
        plan.stdout.contains(r#""protected_branch": null"#),
        "main is protected already, only v* is left: {}",
        plan.stdout
    );
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let project = seeded(&sandbox);
    assert_eq!(project.tags["v0.1.0"], project.commits[0]);
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // What the protection means for people pushing tags (not admins).
    let (developer, maintainer) = {
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let group = gl.group_by_path("platform_services").unwrap().id;
        let mut add = |name: &str, level: u8| {
            let user = gl.add_user(name, &[]);
            let token = format!("glpat-{name}-0123456789");
            gl.add_token(&token, user);
            gl.groups
                .get_mut(&group)
                .unwrap()
                .members
                .insert(user, level);
            token
        };
        (add("tag-developer", 30), add("tag-maintainer", 40))
    };
    let push_tag = |token: String, tag: &'static str| {
        let url = format!(
            "{}/api/v4/projects/{id}/repository/tags",
            sandbox.get("GITLAB_URL")
        );
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("PRIVATE-TOKEN", token)
                .json(&json!({"tag_name": tag, "ref": "main"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = push_tag(developer, "v0.1.1").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("protected"), "{body}");
    assert_eq!(push_tag(maintainer, "v0.1.2").await.0, 201);
}

/// `OBS_DORA_POSTGRES=true` without an external database: the collector's own `CloudNativePG`
/// `Cluster`, planned by server-side dry run against the real CNPG CRD (v1.30.0, installed by the
/// sandbox), and the Deployment reads the application secret `CloudNativePG` documents.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_is_a_cloudnativepg_cluster_of_its_own() {
    let sandbox = start().await;
    let plan = sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_obs-setup"),
        &sandbox.env_file(),
        &["-q", "--output", "json", "plan"],
        &[("OBS_DORA_POSTGRES", "true"), ("CICD_HTTP_RETRIES", "1")],
    )
    .await;
    assert_eq!(plan.code, 0, "no database-url needed: {}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    assert!(
        titles.contains(&"kubernetes Cluster monitoring/dora-collector-pg".to_owned()),
        "{titles:?}"
    );
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    let mut s = Settings::example();
    s.store = obs_setup::settings::Store::Postgres;
    let cluster = obs_setup::cnpg::cluster(&s);
    kube.apply(&cluster, true)
        .await
        .expect("the CNPG CRD accepts the Cluster (server-side dry run)");
    let mut broken = cluster.clone();
    broken["spec"]["instances"] = json!("three");
    let refused = kube.apply(&broken, true).await.unwrap_err().to_string();
    assert!(
        refused.contains("422") || refused.contains("Invalid"),
        "{refused}"
    );
    // The store URL: the secret and key CloudNativePG documents for the application user
    // (docs/src/applications.md, "Secrets": `[cluster name]-app`, with a `uri`).
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sandbox/fixtures/cnpg-docs/application-secrets.md"),
    )
    .unwrap();
    assert!(
        doc.contains("`[cluster name]-app`") && doc.contains("\n* [uri]("),
        "{doc}"
    );
    let d = obs_setup::desired::deployment(&s);
    let store = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DORA_STORE_URL")
        .unwrap()
        .clone();
    assert_eq!(
        store["valueFrom"]["secretKeyRef"],
        json!({"name": "dora-collector-pg-app", "key": "uri", "optional": false})
    );
    assert!(!plan.stdout.contains(PASSWORD_MARKER));
}

/// Nothing in the plan looks like a connection string with a password.
const PASSWORD_MARKER: &str = "postgres://dora:";
