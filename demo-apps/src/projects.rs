//! The two demo projects' content, as pushed to GitLab: `services/packet-relay` and
//! `services/netops-dashboard` of this workspace made standalone by the `seeded-projects` crate
//! (every inherited manifest value written out, the project's own `Cargo.lock`). Deployment overlays
//! and the pipeline name the registry, project, domain and release tag of this platform instead of
//! the `example.com` placeholders kept in the repository.

use std::collections::BTreeMap;

use seeded_projects::SourceTree;

use crate::settings::Settings;

/// Placeholders of the repository copies, replaced by [`DemoProject::files`].
const REGISTRY_PLACEHOLDER: &str = "harbor.example.com/platform-services/";
const DOMAIN_PLACEHOLDER: &str = "example.com";
const TAG_PLACEHOLDER: &str = "newTag: v0.1.0";
/// The runner namespace the ephemeral overlays admit (`allow-pipeline-tests.yaml`).
const RUNNER_NAMESPACE_PLACEHOLDER: &str = "kubernetes.io/metadata.name: gitlab-runners";
const HARBOR_PROJECT_PLACEHOLDER: &str = "IMAGE_HARBOR_PROJECT: platform-services";

/// One demo project.
#[derive(Debug, Clone, Copy)]
pub struct DemoProject {
    /// Project path in the group, crate and binary name.
    pub name: &'static str,
    pub description: &'static str,
    /// Argo Rollouts strategy (what the scenarios exercise).
    pub strategy: &'static str,
    pub tree: SourceTree,
}

pub const PACKET_RELAY: DemoProject = DemoProject {
    name: "packet-relay",
    description: "NetOps Arcade routers: router-west → router-core → router-east / router-north (managed by cicd-buildout phase 18)",
    strategy: "canary",
    tree: seeded_projects::PACKET_RELAY,
};

pub const NETOPS_DASHBOARD: DemoProject = DemoProject {
    name: "netops-dashboard",
    description: "NetOps Arcade dashboard: the live router topology (managed by cicd-buildout phase 18)",
    strategy: "bluegreen",
    tree: seeded_projects::NETOPS_DASHBOARD,
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
        self.tree.source_paths()
    }

    /// One embedded file as in the repository.
    pub fn source_file(&self, path: &str) -> Option<&'static str> {
        self.tree.source_file(path)
    }

    /// The project's own lock file is part of it (`cargo build --locked` in its pipeline).
    pub fn require_lockfile(&self) -> anyhow::Result<()> {
        self.tree.require_lockfile()
    }

    /// Every file as pushed for this platform, by path.
    pub fn files(&self, s: &Settings) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = self.tree.standalone_files()?;
        for (path, contents) in &mut out {
            if path == ".gitlab-ci.yml" {
                *contents = contents.replace(
                    HARBOR_PROJECT_PLACEHOLDER,
                    &format!("IMAGE_HARBOR_PROJECT: {}", s.harbor_project),
                );
            } else if path.starts_with("deploy/") {
                *contents = contents
                    .replace(
                        REGISTRY_PLACEHOLDER,
                        &format!("{}/{}/", s.harbor_host, s.harbor_project),
                    )
                    .replace(DOMAIN_PLACEHOLDER, &s.domain)
                    .replace(TAG_PLACEHOLDER, &format!("newTag: {}", s.image_tag))
                    .replace(
                        "namespace: demo-apps",
                        &format!("namespace: {}", s.namespace),
                    )
                    .replace(
                        RUNNER_NAMESPACE_PLACEHOLDER,
                        &format!("kubernetes.io/metadata.name: {}", s.runner_namespace),
                    );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(files[".gitlab-ci.yml"].contains("IMAGE_HARBOR_PROJECT: arcade"));
        assert!(
            files[".gitlab-ci.yml"].contains(&format!("ref: v{}", ci_templates::library::VERSION)),
            "the project pins the library version its tests ran against"
        );
        // The test pool's namespace the ephemeral overlay admits follows RUNNER_NAMESPACE.
        s.runner_namespace = "ci-runners".into();
        let admit =
            &PACKET_RELAY.files(&s).unwrap()["deploy/overlays/ephemeral/allow-pipeline-tests.yaml"];
        assert!(
            admit.contains("kubernetes.io/metadata.name: ci-runners")
                && !admit.contains("gitlab-runners"),
            "{admit}"
        );
        let routes =
            &NETOPS_DASHBOARD.files(&s).unwrap()["deploy/overlays/rke2-prod/httproutes.yaml"];
        assert!(
            routes.contains("netops.lab.internal")
                && routes.contains("netops-preview.lab.internal")
        );
    }
}
