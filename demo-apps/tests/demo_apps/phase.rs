//! Phase 18 against the sandbox: kube-apiserver v1.20 with the Argo CD CRDs (server-side apply,
//! the server validates every object), the GitLab stand-in's projects and repositories
//! (projects.md "Create project", repositories.md "List repository tree", commits.md "Create a
//! commit with multiple files and actions", tags.md) and the Harbor stand-in (swagger-validated
//! `POST /projects`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use common::kube::KubeClient;
use demo_apps::desired;
use demo_apps::projects::PROJECTS;
use demo_apps::settings::Settings;
use sandbox::PhaseRun as Run;
use sandbox::Sandbox;
use serde_json::{Value, json};

async fn phase(sandbox: &Sandbox, args: &[&str]) -> Run {
    phase_with(sandbox, args, &[]).await
}

async fn phase_with(sandbox: &Sandbox, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut env = vec![("CICD_CRD_WAIT_SECS", "30"), ("CICD_HTTP_RETRIES", "1")];
    env.extend_from_slice(extra);
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_demo-apps"),
        &sandbox.env_file(),
        args,
        &env,
    )
    .await
}

fn writes(sandbox: &Sandbox, standin: &str) -> u64 {
    sandbox
        .standin(standin)
        .control
        .counters
        .writes
        .load(Ordering::Relaxed)
}

/// The settings the phase derives from the sandbox's env file.
fn sandbox_settings(sandbox: &Sandbox) -> Settings {
    let mut s = Settings::example();
    sandbox.get("DOMAIN").clone_into(&mut s.domain);
    sandbox.get("GITLAB_URL").clone_into(&mut s.gitlab_url);
    let harbor = url::Url::parse(sandbox.get("HARBOR_URL")).unwrap();
    s.harbor_host = format!(
        "{}:{}",
        harbor.host_str().unwrap(),
        harbor.port_or_known_default().unwrap()
    );
    s
}

fn refs(s: &Settings) -> Vec<Value> {
    desired::objects(s)
        .into_iter()
        .map(|(o, _)| {
            json!({"apiVersion": o["apiVersion"], "kind": o["kind"],
                   "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]}})
        })
        .collect()
}

async fn versions(kube: &KubeClient, s: &Settings) -> Vec<Option<String>> {
    sandbox::support::resource_versions(kube, &refs(s)).await
}

/// (GitLab writes, Harbor writes, resourceVersions).
async fn state(
    sandbox: &Sandbox,
    kube: &KubeClient,
    s: &Settings,
) -> (u64, u64, Vec<Option<String>>) {
    (
        writes(sandbox, "gitlab"),
        writes(sandbox, "harbor"),
        versions(kube, s).await,
    )
}

/// A KV v2 secret's data (root token).
async fn kv(sandbox: &Sandbox, path: &str) -> Value {
    let data = sandbox::support::vault_read(sandbox, &format!("kv/data/{path}"))
        .await
        .unwrap_or_else(|| panic!("no secret at kv/{path}"));
    data["data"].clone()
}

/// A project's files and tags in the stand-in.
fn repository(
    sandbox: &Sandbox,
    path: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>, usize) {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    let repo = &gl.project_by_path(path).unwrap().repository;
    (repo.files.clone(), repo.tags.clone(), repo.commits.len())
}

fn titles(run: &Run) -> Vec<String> {
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    sandbox::change_titles(&doc)
}

#[tokio::test(flavor = "multi_thread")]
async fn seeds_the_arcade_once_keeps_demo_edits_and_resets_on_request() {
    let sandbox = crate::kube_sandbox().await;
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    let s = sandbox_settings(&sandbox);
    let relay = "platform_services/packet-relay";
    let dashboard = "platform_services/netops-dashboard";
    let mut runs: Vec<Run> = Vec::new();

    // plan: the Harbor project, both projects' content and tags, the objects; 0 writes anywhere.
    let before = state(&sandbox, &kube, &s).await;
    assert!(before.2.iter().all(Option::is_none));
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    // Per project: `main` and `v*` protected before the tag (its pipeline then gets Vault), the
    // promotion token before the first push (its main pipeline promotes), the seed commit, the
    // release tag.
    let mut expected = vec!["harbor project platform-services".to_owned()];
    for project in [relay, dashboard] {
        expected.extend([
            format!("gitlab release protection {project}"),
            format!("gitlab promotion token {project}"),
            format!("gitlab commit {project}@main"),
            format!("gitlab tag {project}:v0.1.0"),
        ]);
    }
    for r in refs(&s) {
        let ns = r["metadata"]["namespace"].as_str();
        let name = r["metadata"]["name"].as_str().unwrap();
        expected.push(format!(
            "kubernetes {} {}",
            r["kind"].as_str().unwrap(),
            ns.map_or_else(|| name.to_owned(), |ns| format!("{ns}/{name}"))
        ));
    }
    assert_eq!(titles(&plan), expected);
    assert_eq!(state(&sandbox, &kube, &s).await, before, "plan: 0 writes");
    // With --output json the scenarios are one JSON line on stderr.
    let scenarios: Value = serde_json::from_str(plan.stderr.lines().last().unwrap()).unwrap();
    let numbers: Vec<u64> = scenarios["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    runs.push(plan);

    // apply: read everything back.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let applied = state(&sandbox, &kube, &s).await;
    assert_eq!(
        applied.0 - before.0,
        10,
        "GitLab per project: protect main, protect v*, 1 commit, 1 tag, 1 promotion token"
    );
    assert_eq!(applied.1 - before.1, 1, "Harbor: 1 project");
    for (text, what) in [
        ("1. Bad IP (auto-rollback)", "scenario 1"),
        ("5. Blue-green switch", "scenario 5"),
        ("routing-config.yaml", "the key file"),
    ] {
        assert!(apply.stdout.contains(text), "{what}: {}", apply.stdout);
    }
    for project in &PROJECTS {
        let path = format!("platform_services/{}", project.name);
        let (files, tags, commits) = repository(&sandbox, &path);
        // The seeded commit also carries the default CODEOWNERS of a service (issue 16), so that
        // phase 12's rerun finds one and writes nothing.
        let mut wanted = project.files(&s).unwrap();
        wanted.insert(
            common::codeowners::DEFAULT_LOCATION.to_owned(),
            common::codeowners::render(
                common::codeowners::OwnersKind::Service,
                common::codeowners::DEFAULT_APPROVER_PARENT,
            ),
        );
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            wanted.keys().collect::<Vec<_>>(),
            "{path}: exactly the demo's files"
        );
        for (file, content) in &wanted {
            assert_eq!(&files[file], content, "{path}/{file}");
        }
        assert_eq!(commits, 1, "{path}: seeded in one commit");
        assert_eq!(tags.len(), 1, "{path}: the release tag");
        assert!(tags.contains_key("v0.1.0"), "{tags:?}");
        // The tag was pushed onto protected refs: its pipeline's id_token says ref_protected.
        let (project_id, secret) = {
            let gl = sandbox.gitlab.as_ref().unwrap().lock();
            let record = gl.project_by_path(&path).unwrap();
            assert!(
                record.protected_branches.iter().any(|b| b.name == "main"),
                "{path}: main"
            );
            assert!(
                record.protected_tags.iter().any(|t| t.name == "v*"),
                "{path}: v* tags"
            );
            let token = record
                .delivery
                .access_tokens
                .iter()
                .find(|t| t.active && t.name == common::contract::PROMOTE_TOKEN_NAME)
                .expect("a promotion token");
            assert_eq!(
                (token.access_level, token.scopes.clone()),
                (40, vec!["api".to_owned()])
            );
            (record.id, token.secret.clone())
        };
        let stored = kv(&sandbox, &common::contract::kv_promote_token(project_id)).await;
        assert_eq!(
            stored["token"],
            secret.as_str(),
            "{path}: the token in Vault"
        );
        for run in &runs {
            assert!(!run.stdout.contains(&secret) && !run.stderr.contains(&secret));
        }
        assert!(
            !files
                .keys()
                .any(|f| f.starts_with("tests/") || f.starts_with("benches/"))
        );
        let manifest = &files["Cargo.toml"];
        assert!(
            !manifest.contains("workspace = true"),
            "standalone manifest: {manifest}"
        );
        // The only path dependency is a crate the project carries (the dashboard's `common`,
        // for common::serve), and its files are in the commit.
        for line in manifest.lines().filter(|l| l.contains("path =")) {
            assert_eq!(
                line.trim(),
                "path = \"common\"",
                "standalone manifest: {manifest}"
            );
            assert!(
                files.contains_key("common/Cargo.toml"),
                "{path}: common/ is carried"
            );
        }
    }
    let relay_files = repository(&sandbox, relay).0;
    let prod = &relay_files["deploy/overlays/rke2-prod/kustomization.yaml"];
    assert!(
        prod.contains(&format!(
            "newName: {}/platform-services/packet-relay",
            s.harbor_host
        )),
        "{prod}"
    );
    {
        let harbor = sandbox.harbor.as_ref().unwrap().lock();
        let project = harbor
            .project_by_name("platform-services")
            .expect("created");
        assert_eq!(project.metadata["public"], "false");
    }
    let live = |i: usize| {
        let r = refs(&s)[i].clone();
        let kube = &kube;
        async move { kube.get(&r).await.unwrap().expect("applied") }
    };
    let namespace = live(0).await;
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let generator = live(1).await;
    let container = &generator["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!("{}/platform-services/packet-relay:v0.1.0", s.harbor_host),
        "the pinned release tag, never latest"
    );
    assert_eq!(container["args"], json!(["generate"]));
    assert_eq!(
        generator["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "harbor-pull"}])
    );
    assert_eq!(
        namespace["metadata"]["labels"]["cicd.platform/harbor-pull"], "true",
        "phase 15's pull Secret reaches the demo namespace"
    );
    runs.push(apply);

    // Rerun: nothing to do, 0 writes; check exits 0.
    let after = state(&sandbox, &kube, &s).await;
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(
        state(&sandbox, &kube, &s).await,
        after,
        "second apply: 0 writes"
    );
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);
    runs.push(rerun);
    runs.push(check);

    // A demo user plays scenario 2 and scenario 3 (commits in GitLab): a rerun keeps both and
    // says so; the demo's own state is not drift.
    {
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let repo = &mut gl.project_by_path_mut(relay).unwrap().repository;
        let routing = repo
            .files
            .get_mut("deploy/overlays/rke2-prod/routing-config.yaml")
            .unwrap();
        *routing = routing.replace(
            "value: http://router-east:8080",
            "value: http://router-north:8080",
        );
        let repo = &mut gl.project_by_path_mut(dashboard).unwrap().repository;
        repo.files.insert(
            "package.json".into(),
            "{\"dependencies\":{\"lodash\":\"4.17.11\"}}\n".into(),
        );
    }
    let after_demo = state(&sandbox, &kube, &s).await;
    let kept = phase(&sandbox, &["--output", "json", "apply"]).await;
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert!(titles(&kept).is_empty(), "{}", kept.stdout);
    assert!(
        kept.stdout.contains(
            "deploy/overlays/rke2-prod/routing-config.yaml; `demo-apps apply --reset` restores"
        ),
        "{}",
        kept.stdout
    );
    assert_eq!(state(&sandbox, &kube, &s).await, after_demo, "0 writes");
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // --reset: one commit per project puts the demo back.
    let reset = phase(&sandbox, &["--output", "json", "apply", "--reset"]).await;
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert_eq!(
        titles(&reset),
        [
            format!("gitlab commit {relay}@main"),
            format!("gitlab commit {dashboard}@main")
        ]
    );
    assert_eq!(writes(&sandbox, "gitlab") - after_demo.0, 2);
    let relay_files = repository(&sandbox, relay).0;
    assert!(
        relay_files["deploy/overlays/rke2-prod/routing-config.yaml"]
            .contains("value: http://router-east:8080")
    );
    let dashboard_files = repository(&sandbox, dashboard).0;
    assert!(
        !dashboard_files.contains_key("package.json"),
        "scenario 3's file removed"
    );
    let mut wanted = PROJECTS[1].files(&s).unwrap();
    // A reset restores the demo's files and never touches CODEOWNERS, which belongs to the
    // project's owners from its first commit on (issue 16).
    wanted.insert(
        common::codeowners::DEFAULT_LOCATION.to_owned(),
        common::codeowners::render(
            common::codeowners::OwnersKind::Service,
            common::codeowners::DEFAULT_APPROVER_PARENT,
        ),
    );
    assert_eq!(
        dashboard_files,
        wanted.into_iter().collect::<BTreeMap<_, _>>()
    );
    runs.push(kept);
    runs.push(reset);

    // Secrets of the sandbox never appear in any output.
    let secrets = [
        sandbox.get("GITLAB_API_TOKEN"),
        sandbox.get("HARBOR_ADMIN_PASSWORD"),
    ];
    for run in &runs {
        for secret in secrets {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_settings_and_a_missing_group_are_one_line_errors() {
    let sandbox = crate::kube_sandbox().await;
    for (extra, expected) in [
        (
            ("DEMO_IMAGE_TAG", "latest"),
            "DEMO_IMAGE_TAG=latest is not an immutable image tag",
        ),
        (
            ("DEMO_GENERATOR_RATE", "fast"),
            "DEMO_GENERATOR_RATE=fast must be a number",
        ),
        (
            ("DEMO_GITLAB_GROUP", "no-such-group"),
            "GitLab group no-such-group not found: run phase 12",
        ),
    ] {
        let before = writes(&sandbox, "gitlab");
        let run = phase_with(&sandbox, &["apply"], &[extra]).await;
        assert_eq!(run.code, 1, "{extra:?}: {}", run.stderr);
        let line = run.stderr.lines().last().unwrap();
        assert!(
            line.starts_with("error: ") && line.contains(expected),
            "{line}"
        );
        assert_eq!(writes(&sandbox, "gitlab"), before, "nothing written");
    }
}
