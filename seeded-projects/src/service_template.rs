//! The service template of plan §6.4 (`service-template/` in this repository): one tree with every
//! language under `languages/<language>/`, the kustomize manifests under `deploy/` and a README.
//!
//! - Phase 14 seeds the whole tree, as it is, into `platform_services/service-template` and tags
//!   it `v<VERSION>` ([`template_files`], [`tag`]).
//! - `onboard-service` reads that tag back from GitLab and renders one service from it ([`render`]):
//!   the language's files at the root, `deploy/` with the chosen strategy, every `example-service`
//!   replaced by the service's name, the image pointed at the shared Harbor project.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context as _, bail};

use crate::embedded;

/// The template's version (`service-template/VERSION`): the tag phase 14 pushes and onboarding reads.
pub const VERSION: &str = include_str!("../../service-template/VERSION").trim_ascii();
/// The GitLab project the template is seeded into (in the platform group).
pub const PROJECT: &str = "service-template";
/// The name every file of the template uses for the service.
pub const PLACEHOLDER: &str = "example-service";
/// The image repository prefix of the template's overlays (`<registry>/<Harbor project>`).
pub const IMAGE_PREFIX_PLACEHOLDER: &str = "harbor.example.com/platform-services";
/// The flag sidecar's image as the template names it (the platform's own project, not the
/// service's).
pub const SIDECAR_IMAGE_PLACEHOLDER: &str = "harbor.example.com/platform-services/feature-flags";
/// Where the sidecar's image waits while the service's image prefix is replaced.
const SIDECAR: &str = "\u{0}sidecar-image\u{0}";
/// The template's Vault address, runner namespace and route domain.
pub const VAULT_ADDR_PLACEHOLDER: &str = "https://vault.example.com";
pub const RUNNER_NAMESPACE_PLACEHOLDER: &str = "kubernetes.io/metadata.name: gitlab-runners";
pub const DOMAIN_PLACEHOLDER: &str = "apps.example.com";

/// The tag of this version of the template.
pub fn tag() -> String {
    format!("v{VERSION}")
}

/// A language the template has a skeleton for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Language {
    Go,
    Node,
    Python,
    Rust,
}

impl Language {
    pub const ALL: [Self; 4] = [Self::Go, Self::Node, Self::Python, Self::Rust];

    /// The folder under `languages/` and the library's `templates/languages/<name>.yml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Go => "go",
            Self::Node => "node",
            Self::Python => "python",
            Self::Rust => "rust",
        }
    }

    /// Parses `go`, `node`, `python` or `rust`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == text)
            .with_context(|| {
                format!("--lang {text}: the service template has go, node, python and rust")
            })
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every file of the template as this build embeds it (path under `service-template/`, contents).
pub fn template_files() -> BTreeMap<String, String> {
    embedded::SERVICE_TEMPLATE_FILES
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect()
}

/// What one onboarded service is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendering {
    pub name: String,
    pub language: Language,
    /// `canary` or `bluegreen` (the library's `DEPLOY_STRATEGY`).
    pub blue_green: bool,
    /// Harbor's registry host (`harbor.example.com`, `127.0.0.1:5000`).
    pub registry: String,
    /// The shared Harbor project of the service's images (plan §3.3).
    pub harbor_project: String,
    /// Vault as the flag sidecar reaches it (`VAULT_ADDR`).
    pub vault_addr: String,
    /// The runner pools' namespace (`RUNNER_NAMESPACE`): the ephemeral overlay admits its test pool.
    pub runner_namespace: String,
    /// The platform's domain (`DOMAIN`): the route's host is `<name>.apps.<domain>`.
    pub domain: Option<String>,
    /// The CI library's project (`CI_TEMPLATES_PROJECT`) the pipeline includes.
    pub library_project: String,
}

/// The library project the template's pipelines name.
pub const LIBRARY_PROJECT_PLACEHOLDER: &str = "project: 'platform_services/gitlab-ci-templates'";

/// The service's files from the template's files (`template`, as read from GitLab or embedded).
pub fn render(
    template: &BTreeMap<String, String>,
    r: &Rendering,
) -> anyhow::Result<BTreeMap<String, String>> {
    let language_dir = format!("languages/{}/", r.language);
    let mut out = BTreeMap::new();
    for (path, contents) in template {
        let target = if let Some(rest) = path.strip_prefix(&language_dir) {
            rest.to_owned()
        } else if path.starts_with("languages/")
            || path == "VERSION"
            // The template project's own owners: the service gets its own default (seeding).
            || common::codeowners::LOCATIONS.contains(&path.as_str())
            || path.starts_with("deploy/overlays/production-blue-green/")
        {
            continue;
        } else {
            path.clone()
        };
        // The sidecar's image stays in the platform's project: set aside before the service's
        // image prefix is replaced.
        let mut text = contents
            .replace(SIDECAR_IMAGE_PLACEHOLDER, SIDECAR)
            .replace(
                IMAGE_PREFIX_PLACEHOLDER,
                &format!("{}/{}", r.registry, r.harbor_project),
            )
            .replace(
                &format!("{SIDECAR}:v0.1.0"),
                &format!(
                    "{}/platform-services/feature-flags:{}",
                    r.registry,
                    common::contract::FEATURE_FLAGS_RELEASE_TAG
                ),
            )
            .replace(
                SIDECAR,
                &format!("{}/platform-services/feature-flags", r.registry),
            )
            .replace(VAULT_ADDR_PLACEHOLDER, &r.vault_addr)
            .replace(
                LIBRARY_PROJECT_PLACEHOLDER,
                &format!("project: '{}'", r.library_project),
            )
            .replace(
                RUNNER_NAMESPACE_PLACEHOLDER,
                &format!("kubernetes.io/metadata.name: {}", r.runner_namespace),
            )
            .replace(
                "IMAGE_HARBOR_PROJECT: platform-services",
                &format!("IMAGE_HARBOR_PROJECT: {}", r.harbor_project),
            )
            .replace(
                "--lang LANGUAGE --strategy STRATEGY",
                &format!(
                    "--lang {} --strategy {}",
                    r.language,
                    if r.blue_green { "bluegreen" } else { "canary" }
                ),
            );
        if let Some(domain) = &r.domain {
            text = text.replace(DOMAIN_PLACEHOLDER, &format!("apps.{domain}"));
        }
        if r.blue_green {
            text = text.replace("DEPLOY_STRATEGY: canary", "DEPLOY_STRATEGY: bluegreen");
            if target == "deploy/overlays/production/kustomization.yaml" {
                // The production overlay of a blue-green service (as production-blue-green does).
                text.push_str("components:\n  - ../../components/blue-green\n");
            }
        }
        // The name as an identifier too (the Rust crate `example_service`).
        let ident = r.name.replace('-', "_");
        out.insert(
            target.replace(PLACEHOLDER, &r.name),
            text.replace(PLACEHOLDER, &r.name)
                .replace(&PLACEHOLDER.replace('-', "_"), &ident),
        );
    }
    if !out.contains_key(".gitlab-ci.yml") {
        bail!(
            "the service template has no languages/{}/.gitlab-ci.yml: the template project is not this version's (rerun phase 14, ci-templates apply)",
            r.language
        );
    }
    for required in [
        "deploy/base/kustomization.yaml",
        "deploy/overlays/ephemeral/kustomization.yaml",
        "deploy/overlays/staging/kustomization.yaml",
        "deploy/overlays/production/kustomization.yaml",
    ] {
        if !out.contains_key(required) {
            bail!("the service template has no {required} (rerun phase 14, ci-templates apply)");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendering(language: Language, blue_green: bool) -> Rendering {
        Rendering {
            name: "billing-api".into(),
            language,
            blue_green,
            registry: "harbor.corp.test".into(),
            harbor_project: "application-services".into(),
            vault_addr: "https://vault.corp.test".into(),
            runner_namespace: "ci-runners".into(),
            domain: Some("corp.test".into()),
            library_project: "platform_services/gitlab-ci-templates".into(),
        }
    }

    #[test]
    fn each_language_renders_a_complete_project_without_the_placeholder() {
        let template = template_files();
        for language in Language::ALL {
            let files = render(&template, &rendering(language, false)).unwrap();
            for required in [
                ".gitlab-ci.yml",
                "Dockerfile",
                "Makefile",
                "README.md",
                ".dockerignore",
                "deploy/base/rollout.yaml",
            ] {
                assert!(files.contains_key(required), "{language}: {required}");
            }
            for (path, text) in &files {
                assert!(
                    !path.contains(PLACEHOLDER)
                        && !text.contains(PLACEHOLDER)
                        && !text.contains("example_service"),
                    "{language}: {path} still names the placeholder"
                );
                assert!(!text.contains("harbor.example.com"), "{language}: {path}");
                assert!(!path.starts_with("languages/"), "{path}");
            }
            assert!(
                files[".gitlab-ci.yml"].contains(&format!("templates/languages/{language}.yml")),
                "{language}"
            );
            assert!(files[".gitlab-ci.yml"].contains("SERVICE_NAME: billing-api"));
            assert!(
                files["deploy/overlays/staging/kustomization.yaml"]
                    .contains("newName: harbor.corp.test/application-services/billing-api")
            );
            let rollout = &files["deploy/base/rollout.yaml"];
            assert!(
                rollout.contains(&format!(
                    "image: harbor.corp.test/platform-services/feature-flags:{}",
                    common::contract::FEATURE_FLAGS_RELEASE_TAG
                )),
                "the sidecar runs the release phase 17 tags: {rollout}"
            );
            assert!(rollout.contains("value: https://vault.corp.test"));
            assert!(rollout.contains("value: feature-flags-billing-api"));
            assert!(
                files["deploy/overlays/ephemeral/allow-pipeline-tests.yaml"]
                    .contains("kubernetes.io/metadata.name: ci-runners")
            );
            assert!(files["deploy/base/httproute.yaml"].contains("billing-api.apps.corp.test"));
            for text in files.values() {
                assert!(
                    !text.contains("example.com"),
                    "{language}: a placeholder is left"
                );
            }
        }
        let go = render(&template, &rendering(Language::Go, false)).unwrap();
        assert!(go.contains_key("cmd/billing-api/main.go"));
        assert!(go["go.mod"].starts_with("module billing-api"));
    }

    #[test]
    fn blue_green_changes_the_strategy_and_the_production_overlay_only() {
        let template = template_files();
        let canary = render(&template, &rendering(Language::Node, false)).unwrap();
        let blue = render(&template, &rendering(Language::Node, true)).unwrap();
        assert!(blue[".gitlab-ci.yml"].contains("DEPLOY_STRATEGY: bluegreen"));
        assert!(
            blue["deploy/overlays/production/kustomization.yaml"]
                .ends_with("components:\n  - ../../components/blue-green\n")
        );
        let differing: Vec<&String> = canary.keys().filter(|p| canary[*p] != blue[*p]).collect();
        assert_eq!(
            differing,
            [
                ".gitlab-ci.yml",
                "README.md",
                "deploy/overlays/production/kustomization.yaml"
            ]
        );
    }

    #[test]
    fn an_unknown_language_is_refused_with_the_choices() {
        let e = Language::parse("cobol").unwrap_err().to_string();
        assert!(e.contains("go, node, python and rust"), "{e}");
    }
}
