//! The security runners the bash phase 16 leaves (docs/research/upstream-bash-phases.md section 3.5): one
//! instance runner per run, registered with its body (`tag_list` a comma-separated string).
//! `plan` and `--adopt-report` list each deletion with its reason and write nothing; `apply` keeps
//! exactly our security runner (token in Vault) and deletes the bash ones; a rerun writes nothing.

use sandbox::bash_phases::security_runner_body as bash_body;
use serde_json::{Value, json};

use crate::support::{
    all_runners, api_writes, assert_no_secret, kube, object_refs, phase, runners, start,
    stored_token, versions,
};

/// (action, name) of every change left by the bash phase: each a GitLab runner.
fn leftovers(changes: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = sandbox::support::bash_leftover_rows(changes)
        .into_iter()
        .map(|(action, title)| {
            let name = title
                .strip_prefix("gitlab runner ")
                .unwrap_or_else(|| panic!("not a runner: {title}"));
            (action, name.to_owned())
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bash_phases_security_runners_are_deleted_and_ours_kept() {
    let (sandbox, _) = start(true).await;
    // Two past runs of the bash phase: two idle instance runners.
    let mut bash = Vec::new();
    for _ in 0..2 {
        let created: Value = reqwest::Client::new()
            .post(format!("{}/api/v4/user/runners", sandbox.get("GITLAB_URL")))
            .header("PRIVATE-TOKEN", sandbox.get("GITLAB_API_TOKEN"))
            .json(&bash_body())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        bash.push((
            created["id"].as_u64().unwrap(),
            created["token"].as_str().unwrap().to_owned(),
        ));
    }
    let registered = runners(&sandbox, "security-scanner-runner");
    assert_eq!(registered.len(), 2);
    for runner in &registered {
        assert_eq!(
            runner.2,
            ["security", "trivy", "semgrep", "gitleaks"],
            "the comma-separated tag_list, as GitLab splits it"
        );
        assert!(!runner.3, "no untagged jobs");
        assert_eq!(runner.4, None, "an instance runner");
    }
    let before = api_writes(&sandbox);

    // plan: both runners, with the reason; nothing written.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let want: Vec<(String, String)> = bash
        .iter()
        .map(|(id, _)| {
            (
                "delete".to_owned(),
                format!("security-scanner-runner (id {id})"),
            )
        })
        .collect();
    assert_eq!(leftovers(&doc["changes"]), want, "{}", plan.stdout);
    assert_eq!(api_writes(&sandbox), before, "plan writes nothing");
    let report = phase(&sandbox, &["--adopt-report", "--output", "json", "plan"]).await;
    assert_eq!(report.code, 0, "{}", report.stderr);
    let report_doc: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report_doc["mode"], "adopt-report");
    assert_eq!(leftovers(&report_doc["leftovers"]), want);
    assert_eq!(
        api_writes(&sandbox),
        before,
        "--adopt-report writes nothing"
    );

    // apply: no runner of the bash identity left; exactly our security runner, token in Vault.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(runners(&sandbox, "security-scanner-runner").is_empty());
    let ours = runners(&sandbox, "security-runners");
    assert_eq!(ours.len(), 1, "exactly one security runner");
    assert_eq!(
        stored_token(&sandbox, "security").await,
        Some(ours[0].1.clone()),
        "its token in Vault"
    );
    assert_eq!(
        all_runners(&sandbox).len(),
        4,
        "the four pools' runners only"
    );

    // Rerun: nothing planned, nothing written to GitLab, Harbor, Vault or Kubernetes.
    let kube = kube(&sandbox).await;
    let refs = object_refs();
    let objects = versions(&kube, &refs).await;
    let after = api_writes(&sandbox);
    let rerun = phase(&sandbox, &["--output", "json", "apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let rerun_doc: Value = serde_json::from_str(&rerun.stdout).unwrap();
    assert_eq!(rerun_doc["changes"], json!([]), "{}", rerun.stdout);
    assert_eq!(api_writes(&sandbox), after, "second apply writes nothing");
    assert_eq!(versions(&kube, &refs).await, objects, "no Kubernetes write");

    let mut known: Vec<String> = bash.into_iter().map(|(_, token)| token).collect();
    known.push(ours[0].1.clone());
    assert_no_secret(&[&plan, &report, &apply, &rerun], &known);
}
