//! Embeds the seeded projects' files (`services/packet-relay`, `services/netops-dashboard`,
//! `services/dora-collector`) as they are pushed to GitLab: everything in the service folder except
//! what only the workspace uses (integration tests, benchmarks, build output), and the `common`
//! crate, which the collector's project carries; and the service template (`service-template/`,
//! every language). Regenerated whenever a file there changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Folders of a service that stay in this workspace (they need the sandbox or other crates).
const WORKSPACE_ONLY: &[&str] = &["tests", "benches", "target"];
/// Build output anywhere in a tree (a template language tried in place), never pushed.
const BUILD_OUTPUT: &[&str] = &[
    "target",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".venv",
];

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).expect("under the service folder");
        if path.is_dir() {
            if dir == root && WORKSPACE_ONLY.iter().any(|w| rel == Path::new(w)) {
                continue;
            }
            if path
                .file_name()
                .is_some_and(|n| BUILD_OUTPUT.iter().any(|b| n == *b))
            {
                continue;
            }
            walk(root, &path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest
        .parent()
        .expect("seeded-projects is in the workspace root");
    let mut code = String::new();
    for (constant, folder) in [
        ("PACKET_RELAY_FILES", "services/packet-relay"),
        ("NETOPS_DASHBOARD_FILES", "services/netops-dashboard"),
        ("DORA_COLLECTOR_FILES", "services/dora-collector"),
        ("FEATURE_FLAGS_FILES", "services/feature-flags"),
        ("COMMON_FILES", "common"),
        ("SERVICE_TEMPLATE_FILES", "service-template"),
    ] {
        let service = folder;
        let root = workspace.join(folder);
        println!("cargo:rerun-if-changed={}", root.display());
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        writeln!(code, "/// Files of `{service}` as pushed (path, contents).").unwrap();
        writeln!(code, "pub const {constant}: &[(&str, &str)] = &[").unwrap();
        for file in files {
            let rel = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            writeln!(
                code,
                "    ({rel:?}, include_str!({:?})),",
                file.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    let root_manifest = workspace.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", root_manifest.display());
    writeln!(
        code,
        "/// The workspace manifest (its `[workspace.package]`, dependencies and lints).\npub const WORKSPACE_MANIFEST: &str = include_str!({:?});",
        root_manifest.display().to_string()
    )
    .unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("embedded.rs");
    std::fs::write(out, code).expect("writing embedded.rs");
}
