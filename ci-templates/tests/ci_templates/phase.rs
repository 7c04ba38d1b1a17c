//! Phase 14 against the sandbox: real `OpenBao` (robot secrets in KV v2, writes counted from its
//! audit log), the GitLab stand-in (project, commits API, tags, group variables; GitLab API docs)
//! and the Harbor stand-in (bodies validated against Harbor's swagger). End states are read back
//! from the stand-ins' data and from Vault.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use ci_templates::desired::{HARBOR_PROJECTS, ROBOTS};
use ci_templates::library;
use sandbox::standins::{Fault, Running};
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

use sandbox::PhaseRun as Run;

pub(crate) async fn phase(sandbox: &Sandbox, args: &[&str]) -> Run {
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_ci-templates"),
        &sandbox.env_file(),
        args,
        &[("CICD_HTTP_RETRIES", "2")],
    )
    .await
}

/// The sandbox after phase 13's part that phase 14 needs: KV v2 at `kv/`.
pub(crate) async fn start() -> Sandbox {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        kube: false,
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("sandbox starts");
    sandbox::support::mount_kv(&sandbox).await;
    // The demo instance already has the library project; start without it.
    let gitlab = sandbox.gitlab.as_ref().unwrap();
    let mut data = gitlab.lock();
    let id = data
        .project_by_path("platform_services/gitlab-ci-templates")
        .unwrap()
        .id;
    data.projects.remove(&id);
    drop(data);
    sandbox
}

fn writes(r: &Running) -> u64 {
    r.control.counters.writes.load(Ordering::Relaxed)
}

/// GitLab + Harbor + Vault writes.
pub(crate) fn all_writes(s: &Sandbox) -> (u64, u64, usize) {
    (
        writes(s.standin("gitlab")),
        writes(s.standin("harbor")),
        s.vault_writes(),
    )
}

pub(crate) async fn kv(sandbox: &Sandbox, path: &str) -> Option<Value> {
    sandbox::support::vault_read(sandbox, &format!("kv/data/{path}")).await
}

pub(crate) fn robot_secrets(sandbox: &Sandbox) -> BTreeMap<String, (u64, String)> {
    sandbox
        .harbor
        .as_ref()
        .unwrap()
        .lock()
        .robots
        .values()
        .map(|r| (r.name.clone(), (r.id, r.secret.clone())))
        .collect()
}

pub(crate) fn assert_no_secret(runs: &[&Run], secrets: &[String]) {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    sandbox::support::assert_not_printed(
        runs.iter()
            .flat_map(|r| [r.stdout.as_str(), r.stderr.as_str()]),
        &secrets,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_builds_everything_once_and_reconciles_without_recreating() {
    let sandbox = start().await;
    let before = all_writes(&sandbox);

    // plan: every change listed, nothing written anywhere.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    let tag = ci_templates::desired::library_tag();
    for expected in [
        "gitlab project platform_services/gitlab-ci-templates",
        "library commit platform_services/gitlab-ci-templates@main",
        &format!("gitlab tag platform_services/gitlab-ci-templates@{tag}"),
        "group variable platform_services: HARBOR_REGISTRY",
        "harbor project ci-cache",
        "harbor retention platform-services",
        "harbor immutable rule application-services",
        "harbor robot ci-push",
        "harbor project ci-scratch",
        "harbor robot ci-scratch-push",
    ] {
        assert!(
            titles.iter().any(|t| t == expected),
            "{expected} missing from {titles:?}"
        );
    }
    assert_eq!(all_writes(&sandbox), before, "plan writes nothing");

    // apply
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    {
        let gl = sandbox.gitlab.as_ref().unwrap().lock();
        let project = gl
            .project_by_path("platform_services/gitlab-ci-templates")
            .expect("created");
        let repo = &project.repository;
        assert_eq!(repo.commits.len(), 1, "one commit");
        let files: BTreeMap<&str, &str> = repo
            .files
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut wanted: BTreeMap<&str, &str> = library::FILES
            .iter()
            .map(|f| (f.path, f.contents))
            .collect();
        // Its first commit also carries the default CODEOWNERS (issue 16), so that phase 12's
        // rerun finds one and writes nothing: the platform's own project, owned by platform-admins.
        let owners = common::codeowners::render(
            common::codeowners::OwnersKind::Infrastructure,
            common::codeowners::DEFAULT_APPROVER_PARENT,
        );
        assert!(
            owners.contains("* @keycloak-groups/platform-admins"),
            "{owners}"
        );
        wanted.insert(common::codeowners::DEFAULT_LOCATION, &owners);
        assert_eq!(
            files, wanted,
            "the library and its CODEOWNERS, byte for byte"
        );
        assert_eq!(repo.tags.get(&tag), repo.head().map(str::to_owned).as_ref());
        let group = gl.group_by_path("platform_services").unwrap();
        let vars: BTreeMap<&str, &Value> = group
            .variables
            .iter()
            .map(|v| (v["key"].as_str().unwrap(), v))
            .collect();
        assert_eq!(
            vars.keys().copied().collect::<Vec<_>>(),
            [
                "ARGOCD_SERVER",
                "COVERAGE_THRESHOLD",
                "DOMAIN",
                "HARBOR_PROJECT",
                "HARBOR_REGISTRY",
                "TRIVY_SEVERITY",
                "VAULT_ADDR",
                "VAULT_ROLE"
            ]
        );
        assert_eq!(vars["VAULT_ADDR"]["value"], sandbox.get("VAULT_ADDR"));
        assert_eq!(vars["COVERAGE_THRESHOLD"]["value"], "80");
        assert!(
            vars.values().all(|v| v["masked"] == false),
            "nothing secret is a variable"
        );
    }
    {
        let hb = sandbox.harbor.as_ref().unwrap().lock();
        for spec in HARBOR_PROJECTS {
            let p = hb.project_by_name(spec.name).unwrap();
            assert_eq!(
                p.metadata["auto_scan"],
                spec.scan_on_push.to_string(),
                "{}",
                spec.name
            );
            let retention = &hb.retentions[&p.metadata["retention_id"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()];
            assert_eq!(
                retention["rules"][0]["params"]["nDaysSinceLastPush"],
                spec.retention_days
            );
            assert_eq!(
                retention["rules"][1]["params"]["latestPushedK"],
                json!(spec.keep_last)
            );
            assert_eq!(retention["scope"]["ref"], p.id);
            let semver: Vec<&Value> = p
                .immutable_rules
                .iter()
                .filter(|r| r["tag_selectors"][0]["pattern"] == "v*")
                .collect();
            assert_eq!(
                semver.len(),
                usize::from(spec.immutable_semver),
                "{}",
                spec.name
            );
        }
        for robot in ROBOTS {
            let r = hb
                .robot_by_name(&format!("robot${}", robot.name))
                .expect("robot");
            let perms = r.body["permissions"].as_array().unwrap();
            let namespaces: Vec<&str> = perms
                .iter()
                .map(|p| p["namespace"].as_str().unwrap())
                .collect();
            assert_eq!(namespaces, robot.projects, "{}", robot.name);
            for p in perms {
                let actions: Vec<&str> = p["access"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["action"].as_str().unwrap())
                    .collect();
                assert_eq!(actions, robot.actions, "{}", robot.name);
            }
            assert_eq!(r.body["level"], "system");
            assert_eq!(r.body["duration"], -1);
        }
    }
    let secrets = robot_secrets(&sandbox);
    for robot in ROBOTS {
        let stored = kv(&sandbox, robot.vault_path)
            .await
            .expect("secret in Vault");
        let name = format!("robot${}", robot.name);
        assert_eq!(stored["data"]["username"], name.as_str());
        assert_eq!(
            stored["data"]["password"],
            secrets[&name].1.as_str(),
            "Vault holds Harbor's secret"
        );
        assert_eq!(
            stored["metadata"]["custom_metadata"]["harbor-robot-id"],
            secrets[&name].0.to_string()
        );
    }

    // Rerun: zero writes in GitLab, Harbor and Vault.
    let after_apply = all_writes(&sandbox);
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(
        all_writes(&sandbox),
        after_apply,
        "second apply writes nothing"
    );
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // Drift: a robot lost its push permission by hand, a library file was edited in GitLab, the
    // Vault copy of a secret was destroyed. Each is reconciled; the robot is not recreated.
    let ci_push_id = secrets["robot$ci-push"].0;
    {
        let mut hb = sandbox.harbor.as_ref().unwrap().lock();
        let robot = hb.robots.get_mut(&ci_push_id).unwrap();
        for p in robot.body["permissions"].as_array_mut().unwrap() {
            p["access"]
                .as_array_mut()
                .unwrap()
                .retain(|a| a["action"] != "push");
        }
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let repo = &mut gl
            .project_by_path_mut("platform_services/gitlab-ci-templates")
            .unwrap()
            .repository;
        repo.files
            .insert("templates/base.yml".into(), "# edited in the UI\n".into());
    }
    let resp = reqwest::Client::new()
        .delete(format!(
            "{}/v1/kv/metadata/security/harbor-trivy",
            sandbox.get("VAULT_ADDR")
        ))
        .header("X-Vault-Token", sandbox.get("VAULT_TOKEN"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let check = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(check.code, 2, "{}", check.stderr);
    let doc: Value = serde_json::from_str(&check.stdout).unwrap();
    let changes = doc["changes"].as_array().unwrap();
    let by_title = |t: &str| {
        changes.iter().find(|c| {
            format!(
                "{} {}",
                c["resource"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            ) == t
        })
    };
    assert_eq!(
        by_title("library commit platform_services/gitlab-ci-templates@main").unwrap()["diff"],
        json!(["~ templates/base.yml"])
    );
    let robot_change = by_title("harbor robot ci-push").expect("robot drift");
    assert_eq!(robot_change["action"], "update");
    assert!(changes.iter().any(|c| {
        c["resource"] == "robot secret"
            && c["name"]
                .as_str()
                .unwrap()
                .contains("security/harbor-trivy")
    }));
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(
        doc["warnings"]
            .to_string()
            .contains(&format!("{tag} already tags an older commit")),
        "{}",
        doc["warnings"]
    );

    let fix = phase(&sandbox, &["apply"]).await;
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    let secrets_after = robot_secrets(&sandbox);
    assert_eq!(
        secrets_after["robot$ci-push"], secrets["robot$ci-push"],
        "ci-push reconciled in place: same id, same secret"
    );
    assert_eq!(
        secrets_after.len(),
        ci_templates::desired::ROBOTS.len(),
        "no robot recreated"
    );
    {
        let gl = sandbox.gitlab.as_ref().unwrap().lock();
        let repo = &gl
            .project_by_path("platform_services/gitlab-ci-templates")
            .unwrap()
            .repository;
        assert_eq!(
            repo.commits.len(),
            2,
            "one commit with only the changed file"
        );
        assert_eq!(
            repo.files["templates/base.yml"],
            library::get("templates/base.yml").unwrap().contents
        );
    }
    let trivy = kv(&sandbox, "security/harbor-trivy").await.unwrap();
    assert_eq!(
        trivy["data"]["password"],
        secrets_after["robot$trivy-scan"].1.as_str(),
        "a new secret, stored"
    );
    assert_ne!(
        secrets_after["robot$trivy-scan"].1,
        secrets["robot$trivy-scan"].1
    );

    // rotate-robot: a new secret in Harbor and Vault, never printed.
    let rotate = phase(&sandbox, &["rotate-robot", "argocd-pull"]).await;
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    let rotated = robot_secrets(&sandbox);
    assert_ne!(
        rotated["robot$argocd-pull"].1,
        secrets["robot$argocd-pull"].1
    );
    assert_eq!(
        kv(&sandbox, "argocd/harbor-pull").await.unwrap()["data"]["password"],
        rotated["robot$argocd-pull"].1.as_str()
    );

    let mut known: Vec<String> = [secrets, secrets_after, rotated]
        .into_iter()
        .flat_map(|m| m.into_values().map(|(_, s)| s))
        .collect();
    known.push(sandbox.get("HARBOR_ADMIN_PASSWORD").to_owned());
    known.push(sandbox.get("GITLAB_API_TOKEN").to_owned());
    known.push(sandbox.get("VAULT_TOKEN").to_owned());
    assert_no_secret(&[&plan, &apply, &rerun, &check, &fix, &rotate], &known);
}

#[tokio::test(flavor = "multi_thread")]
async fn harbor_refusals_are_one_line_errors_and_a_rerun_finishes() {
    let sandbox = start().await;
    let harbor = sandbox.standin("harbor");
    let cases: [(Fault, &[&str]); 3] = [
        (
            Fault {
                method: Some("POST".into()),
                path_prefix: "/api/v2.0/projects".into(),
                status: 403,
                times: Some(1),
                ..Fault::default()
            },
            &[
                "403 from Harbor creating project platform-services",
                "lacks system admin rights",
            ],
        ),
        (
            Fault {
                method: Some("POST".into()),
                path_prefix: "/api/v2.0/robots".into(),
                status: 409,
                times: Some(1),
                ..Fault::default()
            },
            &["409 from Harbor creating robot ci-push"],
        ),
        (
            Fault {
                method: Some("GET".into()),
                path_prefix: "/api/v2.0/projects".into(),
                status: 500,
                times: Some(10),
                ..Fault::default()
            },
            &["500 from Harbor finding project platform-services"],
        ),
    ];
    for (fault, needles) in cases {
        harbor.control.clear_faults();
        harbor.control.add_fault(fault);
        let run = phase(&sandbox, &["apply"]).await;
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        for needle in needles {
            assert!(errors[0].contains(needle), "{}", errors[0]);
        }
        assert!(!run.stderr.contains(sandbox.get("HARBOR_ADMIN_PASSWORD")));
    }
    // Whatever the faults left half done, a clean rerun finishes and stores every secret.
    harbor.control.clear_faults();
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let secrets = robot_secrets(&sandbox);
    for robot in ROBOTS {
        let name = format!("robot${}", robot.name);
        assert_eq!(
            kv(&sandbox, robot.vault_path).await.unwrap()["data"]["password"],
            secrets[&name].1.as_str()
        );
    }
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);
}
