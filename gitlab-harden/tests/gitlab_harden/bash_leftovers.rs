//! The bash phase 12's "Senior Review Required" rules (docs/research/upstream-bash-phases.md section 3.7),
//! made through the same endpoint with the same body, then adopted: `plan` and `--adopt-report`
//! list every change with its reason and write nothing, `apply` leaves exactly our rule, a rerun
//! writes nothing.

use sandbox::bash_phases::post_approval_rule as post_bash_rule;
use sandbox::standins::gitlab::ApprovalRuleRecord;
use serde_json::{Value, json};

use super::{assert_hardened, data, gitlab, harden, plan_json, reset, served, start, writes};

const RELAY: &str = "platform_services/packet-relay";
const DASHBOARD: &str = "platform_services/netops-dashboard";
const MANIFESTS: &str = "platform_services/infrastructure/platform-manifests";

fn senior_rules(sandbox: &sandbox::Sandbox, path: &str) -> Vec<ApprovalRuleRecord> {
    data(sandbox)
        .project_by_path(path)
        .unwrap()
        .approval_rules
        .iter()
        .filter(|r| r.name == "Senior Review Required")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bash_phases_approval_rules_are_adopted_or_removed_as_planned() {
    common::cli::install_crypto_provider();
    let sandbox = start(false).await;
    let no_kube = [("GITLAB_SSH_ROUTE", "false")];
    let id = |path: &str| data(&sandbox).project_by_path(path).unwrap().id;
    let (relay, dashboard, manifests) = (id(RELAY), id(DASHBOARD), id(MANIFESTS));

    // The bash helper's POST on each project (its lookup found nothing there).
    let mut bash_ids = Vec::new();
    for project in [relay, dashboard, manifests] {
        let (status, rule) = post_bash_rule(&sandbox, project).await;
        assert_eq!(status, 201, "{rule}");
        assert_eq!(rule["rule_type"], "regular");
        assert_eq!(rule["groups"], json!([]));
        assert_eq!(rule["protected_branches"], json!([]));
        bash_ids.push(rule["id"].as_u64().unwrap());
    }
    // Two more runs whose lookup failed POST again: GitLab refuses a second rule of that name.
    for _ in 0..2 {
        let (status, answer) = post_bash_rule(&sandbox, relay).await;
        assert_eq!(status, 400);
        assert_eq!(
            answer,
            json!({"message": {"name": ["has already been taken"]}})
        );
    }
    // Duplicates can only come from outside the API (e.g. rows older than GitLab's validation):
    // two more copies of the bash rule on packet-relay, put into the stand-in's model.
    let copies = [9_000_001, 9_000_002];
    {
        let mut d = data(&sandbox);
        let rules = &mut d.project_by_path_mut(RELAY).unwrap().approval_rules;
        let template = rules.iter().find(|r| r.id == bash_ids[0]).unwrap().clone();
        for copy in copies {
            rules.push(ApprovalRuleRecord {
                id: copy,
                ..template.clone()
            });
        }
    }
    let gl = gitlab(&sandbox);
    reset(gl);

    // plan: each leftover with its reason, nothing written.
    let plan = harden(&sandbox, &["--output", "json", "plan"], &no_kube).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc = plan_json(&plan);
    let expected = [
        ("update", format!("{RELAY}: Senior Review Required")),
        (
            "delete",
            format!("{RELAY}: Senior Review Required (id {})", copies[0]),
        ),
        (
            "delete",
            format!("{RELAY}: Senior Review Required (id {})", copies[1]),
        ),
        ("update", format!("{DASHBOARD}: Senior Review Required")),
        (
            "delete",
            format!("{MANIFESTS}: Senior Review Required (id {})", bash_ids[2]),
        ),
    ];
    let leftovers = |changes: &Value| -> Vec<(String, String)> {
        sandbox::support::bash_leftover_rows(changes)
            .into_iter()
            .map(|(action, title)| {
                let name = title
                    .strip_prefix("approval rule ")
                    .unwrap_or_else(|| panic!("not an approval rule: {title}"));
                (action, name.to_owned())
            })
            .collect()
    };
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(a, n)| ((*a).to_owned(), n.clone()))
        .collect();
    want.sort();
    let mut found = leftovers(&doc["changes"]);
    found.sort();
    assert_eq!(found, want, "{}", plan.stdout);
    for change in doc["changes"].as_array().unwrap() {
        if let Some(reason) = change["reason"].as_str() {
            assert!(
                reason.contains("approvals_required 2, no approver groups or users"),
                "{reason}"
            );
        }
    }
    assert_eq!(writes(gl), 0, "plan writes nothing");

    // --adopt-report (JSON and text) lists exactly these, writes nothing.
    let report = harden(
        &sandbox,
        &["--adopt-report", "--output", "json", "plan"],
        &no_kube,
    )
    .await;
    assert_eq!(report.code, 0, "{}", report.stderr);
    let report_doc = plan_json(&report);
    assert_eq!(report_doc["mode"], "adopt-report");
    let mut reported = leftovers(&report_doc["leftovers"]);
    reported.sort();
    assert_eq!(reported, want);
    let text = harden(&sandbox, &["--adopt-report", "plan"], &no_kube).await;
    assert!(
        text.stdout.contains("5 leftover(s) of the bash phases"),
        "{}",
        text.stdout
    );
    assert_eq!(writes(gl), 0, "--adopt-report writes nothing");

    // apply: one rule per service project, the bash one adopted in place; none on the manifests.
    let apply = harden(&sandbox, &["apply"], &no_kube).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert_eq!(
        served(gl, "DELETE /api/v4/projects/"),
        3,
        "exactly the two copies and the manifests repository's rule deleted"
    );
    for (path, adopted) in [(RELAY, bash_ids[0]), (DASHBOARD, bash_ids[1])] {
        let rules = senior_rules(&sandbox, path);
        assert_eq!(rules.len(), 1, "{path}: {rules:?}");
        assert_eq!(
            rules[0].id, adopted,
            "{path}: the bash rule, adopted in place"
        );
        assert_hardened(&data(&sandbox), path, true);
    }
    assert!(senior_rules(&sandbox, MANIFESTS).is_empty());
    assert_hardened(&data(&sandbox), MANIFESTS, true);

    // Rerun: nothing left, nothing written.
    reset(gl);
    let rerun = harden(&sandbox, &["--output", "json", "apply"], &no_kube).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(plan_json(&rerun)["changes"], json!([]), "{}", rerun.stdout);
    assert_eq!(writes(gl), 0, "second apply writes nothing");
    let report = harden(&sandbox, &["--adopt-report", "plan"], &no_kube).await;
    assert!(report.stdout.contains("0 leftover(s)"), "{}", report.stdout);
}
