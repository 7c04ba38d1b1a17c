//! `./scripts/deploy-cluster.sh --check` (issue 21) on the converged sandbox: one row per phase,
//! exit 0; after one hand-made drift in each of phases 12, 13 and 15, exit 2 with exactly those
//! three rows drifted; and not one write on any server either time.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::world::{GROUP, World};

/// The phase rows of the table: (phase, state).
fn rows(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            let mut cols = l.split_whitespace();
            let phase = cols.next().unwrap_or_default().to_owned();
            cols.next();
            let rest: Vec<&str> = cols.collect();
            // STATE is one or more words before the PENDING count.
            let state = rest[..rest.len().saturating_sub(1)].join(" ");
            (phase, state)
        })
        .collect()
}

/// What a check could write: stand-ins, Vault, and the objects the drift touches.
fn writes(world: &World) -> crate::world::Writes {
    world.writes(&[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": "argocd"}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "production", "namespace": "argocd"}}),
    ])
}

fn check(world: &World, bin_dir: &Path) -> (i32, String, String) {
    let out =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/deploy-cluster.sh"))
            .arg("--check")
            .env("CICD_BIN_DIR", bin_dir)
            .env(common::env::CICD_ENV_FILE, world.sandbox.env_file())
            .env("CICD_CRD_WAIT_SECS", "30")
            .output()
            .expect("the driver");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn the_driver_check_names_exactly_the_drifted_phases(world: &World) {
    let mut bin_dir = None;
    for (package, bin) in crate::world::PHASES {
        bin_dir = sandbox::support::workspace_bin(package, bin, env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map(Path::to_path_buf);
    }
    let bin_dir = bin_dir.expect("the phases' binaries");

    let before = writes(world);
    let (code, stdout, stderr) = check(world, &bin_dir);
    assert_eq!(code, 0, "after a full apply:\n{stdout}\n{stderr}");
    let table = rows(&stdout);
    let phases: Vec<&str> = table.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        phases,
        ["12", "12b", "13", "14", "15", "16", "17", "18"],
        "{stdout}"
    );
    assert!(table.iter().all(|(_, s)| s == "in sync"), "{stdout}");
    assert_eq!(writes(world), before, "--check wrote");

    // One hand-made drift in each of three phases.
    // 12: a hardened project's merge check switched off (the Projects API, as a person would).
    let project = world.project_id(&format!("{GROUP}/dora-collector"));
    world.rt.block_on(async {
        let status = reqwest::Client::new()
            .put(format!(
                "{}/api/v4/projects/{project}",
                world.get("GITLAB_URL")
            ))
            .header("PRIVATE-TOKEN", world.get("GITLAB_API_TOKEN"))
            .json(&json!({"only_allow_merge_if_pipeline_succeeds": false}))
            .send()
            .await
            .expect("GitLab answers")
            .status();
        assert!(status.is_success(), "editing the project: {status}");
    });
    // 13: one of its Vault policies deleted.
    world.rt.block_on(async {
        let status = reqwest::Client::new()
            .delete(format!(
                "{}/v1/sys/policies/acl/ci-promote",
                world.get("VAULT_ADDR")
            ))
            .header("X-Vault-Token", world.get("VAULT_TOKEN"))
            .send()
            .await
            .expect("OpenBao answers")
            .status();
        assert!(status.is_success(), "deleting the policy: {status}");
    });
    // 15: Argo CD's default role widened by hand.
    let kube = world.kube();
    world
        .rt
        .block_on(kube.apply(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": "argocd"}, "data": {"policy.default": "role:admin"}}),
            false,
        ))
        .expect("the hand-made edit");

    let before = writes(world);
    let (code, stdout, stderr) = check(world, &bin_dir);
    assert_eq!(code, 2, "after three drifts:\n{stdout}\n{stderr}");
    let drifted: Vec<&str> = rows(&stdout)
        .iter()
        .filter(|(_, s)| s == "DRIFT")
        .map(|(p, _)| match p.as_str() {
            "12" => "12",
            "13" => "13",
            "15" => "15",
            other => panic!("phase {other} drifted too:\n{stdout}"),
        })
        .collect();
    assert_eq!(drifted, ["12", "13", "15"], "{stdout}");
    assert_eq!(
        rows(&stdout).iter().filter(|(_, s)| s == "in sync").count(),
        5,
        "{stdout}"
    );
    assert!(stderr.contains("--from 12 converges it"), "{stderr}");
    assert_eq!(writes(world), before, "--check wrote after the drift");
    eprintln!(
        "    deploy-cluster.sh --check: 8 rows in sync, then exactly 12, 13 and 15 drifted; 0 writes"
    );
}
