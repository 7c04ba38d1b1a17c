//! An installation made when phase 16 deployed only the security pool: its runner (described
//! `security-runners`, token at `kv/ci/runners/security`) is kept as it is; apply adds the other
//! three pools' runners and never a second security runner.

use serde_json::{Value, json};

use crate::support::{all_runners, api_writes, phase, runners, start, stored_token, vault};

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_security_runner_is_kept_and_the_other_pools_are_added() {
    let (sandbox, _) = start(true).await;
    let group_id = sandbox
        .gitlab
        .as_ref()
        .unwrap()
        .lock()
        .group_by_path("platform_services")
        .unwrap()
        .id;

    // The security runner as the earlier release registered it, its token in Vault.
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/v4/user/runners", sandbox.get("GITLAB_URL")))
        .header("PRIVATE-TOKEN", sandbox.get("GITLAB_API_TOKEN"))
        .json(&json!({
            "runner_type": "group_type", "group_id": group_id, "description": "security-runners",
            "tag_list": ["security", "trivy", "semgrep", "gitleaks"], "run_untagged": false,
            "locked": true, "paused": false, "access_level": "not_protected",
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let security_id = created["id"].as_u64().unwrap();
    let security_token = created["token"].as_str().unwrap().to_owned();
    vault(
        &sandbox,
        reqwest::Method::POST,
        "kv/data/ci/runners/security",
        Some(json!({"data": {"runner-token": security_token}})),
    )
    .await;
    vault(
        &sandbox,
        reqwest::Method::POST,
        "kv/metadata/ci/runners/security",
        Some(json!({"custom_metadata": {
            "managed-by": "cicd-buildout/security-setup",
            "gitlab-runner-id": security_id.to_string(),
            "runner-description": "security-runners",
        }})),
    )
    .await;

    // The plan registers the three missing pools and leaves the security runner alone.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let titles = sandbox::change_titles(&serde_json::from_str(&plan.stdout).unwrap());
    let runner_changes: Vec<&String> = titles
        .iter()
        .filter(|t| t.starts_with("gitlab runner") || t.starts_with("runner token"))
        .collect();
    assert_eq!(
        runner_changes,
        [
            "gitlab runner shared-runners",
            "gitlab runner build-runners",
            "gitlab runner test-runners"
        ],
        "{titles:?}"
    );

    let before = api_writes(&sandbox);
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    // Three runners created, nothing else written to GitLab (no update, no reset).
    assert_eq!(api_writes(&sandbox).0 - before.0, 3);
    assert_eq!(all_runners(&sandbox).len(), 4, "exactly four runners");
    let security = runners(&sandbox, "security-runners");
    assert_eq!(security.len(), 1, "no second security runner");
    assert_eq!(security[0].0, security_id, "the same runner");
    assert_eq!(security[0].1, security_token, "its token unchanged");
    assert_eq!(
        stored_token(&sandbox, "security").await,
        Some(security_token.clone()),
        "Vault keeps the security runner's token"
    );
    for pool in ["shared", "build", "test"] {
        let made = runners(&sandbox, &format!("{pool}-runners"));
        assert_eq!(made.len(), 1, "{pool}");
        assert_eq!(stored_token(&sandbox, pool).await, Some(made[0].1.clone()));
    }
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);
    for run in [&plan, &apply] {
        assert!(!run.stdout.contains(&security_token) && !run.stderr.contains(&security_token));
    }
}
