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
