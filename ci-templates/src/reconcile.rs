//! Observe GitLab, Harbor and Vault (reads only), a pure [`diff`] to a [`Plan`], the executor,
//! and `rotate-robot`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::gitlab::{CiVariable, GitLabClient, git_blob_id};
use common::harbor::{HarborClient, Robot, RobotSecret};
use common::phase::{Outcome, Phase, lock};
use common::plan::{Change, Plan, changed_fields};
use common::vault::{KvMetadata, VaultClient};
use secrecy::ExposeSecret as _;
use seeded_projects::seed::{self, SeedOp};
use seeded_projects::service_template;
use serde_json::{Value, json};

use crate::bash_leftovers::{self, BASH_PUSH_SECRET, Candidates, StoredSecret};
use crate::desired::{
    self, HARBOR_PROJECTS, HarborProject, KV_MOUNT, MANAGED_BY, ROBOTS, RobotAccount,
};
use crate::settings::Settings;

pub const PHASE_NAME: &str = "14 ci-templates";
const BRANCH: &str = "main";

#[derive(Debug, Clone)]
pub enum Op {
    CreateTemplatesProject {
        namespace_id: u64,
    },
    CommitLibrary {
        actions: Vec<Value>,
        message: String,
    },
    TagLibrary {
        tag: String,
    },
    /// A step of seeding the service template project (`seeded_projects::service_template`).
    SeedServiceTemplate(SeedOp),
    SetVariable {
        /// The variables group (known from the observation).
        group: u64,
        variable: CiVariable,
        exists: bool,
    },
    CreateHarborProject {
        spec: HarborProject,
    },
    UpdateHarborProject {
        id: u64,
        metadata: Value,
    },
    CreateRetention {
        project: &'static str,
        spec: HarborProject,
    },
    UpdateRetention {
        id: u64,
        policy: Value,
    },
    CreateImmutableRule {
        project: &'static str,
    },
    UpdateImmutableRule {
        project: &'static str,
        rule: u64,
    },
    /// Creates the robot and stores its secret in Vault in the same step.
    CreateRobot {
        robot: RobotAccount,
    },
    UpdateRobot {
        id: u64,
        full_name: String,
        robot: RobotAccount,
    },
    /// The robot exists but Vault has no secret for it (or the bash phase knows it): a new
    /// secret, stored.
    StoreRobotSecret {
        id: u64,
        full_name: String,
        robot: RobotAccount,
    },
    /// A robot the bash phase left (see [`crate::bash_leftovers`]).
    DeleteRobot {
        id: u64,
        name: String,
    },
    /// The bash phase's stale copy of a robot secret: the KV v2 metadata and every version.
    DeleteStaleSecret {
        path: &'static str,
    },
}

/// What a Harbor project looks like now.
#[derive(Debug, Clone)]
pub struct HarborProjectState {
    pub id: u64,
    pub metadata: serde_json::Map<String, Value>,
    /// `(id, policy)` when the project has a retention policy.
    pub retention: Option<(u64, Value)>,
    pub immutable_rules: Vec<Value>,
}

/// Everything [`diff`] needs.
#[derive(Debug)]
pub struct Observed {
    pub group_id: u64,
    /// Group the library project lives in.
    pub namespace_id: u64,
    /// The library project: id, and blob id of each file on `main`.
    pub templates: Option<(u64, BTreeMap<String, String>)>,
    /// The commit the version tag points at, if tagged.
    pub tag_target: Option<String>,
    pub variables: Vec<CiVariable>,
    pub harbor_projects: BTreeMap<&'static str, Option<HarborProjectState>>,
    pub robots: BTreeMap<&'static str, Option<Robot>>,
    /// KV metadata at each robot's Vault path.
    pub robot_secrets: BTreeMap<&'static str, Option<KvMetadata>>,
    /// What may be left by the bash phase 14 (the diff decides by identity).
    pub bash: Candidates,
    /// The service template project (`<library group>/service-template`).
    pub service_template: seed::Observed,
}

pub struct CiTemplates {
    cfg: PlatformConfig,
    gitlab: GitLabClient,
    harbor: HarborClient,
    vault: VaultClient,
    settings: Settings,
    /// The library project's id once known (observed, or created by apply).
    project_id: Mutex<Option<u64>>,
}

impl CiTemplates {
    pub fn connect(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            settings: Settings::load(cfg)?,
            gitlab: GitLabClient::connect(cfg)?,
            harbor: HarborClient::connect(cfg)?,
            vault: VaultClient::connect(cfg)?,
            project_id: Mutex::new(None),
        })
    }

    fn project_id(&self) -> anyhow::Result<u64> {
        lock(&self.project_id)
            .context("the library project does not exist yet (it is created earlier in the same apply; rerun apply)")
    }

    async fn harbor_project_id(&self, name: &str) -> anyhow::Result<u64> {
        Ok(self
            .harbor
            .project(name)
            .await?
            .with_context(|| format!("Harbor project {name} does not exist (rerun apply)"))?
            .project_id)
    }

    /// Stores a robot's secret at its Vault path (never printed anywhere).
    async fn store_secret(&self, robot: &RobotAccount, secret: &RobotSecret) -> anyhow::Result<()> {
        let data = BTreeMap::from([
            ("username".to_owned(), secret.name.clone()),
            (
                "password".to_owned(),
                secret.secret.expose_secret().to_owned(),
            ),
            ("registry".to_owned(), self.settings.harbor_registry.clone()),
        ]);
        let metadata = BTreeMap::from([
            ("managed-by".to_owned(), MANAGED_BY.to_owned()),
            ("harbor-robot".to_owned(), secret.name.clone()),
            ("harbor-robot-id".to_owned(), secret.id.to_string()),
        ]);
        self.vault
            .kv2_put(KV_MOUNT, robot.vault_path, &data, &metadata)
            .await
            .with_context(|| {
                format!(
                    "storing the secret of robot {} at {KV_MOUNT}/{} (the robot exists; rerun apply or `ci-templates rotate-robot {}` to issue and store a new secret)",
                    secret.name, robot.vault_path, robot.name
                )
            })
    }

    /// `rotate-robot NAME`: a new secret from Harbor, stored in Vault; returns the Vault path.
    pub async fn rotate(&self, name: &str) -> anyhow::Result<String> {
        let robot = ROBOTS.iter().find(|r| r.name == name).with_context(|| {
            format!(
                "no robot {name}: choose one of {}",
                ROBOTS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
            )
        })?;
        self.vault.require_kv2(KV_MOUNT, "robot secrets go").await?;
        let existing = self.harbor.robot(name).await?.with_context(|| {
            format!("Harbor has no robot {name}: run `ci-templates apply` first")
        })?;
        let secret = self
            .harbor
            .refresh_robot_secret(existing.id, &existing.name)
            .await?;
        self.store_secret(robot, &secret).await?;
        Ok(format!("{KV_MOUNT}/{}", robot.vault_path))
    }

    /// The shape of the KV v2 secret at `path` (keys, `username`, our mark) when its current
    /// version is live; the password is never kept (and is registered for redaction).
    async fn stored_secret(&self, path: &str) -> anyhow::Result<Option<StoredSecret>> {
        let Some(meta) = self.vault.kv2_metadata(KV_MOUNT, path).await? else {
            return Ok(None);
        };
        if meta.current_deleted {
            return Ok(None);
        }
        let Some(data) = self.vault.kv2_read(KV_MOUNT, path).await? else {
            return Ok(None);
        };
        if let Some(password) = data.get("password").and_then(Value::as_str) {
            common::redact::register(password);
        }
        Ok(Some(StoredSecret {
            keys: data.keys().cloned().collect(),
            username: data
                .get("username")
                .and_then(Value::as_str)
                .map(str::to_owned),
            managed_by: meta.custom_metadata.get("managed-by").cloned(),
        }))
    }
}

impl Phase for CiTemplates {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        let s = &self.settings;
        let group = self
            .gitlab
            .group(&s.variables_group)
            .await?
            .with_context(|| {
                format!(
                    "GitLab group {} not found: create it (phase 12 hardens it) or set {}",
                    s.variables_group,
                    common::env::CI_VARIABLES_GROUP
                )
            })?;
        let (namespace, _) = s.templates_namespace();
        let namespace_id = if namespace == s.variables_group {
            group.id
        } else {
            self.gitlab
                .group(namespace)
                .await?
                .with_context(|| {
                    format!(
                        "GitLab group {namespace} (of {}) not found: create it first",
                        s.templates_project
                    )
                })?
                .id
        };
        let templates = match self.gitlab.project(&s.templates_project).await? {
            Some(project) => {
                let files = self
                    .gitlab
                    .repository_files(project.id, BRANCH)
                    .await?
                    .into_iter()
                    .map(|e| (e.path, e.id))
                    .collect();
                *lock(&self.project_id) = Some(project.id);
                Some((project.id, files))
            }
            None => None,
        };
        let tag_target = match &templates {
            Some((id, _)) => self.gitlab.tag_target(*id, &desired::library_tag()).await?,
            None => None,
        };
        let variables = self.gitlab.group_variables(group.id).await?;

        let mut harbor_projects = BTreeMap::new();
        for spec in HARBOR_PROJECTS {
            let state = match self.harbor.project(spec.name).await? {
                Some(p) => {
                    let retention = match p
                        .metadata
                        .get("retention_id")
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        Some(id) => Some((id, self.harbor.retention(id).await?)),
                        None => None,
                    };
                    let immutable_rules = self.harbor.immutable_rules(p.project_id).await?;
                    Some(HarborProjectState {
                        id: p.project_id,
                        metadata: p.metadata,
                        retention,
                        immutable_rules,
                    })
                }
                None => None,
            };
            harbor_projects.insert(spec.name, state);
        }
        let mut robots = BTreeMap::new();
        let mut robot_secrets = BTreeMap::new();
        let mut bash = Candidates::default();
        self.vault.require_kv2(KV_MOUNT, "robot secrets go").await?;
        for robot in ROBOTS {
            let named_like = self.harbor.robots_matching(robot.name).await?;
            let ours = HarborClient::system_robot(&named_like, robot.name).cloned();
            for other in named_like {
                let seen = bash.robots.iter().any(|r| r.id == other.id);
                if ours.as_ref().is_none_or(|o| o.id != other.id) && !seen {
                    bash.robots.push(other);
                }
            }
            robots.insert(robot.name, ours);
            robot_secrets.insert(
                robot.name,
                self.vault.kv2_metadata(KV_MOUNT, robot.vault_path).await?,
            );
        }
        bash.push_secret = self.stored_secret(BASH_PUSH_SECRET).await?;
        let template = service_template_wanted(&self.settings);
        let service_template =
            seed::observe(&self.gitlab, &self.vault, &template.path(), &template.tag).await?;
        Ok(Observed {
            group_id: group.id,
            namespace_id,
            templates,
            tag_target,
            variables,
            harbor_projects,
            robots,
            robot_secrets,
            bash,
            service_template,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.settings, observed)
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        match op {
            Op::CreateTemplatesProject { namespace_id } => {
                let (_, name) = self.settings.templates_namespace();
                let project = self
                    .gitlab
                    .create_project(name, *namespace_id, "The platform's GitLab CI template library (managed by cicd-buildout phase 14)")
                    .await?;
                *lock(&self.project_id) = Some(project.id);
            }
            Op::CommitLibrary { actions, message } => {
                self.gitlab
                    .commit(self.project_id()?, BRANCH, message, actions)
                    .await?;
            }
            Op::SeedServiceTemplate(op) => {
                seed::execute(&self.cfg, &self.gitlab, &self.vault, op).await?;
            }
            Op::TagLibrary { tag } => {
                self.gitlab
                    .create_tag(
                        self.project_id()?,
                        tag,
                        BRANCH,
                        &format!("gitlab-ci-templates {tag}"),
                    )
                    .await?;
            }
            Op::SetVariable {
                group,
                variable,
                exists,
            } => {
                if *exists {
                    self.gitlab.update_group_variable(*group, variable).await?;
                } else {
                    self.gitlab.create_group_variable(*group, variable).await?;
                }
            }
            Op::CreateHarborProject { spec } => {
                self.harbor.create_project(&spec.create_body()).await?;
            }
            Op::UpdateHarborProject { id, metadata } => {
                self.harbor
                    .update_project(*id, &json!({"metadata": metadata}))
                    .await?;
            }
            Op::CreateRetention { project, spec } => {
                let id = self.harbor_project_id(project).await?;
                self.harbor
                    .create_retention(&spec.retention_policy(id))
                    .await?;
            }
            Op::UpdateRetention { id, policy } => self.harbor.update_retention(*id, policy).await?,
            Op::CreateImmutableRule { project } => {
                let id = self.harbor_project_id(project).await?;
                self.harbor
                    .create_immutable_rule(id, &desired::immutable_rule())
                    .await?;
            }
            Op::UpdateImmutableRule { project, rule } => {
                let id = self.harbor_project_id(project).await?;
                self.harbor
                    .update_immutable_rule(id, *rule, &desired::immutable_rule())
                    .await?;
            }
            Op::CreateRobot { robot } => {
                let secret = self.harbor.create_robot(&robot.create_body()).await?;
                self.store_secret(robot, &secret).await?;
            }
            Op::UpdateRobot {
                id,
                full_name,
                robot,
            } => {
                let mut body = robot.create_body();
                body["id"] = (*id).into();
                body["name"] = full_name.clone().into();
                self.harbor.update_robot(*id, &body).await?;
            }
            Op::StoreRobotSecret {
                id,
                full_name,
                robot,
            } => {
                let secret = self.harbor.refresh_robot_secret(*id, full_name).await?;
                self.store_secret(robot, &secret).await?;
            }
            Op::DeleteRobot { id, name } => self.harbor.delete_robot(*id, name).await?,
            Op::DeleteStaleSecret { path } => {
                self.vault
                    .kv2_delete_metadata(KV_MOUNT, path)
                    .await
                    .with_context(|| {
                        format!(
                            "the bash phase's stale secret {KV_MOUNT}/{path} is still there: rerun apply, or delete it by hand (vault kv metadata delete {KV_MOUNT}/{path})"
                        )
                    })?;
            }
        }
        Ok(Outcome::Applied)
    }
}

/// The commit that makes the library project match the embedded files: create, update (blob id
/// differs) and delete (not part of the library) actions, sorted by path.
pub fn library_actions(
    observed: &BTreeMap<String, String>,
    approver_parent: &str,
) -> (Vec<Value>, Vec<String>) {
    // The library is the platform's: platform-admins own it. Its CODEOWNERS is created once when
    // none exists and never deleted or reset (phase 12 and the platform team may edit it).
    let library: BTreeMap<String, String> = desired::library_files()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let with_owners = common::codeowners::with_default(
        &library,
        observed,
        common::codeowners::OwnersKind::Infrastructure,
        approver_parent,
    );
    let wanted: BTreeMap<&str, &str> = with_owners
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut actions = Vec::new();
    let mut lines = Vec::new();
    for (path, content) in &wanted {
        match observed.get(*path) {
            None => {
                actions.push(json!({"action": "create", "file_path": path, "content": content}));
                lines.push(format!("+ {path}"));
            }
            Some(blob) if *blob != git_blob_id(content) => {
                actions.push(json!({"action": "update", "file_path": path, "content": content}));
                lines.push(format!("~ {path}"));
            }
            Some(_) => {}
        }
    }
    for path in observed.keys() {
        if !wanted.contains_key(path.as_str())
            && !common::codeowners::LOCATIONS.contains(&path.as_str())
        {
            actions.push(json!({"action": "delete", "file_path": path}));
            lines.push(format!("- {path}"));
        }
    }
    (actions, lines)
}

fn metadata_diff(
    spec: &HarborProject,
    have: &serde_json::Map<String, Value>,
) -> Option<(Value, Value)> {
    changed_fields(&Value::Object(have.clone()), &json!(spec.metadata()))
}

/// The parts of a retention policy this phase owns.
fn retention_view(policy: &Value) -> Value {
    json!({"algorithm": policy["algorithm"], "rules": policy["rules"].as_array().map(|rules| rules.iter().map(|r| json!({
        "action": r["action"], "template": r["template"], "params": r["params"], "disabled": r["disabled"].as_bool().unwrap_or(false),
        "tag_selectors": r["tag_selectors"], "scope_selectors": r["scope_selectors"],
    })).collect::<Vec<_>>()), "trigger": {"kind": policy["trigger"]["kind"], "settings": policy["trigger"]["settings"]}})
}

fn immutable_view(rule: &Value) -> Value {
    json!({"disabled": rule["disabled"].as_bool().unwrap_or(false), "action": rule["action"], "template": rule["template"],
           "tag_selectors": rule["tag_selectors"], "scope_selectors": rule["scope_selectors"]})
}

fn create_retention(spec: &HarborProject) -> Change<Op> {
    Change::create(
        "harbor retention",
        spec.name,
        spec.retention_rules(),
        &[],
        Op::CreateRetention {
            project: spec.name,
            spec: spec.clone(),
        },
    )
}

fn create_immutable_rule(spec: &HarborProject) -> Change<Op> {
    Change::create(
        "harbor immutable rule",
        spec.name,
        desired::immutable_rule(),
        &[],
        Op::CreateImmutableRule { project: spec.name },
    )
}

/// What phase 14 wants the service template project to be: the template of this version, in the
/// library's group, tagged `v<template version>`; no promotion token (it runs no pipeline).
pub fn service_template_wanted(s: &Settings) -> seed::Wanted {
    let tag = service_template::tag();
    seed::Wanted {
        group: s.templates_namespace().0.to_owned(),
        name: service_template::PROJECT.to_owned(),
        description: "The platform's service template (plan §6.4): onboard-service creates services from its version tags (managed by cicd-buildout phase 14)".to_owned(),
        files: service_template::template_files(),
        tag: tag.clone(),
        tag_message: format!("service-template {tag}: what onboard-service renders"),
        commit_message: format!("service-template {tag} (cicd-buildout phase 14)"),
        policy: seed::Policy::Exact,
        approver_parent: s.approver_parent.clone(),
        promote_token: false,
    }
}

/// The pure diff.
pub fn diff(s: &Settings, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    let tag = desired::library_tag();

    // The library project, its files, its version tag.
    let empty = BTreeMap::new();
    let observed_files = o.templates.as_ref().map_or(&empty, |(_, files)| files);
    if o.templates.is_none() {
        plan.push(Change::create(
            "gitlab project",
            &s.templates_project,
            json!({"visibility": "internal", "default_branch": BRANCH}),
            &[],
            Op::CreateTemplatesProject {
                namespace_id: o.namespace_id,
            },
        ));
    }
    let (actions, lines) = library_actions(observed_files, &s.approver_parent);
    let changed = !actions.is_empty();
    if changed {
        let message = format!(
            "gitlab-ci-templates {tag}: {} file(s) changed (cicd-buildout phase 14)",
            actions.len()
        );
        let mut change = Change::update(
            "library commit",
            &format!("{}@{BRANCH}", s.templates_project),
            json!({}),
            json!({}),
            &[],
            Op::CommitLibrary { actions, message },
        );
        change.diff = lines;
        plan.push(change);
    }
    match &o.tag_target {
        None => plan.push(Change::create(
            "gitlab tag",
            &format!("{}@{tag}", s.templates_project),
            json!({"ref": BRANCH}),
            &[],
            Op::TagLibrary { tag: tag.clone() },
        )),
        Some(_) if changed => plan.warn(format!(
            "{tag} already tags an older commit of {}: the changed files reach `main`, but services pinned to {tag} keep the old ones — raise the ci-templates version to release them",
            s.templates_project
        )),
        Some(_) => {}
    }
    // The service template (plan §6.4) beside the library, committed the same way: only the
    // files that differ, then its version tag, which onboard-service reads.
    seed::plan(
        &service_template_wanted(s),
        &o.service_template,
        &mut plan,
        Op::SeedServiceTemplate,
    );

    // Group CI/CD variables (plan §1.3).
    for want in desired::group_variables(s) {
        let have = o
            .variables
            .iter()
            .find(|v| v.key == want.key && v.environment_scope == want.environment_scope);
        let view = |v: &CiVariable| json!({"value": v.value, "protected": v.protected, "masked": v.masked, "raw": v.raw});
        match have {
            None => plan.push(Change::create(
                "group variable",
                &format!("{}: {}", s.variables_group, want.key),
                view(&want),
                &[],
                Op::SetVariable {
                    group: o.group_id,
                    variable: want,
                    exists: false,
                },
            )),
            Some(h) if h != &want => plan.push(Change::update(
                "group variable",
                &format!("{}: {}", s.variables_group, want.key),
                view(h),
                view(&want),
                &[],
                Op::SetVariable {
                    group: o.group_id,
                    variable: want,
                    exists: true,
                },
            )),
            Some(_) => {}
        }
    }

    // Harbor projects and their policies (plan §3.3).
    for spec in HARBOR_PROJECTS {
        match o.harbor_projects.get(spec.name).and_then(Option::as_ref) {
            None => {
                plan.push(Change::create(
                    "harbor project",
                    spec.name,
                    json!({"metadata": spec.metadata()}),
                    &[],
                    Op::CreateHarborProject { spec: spec.clone() },
                ));
                plan.push(create_retention(spec));
                if spec.immutable_semver {
                    plan.push(create_immutable_rule(spec));
                }
            }
            Some(state) => {
                if let Some((before, after)) = metadata_diff(spec, &state.metadata) {
                    plan.push(Change::update(
                        "harbor project",
                        spec.name,
                        before,
                        after.clone(),
                        &[],
                        Op::UpdateHarborProject {
                            id: state.id,
                            metadata: after,
                        },
                    ));
                }
                let want = spec.retention_policy(state.id);
                match &state.retention {
                    None => plan.push(create_retention(spec)),
                    Some((id, have)) if retention_view(have) != retention_view(&want) => {
                        plan.push(Change::update(
                            "harbor retention",
                            spec.name,
                            retention_view(have),
                            retention_view(&want),
                            &[],
                            Op::UpdateRetention {
                                id: *id,
                                policy: want,
                            },
                        ));
                    }
                    Some(_) => {}
                }
                let semver_rule = state.immutable_rules.iter().find(|r| {
                    r["tag_selectors"].as_array().is_some_and(|t| {
                        t.iter()
                            .any(|sel| sel["pattern"] == desired::IMMUTABLE_TAG_PATTERN)
                    })
                });
                match (spec.immutable_semver, semver_rule) {
                    (true, None) => plan.push(create_immutable_rule(spec)),
                    (true, Some(rule))
                        if immutable_view(rule) != immutable_view(&desired::immutable_rule()) =>
                    {
                        plan.push(Change::update(
                            "harbor immutable rule",
                            spec.name,
                            immutable_view(rule),
                            immutable_view(&desired::immutable_rule()),
                            &[],
                            Op::UpdateImmutableRule {
                                project: spec.name,
                                rule: rule["id"].as_u64().unwrap_or_default(),
                            },
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    // Robot accounts: created once, reconciled in place, never recreated.
    for robot in ROBOTS {
        let vault_view =
            json!({"secret": format!("{KV_MOUNT}/{} (username, password)", robot.vault_path)});
        match o.robots.get(robot.name).and_then(Option::as_ref) {
            None => {
                let mut after = robot.view();
                after["vault"] = vault_view["secret"].clone();
                plan.push(Change::create(
                    "harbor robot",
                    robot.name,
                    after,
                    &[],
                    Op::CreateRobot {
                        robot: robot.clone(),
                    },
                ));
            }
            Some(have) => {
                // A robot the bash phase made under our name is adopted: converged and given a
                // new secret, so the one the bash phase stored stops working.
                let bash = bash_leftovers::bash_system_robot(have);
                let tag = |change: Change<Op>| match &bash {
                    Some(identity) => change.left_by_bash(identity),
                    None => change,
                };
                let current = desired::robot_view(
                    &have.description,
                    have.duration,
                    have.disable,
                    &have.permissions,
                );
                if current != robot.view() {
                    plan.push(tag(Change::update(
                        "harbor robot",
                        robot.name,
                        current,
                        robot.view(),
                        &[],
                        Op::UpdateRobot {
                            id: have.id,
                            full_name: have.name.clone(),
                            robot: robot.clone(),
                        },
                    )));
                }
                let stored = o
                    .robot_secrets
                    .get(robot.name)
                    .and_then(Option::as_ref)
                    .is_some_and(|m| {
                        !m.current_deleted
                            && m.custom_metadata
                                .get("harbor-robot-id")
                                .is_some_and(|id| *id == have.id.to_string())
                    });
                if !stored || bash.is_some() {
                    plan.push(tag(Change::update(
                        "robot secret",
                        &format!("{} → {KV_MOUNT}/{}", have.name, robot.vault_path),
                        json!({"stored": false}),
                        json!({"stored": true, "how": "a new secret from Harbor, written to Vault"}),
                        &[],
                        Op::StoreRobotSecret { id: have.id, full_name: have.name.clone(), robot: robot.clone() },
                    )));
                }
            }
        }
    }
    // The bash phase's project robots and its stale copy of the ci-push secret.
    bash_leftovers::diff(&mut plan, &o.bash);
    Ok(plan)
}
