//! Phase 12 against the sandbox: the GitLab and Keycloak stand-ins (behaviour from
//! specs/gitlab/api-docs and specs/keycloak/openapi-26.6.0.json; each handler names its doc
//! section) and, for the SSH route, the real kube-apiserver v1.20 with Traefik's CRD installed.
//! Writes are counted by the stand-ins; every end state is read back from the stand-in's data.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use sandbox::standins::gitlab::{GitLabData, Tier};
use sandbox::standins::{Fault, Running};
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

use sandbox::PhaseRun as Run;

// The bash phase's approval rules, adopted.
#[path = "gitlab_harden/bash_leftovers.rs"]
mod bash_leftovers;

/// Runs gitlab-harden with the sandbox's env file plus `extra` (nothing inherited but PATH).
async fn harden(sandbox: &Sandbox, args: &[&str], extra: &[(&str, &str)]) -> Run {
    // Later settings win: `extra` may override the retry count.
    let mut env = vec![("CICD_HTTP_RETRIES", "3")];
    env.extend_from_slice(extra);
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_gitlab-harden"),
        &sandbox.env_file(),
        args,
        &env,
    )
    .await
}

async fn start(kube: bool) -> Sandbox {
    Sandbox::start(Options {
        kube,
        vault: false,
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("sandbox starts")
}

fn gitlab(sandbox: &Sandbox) -> &Running {
    sandbox.standin("gitlab")
}

fn writes(r: &Running) -> u64 {
    r.control.counters.writes.load(Ordering::Relaxed)
}

fn reset(r: &Running) {
    r.control.counters.reads.store(0, Ordering::Relaxed);
    r.control.counters.writes.store(0, Ordering::Relaxed);
    r.control.counters.by_route.lock().unwrap().clear();
}

/// Requests served per route prefix (`GET /api/v4/projects/` …).
fn served(r: &Running, method_and_prefix: &str) -> u64 {
    r.control
        .counters
        .by_route
        .lock()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with(method_and_prefix))
        .map(|(_, n)| *n)
        .sum()
}

/// Requests served per method and route suffix (`POST` … `/protected_tags`).
fn served_ending(r: &Running, method: &str, suffix: &str) -> usize {
    r.control
        .counters
        .by_route
        .lock()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with(&format!("{method} ")) && route.ends_with(suffix))
        .map(|(_, n)| usize::try_from(*n).unwrap())
        .sum()
}

fn data(sandbox: &Sandbox) -> std::sync::MutexGuard<'_, GitLabData> {
    sandbox.gitlab.as_ref().expect("in-process GitLab").lock()
}

fn seed_projects(sandbox: &Sandbox, n: usize) -> Vec<String> {
    data(sandbox).seed_nested_projects("platform_services", n)
}

fn seed_developers(sandbox: &Sandbox, n: usize) {
    sandbox::seed_linked_developers(
        sandbox.gitlab.as_ref().unwrap(),
        sandbox.keycloak.as_ref().unwrap(),
        n,
    );
}

async fn api(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let url = format!("{}/api/v4/{path}", sandbox.get("GITLAB_URL"));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .header("PRIVATE-TOKEN", sandbox.get("GITLAB_API_TOKEN"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

fn plan_json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

fn group_id(sandbox: &Sandbox, path: &str) -> u64 {
    data(sandbox)
        .group_by_path(path)
        .unwrap_or_else(|| panic!("group {path}"))
        .id
}

/// Asserts one project ends exactly as phase 12 specifies (read back from the stand-in).
fn assert_hardened(d: &GitLabData, path: &str, premium: bool) {
    let project = d.project_by_path(path).unwrap_or_else(|| panic!("{path}"));
    let settings = &project.settings;
    assert_eq!(
        settings["only_allow_merge_if_pipeline_succeeds"], true,
        "{path}"
    );
    assert_eq!(
        settings["only_allow_merge_if_all_discussions_are_resolved"], true,
        "{path}"
    );
    assert_eq!(settings["merge_method"], "rebase_merge", "{path}");
    assert_eq!(settings["remove_source_branch_after_merge"], true, "{path}");
    assert_eq!(
        settings["container_registry_access_level"], "disabled",
        "{path}"
    );
    assert_eq!(settings["merge_trains_enabled"], premium, "{path}");
    let main: Vec<_> = project
        .protected_branches
        .iter()
        .filter(|b| b.name == "main")
        .collect();
    assert_eq!(main.len(), 1, "{path}");
    let main = main[0];
    let levels = |l: &[sandbox::standins::gitlab::AccessRecord]| {
        l.iter().map(|a| a.access_level).collect::<Vec<_>>()
    };
    assert_eq!(levels(&main.push), vec![40], "{path} push");
    assert_eq!(levels(&main.merge), vec![40], "{path} merge");
    if premium || main.unprotect.len() == 1 {
        assert_eq!(levels(&main.unprotect), vec![60], "{path} unprotect");
    }
    assert!(!main.allow_force_push, "{path}");
    assert_eq!(main.code_owner_approval_required, premium, "{path}");
    // Release tags: exactly one protection, Maintainers create (both kinds, both tiers).
    assert_eq!(
        project.protected_tags.len(),
        1,
        "{path}: {:?}",
        project.protected_tags
    );
    let tag = &project.protected_tags[0];
    assert_eq!(tag.name, "v*", "{path}");
    let roles: Vec<_> = tag
        .create
        .iter()
        .filter(|a| a.user_id.is_none() && a.group_id.is_none() && a.deploy_key_id.is_none())
        .map(|a| a.access_level)
        .collect();
    assert_eq!(roles, vec![Some(40)], "{path}: v* created by Maintainers");
    if !premium {
        assert!(project.approval_rules.is_empty(), "{path}");
        return;
    }
    let a = &project.approval_settings;
    assert_eq!(a["merge_requests_author_approval"], false, "{path}");
    assert_eq!(
        a["merge_requests_disable_committers_approval"], true,
        "{path}"
    );
    assert_eq!(a["reset_approvals_on_push"], true, "{path}");
    let admins = d
        .group_by_path("keycloak-groups/platform-admins")
        .unwrap()
        .id;
    let seniors = d
        .group_by_path("keycloak-groups/senior-developers")
        .unwrap()
        .id;
    let infra_engineers = d
        .group_by_path("keycloak-groups/infra-engineers")
        .unwrap()
        .id;
    let security_group = d.group_by_path("keycloak-groups/cicd-security").unwrap().id;
    let managed: Vec<_> = project
        .approval_rules
        .iter()
        .filter(|r| {
            r.name.starts_with("Senior Review")
                || r.name.starts_with("Production Approval")
                || r.name.starts_with("Infrastructure Approval")
                || r.name.starts_with("Security Approval")
                || r.name.starts_with("SEC-1 Review")
        })
        .collect();
    let production = path.ends_with("-manifests") || path.ends_with("platform-manifests");
    // Plan §2.6 "Security policies/RBAC": two platform-admins and a SEC-1 review, SEC-1 being
    // Keycloak's cicd-security (default globs `*/security-policies*,*-rbac,*/rbac-*`, topic
    // `security-policies`).
    let security = !production
        && (path.ends_with("-rbac") || project.topics.iter().any(|t| t == "security-policies"));
    // Plan §2.6 "Infrastructure/Terraform": two platform-admins (default globs
    // `*/infrastructure/*,*-terraform`; production manifests keep their own gate).
    let infrastructure = !production
        && !security
        && (path.contains("/infrastructure/") || path.ends_with("-terraform"));
    if security {
        let shape: Vec<(&str, u64, Vec<u64>)> = managed
            .iter()
            .map(|r| (r.name.as_str(), r.approvals_required, r.group_ids.clone()))
            .collect();
        assert_eq!(
            shape,
            [
                ("Security Approval (platform-admins)", 2, vec![admins]),
                ("SEC-1 Review (cicd-security)", 1, vec![security_group])
            ],
            "{path}"
        );
    } else if infrastructure {
        assert_eq!(managed.len(), 1, "{path}: {managed:?}");
        assert_eq!(managed[0].name, "Infrastructure Approval (platform-admins)");
        assert_eq!(managed[0].approvals_required, 2, "{path}");
        assert_eq!(managed[0].group_ids, vec![admins], "{path}");
    } else if production {
        assert_eq!(managed.len(), 2, "{path}: {managed:?}");
        for r in &managed {
            assert_eq!(r.approvals_required, 1, "{path}");
            let want = if r.name.contains("platform-admins") {
                admins
            } else {
                seniors
            };
            assert_eq!(r.group_ids, vec![want], "{path}");
        }
    } else {
        assert_eq!(managed.len(), 1, "{path}: {managed:?}");
        let r = managed[0];
        assert_eq!(r.name, "Senior Review Required");
        assert_eq!(r.approvals_required, 2, "{path}");
        let mut groups = r.group_ids.clone();
        groups.sort_unstable();
        // "Staging (main branch): senior-developers OR infra-engineers, 2" (plus platform-admins,
        // as the plan's script has it).
        let mut want = vec![admins, seniors, infra_engineers];
        want.sort_unstable();
        assert_eq!(groups, want, "{path}");
    }
    for r in managed {
        assert_eq!(
            r.protected_branch_ids,
            vec![main.id],
            "{path}: rule scoped to protected main"
        );
        assert!(!r.applies_to_all_protected_branches);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn premium_instance_with_hundreds_of_projects_is_hardened_once_and_left_alone() {
    common::cli::install_crypto_provider();
    let sandbox = start(true).await;
    let paths = seed_projects(&sandbox, 260);
    assert!(paths.len() >= 250 + 6);
    seed_developers(&sandbox, 150);

    // Hand-made state the bash phase could have left: main protected with developer push and
    // force push, a weaker "Senior Review Required" scoped to main, and a team's own rule.
    let relay = data(&sandbox)
        .project_by_path("platform_services/packet-relay")
        .unwrap()
        .id;
    let branch = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("projects/{relay}/protected_branches"),
        Some(json!({"name": "main", "push_access_level": 30, "merge_access_level": 30, "allow_force_push": true})),
    )
    .await;
    let branch_id = branch["id"].as_u64().unwrap();
    let weak = api(
        &sandbox,
        reqwest::Method::POST,
        &format!("projects/{relay}/approval_rules"),
        Some(json!({"name": "Senior Review Required", "approvals_required": 1, "protected_branch_ids": [branch_id]})),
    )
    .await;
    let weak_id = weak["id"].as_u64().unwrap();
    api(
        &sandbox,
        reqwest::Method::POST,
        &format!("projects/{relay}/approval_rules"),
        Some(json!({"name": "Security team", "approvals_required": 1})),
    )
    .await;
    // CODEOWNERS (GitLab docs, user/project/codeowners): a project with commits and none gets
    // the default; a team's own file in docs/ is one (never touched); empty repositories wait.
    let (with_commits, with_theirs) = (
        "platform_services/teams/team-0/svc-0001",
        "platform_services/teams/team-1/svc-0002",
    );
    let theirs = "* @team-2/owners\n";
    {
        let mut d = data(&sandbox);
        for (path, files) in [
            (with_commits, vec![("README.md", "# svc\n")]),
            (
                with_theirs,
                vec![("README.md", "# svc\n"), ("docs/CODEOWNERS", theirs)],
            ),
        ] {
            let repo = &mut d.project_by_path_mut(path).unwrap().repository;
            for (file, content) in files {
                repo.files.insert(file.to_owned(), content.to_owned());
            }
            repo.commits.push((
                "0123456789abcdef0123456789abcdef01234567".into(),
                "initial".into(),
            ));
        }
    }
    let gl = gitlab(&sandbox);
    reset(gl);

    // plan: every change listed, nothing written.
    let plan = harden(&sandbox, &["--output", "json", "plan"], &[]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc = plan_json(&plan);
    let changes = doc["changes"].as_array().unwrap();
    assert!(changes.len() > 4 * paths.len(), "{} changes", changes.len());
    let tags: Vec<&Value> = changes
        .iter()
        .filter(|c| c["resource"] == "protected tag")
        .collect();
    assert_eq!(tags.len(), paths.len(), "one v* protection per project");
    for tag in &tags {
        assert_eq!(tag["action"], "create", "{tag}");
        assert!(tag["name"].as_str().unwrap().ends_with(":v*"), "{tag}");
        assert_eq!(tag["after"], json!({"create_access_levels": [40]}), "{tag}");
    }
    assert_eq!(writes(gl), 0, "plan writes nothing to GitLab");
    // main, v*, approval settings, approval rules (v* added the fourth); and up to three
    // CODEOWNERS locations on a repository with commits (an empty one needs no read).
    let with_commits_count = {
        let d = data(&sandbox);
        paths
            .iter()
            .filter(|p| !d.project_by_path(p).unwrap().repository.commits.is_empty())
            .count()
    };
    let reads = usize::try_from(served(gl, "GET /api/v4/projects/")).unwrap();
    assert!(
        reads <= 4 * paths.len() + 3 * with_commits_count,
        "{reads} reads for {} projects, {with_commits_count} with commits",
        paths.len()
    );
    assert!(
        served(gl, "GET /api/v4/groups/") >= 3,
        "project listing spans several pages"
    );
    let kube = common::kube::KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    let route_ref = json!({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP", "metadata": {"name": "gitlab-ssh", "namespace": "gitlab"}});
    assert!(
        kube.get(&route_ref).await.unwrap().is_none(),
        "plan creates no Kubernetes object"
    );
    let warnings = doc["warnings"].to_string();
    assert!(
        !warnings.contains("registry-off"),
        "no registry Deployment, no Helm warning: {warnings}"
    );
    assert!(
        warnings.contains("erin"),
        "Keycloak user without GitLab account reported: {warnings}"
    );

    // The GitLab chart's registry Deployment exists: the instance registry is still on.
    kube.apply(
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gitlab-registry", "namespace": "gitlab"},
            "spec": {
                "selector": {"matchLabels": {"app": "registry"}},
                "template": {"metadata": {"labels": {"app": "registry"}},
                             "spec": {"containers": [{"name": "registry", "image": "registry.gitlab.com/gitlab-org/build/cng/gitlab-container-registry:v4.15.2-gitlab"}]}},
            },
        }),
        false,
    )
    .await
    .unwrap();

    // apply
    let apply = harden(&sandbox, &["apply"], &[]).await;
    assert!(
        apply
            .stdout
            .contains("gitlab-harden/helm/registry-off.values.yaml")
            && apply.stdout.contains("helm upgrade"),
        "the registry needs a Helm upgrade, with the values to apply: {}",
        apply.stdout
    );
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("erin (developers)"),
        "{}",
        apply.stdout
    );
    assert_eq!(
        served(gl, "DELETE /api/v4/projects/"),
        0,
        "never unprotects or deletes"
    );
    assert_eq!(
        served_ending(gl, "POST", "/protected_tags"),
        paths.len(),
        "exactly one protected tag created per project"
    );
    assert_eq!(
        served_ending(gl, "POST", "/repository/commits"),
        1,
        "one CODEOWNERS commit: the one project with commits and none"
    );
    {
        let d = data(&sandbox);
        let ours = &d.project_by_path(with_commits).unwrap().repository.files;
        assert!(
            ours[".gitlab/CODEOWNERS"].contains(
                "[Code][1]\n* @keycloak-groups/senior-developers @keycloak-groups/infra-engineers"
            ),
            "{ours:?}"
        );
        let kept = &d.project_by_path(with_theirs).unwrap().repository.files;
        assert_eq!(kept["docs/CODEOWNERS"], theirs);
        assert!(
            !kept.contains_key(".gitlab/CODEOWNERS"),
            "the team's file is theirs"
        );
        for path in &paths {
            assert_hardened(&d, path, true);
        }
        let archived = d.project_by_path("platform_services/old-archived").unwrap();
        assert!(
            archived.protected_branches.is_empty() && archived.protected_tags.is_empty(),
            "archived projects are left alone"
        );
        let relay = d.projects.get(&relay).unwrap();
        assert_eq!(
            relay.protected_branches[0].id, branch_id,
            "main updated in place, same id"
        );
        let rule = relay
            .approval_rules
            .iter()
            .find(|r| r.id == weak_id)
            .expect("rule updated in place");
        assert_eq!(rule.approvals_required, 2);
        assert!(
            relay
                .approval_rules
                .iter()
                .any(|r| r.name == "Security team"),
            "foreign rules kept"
        );
        // Keycloak → GitLab: highest mapped role on platform_services; approver mirrors.
        let services_group = d.group_by_path("platform_services").unwrap();
        let access_of = |g: &sandbox::standins::gitlab::GroupRecord, name: &str| {
            g.members.get(&d.user_id(name).unwrap()).copied()
        };
        assert_eq!(access_of(services_group, "alice"), Some(50));
        assert_eq!(access_of(services_group, "bob"), Some(40));
        assert_eq!(
            access_of(services_group, "carol"),
            Some(40),
            "senior via the nested Keycloak subgroup sre"
        );
        assert_eq!(
            access_of(services_group, "dave"),
            Some(30),
            "developers beats viewers"
        );
        assert_eq!(
            access_of(services_group, "dev149"),
            Some(30),
            "second page of Keycloak members and GitLab users"
        );
        let seniors = d
            .group_by_path("keycloak-groups/senior-developers")
            .unwrap();
        assert_eq!(access_of(seniors, "bob"), Some(30));
        assert_eq!(access_of(seniors, "carol"), Some(30));
        assert_eq!(access_of(seniors, "alice"), None);
    }
    let route = kube
        .get(&route_ref)
        .await
        .unwrap()
        .expect("IngressRouteTCP created");
    assert_eq!(route["spec"]["entryPoints"], json!(["ssh"]));
    assert_eq!(
        route["spec"]["routes"][0]["services"][0],
        json!({"name": "gitlab-gitlab-shell", "port": 22})
    );
    let route_version = route["metadata"]["resourceVersion"].clone();

    // Rerun: zero writes; at most 4 reads per project (main, v*, approval settings and rules).
    reset(gl);
    let rerun = harden(&sandbox, &["apply"], &[]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(writes(gl), 0, "second apply writes nothing");
    assert_eq!(
        served_ending(gl, "POST", "/repository/commits"),
        0,
        "no CODEOWNERS commit"
    );
    let reads = usize::try_from(served(gl, "GET /api/v4/projects/")).unwrap();
    assert!(reads <= 4 * paths.len() + 3 * with_commits_count, "{reads}");
    let route = kube.get(&route_ref).await.unwrap().unwrap();
    assert_eq!(
        route["metadata"]["resourceVersion"], route_version,
        "SSH route untouched"
    );
    assert_eq!(harden(&sandbox, &["check"], &[]).await.code, 0);
    // Known secrets never appear in any output.
    let secrets = [
        sandbox.get("GITLAB_API_TOKEN"),
        sandbox.get("KEYCLOAK_ADMIN_CLIENT_SECRET"),
    ];
    for run in [&plan, &apply, &rerun] {
        for secret in secrets {
            assert!(!secret.is_empty());
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "secret leaked"
            );
        }
    }

    // A rule edited by hand shows as exactly that diff; apply restores it in place, scope kept.
    let target = "platform_services/teams/team-2/svc-0003";
    let (rule_id, main_id) = {
        let mut d = data(&sandbox);
        let p = d.project_by_path_mut(target).unwrap();
        let main_id = p.protected_branches[0].id;
        let rule = &mut p.approval_rules[0];
        rule.approvals_required = 1;
        (rule.id, main_id)
    };
    let check = harden(&sandbox, &["--output", "json", "check"], &[]).await;
    assert_eq!(check.code, 2, "{}", check.stderr);
    let doc = plan_json(&check);
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0]["name"],
        format!("{target}: Senior Review Required")
    );
    assert_eq!(changes[0]["diff"], json!(["~ approvals_required: 1 -> 2"]));
    reset(gl);
    assert_eq!(harden(&sandbox, &["apply"], &[]).await.code, 0);
    assert_eq!(writes(gl), 1, "one PUT restores the rule");
    {
        let d = data(&sandbox);
        let p = d.project_by_path(target).unwrap();
        let rule = p.approval_rules.iter().find(|r| r.id == rule_id).unwrap();
        assert_eq!(rule.approvals_required, 2);
        assert_eq!(
            rule.protected_branch_ids,
            vec![main_id],
            "branch scope survives"
        );
    }
    reset(gl);
    assert_eq!(harden(&sandbox, &["apply"], &[]).await.code, 0);
    assert_eq!(writes(gl), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn free_tier_warns_per_feature_and_applies_the_rest() {
    common::cli::install_crypto_provider();
    let sandbox = start(false).await;
    data(&sandbox).tier = Tier::Free;
    let paths: Vec<String> = data(&sandbox)
        .projects
        .values()
        .map(|p| p.path_with_namespace.clone())
        .collect();
    // One project already protected with developer push: Free cannot change levels in place.
    let relay = data(&sandbox)
        .project_by_path("platform_services/packet-relay")
        .unwrap()
        .id;
    api(
        &sandbox,
        reqwest::Method::POST,
        &format!("projects/{relay}/protected_branches"),
        Some(json!({"name": "main", "push_access_level": 30, "allow_force_push": true})),
    )
    .await;
    let gl = gitlab(&sandbox);
    reset(gl);
    let apply = harden(&sandbox, &["apply"], &[("GITLAB_SSH_ROUTE", "false")]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    for feature in [
        "approval rules",
        "approval settings",
        "code-owner approval",
        "merge trains",
    ] {
        let n = apply
            .stdout
            .lines()
            .filter(|l| l.contains("warning: GitLab Free") && l.contains(feature))
            .count();
        assert_eq!(n, 1, "one warning for {feature}:\n{}", apply.stdout);
    }
    assert!(
        apply.stdout.contains("never unprotects") && apply.stdout.contains("packet-relay"),
        "{}",
        apply.stdout
    );
    assert_eq!(
        usize::try_from(served(gl, "GET /api/v4/projects/")).unwrap(),
        2 * paths.len(),
        "two reads per project on Free: protected main and protected v*"
    );
    assert_eq!(
        served_ending(gl, "POST", "/protected_branches"),
        paths.len() - 1,
        "main protected where it was not"
    );
    assert_eq!(
        served_ending(gl, "POST", "/protected_tags"),
        paths.len(),
        "v* protected on every project: protected tags are Free"
    );
    assert_eq!(
        usize::try_from(served(gl, "POST /api/v4/projects/")).unwrap(),
        2 * paths.len() - 1,
        "no other project write than these protections"
    );
    {
        let d = data(&sandbox);
        for path in paths.iter().filter(|p| !p.ends_with("packet-relay")) {
            assert_hardened(&d, path, false);
        }
        let relay = d.projects.get(&relay).unwrap();
        assert!(
            !relay.protected_branches[0].allow_force_push,
            "force push still turned off in place"
        );
        assert_eq!(
            relay.protected_branches[0].push[0].access_level, 30,
            "left for a person, as warned"
        );
        assert_eq!(
            d.group_by_path("platform_services").unwrap().members.len(),
            5,
            "root + four mapped people"
        );
        assert!(
            d.group_by_path("keycloak-groups").is_none(),
            "no approver groups on Free"
        );
    }
    reset(gl);
    let rerun = harden(&sandbox, &["apply"], &[("GITLAB_SSH_ROUTE", "false")]).await;
    assert_eq!(rerun.code, 0);
    assert_eq!(writes(gl), 0, "{}", rerun.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_bad_gateways_are_retried_and_auth_errors_are_one_line() {
    common::cli::install_crypto_provider();
    let sandbox = start(false).await;
    let gl = gitlab(&sandbox);
    let no_kube = [("GITLAB_SSH_ROUTE", "false")];
    // 429 with Retry-After on the project listing, 502 twice on project edits.
    gl.control.add_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/v4/groups/".into(),
        status: 429,
        retry_after: Some(1),
        times: Some(1),
        ..Fault::default()
    });
    gl.control.add_fault(Fault {
        method: Some("PUT".into()),
        path_prefix: "/api/v4/projects/".into(),
        status: 502,
        times: Some(2),
        ..Fault::default()
    });
    let apply = harden(&sandbox, &["apply"], &no_kube).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply.stderr.contains("429 from GitLab") && apply.stderr.contains("retrying in 1.0s"),
        "{}",
        apply.stderr
    );
    assert_eq!(
        apply.stderr.matches("502 from GitLab").count(),
        2,
        "{}",
        apply.stderr
    );
    {
        let d = data(&sandbox);
        let paths: Vec<String> = d
            .projects
            .values()
            .map(|p| p.path_with_namespace.clone())
            .collect();
        for path in &paths {
            assert_hardened(&d, path, true);
        }
    }

    let token = sandbox.get("GITLAB_API_TOKEN").to_owned();
    let kc_secret = sandbox.get("KEYCLOAK_ADMIN_CLIENT_SECRET").to_owned();
    reset(gl);
    // 401: a revoked token.
    let bad = harden(
        &sandbox,
        &["apply"],
        &[
            ("GITLAB_SSH_ROUTE", "false"),
            ("GITLAB_API_TOKEN", "glpat-revoked-0000000"),
        ],
    )
    .await;
    // 403 on the group (the token's user lacks rights).
    gl.control.add_fault(Fault {
        path_prefix: "/api/v4/groups/platform_services".into(),
        status: 403,
        ..Fault::default()
    });
    let forbidden = harden(&sandbox, &["apply"], &no_kube).await;
    gl.control.clear_faults();
    // 404: a group that does not exist.
    let missing = harden(
        &sandbox,
        &["apply"],
        &[
            ("GITLAB_SSH_ROUTE", "false"),
            ("GITLAB_GROUPS", "no-such-group"),
        ],
    )
    .await;
    for (run, needle) in [
        (&bad, "401 from GitLab"),
        (
            &forbidden,
            "403 from GitLab reading group platform_services",
        ),
        (&missing, "GitLab group no-such-group not found"),
    ] {
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{}",
            lines[0]
        );
        assert!(!run.stderr.contains(&token) && !run.stderr.contains(&kc_secret));
    }
    assert!(
        bad.stderr.contains("GITLAB_API_TOKEN"),
        "names where the token came from: {}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("api scope"),
        "says what to do: {}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("glpat-revoked"), "{}", bad.stderr);
    assert_eq!(writes(gl), 0, "no write on any error");
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_unmapped_access_but_never_the_token_user_or_bots() {
    common::cli::install_crypto_provider();
    let sandbox = start(false).await;
    let ps = group_id(&sandbox, "platform_services");
    let (bot, stray, dave) = {
        let mut d = data(&sandbox);
        let bot = d.user_id("project_1_bot_5f2c").unwrap();
        let stray = d.add_user("mallory", &[]);
        let dave = d.user_id("dave").unwrap();
        let g = d.groups.get_mut(&ps).unwrap();
        g.members.insert(bot, 40);
        g.members.insert(stray, 40);
        g.members.insert(dave, 50); // more than developers (30) grants
        (bot, stray, dave)
    };
    let root = data(&sandbox).user_id("root").unwrap();
    let env = [("GITLAB_SSH_ROUTE", "false")];
    let additive = harden(&sandbox, &["apply"], &env).await;
    assert_eq!(additive.code, 0, "{}", additive.stderr);
    let members = |s: &Sandbox| -> BTreeMap<u64, u8> { data(s).groups[&ps].members.clone() };
    let m = members(&sandbox);
    assert_eq!(m.get(&stray), Some(&40), "additive by default");
    assert_eq!(m.get(&dave), Some(&50), "never lowered without --prune");
    assert_eq!(m.get(&root), Some(&50));

    let plan = harden(&sandbox, &["--prune", "--output", "json", "plan"], &env).await;
    let doc = plan_json(&plan);
    let names: Vec<String> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["action"].as_str().unwrap_or_default(),
                c["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("platform_services: mallory")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("root") || n.contains("bot")),
        "{names:?}"
    );

    let pruned = harden(&sandbox, &["--prune", "apply"], &env).await;
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let m = members(&sandbox);
    assert_eq!(m.get(&stray), None, "no mapped group grants mallory access");
    assert_eq!(m.get(&dave), Some(&30), "lowered to the mapped role");
    assert_eq!(
        m.get(&root),
        Some(&50),
        "the token's own user is never pruned"
    );
    assert_eq!(m.get(&bot), Some(&40), "bots are never pruned");
    let gl = gitlab(&sandbox);
    reset(gl);
    assert_eq!(harden(&sandbox, &["--prune", "apply"], &env).await.code, 0);
    assert_eq!(writes(gl), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn release_tag_drift_is_reported_and_fixed_with_the_exact_writes() {
    common::cli::install_crypto_provider();
    let sandbox = start(false).await;
    let env = [("GITLAB_SSH_ROUTE", "false")];
    let first = harden(&sandbox, &["apply"], &env).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let gl = gitlab(&sandbox);
    reset(gl);
    assert_eq!(harden(&sandbox, &["check"], &env).await.code, 0);

    // Drift: one protection deleted through the API, another lowered to Developers by hand,
    // with a user allowed to create as well (Premium) that the fix must keep.
    let (relay, dashboard) = (
        "platform_services/packet-relay",
        "platform_services/netops-dashboard",
    );
    let (relay_id, user) = {
        let d = data(&sandbox);
        (
            d.project_by_path(relay).unwrap().id,
            d.user_id("alice").unwrap(),
        )
    };
    api(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("projects/{relay_id}/protected_tags/v%2A"),
        None,
    )
    .await;
    {
        let mut d = data(&sandbox);
        let tag = &mut d.project_by_path_mut(dashboard).unwrap().protected_tags[0];
        tag.create[0].access_level = Some(30);
        tag.create
            .push(sandbox::standins::gitlab::tags::CreateAccess {
                id: 9001,
                access_level: None,
                user_id: Some(user),
                group_id: None,
                deploy_key_id: None,
            });
    }
    reset(gl);

    let check = harden(&sandbox, &["--output", "json", "check"], &env).await;
    assert_eq!(check.code, 2, "{}\n{}", check.stdout, check.stderr);
    assert_eq!(writes(gl), 0, "check writes nothing");
    let doc = plan_json(&check);
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let by_name = |name: &str| {
        changes
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {changes:?}"))
    };
    let deleted = by_name(&format!("{relay}:v*"));
    assert_eq!(deleted["resource"], "protected tag");
    assert_eq!(deleted["action"], "create");
    assert_eq!(deleted["diff"], json!(["+ create_access_levels: [40]"]));
    let lowered = by_name(&format!("{dashboard}:v*"));
    assert_eq!(lowered["action"], "update");
    assert_eq!(
        lowered["diff"],
        json!(["~ create_access_levels: [30] -> [40]"])
    );
    let text = harden(&sandbox, &["check"], &env).await;
    assert_eq!(text.code, 2);
    assert!(
        text.stdout.contains(&format!("+ protected tag {relay}:v*"))
            && text
                .stdout
                .contains(&format!("~ protected tag {dashboard}:v*")),
        "{}",
        text.stdout
    );

    reset(gl);
    let fix = harden(&sandbox, &["apply"], &env).await;
    assert_eq!(fix.code, 0, "{}\n{}", fix.stdout, fix.stderr);
    assert_eq!(
        writes(gl),
        3,
        "one POST for the deleted protection, DELETE + POST for the lowered one"
    );
    assert_eq!(served_ending(gl, "POST", "/protected_tags"), 2);
    assert_eq!(served_ending(gl, "DELETE", "/protected_tags/v%2A"), 1);
    {
        let d = data(&sandbox);
        assert_hardened(&d, relay, true);
        assert_hardened(&d, dashboard, true);
        let tag = &d.project_by_path(dashboard).unwrap().protected_tags[0];
        assert!(
            tag.create.iter().any(|a| a.user_id == Some(user)),
            "the user allowed to create is kept: {tag:?}"
        );
    }
    reset(gl);
    assert_eq!(harden(&sandbox, &["apply"], &env).await.code, 0);
    assert_eq!(writes(gl), 0, "fixed for good");
    assert_eq!(harden(&sandbox, &["check"], &env).await.code, 0);
}
