//! The readiness report (issue 21) on the sandbox after phases 12–18: every row has a state and
//! evidence read in this run (no row passes on nothing); a project's protected `main` weakened
//! and a Harbor project's immutable rule deleted turn exactly those two rows red, each with the
//! phase that restores it; the HTML page opened in headless Chromium shows the three tables; the
//! gauges are scraped by the sandbox's real Prometheus and the DORA dashboard's readiness row
//! returns them. The report writes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::world::{GROUP, World};

fn readiness_binary() -> PathBuf {
    sandbox::support::workspace_bin("operate", "cicd-readiness", env!("CARGO_TARGET_TMPDIR"))
}

/// Runs the report; (rows by check, the whole JSON).
fn report(world: &World, dir: &Path) -> (std::collections::BTreeMap<String, Value>, Value) {
    let out = Command::new(readiness_binary())
        .args(["--output", "json", "--attestations"])
        .arg(dir.join("attestations.yaml"))
        .arg("--write-json")
        .arg(dir.join("report.json"))
        .arg("--write-html")
        .arg(dir.join("report.html"))
        .arg("--write-markdown")
        .arg(dir.join("report.md"))
        .env(common::env::CICD_ENV_FILE, world.sandbox.env_file())
        .output()
        .expect("cicd-readiness runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).expect("the report is JSON");
    let rows = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["check"].as_str().unwrap_or_default().to_owned(),
                r.clone(),
            )
        })
        .collect();
    (rows, json)
}

fn writes(world: &World) -> crate::world::Writes {
    world.writes(&[])
}

/// Every row: a state, at least one piece of evidence with a source and a value; a pass names
/// only evidence read now (an API, a plan, a query, or the attestation file given).
fn every_row_has_state_and_evidence(rows: &std::collections::BTreeMap<String, Value>) {
    assert_eq!(rows.len(), 22, "10 + 5 + 7 rows: {rows:#?}");
    for (section, n) in [("minimumcd", 10), ("dora", 5), ("operational", 7)] {
        assert_eq!(
            rows.values().filter(|r| r["section"] == section).count(),
            n,
            "{section}"
        );
    }
    for (check, r) in rows {
        assert!(
            matches!(r["state"].as_str(), Some("pass" | "fail" | "unknown")),
            "{check}: {r}"
        );
        let evidence = r["evidence"].as_array().expect("evidence");
        assert!(!evidence.is_empty(), "{check} has no evidence: {r}");
        for e in evidence {
            assert!(
                !e["source"].as_str().unwrap_or_default().is_empty()
                    && !e["value"].as_str().unwrap_or_default().is_empty(),
                "{check}: {e}"
            );
        }
        if r["state"] != "pass" {
            assert!(
                !r["fix"].as_str().unwrap_or_default().is_empty(),
                "{check} is not passing and has no fix: {r}"
            );
        }
        if r["section"] == "dora" && r["state"] != "unknown" {
            assert!(
                r["band"].is_string(),
                "{check}: a DORA row with data has a band"
            );
        }
    }
}

pub fn the_report_reads_live_evidence_and_names_two_drifts(world: &World) {
    let dir = world.scratch.path().join("readiness");
    std::fs::create_dir_all(&dir).expect("scratch");
    std::fs::write(
        dir.join("attestations.yaml"),
        format!(
            "attestations:\n  - check: documentation\n    by: ops-team (system test)\n    date: {}\n    note: runbooks 1-8 reviewed\n",
            common::dates::format(common::dates::today())
        ),
    )
    .expect("attestations");

    let before = writes(world);
    let (rows, _) = report(world, &dir);
    assert_eq!(writes(world), before, "the report wrote");
    every_row_has_state_and_evidence(&rows);
    // What the converged sandbox proves from its APIs and the phases' plans.
    for check in API_ROWS {
        assert_eq!(rows[check]["state"], "pass", "{check}: {}", rows[check]);
    }
    // Attested, and said so.
    assert_eq!(rows["documentation"]["state"], "pass");
    assert!(
        rows["documentation"]["evidence"]
            .to_string()
            .contains("attested by ops-team (system test)"),
        "{}",
        rows["documentation"]
    );
    // Not attested: unknown, never pass.
    assert_eq!(rows["rollback_tested"]["state"], "unknown");

    html_shows_three_tables(&dir.join("report.html"), &rows);
    gauges_reach_prometheus_and_the_dashboard(world, &dir);

    // Whatever fails below, the phases named by the fixes restore both for the later steps.
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        make_two_drifts(world);
        two_rows_turn_red(world, &dir, &rows);
    }));
    for (package, bin) in [
        ("gitlab-harden", "gitlab-harden"),
        ("ci-templates", "ci-templates"),
    ] {
        let exe = sandbox::support::workspace_bin(package, bin, env!("CARGO_TARGET_TMPDIR"));
        let run = world.rt.block_on(sandbox::run_phase_binary(
            exe.to_str().expect("a UTF-8 path"),
            &world.sandbox.env_file(),
            &["apply"],
            &[],
        ));
        assert_eq!(run.code, 0, "{bin} apply: {}\n{}", run.stdout, run.stderr);
    }
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
    let (restored, _) = report(world, &dir);
    for check in API_ROWS {
        assert_eq!(
            restored[check]["state"], rows[check]["state"],
            "{check} after the fixes"
        );
    }
}

/// Two drifts: main's protection weakened (developers may push), an immutable rule deleted.
fn make_two_drifts(world: &World) {
    let project = world.project_id(&format!("{GROUP}/dora-collector"));
    world.rt.block_on(async {
        let http = reqwest::Client::new();
        let gitlab = world.get("GITLAB_URL");
        let status = http
            .patch(format!(
                "{gitlab}/api/v4/projects/{project}/protected_branches/main"
            ))
            .header("PRIVATE-TOKEN", world.get("GITLAB_API_TOKEN"))
            .json(&json!({"allowed_to_push": [{"access_level": 30}]}))
            .send()
            .await
            .expect("GitLab answers")
            .status();
        assert!(status.is_success(), "weakening main: {status}");
        let harbor = world.get("HARBOR_URL");
        let admin = ("admin", world.get("HARBOR_ADMIN_PASSWORD"));
        let rules: Vec<Value> = http
            .get(format!(
                "{harbor}/api/v2.0/projects/application-services/immutabletagrules"
            ))
            .basic_auth(admin.0, Some(admin.1))
            .send()
            .await
            .expect("Harbor answers")
            .json()
            .await
            .expect("rules");
        let id = rules
            .first()
            .and_then(|r| r["id"].as_u64())
            .expect("an immutable rule");
        let status = http
            .delete(format!(
                "{harbor}/api/v2.0/projects/application-services/immutabletagrules/{id}"
            ))
            .basic_auth(admin.0, Some(admin.1))
            .send()
            .await
            .expect("Harbor answers")
            .status();
        assert!(status.is_success(), "deleting the rule: {status}");
    });
}

/// Rows whose evidence is API reads and the phases' plans only (no Prometheus data, which moves
/// with time).
const API_ROWS: [&str; 7] = [
    "trunk_based_development",
    "automated_testing_before_merge",
    "pipeline_sole_deploy_path",
    "pipeline_verdict_definitive",
    "immutable_artifacts",
    "production_like_test_env",
    "config_with_artifact",
];

fn two_rows_turn_red(world: &World, dir: &Path, rows: &std::collections::BTreeMap<String, Value>) {
    let before = writes(world);
    let (drifted, _) = report(world, dir);
    assert_eq!(writes(world), before, "the report wrote after the drifts");
    let turned: Vec<&str> = API_ROWS
        .iter()
        .copied()
        .filter(|c| rows[*c]["state"] != drifted[*c]["state"])
        .collect();
    assert_eq!(
        turned,
        ["trunk_based_development", "immutable_artifacts"],
        "exactly two rows change: {drifted:#?}"
    );
    let trunk = &drifted["trunk_based_development"];
    assert_eq!(trunk["state"], "fail");
    let fix = trunk["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("dora-collector") && fix.contains("--only 12"),
        "{fix}"
    );
    let immutable = &drifted["immutable_artifacts"];
    assert_eq!(immutable["state"], "fail");
    let fix = immutable["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("application-services") && fix.contains("--only 14"),
        "{fix}"
    );
    eprintln!(
        "    readiness: 22 rows with evidence; after two drifts exactly trunk_based_development and immutable_artifacts fail:\n      {}\n      {}",
        trunk["fix"], immutable["fix"]
    );
}

/// Chromium (headless) renders the page: three tables, 10, 5 and 7 rows, states as computed.
fn html_shows_three_tables(page: &Path, rows: &std::collections::BTreeMap<String, Value>) {
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium missing: run ./scripts/setup-test-env.sh"
    );
    let profile = tempfile::tempdir().expect("a profile dir");
    let out = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<h1>CI/CD readiness</h1>"),
        "Chromium's DOM:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (id, title, n) in [
        ("minimumcd", "MinimumCD Compliance Checklist", 10),
        ("dora", "DORA Metrics Targets", 5),
        ("operational", "Operational Readiness", 7),
    ] {
        assert!(dom.contains(title), "{title} missing");
        let start = dom
            .find(&format!("<table id=\"{id}\""))
            .unwrap_or_else(|| panic!("table {id} missing"));
        let table = &dom[start..start + dom[start..].find("</table>").expect("closed")];
        assert_eq!(table.matches("<tr data-check=").count(), n, "{id}: {table}");
    }
    for (check, r) in rows {
        let cell = format!("<tr data-check=\"{check}\">");
        let at = dom
            .find(&cell)
            .unwrap_or_else(|| panic!("{check} not shown"));
        let row = &dom[at..at + dom[at..].find("</tr>").expect("row end")];
        let label = if r["state"] == "fail" {
            "FAIL".to_owned()
        } else {
            r["state"].as_str().unwrap_or_default().to_owned()
        };
        assert!(row.contains(&format!(">{label}")), "{check}: {row}");
    }
    eprintln!("    readiness: Chromium shows the three tables (10, 5, 7 rows)");
}

/// `serve` exports the saved report; Prometheus scrapes it; the dashboard row's queries answer.
fn gauges_reach_prometheus_and_the_dashboard(world: &World, dir: &Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut server = Command::new(readiness_binary())
        .args(["serve", "--report"])
        .arg(dir.join("report.json"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env(common::env::CICD_ENV_FILE, world.sandbox.env_file())
        .spawn()
        .expect("cicd-readiness serve");
    let prom = sandbox::support::PrometheusApi::new(world.get("PROMETHEUS_URL"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world
            .rt
            .block_on(
                world
                    .sandbox
                    .add_scrape_target("cicd-readiness", &format!("127.0.0.1:{port}")),
            )
            .expect("a scrape target");
        let query = |expr: &str| -> Vec<Value> { world.rt.block_on(prom.query(expr, None)) };
        world
            .rt
            .block_on(prom.wait_for("count(cicd_readiness)", 22.0));
        let series = query("cicd_readiness");
        assert_eq!(series.len(), 22, "scraped series: {series:#?}");
        // The dashboard's readiness row: every target of its panels returns data.
        let dashboard: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../obs-setup/dashboards/dora.json"),
            )
            .expect("the DORA dashboard"),
        )
        .expect("JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        let row_at = panels
            .iter()
            .position(|p| p["type"] == "row" && p["title"] == "CI/CD readiness")
            .expect("the dashboard has a CI/CD readiness row");
        let exprs: Vec<String> = panels[row_at + 1..]
            .iter()
            .take_while(|p| p["type"] != "row")
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect();
        assert!(exprs.len() >= 3, "{exprs:?}");
        for expr in &exprs {
            let got = query(expr);
            assert!(
                !got.is_empty(),
                "the dashboard query {expr} returns nothing"
            );
        }
        eprintln!(
            "    readiness: 22 gauges scraped by Prometheus; the dashboard row's {} queries answer",
            exprs.len()
        );
    }));
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The daily run as the cluster makes it (issue 21, docs/adr/0012), from its producer to its
/// gauges:
/// 1. Argo CD's sync of `deploy/overlays/production` from the project phase 17 seeded
///    (`platform_services/cicd-buildout`), into `monitoring` (the `CronJob` itself only where the
///    API server serves `batch/v1`; the sandbox's 1.20 does not);
/// 2. the service account's grants: phase 17's read-only `ClusterRole` and Argo CD reader, the
///    tree's own patch of its one `ConfigMap`, nothing else (no Secret, no other write);
/// 3. `cicd-readiness` run as the `CronJob` runs it: the service account's token, the settings of
///    `ConfigMap` cicd-readiness-env that phase 17 wrote (`envFrom`), no credential, the
///    attestation file absent; it keeps the report in `ConfigMap` cicd-readiness-report and
///    writes nothing else (stand-ins, `OpenBao`);
/// 4. the exporter's `serve` reads that report as the kubelet mounts it and exports 22 gauges.
pub fn the_daily_cronjob_keeps_the_report_its_exporter_serves(world: &World) {
    let kube = world.kube();
    let ns = "monitoring";
    // 1. The tree as phase 17 seeded it, built and applied as Argo CD syncs it.
    let checkout = world.dir("readiness-project");
    world.checkout(
        &format!("{GROUP}/{}", seeded_projects::this_repository::NAME),
        "main",
        &checkout,
    );
    let docs = crate::world::documents(&crate::world::kustomize(
        &checkout.join("deploy/overlays/production"),
    ));
    let cronjob_served = world
        .rt
        .block_on(kube.serves("batch/v1", "CronJob"))
        .expect("discovery");
    let mut kinds = Vec::new();
    // The containers' arguments as the manifests give them (run below as the pods run them).
    let args_of = |pod: &Value| -> Vec<String> {
        pod["spec"]["containers"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect()
    };
    let mut cronjob_args = Vec::new();
    let mut exporter_args = Vec::new();
    for mut doc in docs {
        if doc["kind"] == "CronJob" {
            cronjob_args = args_of(&doc["spec"]["jobTemplate"]["spec"]["template"]);
        }
        if doc["kind"] == "Deployment" {
            exporter_args = args_of(&doc["spec"]["template"]);
        }
        kinds.push(format!(
            "{} {}",
            doc["kind"].as_str().unwrap_or_default(),
            doc["metadata"]["name"].as_str().unwrap_or_default()
        ));
        if doc["kind"] == "CronJob" {
            // Its image is the release the project's tag pipeline pushes (the images step).
            let image =
                doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            assert!(
                image.ends_with(&format!(
                    "/platform-services/cicd-buildout:{}",
                    seeded_projects::this_repository::release_tag()
                )),
                "{image}"
            );
            if !cronjob_served {
                continue;
            }
        }
        doc["metadata"]["namespace"] = json!(ns);
        world
            .rt
            .block_on(kube.apply(&doc, false))
            .unwrap_or_else(|e| panic!("syncing {doc}: {e}"));
    }
    for want in [
        "ServiceAccount cicd-readiness",
        "Role cicd-readiness-report",
        "RoleBinding cicd-readiness-report",
        "CronJob cicd-readiness",
        "Deployment cicd-readiness-exporter",
        "Service cicd-readiness-exporter",
        "NetworkPolicy cicd-readiness",
        "NetworkPolicy cicd-readiness-exporter",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} in {kinds:?}");
    }

    // 2. What the account may do, asked of the API server (impersonation, as kubectl auth can-i).
    let sa = format!("system:serviceaccount:{ns}:cicd-readiness");
    let can = |args: &[&str]| -> bool {
        let out = Command::new("kubectl")
            .args(["auth", "can-i", "--as", &sa])
            .args(args)
            .env("KUBECONFIG", world.sandbox.kubeconfig())
            .output()
            .expect("kubectl auth can-i");
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    // kubectl auth can-i arguments (namespace monitoring unless -n says otherwise).
    let grants: [(bool, &str); 21] = [
        (true, "patch configmaps/cicd-readiness-report"),
        (true, "get configmaps/cicd-readiness-report"),
        (true, "list applications.argoproj.io -n argocd"),
        (true, "list applicationsets.argoproj.io -n argocd"),
        (true, "get configmaps/argocd-rbac-cm -n argocd"),
        (
            true,
            "get prometheusrules.monitoring.coreos.com/cicd-alerts",
        ),
        (true, "get configmaps/grafana-dashboard-dora"),
        (true, "list clusteranalysistemplates.argoproj.io"),
        (true, "get appprojects.argoproj.io/production -n argocd"),
        (false, "list appprojects.argoproj.io -n argocd"),
        (false, "patch configmaps/cicd-readiness-env"),
        (false, "patch configmaps/argocd-rbac-cm -n argocd"),
        (false, "get configmaps/argocd-cm -n argocd"),
        (false, "list configmaps"),
        (false, "create configmaps"),
        (false, "list prometheusrules.monitoring.coreos.com -A"),
        (false, "list applications.argoproj.io -A"),
        (false, "get secrets -n argocd"),
        (false, "list secrets -A"),
        (false, "patch applications.argoproj.io -n argocd"),
        (false, "create clusterrolebindings"),
    ];
    for (allowed, grant) in grants {
        let mut args: Vec<&str> = grant.split_whitespace().collect();
        if !args.contains(&"-n") && !args.contains(&"-A") {
            args.extend(["-n", ns]);
        }
        assert_eq!(can(&args), allowed, "can-i {grant} as {sa}");
    }

    // The sandbox's Vault reviews logins with the client's own token
    // (VAULT_K8S_TOKEN_REVIEWER=client): the account may then review tokens, as any pod
    // logging in to Vault must.
    if world.get("VAULT_K8S_TOKEN_REVIEWER") == "client" {
        assert!(
            can(&["create", "tokenreviews.authentication.k8s.io"]),
            "the report's account cannot review its token for Vault"
        );
    }

    // 3. The run, as the CronJob's pod has it.
    let dir = world.dir("readiness-cronjob");
    let token = world
        .rt
        .block_on(kube.token_request(ns, "cicd-readiness", &[], 600))
        .expect("a TokenRequest token for cicd-readiness");
    let admin: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(world.sandbox.kubeconfig()).expect("the sandbox's kubeconfig"),
    )
    .expect("kubeconfig YAML");
    let cluster = &admin["clusters"][0]["cluster"];
    let kubeconfig = dir.join("kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        serde_json::to_string(&json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "in-cluster", "cluster": cluster}],
            "users": [{"name": "cicd-readiness", "user": {"token": secrecy::ExposeSecret::expose_secret(&token)}}],
            "contexts": [{"name": "pod", "context": {"cluster": "in-cluster", "user": "cicd-readiness"}}],
        }))
        .expect("JSON"),
    )
    .expect("the pod's kubeconfig");
    let env_cm = world
        .live(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cicd-readiness-env", "namespace": ns}}))
        .expect("phase 17 wrote ConfigMap cicd-readiness-env");
    let settings = env_cm["data"].as_object().expect("data").clone();
    let known_secrets = [
        world.get("GITLAB_API_TOKEN").to_owned(),
        world.get("HARBOR_ADMIN_PASSWORD").to_owned(),
        world.get("VAULT_TOKEN").to_owned(),
    ];
    let text = serde_json::to_string(&settings).expect("JSON");
    for secret in known_secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(secret.as_str()),
            "a credential in cicd-readiness-env"
        );
    }
    assert_eq!(
        settings
            .get(common::env::CICD_READINESS_VAULT_ROLE)
            .and_then(Value::as_str),
        Some(common::contract::READINESS_VAULT_ROLE),
        "phase 17 names the report's Vault role in cicd-readiness-env"
    );
    // The sandbox's GitLab is Premium; the report's tokens may not read the licence.
    assert_eq!(
        settings
            .get(common::env::CICD_GITLAB_TIER)
            .and_then(Value::as_str),
        Some("premium")
    );
    // The projected token as the kubelet mounts it (CICD_SERVICE_ACCOUNT_TOKEN_FILE's default is
    // the pod's path).
    let token_file = dir.join("serviceaccount-token");
    std::fs::write(&token_file, secrecy::ExposeSecret::expose_secret(&token))
        .expect("the token file");
    let empty_platform_dir = world.dir("readiness-cronjob-platform");
    let before = world.writes(&[]);
    let mut run = Command::new(readiness_binary());
    run.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(common::env::CICD_PLATFORM_DIR, &empty_platform_dir)
        .env(common::env::KUBECONFIG, &kubeconfig)
        .env(common::env::CICD_SERVICE_ACCOUNT_TOKEN_FILE, &token_file)
        .args(["--output", "json"])
        // The CronJob's own arguments: its ConfigMap, the attestation file it mounts only when
        // the ops team made one (none here).
        .args(&cronjob_args);
    assert!(
        cronjob_args.iter().any(|a| a == "--write-configmap"),
        "{cronjob_args:?}"
    );
    for (k, v) in &settings {
        run.env(k, v.as_str().unwrap_or_default());
    }
    let out = run.output().expect("cicd-readiness as the CronJob runs it");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let printed: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        printed["rows"].as_array().map(Vec::len),
        Some(22),
        "{printed}"
    );
    // Its Kubernetes reads went through with the account's grants.
    let sole = printed["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "pipeline_sole_deploy_path")
        .expect("the sole deploy path row");
    assert!(
        sole["evidence"].to_string().contains("argocd-rbac-cm")
            && !sole["evidence"]
                .to_string()
                .to_lowercase()
                .contains("forbidden"),
        "{sole}"
    );
    // The rows whose evidence is Kubernetes alone (Argo CD's Applications and ApplicationSets)
    // pass with the account's read-only grants, as in the operator's run.
    for check in ["production_like_test_env", "config_with_artifact"] {
        let row = printed["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("{check} row"));
        assert_eq!(row["state"], "pass", "{check} in the cluster: {row}");
    }
    // Phase 12's rows, read with the report's own read-only group token from Vault.
    for check in ["trunk_based_development", "automated_testing_before_merge"] {
        let row = printed["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("{check} row"));
        assert_eq!(row["state"], "pass", "{check} in the cluster: {row}");
        assert!(
            row["evidence"][0]["source"]
                .as_str()
                .unwrap_or_default()
                .contains("with 1 read-only group token(s) (platform_services)"),
            "{row}"
        );
    }
    // Phase 14's rows: Harbor read with phase 14's robot for the report, the library with the
    // group token of the group holding it; phase 15's RBAC and AppProjects compared read-only.
    for (check, source) in [
        (
            "pipeline_sole_deploy_path",
            "compared with the live objects (read-only)",
        ),
        (
            "immutable_artifacts",
            "read with the report's robot cicd-readiness",
        ),
        (
            "pipeline_verdict_definitive",
            "(read-only token of platform_services)",
        ),
    ] {
        let row = printed["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("{check} row"));
        assert_eq!(row["state"], "pass", "{check} in the cluster: {row}");
        assert!(row["evidence"].to_string().contains(source), "{row}");
    }
    let after = world.writes(&[]);
    assert_eq!(
        (before.0, &before.2),
        (after.0, &after.2),
        "the run wrote to a stand-in or the cluster"
    );
    assert_eq!(
        after.1 - before.1,
        1,
        "OpenBao: the run's one login (auth/kubernetes/login) and no other write"
    );
    let kept = world
        .live(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cicd-readiness-report", "namespace": ns}}))
        .expect("the report is kept in ConfigMap cicd-readiness-report");
    let kept_json: Value =
        serde_json::from_str(kept["data"]["report.json"].as_str().expect("report.json"))
            .expect("the kept report is JSON");
    assert_eq!(
        kept_json["rows"], printed["rows"],
        "the kept report is the run's"
    );
    // The report's data is the CronJob's: phase 17, which created the ConfigMap, sees no drift.
    let check = world.run_phase("obs-setup", "obs-setup", &["check"]);
    assert_eq!(
        check.code, 0,
        "phase 17 check after the report was kept:\n{}",
        check.stdout
    );
    assert!(
        kept["data"]["report.html"]
            .as_str()
            .unwrap_or_default()
            .contains("<table")
    );
    assert!(
        kept["data"]["report.md"]
            .as_str()
            .unwrap_or_default()
            .contains("| ")
    );
    for secret in known_secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !kept.to_string().contains(secret.as_str()),
            "a credential in the kept report"
        );
    }

    super::readiness_credentials::are_least_privilege(
        world,
        ns,
        &token,
        &[&stdout, &stderr, &kept.to_string()],
    );

    // 4. The exporter: the file as the kubelet mounts it, served as gauges.
    // The Deployment's own arguments, with the mount and the address moved to this machine.
    let mounted = dir.join("report");
    std::fs::create_dir_all(&mounted).expect("mount dir");
    std::fs::write(
        mounted.join("report.json"),
        kept["data"]["report.json"].as_str().unwrap_or_default(),
    )
    .expect("the mounted file");
    let mount_path = exporter_args
        .iter()
        .skip_while(|a| *a != "--report")
        .nth(1)
        .unwrap_or_else(|| panic!("the exporter names its report: {exporter_args:?}"))
        .clone();
    assert!(mount_path.starts_with("/report/"), "{mount_path}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let listen = format!("127.0.0.1:{port}");
    let local_args: Vec<String> = exporter_args
        .iter()
        .map(|a| {
            if *a == mount_path {
                mounted
                    .join(mount_path.trim_start_matches("/report/"))
                    .display()
                    .to_string()
            } else if a.starts_with("0.0.0.0:") {
                listen.clone()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut server = Command::new(readiness_binary())
        .args(&local_args)
        .env(common::env::CICD_PLATFORM_DIR, &empty_platform_dir)
        .spawn()
        .expect("cicd-readiness serve");
    let metrics = (0..50).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        world.rt.block_on(async {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        })
    });
    let _ = server.kill();
    let _ = server.wait();
    let metrics = metrics.expect("the exporter answers /metrics");
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("cicd_readiness{"))
            .count(),
        22,
        "{metrics}"
    );
    // What the in-cluster run could not establish, and why (the credentials it does not have yet).
    for r in printed["rows"].as_array().unwrap() {
        if r["state"] != "pass" {
            let why: String = r["evidence"][0]["value"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(110)
                .collect();
            eprintln!(
                "      {} {}: {why}",
                r["state"].as_str().unwrap_or_default(),
                r["check"].as_str().unwrap_or_default()
            );
        }
    }
    let states: Vec<&str> = printed["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default())
        .collect();
    eprintln!(
        "    readiness CronJob: synced {} objects, ran as system:serviceaccount:{ns}:cicd-readiness ({} grants checked), kept the report ({} pass, {} fail, {} unknown), exporter serves 22 gauges; 0 writes elsewhere",
        kinds.len(),
        grants.len(),
        states.iter().filter(|s| **s == "pass").count(),
        states.iter().filter(|s| **s == "fail").count(),
        states.iter().filter(|s| **s == "unknown").count(),
    );
}
