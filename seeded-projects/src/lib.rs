//! The GitLab projects the phases seed, and how they are seeded (docs/adr/0008):
//! - the arcade's `packet-relay` and `netops-dashboard` (phase 18) and the DORA collector (phase 17)
//!   are the workspace's `services/<name>` folders (embedded by build.rs, minus integration tests and
//!   benchmarks), made standalone: `Cargo.toml` has every inherited value written out, and the
//!   collector carries the `common` crate in `common/` (its GitLab client), built without the
//!   `platform` feature. `Cargo.lock` is each project's own (`scripts/demo-lockfiles.sh`).
//! - [`seed`]: the steps that create such a project so that its first release tag pipeline can
//!   log in to Vault: project, protected `main` and `v*` tags, one commit, the tag, the promotion
//!   token in Vault.

pub mod seed;
pub mod service_template;
pub mod this_repository;

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use toml::{Table, Value};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// One seeded project's source tree, as in this repository.
#[derive(Debug, Clone, Copy)]
pub struct SourceTree {
    /// Project path in the group, crate, binary and image name.
    pub name: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// Workspace crates the project carries in a folder of the same name.
    carried: &'static [&'static str],
}

pub const PACKET_RELAY: SourceTree = SourceTree {
    name: "packet-relay",
    files: embedded::PACKET_RELAY_FILES,
    carried: &[],
};

pub const NETOPS_DASHBOARD: SourceTree = SourceTree {
    name: "netops-dashboard",
    files: embedded::NETOPS_DASHBOARD_FILES,
    carried: &["common"],
};

pub const DORA_COLLECTOR: SourceTree = SourceTree {
    name: "dora-collector",
    files: embedded::DORA_COLLECTOR_FILES,
    carried: &["common"],
};

pub const FEATURE_FLAGS: SourceTree = SourceTree {
    name: "feature-flags",
    files: embedded::FEATURE_FLAGS_FILES,
    carried: &["common"],
};

/// Every seeded project.
pub const ALL: [SourceTree; 4] = [
    PACKET_RELAY,
    NETOPS_DASHBOARD,
    DORA_COLLECTOR,
    FEATURE_FLAGS,
];

fn carried_files(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "common" => embedded::COMMON_FILES,
        _ => &[],
    }
}

impl SourceTree {
    /// Paths of the embedded files, as in the repository (before rendering).
    pub fn source_paths(&self) -> Vec<&'static str> {
        self.files.iter().map(|(path, _)| *path).collect()
    }

    /// One embedded file as in the repository.
    pub fn source_file(&self, path: &str) -> Option<&'static str> {
        self.files.iter().find(|(p, _)| *p == path).map(|(_, c)| *c)
    }

    /// The project's own lock file is part of it (`cargo build --locked` in its pipeline).
    pub fn require_lockfile(&self) -> anyhow::Result<()> {
        if self.files.iter().any(|(p, _)| *p == "Cargo.lock") {
            Ok(())
        } else {
            bail!(
                "services/{}/Cargo.lock is missing: run scripts/demo-lockfiles.sh",
                self.name
            )
        }
    }

    /// Every file of the standalone project, before a phase fills in its placeholders: the
    /// manifests written out, carried crates under their folder.
    pub fn standalone_files(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (path, contents) in self.files {
            let rendered = if *path == "Cargo.toml" {
                standalone_manifest(contents, embedded::WORKSPACE_MANIFEST, self.carried)
                    .with_context(|| format!("rendering services/{}/Cargo.toml", self.name))?
            } else {
                (*contents).to_owned()
            };
            out.insert((*path).to_owned(), rendered);
        }
        for crate_name in self.carried {
            for (path, contents) in carried_files(crate_name) {
                let rendered = if *path == "Cargo.toml" {
                    standalone_manifest(contents, embedded::WORKSPACE_MANIFEST, &[])
                        .with_context(|| format!("rendering {crate_name}/Cargo.toml"))?
                } else {
                    (*contents).to_owned()
                };
                out.insert(format!("{crate_name}/{path}"), rendered);
            }
        }
        Ok(out)
    }
}

fn table<'a>(t: &'a Table, key: &str, what: &str) -> anyhow::Result<&'a Table> {
    t.get(key)
        .and_then(Value::as_table)
        .with_context(|| format!("the workspace manifest has no {what}"))
}

fn inherits(spec: &Value) -> bool {
    spec.as_table()
        .and_then(|t| t.get("workspace"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// A dependency entry with the workspace's spec written out; `None` for a workspace crate
/// (a `path` dependency), which a standalone project cannot have — unless the project carries that
/// crate (`carried`), in which case the path points at its copy in the project.
fn resolve_dependency(
    name: &str,
    spec: &Value,
    workspace_deps: &Table,
    carried: &[&str],
) -> anyhow::Result<Option<Value>> {
    if !inherits(spec) {
        let Some(table) = spec.as_table().filter(|t| t.contains_key("path")) else {
            return Ok(Some(spec.clone()));
        };
        if carried.contains(&name) {
            let mut t = table.clone();
            t.insert("path".into(), Value::String(name.to_owned()));
            return Ok(Some(Value::Table(t)));
        }
        return Ok(None);
    }
    let base = workspace_deps
        .get(name)
        .with_context(|| format!("`{name}` is not in [workspace.dependencies]"))?;
    let mut merged = match base {
        Value::String(version) => {
            let mut t = Table::new();
            t.insert("version".into(), Value::String(version.clone()));
            t
        }
        Value::Table(t) if t.contains_key("path") => return Ok(None),
        Value::Table(t) => t.clone(),
        other => bail!("[workspace.dependencies] {name} = {other} is not a version or a table"),
    };
    for (key, value) in spec.as_table().into_iter().flatten() {
        match key.as_str() {
            "workspace" => {}
            "features" => {
                let mut features: Vec<Value> = merged
                    .get("features")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for f in value.as_array().into_iter().flatten() {
                    if !features.contains(f) {
                        features.push(f.clone());
                    }
                }
                merged.insert("features".into(), Value::Array(features));
            }
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Some(Value::Table(merged)))
}

/// The service manifest with everything it inherits from `workspace` written out; path
/// dependencies on `carried` crates point at their copies inside the project.
pub fn standalone_manifest(
    service: &str,
    workspace: &str,
    carried: &[&str],
) -> anyhow::Result<String> {
    let ws: Table = workspace
        .parse()
        .context("parsing the workspace manifest")?;
    let ws = table(&ws, "workspace", "[workspace]")?;
    let package_defaults = table(ws, "package", "[workspace.package]")?;
    let workspace_deps = table(ws, "dependencies", "[workspace.dependencies]")?;
    let lints = table(ws, "lints", "[workspace.lints]")?;
    let mut manifest: Table = service.parse().context("parsing the service manifest")?;

    let package = manifest
        .get_mut("package")
        .and_then(Value::as_table_mut)
        .context("the service manifest has no [package]")?;
    let keys: Vec<String> = package.keys().cloned().collect();
    for key in keys {
        if inherits(&package[&key]) {
            let value = package_defaults
                .get(&key)
                .with_context(|| format!("[workspace.package] has no `{key}`"))?;
            package.insert(key, value.clone());
        }
    }
    package.remove("repository");

    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(deps) = manifest.get(section).and_then(Value::as_table).cloned() else {
            continue;
        };
        let mut out = Table::new();
        for (name, spec) in &deps {
            match resolve_dependency(name, spec, workspace_deps, carried)? {
                Some(resolved) => {
                    out.insert(name.clone(), resolved);
                }
                None if section == "dependencies" => bail!(
                    "`{name}` in [dependencies] is a crate of this workspace: a seeded project must build on its own (carry the crate in the project, or move it to [dev-dependencies] used by tests/ only)"
                ),
                // Dev-only workspace crates serve tests/, which stays in the workspace.
                None => {}
            }
        }
        manifest.insert(section.into(), Value::Table(out));
    }
    // Benchmarks stay in the workspace with tests/.
    manifest.remove("bench");
    if manifest.get("lints").is_some_and(inherits) {
        manifest.insert("lints".into(), Value::Table(lints.clone()));
    }
    let body = toml::to_string(&manifest).context("writing the standalone manifest")?;
    Ok(format!(
        "# Generated by cicd-buildout from the workspace manifest of this crate;\n# the lock file of the project pins the same versions.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSPACE: &str = r#"
[workspace]
members = ["a"]
[workspace.package]
version = "0.1.0"
edition = "2024"
repository = "https://example.invalid"
[workspace.dependencies]
common = { path = "common" }
serde = { version = "1", features = ["derive"] }
anyhow = "1"
[workspace.lints.rust]
unsafe_code = "forbid"
"#;

    #[test]
    fn inherited_values_are_written_out_and_workspace_crates_dropped_from_dev_dependencies() {
        let service = r#"
[package]
name = "svc"
version.workspace = true
edition.workspace = true
repository.workspace = true
[dependencies]
anyhow.workspace = true
serde = { workspace = true, features = ["rc"] }
[dev-dependencies]
common.workspace = true
[[bench]]
name = "b"
harness = false
[lints]
workspace = true
"#;
        let out: Table = standalone_manifest(service, WORKSPACE, &[])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out["package"]["version"].as_str(), Some("0.1.0"));
        assert_eq!(out["package"]["edition"].as_str(), Some("2024"));
        assert!(out["package"].get("repository").is_none());
        assert_eq!(out["dependencies"]["anyhow"]["version"].as_str(), Some("1"));
        let features: Vec<&str> = out["dependencies"]["serde"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(features, ["derive", "rc"]);
        assert!(out["dev-dependencies"].as_table().unwrap().is_empty());
        assert!(out.get("bench").is_none());
        assert_eq!(out["lints"]["rust"]["unsafe_code"].as_str(), Some("forbid"));
    }

    #[test]
    fn a_workspace_crate_in_dependencies_is_refused_with_the_fix() {
        let service = "[package]\nname = \"svc\"\n[dependencies]\ncommon.workspace = true\n";
        let err = standalone_manifest(service, WORKSPACE, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`common`") && err.contains("build on its own"),
            "{err}"
        );
    }

    #[test]
    fn a_carried_crate_is_a_path_into_the_project() {
        let service = "[package]\nname = \"svc\"\n[dependencies]\ncommon = { path = \"../../common\", default-features = false }\n";
        let out: Table = standalone_manifest(service, WORKSPACE, &["common"])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            out["dependencies"]["common"]["path"].as_str(),
            Some("common")
        );
        assert_eq!(
            out["dependencies"]["common"]["default-features"].as_bool(),
            Some(false)
        );
    }

    #[test]
    fn the_collector_carries_common_and_the_arcade_does_not() {
        let collector = DORA_COLLECTOR.standalone_files().unwrap();
        assert!(collector.contains_key("common/Cargo.toml"));
        assert!(collector.contains_key("common/src/gitlab/mod.rs"));
        assert!(
            collector
                .keys()
                .all(|p| !p.starts_with("tests/") && !p.starts_with("benches/"))
        );
        let common: Table = collector["common/Cargo.toml"].parse().unwrap();
        assert!(common["features"]["default"].as_array().is_some());
        let relay = PACKET_RELAY.standalone_files().unwrap();
        assert!(relay.keys().all(|p| !p.starts_with("common/")));
    }
}
