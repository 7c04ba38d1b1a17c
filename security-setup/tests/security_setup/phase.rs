//! Phase 16 against the sandbox: plan writes nothing; apply builds the runner (token in Vault),
//! Harbor's scanning, gate, allowlist and alerts, and the Kubernetes objects; a rerun writes
//! nothing; drift is reported exactly and repaired; a lost token is reset without a new runner.

use serde_json::{Value, json};

use crate::support::{
    ALLOWLIST, api_writes, assert_no_secret, kube, object_refs, phase, start, vault_get, versions,
};

const DESCRIPTION: &str = "security-runners";

/// (id, token, tags, `run_untagged`, group) of a runner.
type RunnerFacts = (u64, String, Vec<String>, bool, Option<u64>);

/// Every runner described `security-runners`.
fn runners(sandbox: &sandbox::Sandbox) -> Vec<RunnerFacts> {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    gl.runners
        .with_description(DESCRIPTION)
        .into_iter()
        .map(|r| {
            (
                r.id,
                r.token.clone(),
                r.tag_list.clone(),
                r.run_untagged,
                r.group_id,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_builds_everything_once_and_repairs_drift() {
    let (sandbox, mattermost_url) = start(true).await;
    let kube = kube(&sandbox).await;
    let refs = object_refs();
    let before = api_writes(&sandbox);

    // plan: every change listed, nothing written anywhere.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    let expected = [
        "gitlab runner security-runners",
        "harbor project platform-services",
        "harbor project application-services",
        "harbor webhook platform-services: security-alerts-mattermost",
        "harbor webhook application-services: security-alerts-mattermost",
        "harbor scan-all schedule system",
        "harbor CVE allowlist system",
        "kubernetes ExternalSecret gitlab-runners/security-runner-token",
        "kubernetes Application argocd/gitlab-runner-security",
        "kubernetes ConfigMap gitlab-runners/cosign-public-key",
    ];
    assert_eq!(titles.len(), expected.len(), "{titles:?}");
    for title in expected {
        assert!(
            titles.iter().any(|t| t == title),
            "{title} missing from {titles:?}"
        );
    }
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("ciliumnetworkpolicies.cilium.io is not served"),
        "{warnings}"
    );
    assert!(
        warnings.contains("security-setup/policies/verify-images.yaml is not applied"),
        "{warnings}"
    );
    assert!(
        plan.stdout.contains("(sensitive)"),
        "the webhook address is masked"
    );
    assert_eq!(
        api_writes(&sandbox),
        before,
        "plan: 0 GitLab/Harbor/Vault writes"
    );
    assert_eq!(
        versions(&kube, &refs).await,
        vec![None, None, None],
        "plan: 0 Kubernetes writes"
    );
    assert!(runners(&sandbox).is_empty());

    // apply
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("applied 10 change(s), 0 not applied"),
        "{}",
        apply.stdout
    );

    // The runner: one, group runner of platform_services, tagged, never untagged; its token in Vault.
    let made = runners(&sandbox);
    assert_eq!(made.len(), 1);
    let (runner_id, token, tags, run_untagged, group) = made[0].clone();
    assert!(token.starts_with("glrt-"));
    assert_eq!(tags, ["security", "trivy", "semgrep", "gitleaks"]);
    assert!(!run_untagged);
    let group_id = sandbox
        .gitlab
        .as_ref()
        .unwrap()
        .lock()
        .group_by_path("platform_services")
        .unwrap()
        .id;
    assert_eq!(group, Some(group_id));
    let stored = vault_get(&sandbox, "kv/data/ci/runners/security")
        .await
        .unwrap();
    assert_eq!(
        stored["data"]["runner-token"],
        token.as_str(),
        "Vault holds GitLab's token"
    );
    assert_eq!(
        stored["metadata"]["custom_metadata"]["gitlab-runner-id"],
        runner_id.to_string()
    );

    // Harbor.
    {
        let hb = sandbox.harbor.as_ref().unwrap().lock();
        for name in ["platform-services", "application-services"] {
            let p = hb.project_by_name(name).unwrap();
            for (key, value) in [
                ("auto_scan", "true"),
                ("prevent_vul", "true"),
                ("severity", "critical"),
                ("reuse_sys_cve_allowlist", "true"),
                // Phase 14's keys stay as they were.
                ("public", "false"),
            ] {
                assert_eq!(p.metadata[key], value, "{name} {key}");
            }
            assert_eq!(p.metadata["retention_id"], (p.id + 100).to_string());
            let hooks: Vec<&Value> = hb
                .webhook_policies
                .values()
                .filter(|w| w["project_id"] == p.id)
                .collect();
            assert_eq!(hooks.len(), 1, "{name}");
            assert_eq!(hooks[0]["targets"][0]["type"], "slack");
            assert_eq!(hooks[0]["targets"][0]["address"], mattermost_url.as_str());
            assert_eq!(
                hooks[0]["event_types"],
                json!(["SCANNING_COMPLETED", "SCANNING_FAILED"])
            );
        }
        let cache = hb.project_by_name("ci-cache").unwrap();
        assert_eq!(
            cache.metadata["auto_scan"], "false",
            "ci-cache is not scanned"
        );
        assert!(cache.metadata.get("prevent_vul").is_none());
        let schedule = hb.scan_all_schedule.as_ref().unwrap();
        assert_eq!(
            schedule["schedule"],
            json!({"type": "Daily", "cron": "0 0 0 * * *"})
        );
        assert_eq!(
            hb.cve_allowlist["items"],
            json!([{"cve_id": "CVE-2023-4444"}, {"cve_id": "CVE-2024-0001"}])
        );
    }

    // Kubernetes: the ExternalSecret, the Application with the security pool's values, the key.
    let es = kube.get(&refs[0]).await.unwrap().unwrap();
    assert_eq!(
        es["spec"]["data"][0]["remoteRef"],
        json!({"key": "ci/runners/security", "property": "runner-token"})
    );
    let app = kube.get(&refs[1]).await.unwrap().unwrap();
    assert_eq!(app["spec"]["source"]["chart"], "gitlab-runner");
    assert_eq!(app["spec"]["source"]["repoURL"], "https://charts.gitlab.io");
    let values = &app["spec"]["source"]["helm"]["valuesObject"];
    assert_eq!(values["runners"]["secret"], "security-runner-token");
    assert_eq!(
        values["gitlabUrl"],
        format!("{}/", sandbox.get("GITLAB_URL"))
    );
    assert_eq!(values["hpa"]["maxReplicas"], 4);
    let key = vault_get(&sandbox, "transit/keys/ci-signing-key")
        .await
        .unwrap();
    let cm = kube.get(&refs[2]).await.unwrap().unwrap();
    assert_eq!(cm["data"]["cosign.pub"], key["keys"]["1"]["public_key"]);
    assert!(
        cm["data"]["cosign.pub"]
            .as_str()
            .unwrap()
            .contains("BEGIN PUBLIC KEY")
    );

    // Rerun: zero writes in GitLab, Harbor, Vault and Kubernetes; check agrees.
    let after_apply = api_writes(&sandbox);
    let rv = versions(&kube, &refs).await;
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert!(
        rerun.stdout.contains("applied 0 change(s)"),
        "{}",
        rerun.stdout
    );
    assert_eq!(
        api_writes(&sandbox),
        after_apply,
        "second apply: 0 API writes"
    );
    assert_eq!(
        versions(&kube, &refs).await,
        rv,
        "second apply: 0 Kubernetes writes"
    );
    assert_eq!(runners(&sandbox).len(), 1, "the runner is not duplicated");
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);

    // Drift: scan-on-push turned off by hand, the allowlist edited in the UI.
    {
        let mut hb = sandbox.harbor.as_ref().unwrap().lock();
        let id = hb.project_by_name("platform-services").unwrap().id;
        hb.projects
            .get_mut(&id)
            .unwrap()
            .metadata
            .insert("auto_scan".into(), "false".into());
        hb.cve_allowlist["items"]
            .as_array_mut()
            .unwrap()
            .push(json!({"cve_id": "CVE-2020-9999"}));
    }
    let drift = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(drift.code, 2, "{}", drift.stderr);
    let doc: Value = serde_json::from_str(&drift.stdout).unwrap();
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["name"], "platform-services");
    assert_eq!(changes[0]["diff"], json!(["~ auto_scan: false -> true"]));
    assert_eq!(changes[1]["resource"], "harbor CVE allowlist");
    assert_eq!(
        changes[1]["diff"],
        json!([
            r#"~ items: ["CVE-2020-9999","CVE-2023-4444","CVE-2024-0001"] -> ["CVE-2023-4444","CVE-2024-0001"]"#
        ])
    );
    let before_fix = api_writes(&sandbox);
    let fix = phase(&sandbox, &["apply"]).await;
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    let after_fix = api_writes(&sandbox);
    assert_eq!(
        after_fix.1 - before_fix.1,
        2,
        "two Harbor writes repair the drift"
    );
    assert_eq!((after_fix.0, after_fix.2), (before_fix.0, before_fix.2));
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    // The token's Vault copy is destroyed: the runner's token is reset and stored, no new runner.
    crate::support::vault(
        &sandbox,
        reqwest::Method::DELETE,
        "kv/metadata/ci/runners/security",
        None,
    )
    .await;
    let lost = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(lost.code, 2);
    let titles = sandbox::change_titles(&serde_json::from_str(&lost.stdout).unwrap());
    assert_eq!(
        titles,
        [format!(
            "runner token runner {runner_id} → kv/ci/runners/security (runner-token)"
        )]
    );
    let reset = phase(&sandbox, &["apply"]).await;
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let now = runners(&sandbox);
    assert_eq!(now.len(), 1, "still one runner");
    assert_eq!(now[0].0, runner_id, "the same runner");
    assert_ne!(now[0].1, token, "a new token");
    let stored = vault_get(&sandbox, "kv/data/ci/runners/security")
        .await
        .unwrap();
    assert_eq!(stored["data"]["runner-token"], now[0].1.as_str());
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    assert_no_secret(
        &[&plan, &apply, &rerun, &check, &drift, &fix, &lost, &reset],
        &[
            token,
            now[0].1.clone(),
            mattermost_url,
            sandbox.get("HARBOR_ADMIN_PASSWORD").to_owned(),
            sandbox.get("GITLAB_API_TOKEN").to_owned(),
            sandbox.get("VAULT_TOKEN").to_owned(),
        ],
    );
    let _ = ALLOWLIST;
}
