//! What the bash phase 14 leaves in Harbor and Vault (docs/research/upstream-bash-phases.md section 3.6),
//! made with its endpoints and bodies: its Harbor projects, the system robots `ci-push` and
//! `argocd-pull` (`"level":"system"`, no description, never expiring), the project robots of
//! `platform-services` the issue describes, and its copy of the ci-push secret at
//! `kv/ci/harbor-push`. `plan` and `--adopt-report` list each change with its reason and write
//! nothing; `apply` adopts the system robots (ours in place, new secrets), deletes the project
//! robots and the stale secret; a rerun writes nothing.

use std::collections::BTreeSet;

use ci_templates::desired::ROBOTS;
use sandbox::Sandbox;
use serde_json::Value;

use crate::phase::{all_writes, assert_no_secret, kv, phase, robot_secrets, start};

/// Creates every bash leftover (`sandbox::bash_phases::phase_14`); returns the secrets Harbor
/// answered.
async fn bash_phase_14(sandbox: &Sandbox) -> Vec<String> {
    let (names, secrets) = sandbox::bash_phases::phase_14(sandbox).await;
    assert_eq!(
        names,
        [
            "robot$ci-push",
            "robot$argocd-pull",
            "robot$platform-services+ci-push",
            "robot$platform-services+argocd-pull"
        ],
        "Harbor names project robots <prefix><project>+<name>"
    );
    secrets
}

/// (action, resource name) of every change left by the bash phase, sorted.
fn leftovers(changes: &Value) -> Vec<(String, String)> {
    let mut found = sandbox::support::bash_leftover_rows(changes);
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bash_phases_robots_and_secret_are_adopted_or_removed_as_planned() {
    let sandbox = start().await;
    let bash_secrets = bash_phase_14(&sandbox).await;
    let bash_robots = robot_secrets(&sandbox);
    let before = all_writes(&sandbox);

    // plan: the seven changes with their reason; nothing written.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let mut want: Vec<(String, String)> = [
        ("update", "harbor robot ci-push"),
        (
            "update",
            "robot secret robot$ci-push → kv/ci/harbor-credentials",
        ),
        ("update", "harbor robot argocd-pull"),
        (
            "update",
            "robot secret robot$argocd-pull → kv/argocd/harbor-pull",
        ),
        ("delete", "harbor robot robot$platform-services+ci-push"),
        ("delete", "harbor robot robot$platform-services+argocd-pull"),
        ("delete", "vault secret kv/ci/harbor-push"),
    ]
    .iter()
    .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
    .collect();
    want.sort();
    assert_eq!(leftovers(&doc["changes"]), want, "{}", plan.stdout);
    let reasons: Vec<&str> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    for needle in [
        "system robot robot$ci-push (no description, duration -1, exactly push+pull on platform-services, push+pull on ci-cache)",
        "project robot robot$platform-services+argocd-pull of platform-services (level project",
        "KV secret kv/ci/harbor-push holding only username robot$ci-push and password",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{needle} not in {reasons:?}"
        );
    }
    assert_eq!(all_writes(&sandbox), before, "plan writes nothing");

    // --adopt-report lists exactly these and writes nothing.
    let adopt = phase(&sandbox, &["--adopt-report", "--output", "json", "plan"]).await;
    assert_eq!(adopt.code, 0, "{}", adopt.stderr);
    let report_doc: Value = serde_json::from_str(&adopt.stdout).unwrap();
    assert_eq!(report_doc["mode"], "adopt-report");
    let mut reported: Vec<(String, String)> = report_doc["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_owned(),
                format!(
                    "{} {}",
                    c["resource"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ),
            )
        })
        .collect();
    reported.sort();
    assert_eq!(reported, want);
    assert_eq!(
        all_writes(&sandbox),
        before,
        "--adopt-report writes nothing"
    );

    // apply: no project robot left; the system robots are ours, same ids, new secrets in Vault.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    {
        let hb = sandbox.harbor.as_ref().unwrap().lock();
        assert_eq!(hb.robots.len(), ROBOTS.len(), "only our robots remain");
        assert!(hb.robots.values().all(|r| r.body["level"] == "system"));
        for robot in ROBOTS {
            let r = hb.robot_by_name(&format!("robot${}", robot.name)).unwrap();
            assert_eq!(r.body["description"], robot.description, "{}", robot.name);
            let grants: BTreeSet<(String, String)> = r.body["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| {
                    p["access"].as_array().unwrap().iter().map(move |a| {
                        (
                            p["namespace"].as_str().unwrap().to_owned(),
                            a["action"].as_str().unwrap().to_owned(),
                        )
                    })
                })
                .collect();
            let ours: BTreeSet<(String, String)> = robot
                .projects
                .iter()
                .flat_map(|p| {
                    robot
                        .actions
                        .iter()
                        .map(move |a| ((*p).to_owned(), (*a).to_owned()))
                })
                .collect();
            assert_eq!(grants, ours, "{}: exactly our permissions", robot.name);
        }
    }
    let secrets = robot_secrets(&sandbox);
    for (name, path) in [
        ("robot$ci-push", "ci/harbor-credentials"),
        ("robot$argocd-pull", "argocd/harbor-pull"),
    ] {
        assert_eq!(
            secrets[name].0, bash_robots[name].0,
            "{name} adopted in place"
        );
        assert_ne!(secrets[name].1, bash_robots[name].1, "{name}: a new secret");
        let stored = kv(&sandbox, path).await.unwrap();
        assert_eq!(stored["data"]["password"], secrets[name].1.as_str());
    }
    assert_eq!(
        kv(&sandbox, "ci/harbor-push").await,
        None,
        "the bash copy of the secret is gone"
    );
    let metadata = sandbox::support::vault_read(&sandbox, "kv/metadata/ci/harbor-push").await;
    assert_eq!(metadata, None, "with every version");

    // Rerun: nothing planned, nothing written.
    let after = all_writes(&sandbox);
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(all_writes(&sandbox), after, "second apply writes nothing");
    let report = phase(&sandbox, &["--adopt-report", "plan"]).await;
    assert!(report.stdout.contains("0 leftover(s)"), "{}", report.stdout);

    let mut known = bash_secrets;
    known.extend(secrets.into_values().map(|(_, s)| s));
    known.push(sandbox.get("HARBOR_ADMIN_PASSWORD").to_owned());
    assert_no_secret(&[&plan, &adopt, &apply, &rerun, &report], &known);
}
