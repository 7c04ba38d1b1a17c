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

/// The workspace's target directory (parent of `CARGO_TARGET_TMPDIR`).
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
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

/// `cargo` without what cargo set for this test process: ring's build script tracks
/// `CARGO_MANIFEST_DIR`, so passing it on would rebuild ring and everything above it here, and
/// again at the next `cargo test`.
pub fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "OUT_DIR"
            || [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_TARGET_TMPDIR",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// Builds a workspace binary (test support: `cargo build -p <package>`), returns its path.
pub fn workspace_binary(package: &str) -> PathBuf {
    let status = cargo()
        .args(["build", "--quiet", "-p", package, "--bin", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo");
    assert!(status.success(), "building {package}");
    target_dir().join("debug").join(package)
}
