//! Integration tests of phase 17 (one binary): the data validated against the real tools and
//! schemas (`data`: Grafana's dashboard schema, promtool, the Prometheus Operator, External Secrets
//! and Kubernetes JSON schemas), the phase against the sandbox (`phase`: kube-apiserver v1.20,
//! `OpenBao`, Prometheus, the GitLab stand-in), the collector's project as pushed (`project`: every
//! overlay built by kustomize and validated by kube-apiserver and the 1.32 schemas) and its image
//! (`images`: built standalone, hadolint, buildah `FROM scratch`, the binary run).

mod data;
mod images;
mod phase;
mod project;
mod readiness_tree;

use std::path::{Path, PathBuf};

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    sandbox::support::target_dir(env!("CARGO_TARGET_TMPDIR"))
}

/// Renders an overlay with `kubectl kustomize` (the test's tool; the phase never needs kubectl),
/// as Argo CD builds it.
pub fn kustomize(dir: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (with kustomize)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("\n---")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("kustomize writes YAML"))
        .collect()
}

/// The collector's project rendered with `s` into a fresh directory (`<dir>/dora-collector`).
pub fn rendered_project(s: &obs_setup::settings::Settings) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    obs_setup::render(s, dir.path()).expect("render");
    dir
}

/// Python with jsonschema (scripts/setup-test-env.sh).
pub fn tools_python() -> std::path::PathBuf {
    common::config::tools_dir().join("venv/bin/python")
}

/// The shared specs (`/work/shared/specs`, or `CICD_SPECS_DIR`).
pub fn specs_dir() -> std::path::PathBuf {
    std::env::var_os("CICD_SPECS_DIR").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/specs")
                .canonicalize()
                .unwrap_or_else(|_| "/work/shared/specs".into())
        },
        std::path::PathBuf::from,
    )
}

/// Why `instance` fails the JSON schema at `schema` (optionally a `#/definitions/X` inside it);
/// `None` when valid. The schema itself is not meta-validated: the CRD schemas carry Go regular
/// expressions (`(?i)…`) that Python's regex dialect rejects.
pub fn schema_errors(
    instance: &serde_json::Value,
    schema: &std::path::Path,
    definition: Option<&str>,
) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.json");
    std::fs::write(&file, instance.to_string()).unwrap();
    let out = std::process::Command::new(tools_python())
        .args([
            "-c",
            "import json,sys,jsonschema\n\
             s=json.load(open(sys.argv[2]))\n\
             if sys.argv[3]: s={**s,'$ref':'#/definitions/'+sys.argv[3]}\n\
             v=jsonschema.validators.validator_for(s)(s)\n\
             errors=sorted(v.iter_errors(json.load(open(sys.argv[1]))), key=lambda e: list(e.path))\n\
             [print(list(e.path), e.message, file=sys.stderr) for e in errors[:10]]\n\
             sys.exit(1 if errors else 0)",
        ])
        .arg(&file)
        .arg(schema)
        .arg(definition.unwrap_or(""))
        .output()
        .expect("python with jsonschema (run ./scripts/setup-test-env.sh)");
    assert!(schema.is_file(), "schema {} missing", schema.display());
    (!out.status.success()).then(|| {
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    })
}
