//! The contract between the phases and the CI library (docs/adr/0008): every name more than one
//! phase uses — Vault mounts, CRD names, the Vault roles and
//! KV paths the library's jobs log in with and read, the labels of ephemeral and pulling namespaces,
//! and the one list of services phase 15 makes every delivery Application from. Each name is
//! defined here once; the `.hcl` policies and the library's YAML are tested against these values.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::Environment;
use crate::gitlab::{GitLabClient, ProjectAccessToken, access};
use crate::vault::VaultClient;
use crate::{Error, Result, dates};

// --- The platform's bash phases 12–18 (docs/adr/0010) ---------------------------------------------
/// The reason every change to a leftover of the platform's bash phases carries in the plan
/// (`--adopt-report` lists exactly these changes). Each phase identifies a leftover by its exact bash
/// identity (name, namespace and distinguishing fields), never by name alone.
pub const LEFT_BY_BASH: &str = "left by the bash phase";

// --- Vault mounts and keys (phase 13 creates them; later phases read and write under them) -------
/// KV v2 mount of the platform.
pub const KV_MOUNT: &str = "kv";
/// Mount of the JWT auth method GitLab CI jobs log in with (the library's `VAULT_AUTH_PATH`).
pub const JWT_MOUNT: &str = "jwt/gitlab";
/// Transit mount holding the image signing key.
pub const TRANSIT_MOUNT: &str = "transit";
/// The transit key that signs release images (`cosign --key hashivault://ci-signing-key`).
pub const SIGNING_KEY: &str = "ci-signing-key";

/// Label of phase 15's Applications naming their stage (`staging`, `production`): readers find
/// production by it, whatever its AppProject is called.
pub const STAGE_LABEL: &str = "cicd.platform/stage";

// --- CRDs the phases create objects of (each phase says which CRD an object needs) -------------
/// CRD of External Secrets' `ExternalSecret` (phases 13, 15 and 16 create them).
pub const EXTERNAL_SECRET_CRD: &str = "externalsecrets.external-secrets.io";
/// CRD of `ClusterExternalSecret`: phase 15's `harbor-pull` Secret in every namespace labelled
/// [`HARBOR_PULL_LABEL`].
pub const CLUSTER_EXTERNAL_SECRET_CRD: &str = "clusterexternalsecrets.external-secrets.io";
/// CRD of `ClusterSecretStore`: phase 13's [`SECRET_STORE`] and [`PULL_SECRET_STORE`].
pub const CLUSTER_SECRET_STORE_CRD: &str = "clustersecretstores.external-secrets.io";
/// CRD of Argo CD's `Application`: ESO (phase 13), the delivered services (phase 15), the runner
/// pools (phase 16).
pub const ARGOCD_APPLICATION_CRD: &str = "applications.argoproj.io";
/// CRD of Argo CD's `ApplicationSet`: phase 15's per-MR environments.
pub const ARGOCD_APPLICATION_SET_CRD: &str = "applicationsets.argoproj.io";
/// CRD of Argo CD's `AppProject`: phase 15's production, staging, ephemeral and platform projects.
pub const ARGOCD_APP_PROJECT_CRD: &str = "appprojects.argoproj.io";
/// CRD of Argo Rollouts' `ClusterAnalysisTemplate`: phase 15's canary analyses.
pub const CLUSTER_ANALYSIS_TEMPLATE_CRD: &str = "clusteranalysistemplates.argoproj.io";

// --- Vault: JWT roles of GitLab CI (mount jwt/gitlab) and the KV v2 paths they read ------------------
/// Image jobs of protected `main` and protected `v*` tags: build, scan, SBOM, release tag.
pub const ROLE_IMAGE: &str = "gitlab-ci";
/// The release-tag job: protected `v*` tags only (it never runs elsewhere, so its role refuses
/// every other pipeline).
pub const ROLE_RELEASE: &str = "gitlab-ci-release";
/// The signature job (transit key `ci-signing-key`), same pipeline kinds as [`ROLE_IMAGE`].
pub const ROLE_SIGN: &str = "gitlab-ci-sign";
/// The ephemeral deploy and cleanup jobs of protected `main`.
pub const ROLE_DEPLOY: &str = "gitlab-ci-deploy";
/// The promotion job of protected `main`: reads its own project's promotion token only.
pub const ROLE_PROMOTE: &str = "gitlab-ci-promote";
/// `build-image` of merge request pipelines: pushes to the scratch project only.
pub const ROLE_MERGE_REQUEST: &str = "gitlab-ci-mr";

/// Robot `ci-push` (push/pull on the CI projects), read by [`ROLE_IMAGE`].
pub const KV_HARBOR_PUSH: &str = "ci/harbor-credentials";
/// Robot `ci-scratch-push` (push/pull on [`HARBOR_SCRATCH_PROJECT`] only), read by [`ROLE_MERGE_REQUEST`].
pub const KV_HARBOR_SCRATCH: &str = "ci/harbor-scratch-credentials";
/// Robot `argocd-pull` (pull only), read by External Secrets for every `harbor-pull` Secret.
pub const KV_HARBOR_PULL: &str = "argocd/harbor-pull";
/// The Argo CD project-role token (`proj:ephemeral:pipeline`) minted by phase 15, read by [`ROLE_DEPLOY`].
pub const KV_ARGOCD_TOKEN: &str = "ci/argocd-token";

/// Where a project's promotion token lives: keyed by the GitLab project id, because the policy is
/// templated on the `id_token`'s `project_id` claim and `OpenBao` refuses a `/` in a templated segment.
pub fn kv_promote_token(project_id: u64) -> String {
    format!("ci/projects/{project_id}/promote")
}

/// Argo CD's pull-request generator's GitLab token (plan §3.2 "GitLab API token for ArgoCD"): a
/// group access token with `read_api` only, minted and rotated by phase 15 and read by External
/// Secrets into `argocd/argocd-gitlab-token`. Never the admin token (issue 16: phase 13 once stored
/// the admin token here).
pub const KV_GITLAB_GENERATOR_TOKEN: &str = "ci/gitlab-api-token";

/// The in-cluster readiness report's own read-only credentials under [`KV_MOUNT`]: key
/// [`READINESS_GITLAB_TOKENS_KEY`] holds one `read_api` Maintainer group access token per
/// hardened group. Written by phase 17; read only by the report's Vault role (`cicd-readiness`).
pub const KV_READINESS_CREDENTIALS: &str = "monitoring/cicd-readiness";
/// The readiness report's Harbor robot (phase 14 creates it: `immutable-tag`/`list` on the
/// release projects).
pub const READINESS_HARBOR_ROBOT: &str = "cicd-readiness";
/// Where phase 14 keeps that robot's `username` and `password`; read only by the report's Vault
/// role.
pub const KV_READINESS_HARBOR: &str = "monitoring/cicd-readiness-harbor";
/// The key at [`KV_READINESS_CREDENTIALS`]: a JSON object, group path → token.
pub const READINESS_GITLAB_TOKENS_KEY: &str = "gitlab-tokens";
/// The readiness report's Vault policy and Kubernetes auth role, and its service account.
pub const READINESS_VAULT_ROLE: &str = "cicd-readiness";

/// A project's service secrets (`database-url`, `api-keys`, …; more below it): keyed by the GitLab
/// project id for the same reason as [`kv_promote_token`]. Phase 13 seeds and migrates them; the
/// project's main and release pipelines read only their own (policy `ci-project-secrets`).
pub fn kv_service_secrets(project_id: u64) -> String {
    format!("services/{project_id}")
}

/// Name of the project access token that commits promotions (Maintainer, scope `api`).
pub const PROMOTE_TOKEN_NAME: &str = "cicd-promote";

/// The stages of the template library's pipelines; defined in [`crate::ci_library`], which the DORA
/// collector uses without the `platform` feature.
pub use crate::ci_library::LIBRARY_STAGES;

/// The DORA collector's secrets in Vault (`kv/`): one per webhook source. Phase 17 generates the
/// GitLab and Argo Rollouts keys; phase 16, which registers Harbor's scan webhook and runs first,
/// generates the Harbor key when it is missing (each adds only absent keys, check-and-set).
pub const KV_DORA_COLLECTOR: &str = "monitoring/dora-collector";
/// Harbor's bearer token at [`KV_DORA_COLLECTOR`].
pub const DORA_HARBOR_SECRET_KEY: &str = "harbor-webhook-secret";

/// A webhook secret: 32 bytes from the system CSPRNG, hex (64 characters).
pub fn generate_webhook_secret() -> anyhow::Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The collector's public webhook URL for `source` (`gitlab`, `harbor`): the origin of
/// `OBS_WEBHOOK_URL`, else `https://dora.<DOMAIN>`, then `/webhooks/<source>`. `None` when neither
/// is set.
pub fn dora_webhook_url(env: &crate::config::Environment, source: &str) -> Option<String> {
    let origin = match env
        .get(crate::env::OBS_WEBHOOK_URL)
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => {
            let parsed = url::Url::parse(url.trim()).ok()?;
            parsed.origin().ascii_serialization()
        }
        None => format!(
            "https://dora.{}",
            env.get(crate::env::DOMAIN)
                .filter(|d| !d.trim().is_empty())?
                .trim()
        ),
    };
    Some(format!("{origin}/webhooks/{source}"))
}
/// Days a promotion token is valid, and how many must remain before a rerun renews it.
pub const PROMOTE_TOKEN_DAYS: u32 = 90;
/// A rerun rotates a promotion token once fewer than this many days remain (see
/// [`promote_token_change`]).
pub const PROMOTE_TOKEN_RENEW_DAYS: u32 = 30;

// --- Harbor ----------------------------------------------------------------------------------------
/// Short-lived images of merge request pipelines (per-MR environments only).
pub const HARBOR_SCRATCH_PROJECT: &str = "ci-scratch";

// --- Kubernetes ------------------------------------------------------------------------------------
/// Marks a namespace the ephemeral-namespace cleaner may delete.
pub const EPHEMERAL_LABEL: &str = "cicd.platform/ephemeral";
/// Lifetime of an ephemeral namespace from its creation (`<n>[smhd]`).
pub const TTL_LABEL: &str = "cicd.platform/ttl";
/// Default lifetime of an ephemeral environment (plan §2.2: 4 hours).
pub const EPHEMERAL_TTL: &str = "4h";
/// Namespaces with this label set to `"true"` get the Harbor pull Secret.
pub const HARBOR_PULL_LABEL: &str = "cicd.platform/harbor-pull";
/// The `kubernetes.io/dockerconfigjson` Secret every workload pod references.
pub const PULL_SECRET: &str = "harbor-pull";

// --- Runners: what an ephemeral environment admits (phase 16 labels the job pods) -------------------
/// The runner pools' namespace by default (`RUNNER_NAMESPACE`).
pub const RUNNER_NAMESPACE: &str = "gitlab-runners";
/// The job pod label naming a job's runner pool.
pub const JOB_POD_POOL_LABEL: &str = "cicd.platform/runner-pool";
/// The pool of acceptance-test and k6-performance, which reach the main pipeline's ephemeral
/// environment in the cluster.
pub const TEST_POOL: &str = "test";
/// The `NetworkPolicy` of an ephemeral overlay that lets the test pool's job pods in.
pub const ALLOW_PIPELINE_TESTS: &str = "allow-pipeline-tests";

/// [`ALLOW_PIPELINE_TESTS`] for runners in `runner_namespace` (the library README shows it).
pub fn allow_pipeline_tests(runner_namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": ALLOW_PIPELINE_TESTS},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": runner_namespace}},
                "podSelector": {"matchLabels": {JOB_POD_POOL_LABEL: TEST_POOL}},
            }]}],
        },
    })
}

// --- External Secrets: the two ClusterSecretStores phase 13 makes ---------------------------------
/// Reads the platform's secrets (Vault role `external-secrets`); not usable from namespaces
/// labelled [`EPHEMERAL_LABEL`].
pub const SECRET_STORE: &str = "vault-backend";
/// Reads only [`KV_HARBOR_PULL`] (Vault role [`PULL_STORE_VAULT_ROLE`]); usable everywhere, so the
/// `harbor-pull` Secret reaches ephemeral namespaces without opening the platform's secrets to
/// merge request content.
pub const PULL_SECRET_STORE: &str = "vault-harbor-pull";
/// The Kubernetes-auth role behind [`PULL_SECRET_STORE`] (policy `external-secrets-harbor-pull`).
pub const PULL_STORE_VAULT_ROLE: &str = "external-secrets-harbor-pull";

// --- The service list ------------------------------------------------------------------------------
/// Argo Rollouts strategy of a service's production overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Traffic moves to the new version step by step, analysed between steps (`dora-collector`,
    /// `packet-relay`).
    Canary,
    /// The new version runs beside the old one and takes all traffic at once (`netops-dashboard`).
    BlueGreen,
}

/// Where one environment of a service comes from and goes to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    /// The Argo CD Application's name.
    pub application: String,
    /// Namespace the Application deploys to.
    pub namespace: String,
    /// Kustomize overlay in the service's repository.
    pub overlay: String,
}

/// A service delivered through staging and production by Argo CD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveredService {
    /// Project name in GitLab, image repository name in Harbor, kustomize image name, `SERVICE_NAME`.
    pub name: String,
    /// `group/name` in GitLab.
    pub project_path: String,
    /// Harbor project of its release images.
    pub harbor_project: String,
    /// Argo Rollouts strategy of its production overlay.
    pub strategy: Strategy,
    /// The Argo CD project of its production Application.
    pub production_project: String,
    /// Its staging environment.
    pub staging: Stage,
    /// Its production environment.
    pub production: Stage,
    /// Overlay the per-MR and main-pipeline ephemeral environments render.
    pub ephemeral_overlay: String,
}

/// The settings the service list depends on (names in [`crate::env`]).
#[derive(Debug, Clone, Deserialize)]
struct CatalogSettings {
    deploy_demo_apps: Option<String>,
    demo_namespace: Option<String>,
    demo_gitlab_group: Option<String>,
    demo_harbor_project: Option<String>,
    demo_argocd_project: Option<String>,
    obs_namespace: Option<String>,
}

/// The platform's GitLab group (upstream contract).
pub const PLATFORM_GROUP: &str = "platform_services";

/// The groups phase 12 hardens (`GITLAB_GROUPS`, comma-separated, default [`PLATFORM_GROUP`]):
/// also the groups the readiness report's read-only tokens reach (phase 17).
pub fn hardened_groups(environment: &crate::config::Environment) -> Vec<String> {
    environment
        .get(crate::env::GITLAB_GROUPS)
        .unwrap_or(PLATFORM_GROUP)
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}
/// Harbor project of the platform's own images (plan §3.3).
pub const PLATFORM_HARBOR_PROJECT: &str = "platform-services";
/// Harbor project of application teams' images (plan §3.3): onboarded services push here with `ci-push`.
pub const APPLICATION_HARBOR_PROJECT: &str = "application-services";
/// The DORA collector's project and image name.
pub const COLLECTOR: &str = "dora-collector";
/// The arcade's two projects.
pub const ARCADE_SERVICES: [(&str, Strategy); 2] = [
    ("packet-relay", Strategy::Canary),
    ("netops-dashboard", Strategy::BlueGreen),
];
/// The arcade's shared staging namespace (both projects' staging overlays name it).
pub const ARCADE_STAGING_NAMESPACE: &str = "staging-netops-arcade";

fn non_empty(value: Option<String>, default: &str) -> String {
    value
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Every service phase 15 delivers: the DORA collector, and the arcade's projects unless
/// `DEPLOY_DEMO_APPS=false`. Onboarded services join this list.
pub fn services(env: &Environment) -> Result<Vec<DeliveredService>> {
    let s: CatalogSettings = env.parse()?;
    let demo = match s.deploy_demo_apps.as_deref().map(str::trim) {
        None | Some("" | "true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Error::Config(format!(
                "{}={other} is neither true nor false",
                crate::env::DEPLOY_DEMO_APPS
            )));
        }
    };
    let production_project = non_empty(s.demo_argocd_project, "production");
    let mut out = vec![DeliveredService {
        name: COLLECTOR.into(),
        project_path: format!("{PLATFORM_GROUP}/{COLLECTOR}"),
        harbor_project: PLATFORM_HARBOR_PROJECT.into(),
        strategy: Strategy::Canary,
        production_project: production_project.clone(),
        staging: Stage {
            application: format!("{COLLECTOR}-staging"),
            namespace: format!("staging-{COLLECTOR}"),
            overlay: "deploy/overlays/staging".into(),
        },
        production: Stage {
            application: COLLECTOR.into(),
            namespace: non_empty(s.obs_namespace, "monitoring"),
            overlay: "deploy/overlays/production".into(),
        },
        ephemeral_overlay: "deploy/overlays/ephemeral".into(),
    }];
    if demo {
        let group = non_empty(s.demo_gitlab_group, PLATFORM_GROUP);
        let namespace = non_empty(s.demo_namespace, "demo-apps");
        let harbor = non_empty(s.demo_harbor_project, PLATFORM_HARBOR_PROJECT);
        for (name, strategy) in ARCADE_SERVICES {
            out.push(DeliveredService {
                name: name.into(),
                project_path: format!("{group}/{name}"),
                harbor_project: harbor.clone(),
                strategy,
                production_project: production_project.clone(),
                staging: Stage {
                    application: format!("{name}-staging"),
                    namespace: ARCADE_STAGING_NAMESPACE.into(),
                    overlay: "deploy/overlays/staging".into(),
                },
                production: Stage {
                    application: name.into(),
                    namespace: namespace.clone(),
                    overlay: "deploy/overlays/rke2-prod".into(),
                },
                ephemeral_overlay: "deploy/overlays/ephemeral".into(),
            });
        }
    }
    Ok(out)
}

// --- The service catalog: services onboarded by `onboard-service` ---------------------------------
/// The `ConfigMap` (in the Argo CD namespace) that lists the onboarded services: one key per
/// service, its value a JSON [`CatalogEntry`]. `onboard-service` adds its service's key (a JSON merge
/// patch of that key only); phase 15 reads it and makes each entry's Applications.
pub const SERVICE_CATALOG: &str = "cicd-service-catalog";
/// The `ConfigMap` key of the catalog's own description (not a service).
pub const SERVICE_CATALOG_README: &str = "README";
/// Longest service name: the main pipeline's ephemeral namespace
/// `ephemeral-<name>-main-<8-character commit>` must stay a 63-character Kubernetes label.
pub const SERVICE_NAME_MAX: usize = 63 - "ephemeral-".len() - "-main-".len() - 8;
/// GitLab's reserved project names that fit one path segment (docs/research/gitlab-reserved-names.md).
pub const GITLAB_RESERVED_PROJECT_NAMES: &[&str] = &[
    "-",
    "badges",
    "blame",
    "blob",
    "builds",
    "commits",
    "create",
    "create_dir",
    "edit",
    "files",
    "find_file",
    "new",
    "preview",
    "raw",
    "refs",
    "tree",
    "update",
    "wikis",
];

/// One onboarded service as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The GitLab group of its project.
    pub group: String,
    /// The template language it was created with (`go`, `node`, `python`, `rust`).
    pub language: String,
    /// Argo Rollouts strategy of its production overlay.
    pub strategy: Strategy,
    /// The shared Harbor project of its images (plan §3.3).
    pub harbor_project: String,
    /// The service template tag it was created from.
    pub template: String,
}

/// Why Kubernetes, Harbor or GitLab would refuse `name` as a service name, or `None`. Each
/// message names the system and its rule.
pub fn service_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > SERVICE_NAME_MAX {
        return Some(format!(
            "Kubernetes: it has {} characters, at most {SERVICE_NAME_MAX} fit: the main pipeline's namespace ephemeral-<name>-main-<8-character commit> must be at most 63 characters (RFC 1123 label)",
            name.chars().count()
        ));
    }
    let bad: Vec<char> = name
        .chars()
        .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        .collect();
    if !bad.is_empty() {
        let mut shown: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
        shown.dedup();
        return Some(format!(
            "Kubernetes: names are RFC 1123 labels (lowercase letters, digits and '-'), and Harbor repositories are lowercase: {} not allowed",
            shown.join(", ")
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(
            "Kubernetes and GitLab: a name must start and end with a letter or digit (RFC 1123 label; GitLab slug rules)".into(),
        );
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some(
            "Kubernetes: a Service name (<name>-stable, <name>-canary) must start with a letter (RFC 1035 label), and so must a Cargo package name".into(),
        );
    }
    if name.contains("--") {
        return Some(
            "GitLab and Harbor: no two separators in a row ('--'): GitLab slugs must not contain consecutive special characters, Harbor repository names are [a-z0-9]+(?:[._-][a-z0-9]+)*".into(),
        );
    }
    if GITLAB_RESERVED_PROJECT_NAMES.contains(&name) {
        return Some(format!(
            "GitLab: {name} is a reserved project name (docs.gitlab.com/user/reserved_names)"
        ));
    }
    if let Some(taken) = PLATFORM_NAMES.iter().find(|n| **n == name) {
        return Some(format!(
            "the platform: {taken} is a project, Application or namespace of the platform itself"
        ));
    }
    if name.starts_with("gitlab-runner") {
        return Some(
            "the platform: gitlab-runner-* are phase 16's runner pool Applications".into(),
        );
    }
    for (part, why) in [
        (
            "-staging",
            "ends like a staging Application (<service>-staging)",
        ),
        (
            "-mr-",
            "reads like a merge request environment (ephemeral-<service>-mr-<n>)",
        ),
        (
            "-main-",
            "reads like a main pipeline environment (ephemeral-<service>-main-<sha>)",
        ),
    ] {
        if (part == "-staging" && name.ends_with(part))
            || (part != "-staging" && name.contains(part))
        {
            return Some(format!(
                "Argo CD: {name} {why}, so another service's objects could take its name"
            ));
        }
    }
    None
}

/// Names of the platform's own projects, Applications and namespaces, which a service may not take
/// (its production Application is `<name>`, its project `platform_services/<name>`).
pub const PLATFORM_NAMES: &[&str] = &[
    "service-template",
    "gitlab-ci-templates",
    "sop-wiki",
    "dora-collector",
    "packet-relay",
    "netops-dashboard",
    "netops-arcade",
    "feature-flags",
    "feature-flag-auditor",
    "external-secrets",
    "argocd",
    "monitoring",
    "vault",
    "harbor",
    "gitlab",
    "keycloak",
    "traffic-generator",
];

/// The delivery of one onboarded service: staging in `staging-<name>`, production in
/// `prod-<name>` (the service template's overlays name these namespaces).
pub fn onboarded_service(name: &str, entry: &CatalogEntry) -> Result<DeliveredService> {
    if let Some(problem) = service_name_problem(name) {
        return Err(Error::Config(format!(
            "ConfigMap {SERVICE_CATALOG}: service {name:?} is not a valid name ({problem}): remove the key"
        )));
    }
    if entry.group != PLATFORM_GROUP || entry.harbor_project != APPLICATION_HARBOR_PROJECT {
        return Err(Error::Config(format!(
            "ConfigMap {SERVICE_CATALOG}: {name} names group {} and Harbor project {} (onboard-service writes {PLATFORM_GROUP} and {APPLICATION_HARBOR_PROJECT}): remove the key and rerun onboard-service",
            entry.group, entry.harbor_project
        )));
    }
    Ok(DeliveredService {
        name: name.to_owned(),
        project_path: format!("{}/{name}", entry.group),
        harbor_project: entry.harbor_project.clone(),
        strategy: entry.strategy,
        // The teams' services always go to the `production` project (the demo's setting is the
        // arcade's alone).
        production_project: "production".to_owned(),
        staging: Stage {
            application: format!("{name}-staging"),
            namespace: format!("staging-{name}"),
            overlay: "deploy/overlays/staging".into(),
        },
        production: Stage {
            application: name.to_owned(),
            namespace: format!("prod-{name}"),
            overlay: "deploy/overlays/production".into(),
        },
        ephemeral_overlay: "deploy/overlays/ephemeral".into(),
    })
}

/// The platform's own services ([`services`]) and the catalog's (`data` of [`SERVICE_CATALOG`]),
/// sorted by name after the platform's, and one message per catalog key left out: an entry that
/// does not parse, takes a platform name or names another group. One bad key must not stop the
/// delivery of every other service.
pub fn services_with_catalog(
    env: &Environment,
    catalog: &BTreeMap<String, String>,
) -> Result<(Vec<DeliveredService>, Vec<String>)> {
    let mut out = services(env)?;
    let mut skipped = Vec::new();
    for (name, json) in catalog {
        if name == SERVICE_CATALOG_README {
            continue;
        }
        let entry = match serde_json::from_str::<CatalogEntry>(json) {
            Ok(entry) => entry,
            Err(e) => {
                skipped.push(format!(
                    "ConfigMap {SERVICE_CATALOG}: the entry of {name} is not a catalog entry ({e}): rerun onboard-service {name} apply, or remove the key"
                ));
                continue;
            }
        };
        if out.iter().any(|s| s.name == *name) {
            skipped.push(format!(
                "ConfigMap {SERVICE_CATALOG}: {name} is a platform service's name: remove the key"
            ));
            continue;
        }
        match onboarded_service(name, &entry) {
            Ok(service) => out.push(service),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Ok((out, skipped))
}

/// The service template's GitLab project: `service-template` beside the CI library (the group of
/// `CI_TEMPLATES_PROJECT`, default `platform_services`). Phase 14 seeds it; onboarding reads it.
pub fn service_template_project(env: &Environment) -> String {
    let library = env
        .get(crate::env::CI_TEMPLATES_PROJECT)
        .map(|p| p.trim().trim_matches('/').to_owned())
        .filter(|p| p.contains('/'))
        .unwrap_or_else(|| format!("{PLATFORM_GROUP}/gitlab-ci-templates"));
    let group = library.rsplit_once('/').map_or(PLATFORM_GROUP, |(g, _)| g);
    format!("{group}/service-template")
}

// --- Feature flags (plan §7, Option A) ---------------------------------------------------------------
/// The project (`platform_services/feature-flags`, phase 17) whose image runs the flag sidecars
/// and the auditor.
pub const FEATURE_FLAGS_PROJECT: &str = "feature-flags";
/// Its release tag (the workspace's version): what the sidecars and the auditor pin.
pub const FEATURE_FLAGS_RELEASE_TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The Kubernetes auth role of a service's flag sidecar (its service account in its staging and
/// production namespaces; policy [`feature_flag_policy_name`]).
pub fn feature_flag_role_name(service: &str) -> String {
    feature_flag_policy_name(service)
}

/// The Kubernetes auth mount phase 13 enables (service accounts log in there).
pub const K8S_AUTH_MOUNT: &str = "kubernetes";

/// Whether Vault reviews Kubernetes logins with the client's own token
/// (`VAULT_K8S_TOKEN_REVIEWER=client`: Vault outside the cluster). Then every service account that
/// logs in needs `system:auth-delegator` ([`token_reviewer_binding`]); with Vault's own reviewer
/// (the default) none does.
pub fn token_reviewer_is_client(env: &Environment) -> bool {
    env.get(crate::env::VAULT_K8S_TOKEN_REVIEWER)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("client"))
}

/// The `ClusterRoleBinding` that lets `subjects` (`(namespace, service account)`) log in to Vault
/// when it reviews with the client's token.
pub fn token_reviewer_binding(name: &str, subjects: &[(String, String)]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": subjects.iter().map(|(namespace, account)| serde_json::json!({"kind": "ServiceAccount", "name": account, "namespace": namespace})).collect::<Vec<_>>(),
    })
}

/// Where a service's flags live under [`KV_MOUNT`]: one KV v2 secret per flag.
pub fn kv_feature_flags(service: &str) -> String {
    format!("feature-flags/{service}")
}

/// The Vault policy of a service's flag sidecar: read and list its own flags, nothing else.
pub fn feature_flag_policy_name(service: &str) -> String {
    format!("feature-flags-{service}")
}

/// [`feature_flag_policy_name`]'s text.
pub fn feature_flag_policy(service: &str) -> String {
    let folder = kv_feature_flags(service);
    format!(
        "# The flag sidecar of {service}: its own flags only (created by onboard-service).\npath \"{KV_MOUNT}/data/{folder}/*\" {{\n  capabilities = [\"read\"]\n}}\npath \"{KV_MOUNT}/metadata/{folder}\" {{\n  capabilities = [\"list\"]\n}}\npath \"{KV_MOUNT}/metadata/{folder}/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n"
    )
}

// --- A project's promotion token (created by the phase that creates the project) -----------------

/// What a project's promotion token looks like now.
#[derive(Debug, Clone, Default)]
pub struct PromoteTokenObserved {
    /// The newest active, unrevoked token named [`PROMOTE_TOKEN_NAME`].
    pub active: Option<ProjectAccessToken>,
    /// The token id Vault's copy was written for (`token-id` custom metadata), if any.
    pub stored_token_id: Option<u64>,
}

/// The change a project's promotion token needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteTokenChange {
    /// No active token: create one.
    Create,
    /// Rotation gives a new secret: the only way to refill Vault, and to renew before expiry.
    Rotate {
        /// GitLab's id of the active token.
        token_id: u64,
        /// Why, for the plan: Vault lacks its secret, or it expires soon.
        reason: String,
    },
}

impl PromoteTokenChange {
    /// One line for a plan.
    pub fn describe(&self) -> String {
        match self {
            Self::Create => format!(
                "create access token {PROMOTE_TOKEN_NAME} (Maintainer, api, {PROMOTE_TOKEN_DAYS} days) and store it in Vault"
            ),
            Self::Rotate { reason, .. } => {
                format!("rotate access token {PROMOTE_TOKEN_NAME} ({reason}) and store it in Vault")
            }
        }
    }
}

/// The pure decision: create when none is active, rotate when Vault lacks this token's secret or
/// fewer than [`PROMOTE_TOKEN_RENEW_DAYS`] days remain, else nothing.
pub fn promote_token_change(o: &PromoteTokenObserved, today: i64) -> Option<PromoteTokenChange> {
    access_token_change(o, today, PROMOTE_TOKEN_RENEW_DAYS, false)
}

/// The same decision for any access token kept in Vault: renewed once fewer than `renew_days`
/// remain, and rotated now when `rotate_now` (an operator's `--rotate`).
pub fn access_token_change(
    o: &PromoteTokenObserved,
    today: i64,
    renew_days: u32,
    rotate_now: bool,
) -> Option<PromoteTokenChange> {
    let Some(token) = &o.active else {
        return Some(PromoteTokenChange::Create);
    };
    if o.stored_token_id != Some(token.id) {
        return Some(PromoteTokenChange::Rotate {
            token_id: token.id,
            reason: "Vault holds no copy of the active token".into(),
        });
    }
    if rotate_now {
        return Some(PromoteTokenChange::Rotate {
            token_id: token.id,
            reason: "rotation asked for (--rotate)".into(),
        });
    }
    let expires = token.expires_at.as_deref().and_then(dates::parse);
    match expires {
        Some(day) if day - today >= i64::from(renew_days) => None,
        Some(day) => Some(PromoteTokenChange::Rotate {
            token_id: token.id,
            reason: format!("expires {}", dates::format(day)),
        }),
        None => Some(PromoteTokenChange::Rotate {
            token_id: token.id,
            reason: "no expiry date".into(),
        }),
    }
}

/// Reads the project's tokens and Vault's metadata (reads only).
pub async fn observe_promote_token(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    project_id: u64,
) -> Result<PromoteTokenObserved> {
    let active = gitlab
        .project_access_tokens(project_id)
        .await?
        .into_iter()
        .filter(|t| t.name == PROMOTE_TOKEN_NAME && t.active && !t.revoked)
        .max_by_key(|t| t.id);
    let stored_token_id = vault
        .kv2_metadata(KV_MOUNT, &kv_promote_token(project_id))
        .await?
        .filter(|m| !m.current_deleted)
        .and_then(|m| {
            m.custom_metadata
                .get("token-id")
                .and_then(|v| v.parse().ok())
        });
    Ok(PromoteTokenObserved {
        active,
        stored_token_id,
    })
}

/// Creates or rotates the token, then writes its secret to Vault in the same step.
pub async fn apply_promote_token(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    project_id: u64,
    project_path: &str,
    change: &PromoteTokenChange,
) -> Result<()> {
    let expires_at = dates::format(dates::today() + i64::from(PROMOTE_TOKEN_DAYS));
    let token = match change {
        PromoteTokenChange::Create => {
            gitlab
                .create_project_access_token(
                    project_id,
                    PROMOTE_TOKEN_NAME,
                    &["api"],
                    access::MAINTAINER,
                    &expires_at,
                )
                .await?
        }
        PromoteTokenChange::Rotate { token_id, .. } => {
            gitlab
                .rotate_project_access_token(project_id, *token_id, &expires_at)
                .await?
        }
    };
    let secret = token.token.as_ref().ok_or_else(|| Error::Precondition {
        operation: format!("storing access token {PROMOTE_TOKEN_NAME} of {project_path}"),
        message: "GitLab's answer carried no token: rerun to rotate it".into(),
    })?;
    crate::redact::register(secrecy::ExposeSecret::expose_secret(secret));
    // Should the write below fail, GitLab holds a token Vault lacks: the next run sees that
    // ("Vault holds no copy of the active token") and rotates it, revoking this one.
    let data: BTreeMap<String, String> = [
        (
            "token".to_owned(),
            secrecy::ExposeSecret::expose_secret(secret).to_owned(),
        ),
        ("project".to_owned(), project_path.to_owned()),
    ]
    .into();
    let meta: BTreeMap<String, String> = [
        ("managed-by".to_owned(), "cicd-buildout".to_owned()),
        ("token-id".to_owned(), token.id.to_string()),
        (
            "expires-at".to_owned(),
            token.expires_at.clone().unwrap_or(expires_at),
        ),
        ("project".to_owned(), project_path.to_owned()),
    ]
    .into();
    vault
        .kv2_put(KV_MOUNT, &kv_promote_token(project_id), &data, &meta)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::load_from(
            None,
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .unwrap()
    }

    #[test]
    fn service_names_are_refused_with_the_rule_they_break() {
        for (name, says) in [
            ("Bad_Name", "'B', '_'"),
            (&"a".repeat(64), "64 characters, at most 39"),
            (&"a".repeat(40), "40 characters"),
            ("-x", "start and end with a letter or digit"),
            ("x-", "start and end"),
            ("a--b", "no two separators"),
            ("tree", "reserved project name"),
            ("", "empty"),
            ("billing.api", "'.'"),
            ("2fa", "start with a letter"),
            ("feature-flags", "the platform"),
            ("service-template", "the platform"),
            ("gitlab-runner-build", "runner pool"),
            ("billing-staging", "staging Application"),
            ("web-mr-1", "merge request environment"),
        ] {
            let problem = service_name_problem(name).unwrap_or_else(|| panic!("{name} passed"));
            assert!(problem.contains(says), "{name}: {problem}");
            assert!(!problem.contains('\n'), "one line: {problem}");
        }
        for good in ["billing-api", "a", "svc2", &"a".repeat(SERVICE_NAME_MAX)] {
            assert_eq!(service_name_problem(good), None, "{good}");
        }
        assert_eq!(SERVICE_NAME_MAX, 39);
    }

    #[test]
    fn the_service_template_sits_beside_the_library() {
        assert_eq!(
            service_template_project(&env(&[])),
            "platform_services/service-template"
        );
        assert_eq!(
            service_template_project(&env(&[("CI_TEMPLATES_PROJECT", "infra/ci/templates")])),
            "infra/ci/service-template"
        );
    }

    #[test]
    fn catalog_entries_join_the_service_list() {
        let e = env(&[]);
        let entry = CatalogEntry {
            group: PLATFORM_GROUP.into(),
            language: "go".into(),
            strategy: Strategy::BlueGreen,
            harbor_project: APPLICATION_HARBOR_PROJECT.into(),
            template: "v0.1.0".into(),
        };
        let catalog = BTreeMap::from([
            (
                "billing-api".to_owned(),
                serde_json::to_string(&entry).unwrap(),
            ),
            (
                SERVICE_CATALOG_README.to_owned(),
                "not a service".to_owned(),
            ),
        ]);
        let (all, skipped) = services_with_catalog(&e, &catalog).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let billing = all.last().unwrap();
        assert_eq!(billing.name, "billing-api");
        assert_eq!(billing.project_path, "platform_services/billing-api");
        assert_eq!(billing.staging.namespace, "staging-billing-api");
        assert_eq!(billing.production.namespace, "prod-billing-api");
        assert_eq!(billing.strategy, Strategy::BlueGreen);
        assert_eq!(all.len(), services(&e).unwrap().len() + 1);
        let platform = services(&e).unwrap().len();
        let mut other_group = entry.clone();
        other_group.group = "elsewhere".into();
        let json = |e: &CatalogEntry| serde_json::to_string(e).unwrap();
        let bad = BTreeMap::from([
            (COLLECTOR.to_owned(), json(&entry)),
            ("x".to_owned(), "{".to_owned()),
            ("Bad_Name".to_owned(), json(&entry)),
            ("other".to_owned(), json(&other_group)),
            ("good".to_owned(), json(&entry)),
        ]);
        let (all, skipped) = services_with_catalog(&e, &bad).unwrap();
        assert_eq!(all.len(), platform + 1, "only the good entry joins");
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped.iter().any(|m| m.contains("platform service")));
        assert!(
            skipped
                .iter()
                .any(|m| m.contains("rerun onboard-service x apply"))
        );
        assert!(skipped.iter().any(|m| m.contains("names group elsewhere")));
        assert_eq!(all.last().unwrap().production_project, "production");
    }

    #[test]
    fn the_collector_always_and_the_arcade_unless_switched_off() {
        let all = services(&env(&[])).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["dora-collector", "packet-relay", "netops-dashboard"]
        );
        assert_eq!(all[0].production.namespace, "monitoring");
        assert_eq!(all[1].production.namespace, "demo-apps");
        assert_eq!(all[1].production.overlay, "deploy/overlays/rke2-prod");
        assert_eq!(all[2].staging.namespace, ARCADE_STAGING_NAMESPACE);

        let without = services(&env(&[("DEPLOY_DEMO_APPS", "false")])).unwrap();
        assert_eq!(without.len(), 1);
        let moved = services(&env(&[
            ("DEMO_NAMESPACE", "arcade"),
            ("OBS_NAMESPACE", "observability"),
        ]))
        .unwrap();
        assert_eq!(moved[0].production.namespace, "observability");
        assert_eq!(moved[1].production.namespace, "arcade");
        assert!(services(&env(&[("DEPLOY_DEMO_APPS", "maybe")])).is_err());
    }

    fn token(id: u64, expires_at: &str) -> ProjectAccessToken {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": PROMOTE_TOKEN_NAME, "scopes": ["api"], "access_level": 40,
            "expires_at": expires_at, "active": true, "revoked": false,
        }))
        .unwrap()
    }

    #[test]
    fn promotion_tokens_are_created_refilled_and_renewed() {
        let today = dates::parse("2026-12-02").unwrap();
        let none = PromoteTokenObserved::default();
        assert_eq!(
            promote_token_change(&none, today),
            Some(PromoteTokenChange::Create)
        );
        let fresh = PromoteTokenObserved {
            active: Some(token(7, "2027-03-02")),
            stored_token_id: Some(7),
        };
        assert_eq!(promote_token_change(&fresh, today), None);
        let lost = PromoteTokenObserved {
            stored_token_id: Some(6),
            ..fresh.clone()
        };
        assert!(matches!(
            promote_token_change(&lost, today),
            Some(PromoteTokenChange::Rotate { token_id: 7, .. })
        ));
        // 29 days left: renewed; 30: kept.
        let ageing = PromoteTokenObserved {
            active: Some(token(7, "2026-12-31")),
            stored_token_id: Some(7),
        };
        assert!(promote_token_change(&ageing, today).is_some());
        let kept = PromoteTokenObserved {
            active: Some(token(7, "2027-01-01")),
            stored_token_id: Some(7),
        };
        assert_eq!(promote_token_change(&kept, today), None);
        assert!(!format!("{:?}", token(7, "2027-01-01")).contains("glpat"));
    }

    #[test]
    fn promotion_paths_are_keyed_by_project_id() {
        assert_eq!(kv_promote_token(42), "ci/projects/42/promote");
    }
}
