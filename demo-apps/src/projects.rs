//! The two demo projects' content, as pushed to GitLab: `services/packet-relay` and
//! `services/netops-dashboard` of this workspace (embedded by build.rs, minus integration tests
//! and benchmarks), made standalone:
//! - `Cargo.toml` inherits from this workspace; the pushed one has every inherited value written
//!   out (version, edition, dependency versions and features, lints), and drops the dev-only
//!   dependencies on workspace crates. `Cargo.lock` next to it is the project's own lock file
//!   (`scripts/demo-lockfiles.sh` refreshes it; a test fails when it is stale).
//! - Deployment overlays and the pipeline name the registry, project, domain and release tag of
//!   this platform instead of the `example.com` placeholders kept in the repository.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use toml::{Table, Value};

use crate::settings::Settings;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The library version the projects' `.gitlab-ci.yml` include (phase 14 tags `v<version>`).
pub const TEMPLATES_REF_PLACEHOLDER: &str = "ref: v0.1.0";
/// Placeholders of the repository copies, replaced by [`DemoProject::files`].
const REGISTRY_PLACEHOLDER: &str = "harbor.example.com/platform-services/";
const DOMAIN_PLACEHOLDER: &str = "example.com";
const TAG_PLACEHOLDER: &str = "newTag: v0.1.0";
const HARBOR_PROJECT_PLACEHOLDER: &str = "HARBOR_PROJECT: platform-services";

/// One demo project.
#[derive(Debug, Clone, Copy)]
pub struct DemoProject {
    /// Project path in the group, crate and binary name.
    pub name: &'static str,
    pub description: &'static str,
    /// Argo Rollouts strategy (what the scenarios exercise).
    pub strategy: &'static str,
    files: &'static [(&'static str, &'static str)],
}

pub const PACKET_RELAY: DemoProject = DemoProject {
    name: "packet-relay",
    description: "NetOps Arcade routers: router-west → router-core → router-east / router-north (managed by cicd-buildout phase 18)",
    strategy: "canary",
    files: embedded::PACKET_RELAY_FILES,
};

pub const NETOPS_DASHBOARD: DemoProject = DemoProject {
    name: "netops-dashboard",
    description: "NetOps Arcade dashboard: the live router topology (managed by cicd-buildout phase 18)",
    strategy: "bluegreen",
    files: embedded::NETOPS_DASHBOARD_FILES,
};

pub const PROJECTS: [DemoProject; 2] = [PACKET_RELAY, NETOPS_DASHBOARD];

/// Root files scenario 3 adds to netops-dashboard; `--reset` removes them again.
pub const SCENARIO_FILES: &[(&str, &str)] = &[
    ("netops-dashboard", "package.json"),
    ("netops-dashboard", "package-lock.json"),
];

impl DemoProject {
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

    /// Every file as pushed for this platform, by path.
    pub fn files(&self, s: &Settings) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (path, contents) in self.files {
            let rendered = match *path {
                "Cargo.toml" => standalone_manifest(contents, embedded::WORKSPACE_MANIFEST)
                    .with_context(|| format!("rendering services/{}/Cargo.toml", self.name))?,
                ".gitlab-ci.yml" => contents.replace(
                    HARBOR_PROJECT_PLACEHOLDER,
                    &format!("HARBOR_PROJECT: {}", s.harbor_project),
                ),
                p if p.starts_with("deploy/") => contents
                    .replace(
                        REGISTRY_PLACEHOLDER,
                        &format!("{}/{}/", s.harbor_host, s.harbor_project),
                    )
                    .replace(DOMAIN_PLACEHOLDER, &s.domain)
                    .replace(TAG_PLACEHOLDER, &format!("newTag: {}", s.image_tag))
                    .replace(
                        "namespace: demo-apps",
                        &format!("namespace: {}", s.namespace),
                    ),
                _ => (*contents).to_owned(),
            };
            out.insert((*path).to_owned(), rendered);
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
/// (a `path` dependency), which a standalone project cannot have.
fn resolve_dependency(
    name: &str,
    spec: &Value,
    workspace_deps: &Table,
) -> anyhow::Result<Option<Value>> {
    if !inherits(spec) {
        let is_path = spec.as_table().is_some_and(|t| t.contains_key("path"));
        return Ok((!is_path).then(|| spec.clone()));
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

/// The service manifest with everything it inherits from `workspace` written out.
pub fn standalone_manifest(service: &str, workspace: &str) -> anyhow::Result<String> {
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
            match resolve_dependency(name, spec, workspace_deps)? {
                Some(resolved) => {
                    out.insert(name.clone(), resolved);
                }
                None if section == "dependencies" => bail!(
                    "`{name}` in [dependencies] is a crate of this workspace: a demo project must build on its own (move it to [dev-dependencies] used by tests/ only)"
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
        "# Generated by cicd-buildout phase 18 from the workspace manifest of services/<name>;\n# the lock file next to it pins the same versions.\n{body}"
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
        let out: Table = standalone_manifest(service, WORKSPACE)
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
        let err = standalone_manifest(service, WORKSPACE)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`common`") && err.contains("build on its own"),
            "{err}"
        );
    }

    #[test]
    fn placeholders_become_this_platforms_names() {
        let mut s = Settings::example();
        s.domain = "lab.internal".into();
        s.harbor_host = "registry.lab.internal:8443".into();
        s.image_tag = "v0.2.0".into();
        s.harbor_project = "arcade".into();
        let files = PACKET_RELAY.files(&s).unwrap();
        let prod = &files["deploy/overlays/rke2-prod/kustomization.yaml"];
        assert!(prod.contains("newName: registry.lab.internal:8443/arcade/packet-relay"));
        assert!(prod.contains("newTag: v0.2.0"));
        assert!(!prod.contains("example.com"));
        assert!(files[".gitlab-ci.yml"].contains("HARBOR_PROJECT: arcade"));
        let routes =
            &NETOPS_DASHBOARD.files(&s).unwrap()["deploy/overlays/rke2-prod/httproutes.yaml"];
        assert!(
            routes.contains("netops.lab.internal")
                && routes.contains("netops-preview.lab.internal")
        );
    }
}
