//! Observe GitLab, Vault, Harbor and the cluster (reads only), plan, apply; see the crate docs for
//! the order of the changes and why.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use common::config::PlatformConfig;
use common::contract::{
    self, APPLICATION_HARBOR_PROJECT, CatalogEntry, KV_MOUNT, PLATFORM_GROUP, SERVICE_CATALOG,
    Strategy, kv_service_secrets,
};
use common::gitlab::GitLabClient;
use common::harbor::HarborClient;
use common::kube::KubeClient;
use common::phase::{DesiredObject, Outcome, Phase};
use common::plan::{Change, Plan};
use common::vault::VaultClient;
use seeded_projects::seed::{self, SeedOp};
use seeded_projects::service_template::{self, Rendering};
use serde_json::{Value, json};

use crate::request::Request;

pub const PHASE_NAME: &str = "onboard-service";
/// The first release tag of an onboarded service: its pipeline builds the first release image.
pub const FIRST_RELEASE: &str = "v0.1.0";

#[derive(Debug, Clone)]
pub enum Op {
    /// Add the service's key to the catalog `ConfigMap` (server-side apply of that key only).
    CatalogEntry(CatalogEntry),
    /// A seeding step: project, release protection, promotion token, commit, tag.
    Seed(SeedOp),
    /// The placeholder service secrets at `kv/services/<project id>` (created once).
    ServiceSecrets,
    /// Phase 12's hardening of the project, by phase 12's code.
    Harden,
    /// The Vault policy of the service's flag sidecar (its own flags, read-only).
    FlagPolicy { name: String, text: String },
    /// The Kubernetes auth role the flag sidecar logs in with.
    FlagRole,
    /// One of phase 15's objects for the service, with phase 15's field manager.
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
}

/// What onboarding reads.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The service template's files at its version tag, as GitLab has them.
    pub template: BTreeMap<String, String>,
    /// Every key of the catalog `ConfigMap`.
    pub catalog: BTreeMap<String, String>,
    /// The service's project as seeding sees it.
    pub project: seed::Observed,
    /// Whether `kv/services/<project id>` exists.
    pub secrets_present: bool,
    /// Phase 12's pending changes on the project (titles), when it exists.
    pub hardening: Vec<String>,
    /// The text of the flag sidecar's Vault policy, if it exists.
    pub flag_policy: Option<String>,
    /// The flag sidecar's Kubernetes auth role, if it exists.
    pub flag_role: Option<Value>,
    /// The project's description says onboard-service created it (a rerun may re-add a lost
    /// catalog entry).
    pub project_marked: bool,
    /// Argo CD objects that would take the service's names but are not the catalog's.
    pub foreign_objects: Vec<String>,
}

/// The start of every onboarded project's description: how a rerun knows the project is its own.
pub const ONBOARDED_MARKER: &str = "onboarded from the service template";

/// The Kubernetes auth mount phase 13 enables.
pub const K8S_MOUNT: &str = contract::K8S_AUTH_MOUNT;

/// The flag sidecar's role: the service's account in its staging and production namespaces only
/// (ephemeral environments run merge request code: their sidecars get no Vault token, and every
/// flag reads as off there).
pub fn flag_role(request: &Request) -> Value {
    let name = &request.name;
    json!({
        "bound_service_account_names": [name],
        "bound_service_account_namespaces": [format!("staging-{name}"), format!("prod-{name}")],
        "token_policies": [contract::feature_flag_policy_name(name)],
        "token_ttl": 900,
        "token_max_ttl": 3600,
        // Only its own policy: not even Vault's `default` (token self-lookup and the like).
        "token_no_default_policy": true,
    })
}

/// Whether the live role grants what [`flag_role`] says (Vault adds its own defaults).
fn role_matches(live: &Value, want: &Value) -> bool {
    want.as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| &live[k] == v))
}

/// The onboarding of one service, connected.
pub struct Onboarding {
    cfg: PlatformConfig,
    request: Request,
    gitlab: GitLabClient,
    vault: VaultClient,
    harbor: HarborClient,
    /// Phase 15's field manager: its objects stay phase 15's.
    kube: KubeClient,
    /// A field manager of this service's own: the catalog key is the only field it owns.
    catalog_kube: KubeClient,
    argo: argo_delivery::settings::Settings,
    platform: Platform,
    crd_wait: Duration,
}

/// The catalog entry a request makes.
pub fn catalog_entry(request: &Request) -> CatalogEntry {
    CatalogEntry {
        group: PLATFORM_GROUP.to_owned(),
        language: request.language.as_str().to_owned(),
        strategy: request.strategy,
        harbor_project: APPLICATION_HARBOR_PROJECT.to_owned(),
        template: service_template::tag(),
    }
}

/// The entry as the catalog compares it: the template tag it came from is history, not drift.
fn same_service(a: &CatalogEntry, b: &CatalogEntry) -> bool {
    a.group == b.group
        && a.language == b.language
        && a.strategy == b.strategy
        && a.harbor_project == b.harbor_project
}

/// The platform's values the template is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Harbor's registry host (a non-default port kept).
    pub registry: String,
    /// Vault as the flag sidecar reaches it (`VAULT_ADDR`).
    pub vault_addr: String,
    /// `RUNNER_NAMESPACE`.
    pub runner_namespace: String,
    /// `DOMAIN`.
    pub domain: Option<String>,
    /// `GITLAB_APPROVER_GROUP_PARENT`: the default CODEOWNERS.
    pub approver_parent: String,
    /// `CI_TEMPLATES_PROJECT`: the library the pipeline includes.
    pub library_project: String,
}

/// What seeding wants the project to be: the rendered template, owned by the team from then on.
pub fn wanted_project(
    request: &Request,
    template: &BTreeMap<String, String>,
    p: &Platform,
) -> anyhow::Result<seed::Wanted> {
    let files = service_template::render(
        template,
        &Rendering {
            name: request.name.clone(),
            language: request.language,
            blue_green: request.strategy == Strategy::BlueGreen,
            registry: p.registry.clone(),
            harbor_project: APPLICATION_HARBOR_PROJECT.to_owned(),
            vault_addr: p.vault_addr.clone(),
            runner_namespace: p.runner_namespace.clone(),
            domain: p.domain.clone(),
            library_project: p.library_project.clone(),
        },
    )?;
    Ok(seed::Wanted {
        group: PLATFORM_GROUP.to_owned(),
        name: request.name.clone(),
        description: format!(
            "{} ({}), {ONBOARDED_MARKER} {} by onboard-service",
            request.name,
            request.language,
            service_template::tag()
        ),
        files,
        tag: FIRST_RELEASE.to_owned(),
        tag_message: format!("{}: first release", request.name),
        commit_message: format!(
            "{}: created from service-template {} (onboard-service)",
            request.name,
            service_template::tag()
        ),
        // The team's files from the first commit on: a rerun adds what is missing, never
        // overwrites what they changed.
        policy: seed::Policy::KeepChanges {
            reset: false,
            reset_removes: Vec::new(),
        },
        approver_parent: p.approver_parent.clone(),
        promote_token: true,
    })
}

/// The pure diff (everything but phase 15's objects, planned by dry run).
pub fn diff(request: &Request, o: &Observed, platform: &Platform) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    let name = &request.name;
    let want = catalog_entry(request);
    let listed = o
        .catalog
        .get(name)
        .map(|json| serde_json::from_str::<CatalogEntry>(json));
    match listed {
        None if o.project.project_id.is_some() && !o.project_marked => bail!(
            "GitLab project {PLATFORM_GROUP}/{name} exists but was not created by onboard-service (the service catalog {SERVICE_CATALOG} does not list it): choose another name"
        ),
        None if !o.foreign_objects.is_empty() => bail!(
            "{name} would take the names of existing Argo CD objects the catalog does not list ({}): choose another name",
            o.foreign_objects.join(", ")
        ),
        None => plan.push(Change::create(
            "service catalog entry",
            &format!("{SERVICE_CATALOG}: {name}"),
            serde_json::to_value(&want)?,
            &[],
            Op::CatalogEntry(want.clone()),
        )),
        Some(Err(e)) => bail!(
            "ConfigMap {SERVICE_CATALOG}: the entry of {name} is not a catalog entry ({e}): remove the key and rerun"
        ),
        Some(Ok(have)) if !same_service(&have, &want) => bail!(
            "{name} is already onboarded as {} with strategy {} (Harbor project {}): the language and strategy are chosen once; change deploy/ and .gitlab-ci.yml in the project instead",
            have.language,
            serde_json::to_value(have.strategy)?
                .as_str()
                .unwrap_or_default(),
            have.harbor_project
        ),
        Some(Ok(_)) => {}
    }
    let mut wanted = wanted_project(request, &o.template, platform)?;
    if !o.project.files.is_empty() {
        // After the first commit the files are the team's: a rerun neither restores a file they
        // deleted nor pushes a newer template onto their protected `main`.
        wanted.files.clear();
    }
    seed::plan(&wanted, &o.project, &mut plan, Op::Seed);
    if !o.secrets_present {
        plan.push(Change::create(
            "vault placeholder secret",
            &format!("{KV_MOUNT}/services/<project id of {}>", wanted.path()),
            json!({"keys": vault_cicd::service_paths::SERVICE_KEYS, "values": "(placeholders)", "read by": "the project's own main and release pipelines (policy ci-project-secrets)"}),
            &[],
            Op::ServiceSecrets,
        ));
    }
    let policy = contract::feature_flag_policy_name(name);
    let text = contract::feature_flag_policy(name);
    match &o.flag_policy {
        None => plan.push(Change::create(
            "vault policy",
            &policy,
            json!({"reads": format!("{KV_MOUNT}/{}/*", contract::kv_feature_flags(name)), "for": "the service's flag sidecar"}),
            &[],
            Op::FlagPolicy { name: policy.clone(), text },
        )),
        Some(have) if have.trim() != text.trim() => plan.push(Change::update(
            "vault policy",
            &policy,
            json!({"text": have}),
            json!({"text": text}),
            &[],
            Op::FlagPolicy { name: policy.clone(), text },
        )),
        Some(_) => {}
    }
    let role = flag_role(request);
    if !o
        .flag_role
        .as_ref()
        .is_some_and(|live| role_matches(live, &role))
    {
        plan.push(Change::create(
            "vault kubernetes role",
            &format!(
                "auth/{K8S_MOUNT}/role/{}",
                contract::feature_flag_role_name(name)
            ),
            role,
            &[],
            Op::FlagRole,
        ));
    }
    // A new project: seeding hardens it as its last step (`SeedOp::Harden`).
    if !o.hardening.is_empty() {
        plan.push(Change::update(
            "gitlab hardening (phase 12)",
            &wanted.path(),
            json!({}),
            json!({"pending": o.hardening}),
            &[],
            Op::Harden,
        ));
    }
    Ok(plan)
}

impl Onboarding {
    pub async fn connect(cfg: &PlatformConfig, request: Request) -> anyhow::Result<Self> {
        let argo = argo_delivery::settings::Settings::load(cfg)?;
        Ok(Self {
            kube: KubeClient::connect(cfg, argo_delivery::reconcile::FIELD_MANAGER).await?,
            catalog_kube: KubeClient::connect(
                cfg,
                &format!("cicd-buildout/onboard-service/{}", request.name),
            )
            .await?,
            gitlab: GitLabClient::connect(cfg)?,
            vault: VaultClient::connect(cfg)?,
            harbor: HarborClient::connect(cfg)?,
            platform: Platform {
                registry: argo.harbor_registry.clone(),
                vault_addr: cfg
                    .require_url(common::env::VAULT_ADDR)?
                    .trim_end_matches('/')
                    .to_owned(),
                runner_namespace: cfg
                    .environment()
                    .get(common::env::RUNNER_NAMESPACE)
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(contract::RUNNER_NAMESPACE)
                    .to_owned(),
                domain: cfg.domain.clone(),
                approver_parent: common::codeowners::approver_parent(cfg.environment()),
                library_project: cfg
                    .environment()
                    .get(common::env::CI_TEMPLATES_PROJECT)
                    .map(|p| p.trim().trim_matches('/').to_owned())
                    .filter(|p| p.contains('/'))
                    .unwrap_or_else(|| format!("{PLATFORM_GROUP}/gitlab-ci-templates")),
            },
            crd_wait: cfg.crd_wait(),
            cfg: cfg.clone(),
            request,
            argo,
        })
    }

    fn project_path(&self) -> String {
        format!("{PLATFORM_GROUP}/{}", self.request.name)
    }

    /// The template's files at its version tag (every file, read one by one).
    async fn template(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let path = contract::service_template_project(self.cfg.environment());
        let tag = service_template::tag();
        let project = self.gitlab.project(&path).await?.with_context(|| {
            format!("GitLab has no project {path}: phase 14 (ci-templates apply) seeds the service template; run it first")
        })?;
        if self.gitlab.tag_target(project.id, &tag).await?.is_none() {
            bail!(
                "{path} has no tag {tag}, the template version this onboard-service renders: run phase 14 (ci-templates apply) of this version"
            );
        }
        let mut files = BTreeMap::new();
        for entry in self.gitlab.repository_files(project.id, &tag).await? {
            let text = self
                .gitlab
                .file_text(project.id, &entry.path, &tag)
                .await?
                .with_context(|| format!("{path}@{tag}: {} listed but not readable", entry.path))?;
            files.insert(entry.path, text);
        }
        Ok(files)
    }

    /// Phase 15's settings with this service in its list.
    fn argo_settings(
        &self,
        catalog: &BTreeMap<String, String>,
    ) -> anyhow::Result<argo_delivery::settings::Settings> {
        let mut catalog = catalog.clone();
        catalog.insert(
            self.request.name.clone(),
            serde_json::to_string(&catalog_entry(&self.request))?,
        );
        let mut settings = self.argo.clone();
        settings.services = contract::services_with_catalog(self.cfg.environment(), &catalog)?.0;
        Ok(settings)
    }

    async fn harden(&self) -> anyhow::Result<gitlab_harden::reconcile::GitLabHarden> {
        gitlab_harden::reconcile::GitLabHarden::for_projects(&self.cfg, [self.project_path()]).await
    }

    async fn project_id(&self) -> anyhow::Result<u64> {
        Ok(self
            .gitlab
            .project(&self.project_path())
            .await?
            .with_context(|| {
                format!(
                    "GitLab project {} does not exist (created earlier in this apply): rerun apply",
                    self.project_path()
                )
            })?
            .id)
    }
}

/// Phase 15's objects that belong to `service`: its namespaces, Applications and `ApplicationSet`.
fn belongs_to(object: &Value, service: &contract::DeliveredService) -> bool {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match object["kind"].as_str().unwrap_or_default() {
        // The AppProjects stay phase 15's alone (their `staging-*` and `prod-*` globs already admit
        // the service's namespaces): onboarding never rewrites platform-wide roles or windows.
        "Namespace" => name == service.staging.namespace || name == service.production.namespace,
        "Application" => {
            name == service.staging.application || name == service.production.application
        }
        "ApplicationSet" => name == format!("ephemeral-{}", service.name),
        _ => false,
    }
}

impl Phase for Onboarding {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        if self
            .harbor
            .project(APPLICATION_HARBOR_PROJECT)
            .await?
            .is_none()
        {
            bail!(
                "Harbor has no project {APPLICATION_HARBOR_PROJECT}, where the service's images go: phase 14 (ci-templates apply) creates it; run it first"
            );
        }
        let template = self.template().await?;
        let catalog =
            argo_delivery::reconcile::read_catalog(&self.kube, &self.argo.argocd_namespace).await?;
        let project = seed::observe(
            &self.gitlab,
            &self.vault,
            &self.project_path(),
            FIRST_RELEASE,
        )
        .await?;
        let (secrets_present, hardening) = match project.project_id {
            Some(id) => {
                let present = self
                    .vault
                    .kv2_metadata(KV_MOUNT, &kv_service_secrets(id))
                    .await?
                    .is_some();
                let pending = common::phase::plan(&self.harden().await?).await?;
                (
                    present,
                    pending
                        .changes
                        .iter()
                        .map(common::plan::Change::title)
                        .collect(),
                )
            }
            None => (false, Vec::new()),
        };
        let flag_policy = self
            .vault
            .policy(&contract::feature_flag_policy_name(&self.request.name))
            .await?;
        let project_marked = match project.project_id {
            Some(_) => self
                .gitlab
                .project(&self.project_path())
                .await?
                .and_then(|p| {
                    p.settings
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .is_some_and(|d| d.contains(ONBOARDED_MARKER)),
            None => false,
        };
        let mut foreign_objects = Vec::new();
        if !catalog.contains_key(&self.request.name) {
            let name = &self.request.name;
            for (kind, object) in [
                ("Application", name.clone()),
                ("Application", format!("{name}-staging")),
                ("ApplicationSet", format!("ephemeral-{name}")),
            ] {
                let probe = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": object, "namespace": self.argo.argocd_namespace}});
                if self.kube.get_if_served(&probe).await?.is_some() {
                    foreign_objects.push(format!("{kind} {}/{object}", self.argo.argocd_namespace));
                }
            }
        }
        let flag_role = self
            .vault
            .read(
                "reading the flag sidecar's Kubernetes role",
                &format!(
                    "auth/{K8S_MOUNT}/role/{}",
                    contract::feature_flag_role_name(&self.request.name)
                ),
            )
            .await?;
        Ok(Observed {
            template,
            catalog,
            project,
            secrets_present,
            hardening,
            flag_policy,
            flag_role,
            project_marked,
            foreign_objects,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.request, observed, &self.platform)
    }

    fn objects(&self, observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        let settings = self.argo_settings(&observed.catalog)?;
        let service = settings
            .services
            .iter()
            .find(|s| s.name == self.request.name)
            .cloned()
            .context("the service is not in phase 15's list (a bug)")?;
        let mut objects: Vec<(Value, Option<&'static str>)> =
            argo_delivery::desired::objects(&settings)
                .into_iter()
                .filter(|(object, _)| belongs_to(object, &service))
                .collect();
        // Vault outside the cluster reviews logins with the client's token: the flag sidecar's
        // account may then call TokenReview (system:auth-delegator).
        if contract::token_reviewer_is_client(self.cfg.environment()) {
            let name = &self.request.name;
            objects.push((
                contract::token_reviewer_binding(
                    &format!("{}-vault-login", contract::feature_flag_role_name(name)),
                    &[
                        (service.staging.namespace.clone(), name.clone()),
                        (service.production.namespace.clone(), name.clone()),
                    ],
                ),
                None,
            ));
        }
        Ok(DesiredObject::each(
            objects,
            "Argo CD (phase 15 needs it)",
            |object, crd| Op::Apply { object, crd },
        ))
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        Some((&self.kube, self.crd_wait))
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        match op {
            Op::CatalogEntry(entry) => {
                let map = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": SERVICE_CATALOG, "namespace": self.argo.argocd_namespace},
                    "data": {self.request.name.clone(): serde_json::to_string(entry)?},
                });
                self.catalog_kube
                    .apply(&map, false)
                    .await
                    .with_context(|| {
                        format!(
                            "writing {}'s entry in ConfigMap {}/{SERVICE_CATALOG}",
                            self.request.name, self.argo.argocd_namespace
                        )
                    })?;
            }
            Op::Seed(step) => seed::execute(&self.cfg, &self.gitlab, &self.vault, step).await?,
            Op::ServiceSecrets => {
                // Created once (check-and-set 0): a secret that appeared since the plan stays.
                let id = self.project_id().await?;
                let seed = vault_cicd::desired::KvSeed {
                    path: kv_service_secrets(id),
                    data: vault_cicd::service_paths::SERVICE_KEYS
                        .iter()
                        .map(|k| ((*k).to_owned(), vault_cicd::desired::PLACEHOLDER.to_owned()))
                        .collect(),
                    placeholder: true,
                    eso_reads: false,
                };
                if !vault_cicd::service_paths::seed(&self.vault, &seed, &self.project_path())
                    .await?
                {
                    return Ok(Outcome::Skipped(
                        "kv/services/<project id> already existed: kept as it is".into(),
                    ));
                }
            }
            Op::Harden => {
                let applied = common::phase::apply_quietly(&self.harden().await?)
                    .await
                    .with_context(|| {
                        format!(
                            "hardening {} as phase 12 does (rerun apply to finish)",
                            self.project_path()
                        )
                    })?;
                tracing::info!("hardened {}: {applied} change(s)", self.project_path());
            }
            Op::FlagPolicy { name, text } => self.vault.put_policy(name, text).await?,
            Op::FlagRole => {
                let path = format!(
                    "auth/{K8S_MOUNT}/role/{}",
                    contract::feature_flag_role_name(&self.request.name)
                );
                self.vault
                    .write(
                        &format!("writing Vault role {path} (phase 13, vault-cicd apply, enables Kubernetes auth)"),
                        &path,
                        &flag_role(&self.request),
                    )
                    .await?;
            }
            Op::Apply { object, crd } => {
                self.kube
                    .apply_planned(object, crd.as_deref(), self.crd_wait)
                    .await?;
            }
        }
        Ok(Outcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Pattern;

    const TODAY: i64 = 20_000;
    fn platform() -> Platform {
        Platform {
            registry: "harbor.example.com".into(),
            vault_addr: "https://vault.example.com".into(),
            runner_namespace: "gitlab-runners".into(),
            domain: Some("example.com".into()),
            approver_parent: "keycloak-groups".into(),
            library_project: "platform_services/gitlab-ci-templates".into(),
        }
    }

    fn request(strategy: &str) -> Request {
        Request::new("billing-api", "go", Pattern::Microservice, strategy).unwrap()
    }

    fn fresh() -> Observed {
        Observed {
            template: service_template::template_files(),
            catalog: BTreeMap::new(),
            project: seed::Observed {
                today: TODAY,
                ..seed::Observed::default()
            },
            secrets_present: false,
            hardening: Vec::new(),
            flag_policy: None,
            flag_role: None,
            project_marked: false,
            foreign_objects: Vec::new(),
        }
    }

    fn converged(r: &Request) -> Observed {
        let o = fresh();
        let mut wanted = wanted_project(r, &o.template, &platform()).unwrap();
        wanted
            .files
            .insert(".gitlab/CODEOWNERS".into(), "owners".into());
        Observed {
            catalog: BTreeMap::from([(
                r.name.clone(),
                serde_json::to_string(&catalog_entry(r)).unwrap(),
            )]),
            project: seed::Observed::as_seeded(&wanted, 42, TODAY),
            secrets_present: true,
            flag_policy: Some(contract::feature_flag_policy(&r.name)),
            flag_role: Some(flag_role(r)),
            project_marked: true,
            ..o
        }
    }

    #[test]
    fn noop_an_onboarded_service_plans_nothing() {
        let r = request("canary");
        let plan = diff(&r, &converged(&r), &platform()).unwrap();
        assert!(plan.is_empty(), "{plan}");
    }

    #[test]
    fn onboarding_from_nothing() {
        let plan = diff(&request("canary"), &fresh(), &platform()).unwrap();
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn a_foreign_project_or_a_changed_language_is_refused() {
        let r = request("canary");
        let mut o = converged(&r);
        o.catalog.clear();
        o.project_marked = false;
        let e = diff(&r, &o, &platform()).unwrap_err().to_string();
        assert!(e.contains("not created by onboard-service"), "{e}");
        // Its own project (marked) whose catalog key was lost: the key comes back, nothing else.
        o.project_marked = true;
        let plan = diff(&r, &o, &platform()).unwrap();
        let titles: Vec<String> = plan
            .changes
            .iter()
            .map(common::plan::Change::title)
            .collect();
        assert_eq!(
            titles,
            ["service catalog entry cicd-service-catalog: billing-api"]
        );
        // Someone else's Application by that name.
        let mut fresh = fresh();
        fresh.foreign_objects = vec!["Application argocd/billing-api".into()];
        let e = diff(&r, &fresh, &platform()).unwrap_err().to_string();
        assert!(e.contains("Application argocd/billing-api"), "{e}");
        let blue = request("bluegreen");
        let e = diff(&blue, &converged(&r), &platform())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("already onboarded as go with strategy canary"),
            "{e}"
        );
    }

    #[test]
    fn a_team_s_changed_and_deleted_files_are_kept_and_phase_12_drift_is_planned() {
        let r = request("canary");
        let mut o = converged(&r);
        o.project
            .files
            .insert("Makefile".into(), "changed by the team".into());
        o.project.files.remove("README.md");
        o.hardening = vec!["protected branch platform_services/billing-api:main".into()];
        let plan = diff(&r, &o, &platform()).unwrap();
        let titles: Vec<String> = plan
            .changes
            .iter()
            .map(common::plan::Change::title)
            .collect();
        assert_eq!(
            titles,
            ["gitlab hardening (phase 12) platform_services/billing-api"]
        );
    }
}
