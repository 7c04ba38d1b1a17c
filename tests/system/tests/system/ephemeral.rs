//! Ephemeral environments of both kinds end: namespaces labelled exactly as their producers label
//! them (the per-MR `ApplicationSet` of phase 15, live in the cluster; the main pipeline's
//! deploy-ephemeral, whose Application the journey left) are deleted by phase 15's cleaner once
//! their TTL is over, and a namespace without the label never is. The TTL is 4 h, so the cleaner
//! runs with a clock 5 h ahead (a `date` on its PATH that adds 5 h to "now").

use std::path::Path;
use std::process::Command;

use common::delivery;
use serde_json::{Value, json};

use crate::world::World;

/// The labels the journey's deploy-ephemeral gave its namespace (written by the journey).
pub const MAIN_LABELS_FILE: &str = "main-ephemeral-labels.json";

fn later_clock(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("clock");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let date = bin.join("date");
    std::fs::write(
        &date,
        "#!/bin/sh\n# `date -u +%s` five hours from now; anything else is the real date.\nif [ \"$*\" = \"-u +%s\" ]; then echo $(( $(/usr/bin/date -u +%s) + 18000 )); else exec /usr/bin/date \"$@\"; fi\n",
    )
    .expect("write");
    let mut perms = std::fs::metadata(&date).expect("date").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&date, perms).expect("chmod");
    bin
}

pub fn environments_run_their_own_image_and_get_cleaned(world: &World) {
    let appset = world
        .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "ephemeral-packet-relay", "namespace": "argocd"}}))
        .expect("phase 15's ApplicationSet");
    let mr_labels =
        appset["spec"]["template"]["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
            .clone();
    let main_labels: Value = serde_json::from_str(
        &std::fs::read_to_string(world.scratch.path().join(MAIN_LABELS_FILE))
            .expect("the journey ran deploy-ephemeral"),
    )
    .expect("JSON");
    assert_eq!(mr_labels[delivery::TTL_LABEL], delivery::EPHEMERAL_TTL);
    assert_eq!(main_labels[delivery::TTL_LABEL], delivery::EPHEMERAL_TTL);
    let mut long_lived = main_labels.clone();
    long_lived[delivery::TTL_LABEL] = json!("30d");
    let cases: [(&str, Value, bool); 4] = [
        ("ephemeral-packet-relay-mr-7", mr_labels, true),
        ("ephemeral-packet-relay-main-1a2b3c4d", main_labels, true),
        ("ephemeral-packet-relay-main-feedbeef", long_lived, false),
        // Looks ephemeral by name, carries no label: never touched.
        ("ephemeral-lookalike", json!({"team": "platform"}), false),
    ];
    let kube = world.kube();
    for (name, labels, _) in &cases {
        world
            .rt
            .block_on(kube.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}), false))
            .expect("namespace");
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../argo-delivery/cleaner/clean-ephemeral-namespaces.sh"
    );
    let clock = later_clock(&world.dir("cleaner"));
    let path = format!(
        "{}:{}",
        clock.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(script)
        .env("KUBECONFIG", world.sandbox.kubeconfig())
        .env("PATH", path)
        .output()
        .expect("bash and kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, _, expired) in &cases {
        let ns = world
            .live(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .expect("namespace exists");
        assert_eq!(
            !ns["metadata"]["deletionTimestamp"].is_null(),
            *expired,
            "{name}: {text}"
        );
    }
    eprintln!("    cleaner: {}", text.trim());
}
