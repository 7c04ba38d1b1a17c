//! The preflight (issue 21) on the converged sandbox: every row green, Grafana "not in the
//! sandbox"; then each prerequisite removed in turn — a CRD deleted, GitLab on the Free tier
//! (doc/api/license.md: CE has no licence), the Vault token without capabilities, the Keycloak
//! realm missing (Keycloak answers 404 "Realm does not exist") — gives exactly one red row with
//! its fix and exit 1, and not one write on any server. The driver stops before its first phase.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::world::World;

/// The CRD deleted in the first case: Argo Rollouts' `AnalysisRun` (no object of it exists in
/// the sandbox, which runs no Rollouts controller, so deleting it loses nothing).
const DELETED_CRD: &str = "analysisruns.argoproj.io";

fn preflight_binary() -> PathBuf {
    sandbox::support::workspace_bin("operate", "cicd-preflight", env!("CARGO_TARGET_TMPDIR"))
}

/// Runs the preflight of every phase with `env` added; (exit code, rows, stdout).
fn preflight(world: &World, env: &[(&str, &str)]) -> (i32, Vec<Value>, String) {
    let mut cmd = Command::new(preflight_binary());
    cmd.args(["--output", "json"])
        .env(common::env::CICD_ENV_FILE, world.sandbox.env_file());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cicd-preflight runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "preflight JSON: {e}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    (out.status.code().unwrap_or(-1), rows, stdout)
}

/// Everything the preflight could write: stand-ins, Vault, the cluster's CRDs.
fn writes(world: &World) -> crate::world::Writes {
    let watched: Vec<Value> = [
        "applications.argoproj.io",
        "rollouts.argoproj.io",
        "externalsecrets.external-secrets.io",
        "httproutes.gateway.networking.k8s.io",
    ]
    .iter()
    .map(|n| json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": n}}))
    .collect();
    world.writes(&watched)
}

fn red(rows: &[Value]) -> Vec<&Value> {
    rows.iter().filter(|r| r["status"] == "fail").collect()
}

/// Exactly one red row, named `check`, whose fix says `fix`; exit 1; nothing written.
fn exactly_one_red(world: &World, case: &str, env: &[(&str, &str)], check: &str, fix: &str) {
    let before = writes(world);
    let (code, rows, stdout) = preflight(world, env);
    let red = red(&rows);
    assert_eq!(code, 1, "{case}: exit code\n{stdout}");
    assert_eq!(red.len(), 1, "{case}: exactly one red row\n{stdout}");
    assert_eq!(red[0]["check"], check, "{case}\n{stdout}");
    let row_fix = red[0]["fix"].as_str().unwrap_or_default();
    assert!(
        row_fix.contains(fix),
        "{case}: the fix names {fix:?}: {row_fix}"
    );
    assert_eq!(writes(world), before, "{case}: the preflight wrote");
    eprintln!("    {case}: one red row, {check}: {row_fix}");
}

pub fn each_missing_prerequisite_gives_one_red_row(world: &World) {
    // All there.
    let before = writes(world);
    let (code, rows, stdout) = preflight(world, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(rows.len() >= 15, "{stdout}");
    for row in &rows {
        let expected = if row["check"] == "Grafana reachable" {
            "not-in-sandbox"
        } else {
            "ok"
        };
        assert_eq!(row["status"], expected, "{row}");
        assert!(
            !row["detail"].as_str().unwrap_or_default().is_empty(),
            "{row}"
        );
    }
    assert_eq!(writes(world), before, "the green preflight wrote");

    // 1. A CRD deleted (base phase 5 installs Argo Rollouts).
    let kube = world.kube();
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": DELETED_CRD}});
    world.rt.block_on(async {
        kube.delete(&crd).await.expect("deleting the CRD");
        for _ in 0..100 {
            if kube.get(&crd).await.expect("reading the CRD").is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{DELETED_CRD} is still there");
    });
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exactly_one_red(
            world,
            "a CRD deleted",
            &[],
            "Argo Rollouts CRDs",
            "base phase 5",
        );
    }));
    world
        .rt
        .block_on(sandbox::crds::install(&kube))
        .expect("reinstalling the CRD");
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }

    // 2. GitLab on the Free tier (no licence): a stop, unless accepted.
    let gitlab = world.sandbox.gitlab.as_ref().expect("the GitLab stand-in");
    gitlab.lock().tier = sandbox::standins::gitlab::Tier::Free;
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exactly_one_red(
            world,
            "GitLab on the Free tier",
            &[],
            "GitLab tier",
            "CICD_ACCEPT_FREE_TIER",
        );
        let (code, rows, stdout) =
            preflight(world, &[(common::env::CICD_ACCEPT_FREE_TIER, "true")]);
        assert_eq!(code, 0, "the Free tier accepted: {stdout}");
        assert!(
            rows.iter()
                .any(|r| r["check"] == "GitLab tier" && r["status"] == "warn"),
            "{stdout}"
        );
        // The driver stops before its first phase: nothing written anywhere.
        let before = writes(world);
        let out = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/deploy-cluster.sh"),
        )
        .args(["--from", "12"])
        .env(
            "CICD_BIN_DIR",
            preflight_binary().parent().expect("the target directory"),
        )
        .env(common::env::CICD_ENV_FILE, world.sandbox.env_file())
        .output()
        .expect("the driver");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(!stdout.contains("==> phase"), "a phase ran:\n{stdout}");
        assert!(stderr.contains("nothing was written"), "{stderr}");
        assert_eq!(writes(world), before, "the stopped driver wrote");
    }));
    gitlab.lock().tier = sandbox::standins::gitlab::Tier::Premium;
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }

    // 3. The Vault token without capabilities (policy `default` only; made before counting).
    let weak = world.rt.block_on(async {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/v1/auth/token/create", world.get("VAULT_ADDR")))
            .header("X-Vault-Token", world.get("VAULT_TOKEN"))
            .json(&json!({"policies": ["default"], "ttl": "10m", "no_default_policy": false}))
            .send()
            .await
            .expect("OpenBao answers")
            .json()
            .await
            .expect("a token");
        body["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned()
    });
    exactly_one_red(
        world,
        "the Vault token without capabilities",
        &[(common::env::VAULT_TOKEN, weak.as_str())],
        "Vault token capabilities",
        "root token",
    );

    // 4. The Keycloak realm missing.
    let keycloak = world
        .sandbox
        .keycloak
        .as_ref()
        .expect("the Keycloak stand-in");
    let realm = std::mem::replace(&mut keycloak.lock().realm, "deleted-realm".into());
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exactly_one_red(
            world,
            "the Keycloak realm missing",
            &[],
            "Keycloak realm",
            "KC_REALM",
        );
    }));
    keycloak.lock().realm = realm;
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }

    let (code, _, stdout) = preflight(world, &[]);
    assert_eq!(code, 0, "all restored: {stdout}");
}
