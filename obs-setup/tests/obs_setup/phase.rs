//! Phase 17 against the sandbox: kube-apiserver v1.20 with the Prometheus Operator and External
//! Secrets CRDs (server-side apply; the server validates every object it serves), real `OpenBao`
//! (the webhook secret in KV v2; writes counted from its audit log), real Prometheus (the live
//! summary probes it) and the GitLab stand-in's group hooks (`doc/api/group_webhooks.md`).

use std::sync::atomic::Ordering;

use common::kube::KubeClient;
use obs_setup::desired;
use obs_setup::settings::Settings;
use sandbox::PhaseRun as Run;
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

async fn phase(sandbox: &Sandbox, args: &[&str]) -> Run {
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_obs-setup"),
        &sandbox.env_file(),
        args,
        &[("CICD_CRD_WAIT_SECS", "30"), ("CICD_HTTP_RETRIES", "1")],
    )
    .await
}

/// The sandbox after phase 13's part phase 17 needs: KV v2 at `kv/`.
async fn start() -> Sandbox {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options::default())
        .await
        .expect("sandbox starts");
    let resp = vault(&sandbox, reqwest::Method::POST, "sys/mounts/kv")
        .json(&json!({"type": "kv", "options": {"version": "2"}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    sandbox
}

fn vault(sandbox: &Sandbox, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", sandbox.get("VAULT_ADDR")))
        .header("X-Vault-Token", sandbox.get("VAULT_TOKEN"))
}

async fn vault_json(sandbox: &Sandbox, path: &str) -> Option<Value> {
    let resp = vault(sandbox, reqwest::Method::GET, path)
        .send()
        .await
        .unwrap();
    if resp.status() == 404 {
        return None;
    }
    Some(resp.json::<Value>().await.unwrap()["data"].clone())
}

fn gitlab_writes(sandbox: &Sandbox) -> u64 {
    sandbox
        .standin("gitlab")
        .control
        .counters
        .writes
        .load(Ordering::Relaxed)
}

/// Every object the phase applies (the sandbox's 1.20 server lacks policy/v1: the PDB is skipped).
fn refs() -> Vec<Value> {
    desired::objects(&Settings::example())
        .into_iter()
        .map(|(o, _)| o)
        .filter(|o| o["kind"] != "PodDisruptionBudget")
        .map(|o| {
            json!({"apiVersion": o["apiVersion"], "kind": o["kind"],
                   "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]}})
        })
        .collect()
}

async fn versions(kube: &KubeClient) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for r in refs() {
        out.push(kube.get(&r).await.unwrap().map(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }));
    }
    out
}

/// (GitLab writes, Vault writes, resourceVersion of each object).
async fn state(sandbox: &Sandbox, kube: &KubeClient) -> (u64, usize, Vec<Option<String>>) {
    (
        gitlab_writes(sandbox),
        sandbox.vault_writes(),
        versions(kube).await,
    )
}

/// The hooks of `platform_services` in the stand-in: (url, token, fields).
fn hooks(sandbox: &Sandbox) -> Vec<(String, String, serde_json::Map<String, Value>)> {
    let gl = sandbox.gitlab.as_ref().unwrap().lock();
    let group = gl.group_by_path("platform_services").unwrap().id;
    gl.hooks
        .of_group(group)
        .into_iter()
        .map(|h| (h.url.clone(), h.token.clone(), h.fields.clone()))
        .collect()
}

fn titles(run: &Run) -> Vec<String> {
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    sandbox::change_titles(&doc)
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_rerun_drift_and_rotation_against_the_sandbox() {
    let sandbox = start().await;
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    let hook_url = "https://dora.sandbox.localhost/webhooks/gitlab";
    let mut runs: Vec<Run> = Vec::new();

    // plan: everything listed, nothing written anywhere.
    let before = state(&sandbox, &kube).await;
    assert!(before.2.iter().all(Option::is_none));
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let planned = titles(&plan);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert!(
        doc["warnings"].to_string().contains(
            "PodDisruptionBudget monitoring/dora-collector: the cluster does not serve policy/v1 PodDisruptionBudget"
        ),
        "{}",
        doc["warnings"]
    );
    let mut expected = vec![
        "vault secret kv/monitoring/dora-collector".to_owned(),
        "gitlab group hook platform_services/dora-collector".to_owned(),
    ];
    for r in refs() {
        expected.push(format!(
            "kubernetes {} {}/{}",
            r["kind"].as_str().unwrap(),
            r["metadata"]["namespace"].as_str().unwrap(),
            r["metadata"]["name"].as_str().unwrap()
        ));
    }
    assert_eq!(planned, expected);
    assert_eq!(
        state(&sandbox, &kube).await,
        before,
        "plan: 0 GitLab, 0 Vault, 0 Kubernetes writes"
    );
    // With --output json the summary is a JSON line on stderr.
    let summary: Value = serde_json::from_str(plan.stderr.lines().last().unwrap()).unwrap();
    let probes: Vec<(&str, bool)> = summary["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["up"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        probes,
        vec![
            ("Grafana", false),
            ("Prometheus", true),
            ("Prometheus rules cicd-alerts", false),
            ("Prometheus target dora-collector", false),
            ("DORA collector /readyz", false),
            ("GitLab group hook", false),
        ],
        "{summary}"
    );
    runs.push(plan);

    // apply, then read the end state back.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let applied = state(&sandbox, &kube).await;
    assert_eq!(applied.0 - before.0, 1, "GitLab: one hook created");
    assert_eq!(
        applied.1 - before.1,
        3,
        "Vault: the secret (cas=0), its metadata, the hook's token fingerprint"
    );
    let secret = vault_json(&sandbox, "kv/data/monitoring/dora-collector")
        .await
        .expect("secret stored")["data"]["webhook-secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64, "32 random bytes, hex");
    let hooks_now = hooks(&sandbox);
    assert_eq!(hooks_now.len(), 1);
    let (url, token, fields) = &hooks_now[0];
    assert_eq!(url, hook_url);
    assert_eq!(token, &secret, "the hook's token is the Vault secret");
    for flag in [
        "pipeline_events",
        "deployment_events",
        "merge_requests_events",
        "push_events",
        "enable_ssl_verification",
    ] {
        assert_eq!(fields[flag], true, "{flag}");
    }
    let meta = vault_json(&sandbox, "kv/metadata/monitoring/dora-collector")
        .await
        .unwrap();
    assert_eq!(
        meta["custom_metadata"]["managed-by"],
        "cicd-buildout/obs-setup"
    );
    let fingerprint = meta["custom_metadata"]["gitlab-hook-token"]
        .as_str()
        .unwrap();
    assert!(
        !fingerprint.contains(&secret[..16]),
        "a hash, not the secret"
    );
    for r in refs() {
        let live = kube.get(&r).await.unwrap();
        assert!(live.is_some(), "{r} applied");
    }
    let rule = kube.get(&refs()[1]).await.unwrap().unwrap();
    assert_eq!(rule["spec"]["groups"][0]["name"], "cicd-alerts");
    assert_eq!(
        rule["spec"]["groups"][0]["rules"].as_array().unwrap().len(),
        5
    );
    let deployment = kube
        .get(
            &refs()
                .into_iter()
                .find(|r| r["kind"] == "Deployment")
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!(
            "{}/platform-services/dora-collector:v0.1.0",
            sandbox
                .get("HARBOR_URL")
                .trim_start_matches("http://")
                .trim_start_matches("https://")
        ),
        "the registry of HARBOR_URL, as phase 14 names it"
    );
    // The live summary: Prometheus runs here, Grafana and the collector do not.
    assert!(
        apply.stderr.contains("up   Prometheus "),
        "{}",
        apply.stderr
    );
    assert!(apply.stderr.contains("DOWN Grafana "), "{}", apply.stderr);
    assert!(
        apply.stderr.contains("DOWN DORA collector /readyz"),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("up   GitLab group hook")
            && apply.stderr.contains(&format!("posts to {hook_url}")),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("DOWN Prometheus rules cicd-alerts")
            && apply.stderr.contains("not loaded"),
        "no operator here to load the PrometheusRule: {}",
        apply.stderr
    );
    runs.push(apply);

    // A collector target that does not answer: the summary says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    sandbox
        .add_scrape_target("dora-collector", &dead)
        .await
        .unwrap();
    let targets = format!("{}/api/v1/targets", sandbox.get("PROMETHEUS_URL"));
    for _ in 0..50 {
        let t: Value = reqwest::get(&targets).await.unwrap().json().await.unwrap();
        if t.to_string().contains("\"health\":\"down\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Rerun: no change, 0 writes anywhere; check exits 0.
    let after = state(&sandbox, &kube).await;
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    assert_eq!(
        state(&sandbox, &kube).await,
        after,
        "second apply: 0 writes"
    );
    assert!(
        rerun
            .stderr
            .contains("DOWN Prometheus target dora-collector")
            && rerun.stderr.contains("0/1 up"),
        "{}",
        rerun.stderr
    );
    runs.push(rerun);
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert_eq!(state(&sandbox, &kube).await, after, "check: 0 writes");
    runs.push(check);

    // Drift: hook events edited by hand in GitLab, a rule edited by hand in the cluster.
    {
        let mut gl = sandbox.gitlab.as_ref().unwrap().lock();
        let hook = gl.hooks.hooks.values_mut().next().unwrap();
        hook.fields.insert("pipeline_events".into(), json!(false));
        hook.fields.insert("deployment_events".into(), json!(false));
    }
    let mut edited = rule.clone();
    edited["spec"]["groups"][0]["rules"][0]["expr"] = json!("cicd_pipeline_success_rate < 0.5");
    let hand = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "kubectl-edit")
        .await
        .unwrap();
    hand.apply(
        &json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": "cicd-alerts", "namespace": "monitoring"}, "spec": edited["spec"]}),
        false,
    )
    .await
    .unwrap();
    let drift = phase(&sandbox, &["--output", "json", "check"]).await;
    assert_eq!(drift.code, 2, "{}", drift.stderr);
    assert_eq!(
        titles(&drift),
        vec![
            "gitlab group hook platform_services/dora-collector",
            "kubernetes PrometheusRule monitoring/cicd-alerts"
        ]
    );
    let doc: Value = serde_json::from_str(&drift.stdout).unwrap();
    let hook_diff = doc["changes"][0]["diff"].to_string();
    assert!(
        hook_diff.contains("pipeline_events: false -> true")
            && hook_diff.contains("deployment_events: false -> true")
            && !hook_diff.contains("token"),
        "only the edited fields: {hook_diff}"
    );
    // The rule's before/after carry the hand edit (the text diff shortens long arrays).
    assert!(
        doc["changes"][1]["before"]
            .to_string()
            .contains("cicd_pipeline_success_rate < 0.5")
            && doc["changes"][1]["after"]
                .to_string()
                .contains("cicd_pipeline_success_rate < 0.90"),
        "{}",
        doc["changes"][1]
    );
    runs.push(drift);
    let fix = phase(&sandbox, &["apply"]).await;
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    runs.push(fix);
    assert_eq!(phase(&sandbox, &["check"]).await.code, 0);
    assert_eq!(hooks(&sandbox)[0].1, secret, "token kept");

    // Rotation: a new secret written to Vault by hand → the hook (and only it) is updated.
    let rotated = "rotated-webhook-secret-0123456789abcdef0123456789abcdef";
    let resp = vault(
        &sandbox,
        reqwest::Method::POST,
        "kv/data/monitoring/dora-collector",
    )
    .json(&json!({"data": {"webhook-secret": rotated}}))
    .send()
    .await
    .unwrap();
    assert!(resp.status().is_success());
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(
        titles(&plan),
        vec!["gitlab group hook platform_services/dora-collector"]
    );
    assert!(plan.stdout.contains("token"), "{}", plan.stdout);
    runs.push(plan);
    let writes = gitlab_writes(&sandbox);
    let rotate = phase(&sandbox, &["apply"]).await;
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    assert_eq!(gitlab_writes(&sandbox), writes + 1, "one hook edit");
    assert_eq!(
        hooks(&sandbox)[0].1,
        rotated,
        "the hook has the rotated secret"
    );
    runs.push(rotate);
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);
    runs.push(check);

    // The secret (first and rotated) never appears in any output.
    for run in &runs {
        for s in [secret.as_str(), rotated] {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "a webhook secret was printed:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }
}

/// `OBS_DORA_POSTGRES=true` without `database-url` in Vault fails the plan with the fix; with it,
/// two replicas reading the URL from the Secret (checked by the server's dry run).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_needs_the_database_url_in_vault() {
    let sandbox = start().await;
    let run = |args: &'static [&'static str]| {
        let sandbox = &sandbox;
        async move {
            sandbox::run_phase_binary(
                env!("CARGO_BIN_EXE_obs-setup"),
                &sandbox.env_file(),
                args,
                &[("OBS_DORA_POSTGRES", "true"), ("CICD_HTTP_RETRIES", "1")],
            )
            .await
        }
    };
    let plan = run(&["-q", "plan"]).await;
    assert_eq!(plan.code, 1);
    assert!(
        plan.stderr
            .contains("has no `database-url` starting with postgres://"),
        "{}",
        plan.stderr
    );
    let url = "postgres://dora:pg-secret-password-42@postgres.db.svc:5432/dora";
    let resp = vault(
        &sandbox,
        reqwest::Method::POST,
        "kv/data/monitoring/dora-collector",
    )
    .json(&json!({"data": {"database-url": url}}))
    .send()
    .await
    .unwrap();
    assert!(resp.status().is_success());
    let plan = run(&["-q", "--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    assert_eq!(titles[0], "vault secret kv/monitoring/dora-collector");
    assert_eq!(
        doc["changes"][0]["action"], "update",
        "the key is added next to database-url"
    );
    assert!(!titles.iter().any(|t| t.contains("PersistentVolumeClaim")));
    let apply = run(&["-q", "apply"]).await;
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let data = vault_json(&sandbox, "kv/data/monitoring/dora-collector")
        .await
        .unwrap();
    assert_eq!(data["data"]["database-url"], url, "kept");
    assert_eq!(data["data"]["webhook-secret"].as_str().unwrap().len(), 64);
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();
    let d = kube
        .get(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dora-collector", "namespace": "monitoring"}}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    for out in [&plan.stdout, &plan.stderr, &apply.stdout, &apply.stderr] {
        assert!(!out.contains("pg-secret-password-42"));
    }
}
