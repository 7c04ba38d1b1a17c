//! Integration tests of phase 18 (one binary):
//! - `phase`: the phase against the sandbox (kube-apiserver v1.20 with the Argo CD CRDs, the
//!   GitLab stand-in's projects, repository files, commits and tags, the Harbor stand-in).
//! - `content`: the two projects as pushed: every overlay built with kustomize and validated
//!   (server-side dry run on kube-apiserver, JSON schemas for what 1.20 lacks), the Rollouts wired
//!   to phase 15's analysis templates, the pipelines resolved by gitlab-ci-local.
//! - `images`: each project built standalone from its rendered files (static binary, `--locked`),
//!   its Dockerfile linted by hadolint and built by buildah `FROM scratch`, and the image's binary
//!   run.
//! - `local`: `demo-apps local` with the real routers and dashboard, re-routed by editing the
//!   routing config like a demo user.

mod content;
mod images;
mod local;
mod phase;

use std::path::PathBuf;

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    sandbox::support::target_dir(env!("CARGO_TARGET_TMPDIR"))
}

/// The sandbox with kube-apiserver (the Argo CD, Rollouts, Gateway API and Prometheus Operator
/// CRDs), the GitLab and Harbor stand-ins, and `OpenBao` with phase 13's KV v2 mount (seeding
/// stores each project's promotion token there); no Prometheus.
pub async fn kube_sandbox() -> sandbox::Sandbox {
    common::cli::install_crypto_provider();
    let sandbox = sandbox::Sandbox::start(sandbox::Options {
        prometheus: false,
        ..sandbox::Options::default()
    })
    .await
    .expect("sandbox starts");
    sandbox::support::mount_kv(&sandbox).await;
    sandbox
}

/// The shared specs (`/work/shared/specs`, or `CICD_SPECS_DIR`).
pub fn specs_dir() -> PathBuf {
    std::env::var_os("CICD_SPECS_DIR").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/specs")
                .canonicalize()
                .unwrap_or_else(|_| "/work/shared/specs".into())
        },
        PathBuf::from,
    )
}

/// The projects rendered with the example settings into a fresh directory.
pub fn rendered_projects() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    demo_apps::render(dir.path()).expect("render");
    dir
}

/// Builds a workspace binary (test support: `cargo build -p <package>`), returns its path.
pub fn workspace_binary(package: &str) -> PathBuf {
    sandbox::support::workspace_binary(package, env!("CARGO_TARGET_TMPDIR"))
}
