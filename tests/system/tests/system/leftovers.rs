//! The platform's bash phases ran here first (docs/adr/0010). Before phases 12–18 apply, every
//! leftover of docs/research/upstream-bash-phases.md (section 3) is made the way the bash phases make
//! it (`sandbox::bash_phases`): duplicate "Senior Review Required" rules, the Harbor robots and
//! their Vault copy, the cleaner `CronJob`, the `ApplicationSet`, the literal token Secret and the
//! `AppProjects` by `kubectl apply`, one security runner per past run and its Helm release. Each
//! phase's `--adopt-report` lists its leftovers just before it applies (writing nothing); one run
//! of every phase in the driver's order (`--from 12`) converges them, and the rerun
//! (`World::start`) makes 0 changes.

use std::collections::BTreeSet;

use sandbox::Sandbox;
use sandbox::bash_phases;
use serde_json::{Value, json};

use crate::world::World;

/// What the bash phases left, as the checks need it afterwards.
pub struct Planted {
    /// The literal token Secret's uid: it must survive the takeover (never deleted).
    pub token_secret_uid: String,
    /// `(phase binary, action, "resource name")` of every leftover the phases' `--adopt-report`
    /// listed.
    pub reported: BTreeSet<(String, String, String)>,
}

/// Projects the bash phase 12 `POST`ed its rule on (its lookup found none there).
const RULE_PROJECTS: [&str; 3] = [
    "platform_services/packet-relay",
    "platform_services/netops-dashboard",
    "platform_services/infrastructure/platform-manifests",
];
const RULE_NAME: &str = "Senior Review Required";
/// Runs of the bash phase 16 so far: one instance runner each.
const BASH_RUNS: usize = 3;

/// Makes every leftover, before any phase of ours runs.
pub async fn plant(sandbox: &Sandbox) -> String {
    // Phase 13 of the bash phases enabled KV v2 at kv/ (phase 14 below writes into it).
    sandbox::support::mount_kv(sandbox).await;
    // Phase 12: its rule on each project; one project also holds a second copy, as GitLab
    // instances older than its name validation can (the API refuses a second POST).
    for path in RULE_PROJECTS {
        let id = project_id(sandbox, path);
        let (status, rule) = bash_phases::post_approval_rule(sandbox, id).await;
        assert_eq!(status, 201, "{path}: {rule}");
    }
    {
        let mut gl = sandbox.gitlab.as_ref().expect("in-process GitLab").lock();
        let rules = &mut gl
            .project_by_path_mut(RULE_PROJECTS[0])
            .expect("packet-relay")
            .approval_rules;
        let copy = rules
            .iter()
            .find(|r| r.name == RULE_NAME)
            .expect("the bash rule")
            .clone();
        rules.push(sandbox::standins::gitlab::ApprovalRuleRecord {
            id: 9_100_001,
            ..copy
        });
    }
    // Phase 14: Harbor projects, system and project robots, the ci-push secret in Vault.
    bash_phases::phase_14(sandbox).await;
    // Phase 15: kubectl apply of its objects; the Secret holds the admin token, as there.
    bash_phases::phase_15(sandbox, sandbox.get("GITLAB_API_TOKEN"));
    // Phase 16: a runner per run, and the Helm release of the last one.
    for _ in 0..BASH_RUNS {
        let (status, runner) = bash_phases::gitlab_post(
            sandbox,
            "user/runners",
            &bash_phases::security_runner_body(),
        )
        .await;
        assert_eq!(status, 201, "{runner}");
    }
    let kube = common::kube::KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "helm")
        .await
        .expect("kube client");
    for object in bash_phases::helm_release_leftovers() {
        kube.apply(&object, false).await.expect("the Helm release");
    }
    let secret = kube
        .get(&token_secret())
        .await
        .expect("reading the Secret")
        .expect("the bash phase's Secret");
    secret["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_owned()
}

fn project_id(sandbox: &Sandbox, path: &str) -> u64 {
    sandbox
        .gitlab
        .as_ref()
        .expect("in-process GitLab")
        .lock()
        .project_by_path(path)
        .unwrap_or_else(|| panic!("{path}"))
        .id
}

/// The Kubernetes leftovers: their resourceVersions show that a report wrote nothing.
pub fn watched() -> Vec<Value> {
    let at = |api: &str, kind: &str, name: &str| json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "argocd"}});
    let mut out = vec![
        at("batch/v1beta1", "CronJob", "ephemeral-ns-cleaner"),
        at(
            "argoproj.io/v1alpha1",
            "ApplicationSet",
            "ephemeral-mr-envs",
        ),
        token_secret(),
    ];
    for project in ["production", "staging", "ephemeral"] {
        out.push(at("argoproj.io/v1alpha1", "AppProject", project));
    }
    out.extend(bash_phases::helm_release_leftovers());
    out
}

fn token_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-gitlab-token", "namespace": "argocd"}})
}

/// `(action, "resource name")` of each row of a phase's `--adopt-report --output json`.
pub fn report_rows(stdout: &str) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["mode"], "adopt-report", "{doc}");
    let rows = sandbox::support::bash_leftover_rows(&doc["leftovers"]);
    assert_eq!(
        rows.len(),
        doc["leftovers"].as_array().map_or(0, Vec::len),
        "every row carries the bash reason: {doc}"
    );
    rows
}

/// `GET url` with `auth` (GitLab's token header or Harbor's basic auth): the JSON answer.
fn get_json(
    world: &World,
    url: &str,
    auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Value {
    world.rt.block_on(async {
        auth(reqwest::Client::new().get(url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    })
}

fn gitlab_get(world: &World, path: &str) -> Value {
    get_json(
        world,
        &format!("{}/api/v4/{path}", world.get("GITLAB_URL")),
        |r| r.header("PRIVATE-TOKEN", world.get("GITLAB_API_TOKEN")),
    )
}

/// After `--from 12`: nothing of the bash phases is left, and each removal had been reported.
pub fn converged(world: &World) {
    let planted = &world.bash;
    let reported = |phase: &str, action: &str, name_part: &str| {
        assert!(
            planted
                .reported
                .iter()
                .any(|(p, a, n)| p == phase && a == action && n.contains(name_part)),
            "{phase}'s --adopt-report did not list {action} {name_part}: {:?}",
            planted.reported
        );
    };
    let sandbox = &world.sandbox;
    let kube = world.kube();

    // Phase 12: ours kept on the service projects (one, with its approver groups); the bash rule
    // gone everywhere.
    {
        let gl = sandbox.gitlab.as_ref().expect("in-process GitLab").lock();
        for path in RULE_PROJECTS {
            let rules: Vec<_> = gl
                .project_by_path(path)
                .expect("project")
                .approval_rules
                .iter()
                .filter(|r| r.name == RULE_NAME)
                .collect();
            let service = !path.contains("/infrastructure/");
            assert_eq!(rules.len(), usize::from(service), "{path}: {rules:?}");
            assert!(
                rules.iter().all(|r| !r.group_ids.is_empty()),
                "{path}: the bash rule (no approver group) is still there"
            );
        }
    }
    reported("gitlab-harden", "delete", "(id 9100001)");

    // Phase 14: no project robot; the system robots are ours; the Vault copy is gone.
    let robots = get_json(
        world,
        &format!("{}/api/v2.0/robots?page_size=100", world.get("HARBOR_URL")),
        |r| r.basic_auth("admin", Some(world.get("HARBOR_ADMIN_PASSWORD"))),
    );
    let robots = robots.as_array().expect("a list of robots");
    assert!(
        robots.iter().all(|r| r["level"] == "system"),
        "a project robot is left: {robots:?}"
    );
    for name in ["robot$ci-push", "robot$argocd-pull"] {
        let robot = robots
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} is gone"));
        assert!(
            robot["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name} still has the bash phase's body: {robot}"
        );
    }
    assert!(
        world
            .rt
            .block_on(sandbox::support::vault_read(
                sandbox,
                "kv/data/ci/harbor-push"
            ))
            .is_none(),
        "kv/ci/harbor-push is left"
    );
    for name in [
        "ci-push",
        "argocd-pull",
        "platform-services+ci-push",
        "ci/harbor-push",
    ] {
        assert!(
            planted
                .reported
                .iter()
                .any(|(p, _, n)| p == "ci-templates" && n.contains(name)),
            "ci-templates did not report {name}: {:?}",
            planted.reported
        );
    }

    // Phase 15: cleaner and ApplicationSet gone; the Secret taken over, never deleted; the
    // AppProjects owned by our field manager only.
    let at = |api: &str, kind: &str, name: &str| json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "argocd"}});
    let live = |object: &Value| world.rt.block_on(kube.get(object)).expect("kube get");
    assert!(live(&at("batch/v1beta1", "CronJob", "ephemeral-ns-cleaner")).is_none());
    assert!(
        live(&at(
            "argoproj.io/v1alpha1",
            "ApplicationSet",
            "ephemeral-mr-envs"
        ))
        .is_none()
    );
    let secret = live(&token_secret()).expect("the Secret is never deleted");
    assert_eq!(
        secret["metadata"]["uid"].as_str(),
        Some(planted.token_secret_uid.as_str()),
        "the Secret was re-created: a window without it"
    );
    assert!(
        secret["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none(),
        "kubectl's annotation (the token, base64) is left"
    );
    for project in ["production", "staging", "ephemeral"] {
        let object = live(&at("argoproj.io/v1alpha1", "AppProject", project)).expect(project);
        let managers: Vec<&str> = object["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(
            managers.iter().all(|m| !m.starts_with("kubectl")),
            "AppProject {project}: fields still owned by kubectl: {managers:?}"
        );
        reported("argo-delivery", "update", project);
    }
    for name in ["ephemeral-ns-cleaner", "ephemeral-mr-envs"] {
        reported("argo-delivery", "delete", name);
    }
    reported("argo-delivery", "update", "argocd-gitlab-token");

    // Phase 16: no bash runner; no Helm release Secret nor any of its Helm-annotated objects.
    let runners = gitlab_get(world, "runners/all?per_page=100");
    let bash_runners = runners
        .as_array()
        .expect("runners")
        .iter()
        .filter(|r| r["description"] == "security-scanner-runner")
        .count();
    assert_eq!(bash_runners, 0, "bash runners left: {runners}");
    let security: Vec<&String> = planted
        .reported
        .iter()
        .filter(|(p, _, _)| p == "security-setup")
        .map(|(_, action, object)| {
            assert_eq!(action, "delete", "{object}");
            object
        })
        .collect();
    let runner_rows = security
        .iter()
        .filter(|o| o.starts_with("gitlab runner "))
        .count();
    assert_eq!(
        runner_rows, BASH_RUNS,
        "one deletion per bash runner: {security:?}"
    );
    for object in bash_phases::helm_installed_objects() {
        if object["metadata"]["annotations"]
            .get("meta.helm.sh/release-name")
            .is_some()
        {
            let kind = object["kind"].as_str().unwrap_or_default();
            assert!(
                security
                    .iter()
                    .any(|o| o.contains(kind) && o.contains(bash_phases::HELM_RELEASE)),
                "{kind} of the release was not reported: {security:?}"
            );
        }
    }
    for revision in 1..=2 {
        let secret = format!(
            "sh.helm.release.v1.{}.v{revision}",
            bash_phases::HELM_RELEASE
        );
        assert!(
            security.iter().any(|o| o.contains(&secret)),
            "{secret} was not reported: {security:?}"
        );
    }
    assert_eq!(
        security.len(),
        BASH_RUNS + 4 + 2,
        "the runners, the release's 4 Helm-stamped objects and its 2 revisions, nothing else: {security:?}"
    );
    let release_secrets = world
        .rt
        .block_on(kube.list(
            "v1",
            "Secret",
            bash_phases::HELM_NAMESPACE,
            &format!("owner=helm,name={}", bash_phases::HELM_RELEASE),
        ))
        .expect("listing Secrets");
    assert!(
        release_secrets.is_empty(),
        "Helm release Secrets left: {}",
        release_secrets.len()
    );
    for object in bash_phases::helm_installed_objects() {
        let helm_owned = object["metadata"]["annotations"]
            .get("meta.helm.sh/release-name")
            .is_some();
        if helm_owned {
            assert!(
                live(&object).is_none(),
                "{} {} of the Helm release is left",
                object["kind"],
                object["metadata"]["name"]
            );
        }
    }
}

/// Phase 12b published the platform checkout's `docs/engineering` (the model's three SOPs) as the
/// wiki of `sop-wiki`: the documents, the split SOP, Home and `_sidebar`, links rewritten.
pub fn wiki_published(world: &World) {
    let id = project_id(&world.sandbox, "platform_services/sop-wiki");
    let pages = gitlab_get(world, &format!("projects/{id}/wikis?with_content=1"));
    let pages = pages.as_array().expect("pages");
    let slugs: BTreeSet<&str> = pages.iter().filter_map(|p| p["slug"].as_str()).collect();
    assert_eq!(
        slugs,
        BTreeSet::from([
            "Home",
            "_sidebar",
            "deployment-automation",
            "system-architecture",
            "troubleshooting-01-general-diagnostic-flowchart",
            "troubleshooting-02-tls-certificate-issues",
            "troubleshooting-sop",
        ])
    );
    let content = |slug: &str| {
        pages
            .iter()
            .find(|p| p["slug"] == slug)
            .and_then(|p| p["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let architecture = content("system-architecture");
    assert!(
        architecture.contains("](deployment-automation#phases)"),
        "{architecture}"
    );
    assert!(content("deployment-automation").contains("](../vault-ha.md)"));
    assert!(
        content("troubleshooting-02-tls-certificate-issues").contains("## 3. not a section"),
        "a heading inside a code fence split the SOP"
    );
}
