//! Phase 16 against the sandbox: plan writes nothing; apply builds the four pools' runners
//! (tokens in Vault), Harbor's scanning, gate, allowlist and alerts, and the Kubernetes objects; a
//! rerun writes nothing; drift is reported exactly and repaired; a lost token is reset without a
//! new runner, and only that pool's.

use std::collections::BTreeSet;

use security_setup::desired::POOLS;
use serde_json::{Value, json};

use crate::support::{
    ALLOWLIST, RunnerFacts, all_runners, api_writes, assert_no_secret, kube, object_refs, phase,
    runners, start, stored_token, vault_get, versions,
};

/// The one runner of each pool, in the order of `POOLS`.
fn pool_runners(sandbox: &sandbox::Sandbox) -> Vec<RunnerFacts> {
    POOLS
        .iter()
        .map(|pool| {
            let made = runners(sandbox, &format!("{}-runners", pool.name));
            assert_eq!(made.len(), 1, "{}: exactly one runner", pool.name);
            made[0].clone()
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
    // 22 = 4 runners + 2 project metadata + 2 webhooks + schedule + allowlist
    //      + the DORA collector's Harbor secret and its 2 scan webhooks (issue 17)
    //      + 4 ExternalSecrets + 4 Applications + the public-key ConfigMap.
    let expected = [
        "gitlab runner shared-runners",
        "gitlab runner build-runners",
        "gitlab runner security-runners",
        "gitlab runner test-runners",
        "harbor project platform-services",
        "harbor project application-services",
        "harbor webhook platform-services: security-alerts-mattermost",
        "harbor webhook application-services: security-alerts-mattermost",
        "vault secret kv/monitoring/dora-collector",
        "harbor webhook platform-services: dora-collector-scans",
        "harbor webhook application-services: dora-collector-scans",
        "harbor scan-all schedule system",
        "harbor CVE allowlist system",
        "kubernetes ExternalSecret gitlab-runners/shared-runner-token",
        "kubernetes Application argocd/gitlab-runner-shared",
        "kubernetes ExternalSecret gitlab-runners/build-runner-token",
        "kubernetes Application argocd/gitlab-runner-build",
        "kubernetes ExternalSecret gitlab-runners/security-runner-token",
        "kubernetes Application argocd/gitlab-runner-security",
        "kubernetes ExternalSecret gitlab-runners/test-runner-token",
        "kubernetes Application argocd/gitlab-runner-test",
        "kubernetes ConfigMap gitlab-runners/cosign-public-key",
    ];
    assert_eq!(titles.len(), expected.len(), "{titles:?}");
    for title in expected {
        assert!(
            titles.iter().any(|t| t == title),
            "{title} missing from {titles:?}"
        );
    }
    // Each runner's plan shows its tags and whether it runs untagged jobs.
    for pool in POOLS {
        let change = doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["resource"] == "gitlab runner" && c["name"] == format!("{}-runners", pool.name)
            })
            .unwrap();
        let mut tags = pool.tags.to_vec();
        tags.sort_unstable();
        assert_eq!(change["after"]["tag_list"], json!(tags), "{}", pool.name);
        assert_eq!(
            change["after"]["run_untagged"], pool.run_untagged,
            "{}",
            pool.name
        );
        assert_eq!(
            change["after"]["token"],
            format!(
                "stored at kv/ci/runners/{} (runner-token), never shown",
                pool.name
            )
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
        vec![None; refs.len()],
        "plan: 0 Kubernetes writes"
    );
    assert!(all_runners(&sandbox).is_empty());

    // apply
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("applied 22 change(s), 0 not applied"),
        "{}",
        apply.stdout
    );

    // The runners: exactly four, one per pool, group runners of platform_services with exactly
    // the pool's tags; only shared runs untagged jobs; each token in Vault at the pool's path.
    assert_eq!(all_runners(&sandbox).len(), 4, "exactly four runners");
    let made = pool_runners(&sandbox);
    let group_id = sandbox
        .gitlab
        .as_ref()
        .unwrap()
        .lock()
        .group_by_path("platform_services")
        .unwrap()
        .id;
    for (pool, (id, token, tags, run_untagged, group)) in POOLS.iter().zip(&made) {
        assert!(token.starts_with("glrt-"), "{}", pool.name);
        assert_eq!(tags, pool.tags, "{}", pool.name);
        assert_eq!(*run_untagged, pool.name == "shared", "{}", pool.name);
        assert_eq!(*group, Some(group_id), "{}", pool.name);
        let stored = vault_get(&sandbox, &format!("kv/data/ci/runners/{}", pool.name))
            .await
            .unwrap();
        assert_eq!(
            stored["data"]["runner-token"],
            token.as_str(),
            "{}: Vault holds GitLab's token",
            pool.name
        );
        assert_eq!(
            stored["metadata"]["custom_metadata"]["gitlab-runner-id"],
            id.to_string()
        );
        assert_eq!(
            stored["metadata"]["custom_metadata"]["runner-description"],
            format!("{}-runners", pool.name)
        );
    }
    let tokens: Vec<String> = made.iter().map(|r| r.1.clone()).collect();
    assert_eq!(
        tokens.iter().collect::<BTreeSet<_>>().len(),
        4,
        "four different tokens"
    );

    // Harbor.
    let harbor_secret = sandbox::support::vault_read(&sandbox, "kv/data/monitoring/dora-collector")
        .await
        .expect("phase 16 generated the collector's Harbor secret")["data"]["harbor-webhook-secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(harbor_secret.len(), 64);
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
            assert_eq!(hooks.len(), 2, "{name}: Mattermost and the DORA collector");
            let (hooks, dora): (Vec<&Value>, Vec<&Value>) = hooks
                .into_iter()
                .partition(|w| w["name"] == "security-alerts-mattermost");
            // The collector's scan webhook (docs/dora-collector.md "Harbor scans"): Harbor's
            // "Default" payload to /webhooks/harbor, with the secret phase 16 generated in Vault.
            assert_eq!(dora[0]["event_types"], json!(["SCANNING_COMPLETED"]));
            assert_eq!(dora[0]["targets"][0]["type"], "http");
            assert_eq!(
                dora[0]["targets"][0]["address"],
                format!("https://dora.{}/webhooks/harbor", sandbox.get("DOMAIN"))
            );
            assert_eq!(
                dora[0]["targets"][0]["auth_header"],
                format!("Bearer {harbor_secret}")
            );
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

    // Kubernetes: per pool the ExternalSecret and the Application with the pool's values; the key.
    for (i, pool) in POOLS.iter().enumerate() {
        let es = kube.get(&refs[2 * i]).await.unwrap().unwrap();
        assert_eq!(
            es["spec"]["data"][0]["remoteRef"],
            json!({"key": format!("ci/runners/{}", pool.name), "property": "runner-token"})
        );
        assert_eq!(
            es["spec"]["target"]["name"],
            format!("{}-runner-token", pool.name)
        );
        let app = kube.get(&refs[2 * i + 1]).await.unwrap().unwrap();
        assert_eq!(app["spec"]["source"]["chart"], "gitlab-runner");
        assert_eq!(app["spec"]["source"]["repoURL"], "https://charts.gitlab.io");
        assert_eq!(app["spec"]["source"]["targetRevision"], "0.71.0");
        let values = &app["spec"]["source"]["helm"]["valuesObject"];
        assert_eq!(
            values["runners"]["secret"],
            format!("{}-runner-token", pool.name)
        );
        assert_eq!(
            values["gitlabUrl"],
            format!("{}/", sandbox.get("GITLAB_URL"))
        );
        assert_eq!(values["hpa"]["maxReplicas"], pool.replicas.1);
        assert!(
            values["runners"]["config"]
                .as_str()
                .unwrap()
                .contains(&format!(
                    "\"cicd.platform/runner-pool\" = \"{}\"",
                    pool.name
                )),
            "{}",
            pool.name
        );
    }
    let key = vault_get(&sandbox, "transit/keys/ci-signing-key")
        .await
        .unwrap();
    let cm = kube.get(&refs[8]).await.unwrap().unwrap();
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
    assert_eq!(all_runners(&sandbox).len(), 4, "still exactly four runners");
    assert_eq!(
        pool_runners(&sandbox),
        made,
        "the runners are not duplicated or changed"
    );
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

    // Runner drift: the shared runner paused and made tagged-only by hand; one update repairs it.
    let shared_id = made[0].0;
    {
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let r = gl.runners.runners.get_mut(&shared_id).unwrap();
        r.paused = true;
        r.run_untagged = false;
    }
    let runner_drift = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(runner_drift.code, 2, "{}", runner_drift.stderr);
    let doc: Value = serde_json::from_str(&runner_drift.stdout).unwrap();
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["name"], "shared-runners");
    assert_eq!(
        changes[0]["diff"],
        json!(["~ paused: true -> false", "~ run_untagged: false -> true"])
    );
    let before_fix = api_writes(&sandbox);
    let fix_runner = phase(&sandbox, &["apply"]).await;
    assert_eq!(fix_runner.code, 0, "{}", fix_runner.stderr);
    let after_fix = api_writes(&sandbox);
    assert_eq!(after_fix.0 - before_fix.0, 1, "one GitLab write");
    assert_eq!((after_fix.1, after_fix.2), (before_fix.1, before_fix.2));
    assert_eq!(pool_runners(&sandbox), made, "the same runner, as it was");

    // The build pool's Vault copy is destroyed: only that runner's token is reset and stored, no
    // new runner; the other pools' tokens stay as they were.
    crate::support::vault(
        &sandbox,
        reqwest::Method::DELETE,
        "kv/metadata/ci/runners/build",
        None,
    )
    .await;
    let build_id = made[1].0;
    let lost = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(lost.code, 2);
    let titles = sandbox::change_titles(&serde_json::from_str(&lost.stdout).unwrap());
    assert_eq!(
        titles,
        [format!(
            "runner token runner {build_id} → kv/ci/runners/build (runner-token)"
        )]
    );
    let before_reset = api_writes(&sandbox);
    let reset = phase(&sandbox, &["apply"]).await;
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert_eq!(
        api_writes(&sandbox).0 - before_reset.0,
        1,
        "one GitLab write: the reset"
    );
    assert_eq!(all_runners(&sandbox).len(), 4, "still four runners");
    let now = pool_runners(&sandbox);
    assert_eq!(now[1].0, build_id, "the same runner");
    assert_ne!(now[1].1, made[1].1, "a new token");
    assert_eq!(
        stored_token(&sandbox, "build").await,
        Some(now[1].1.clone())
    );
    for i in [0, 2, 3] {
        assert_eq!(now[i], made[i], "{}: untouched", POOLS[i].name);
        assert_eq!(
            stored_token(&sandbox, POOLS[i].name).await,
            Some(made[i].1.clone()),
            "{}: Vault copy untouched",
            POOLS[i].name
        );
    }
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);

    let mut secrets = tokens;
    secrets.push(now[1].1.clone());
    secrets.extend([
        mattermost_url,
        sandbox.get("HARBOR_ADMIN_PASSWORD").to_owned(),
        sandbox.get("GITLAB_API_TOKEN").to_owned(),
        sandbox.get("VAULT_TOKEN").to_owned(),
    ]);
    assert_no_secret(
        &[
            &plan,
            &apply,
            &rerun,
            &check,
            &drift,
            &fix,
            &runner_drift,
            &fix_runner,
            &lost,
            &reset,
        ],
        &secrets,
    );
    let _ = ALLOWLIST;
}
