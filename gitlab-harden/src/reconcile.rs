//! Observe (reads only, in parallel), a pure [`diff`] to a [`Plan`], and the executor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::gitlab::{
    AccessLevelEntry, ApprovalRule, GitLabClient, Group, Member, Project, ProtectedBranch,
    ProtectedTag, RELEASE_TAG_PATTERN, Tier, UserIndex, access, protect_tag_body,
};
use common::keycloak::{KeycloakClient, KeycloakUser};
use common::kube::KubeClient;
use common::phase::{DesiredObject, Lane, Outcome, Phase, lock};
use common::plan::{Change, Plan};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Map, Value, json};

use crate::desired::{
    self, APPROVER_GROUPS, BranchProtection, GroupMembership, INGRESSROUTETCP_CRD, MANAGED_RULES,
    MissingUser, ProjectKind, RuleSpec,
};
use crate::settings::{MAIN_BRANCH, Settings};

pub const PHASE_NAME: &str = "12 gitlab-harden";
pub const FIELD_MANAGER: &str = "cicd-buildout/gitlab-harden";

/// One change phase 12 can make.
#[derive(Debug, Clone)]
pub enum Op {
    /// A GitLab group (an approver mirror or its parent).
    CreateGroup {
        path: String,
    },
    EditProject {
        project: u64,
        body: Value,
    },
    ProtectBranch {
        project: u64,
        body: Value,
    },
    UpdateProtectedBranch {
        project: u64,
        body: Value,
    },
    /// `POST …/protected_tags`.
    ProtectTag {
        project: u64,
        body: Value,
    },
    /// GitLab cannot update a protected tag: unprotect `name`, then protect with `body`.
    ReprotectTag {
        project: u64,
        name: String,
        body: Value,
    },
    UpdateApprovalSettings {
        project: u64,
        body: Value,
    },
    CreateApprovalRule {
        project: u64,
        rule: RuleSpec,
        branch: Option<u64>,
    },
    UpdateApprovalRule {
        project: u64,
        id: u64,
        rule: RuleSpec,
        branch: Option<u64>,
    },
    DeleteApprovalRule {
        project: u64,
        id: u64,
    },
    AddMember {
        group: String,
        user: u64,
        level: u8,
    },
    EditMember {
        group: String,
        user: u64,
        level: u8,
    },
    RemoveMember {
        group: String,
        user: u64,
    },
    KubeApply {
        object: Value,
    },
}

/// What one project looks like now.
#[derive(Debug, Clone)]
pub struct ProjectState {
    pub project: Project,
    pub kind: ProjectKind,
    pub main: Option<ProtectedBranch>,
    /// The protection of release tags (`v*`), if any.
    pub release_tag: Option<ProtectedTag>,
    /// `None` on Free.
    pub approval_settings: Option<Map<String, Value>>,
    pub rules: Vec<ApprovalRule>,
}

/// What phase 12 makes true: the settings, and whether `--prune` removes memberships the
/// settings do not grant (a CLI flag, kept out of [`Settings`]).
#[derive(Debug, Clone)]
pub struct Desired {
    pub settings: Settings,
    pub prune: bool,
}

/// Everything [`diff`] needs, read from GitLab and Keycloak.
#[derive(Debug)]
pub struct Observed {
    pub tier: Tier,
    pub token_user: u64,
    pub projects: Vec<ProjectState>,
    /// Groups by full path (`None`: does not exist yet).
    pub groups: BTreeMap<String, Option<Group>>,
    /// Direct members of the membership targets that exist.
    pub members: BTreeMap<String, Vec<Member>>,
    pub users: UserIndex,
    /// Members of each mapped Keycloak group (subgroups included); `None` when the sync is off.
    pub keycloak: Option<BTreeMap<String, Vec<KeycloakUser>>>,
    /// Mapped Keycloak groups that do not exist.
    pub missing_keycloak_groups: Vec<String>,
    /// GitLab's instance registry still runs (Deployment `gitlab-registry`).
    pub registry_running: bool,
}

/// Phase 12, connected.
pub struct GitLabHarden {
    gitlab: GitLabClient,
    keycloak: Option<KeycloakClient>,
    kube: Option<KubeClient>,
    desired: Desired,
    crd_wait: Duration,
    /// Group ids by full path, from the observation and from groups created by `apply`.
    group_ids: Mutex<BTreeMap<String, u64>>,
    /// Id of each project's protected `main`, learned when `apply` protects it.
    branch_ids: Mutex<BTreeMap<u64, u64>>,
}

impl GitLabHarden {
    pub async fn connect(cfg: &PlatformConfig, prune: bool) -> anyhow::Result<Self> {
        let settings = Settings::load(cfg)?;
        let gitlab = GitLabClient::connect(cfg)?;
        let keycloak = if settings.keycloak_sync {
            Some(
                KeycloakClient::connect(cfg)
                    .await
                    .context("reading Keycloak groups (set GITLAB_KEYCLOAK_SYNC=false to skip the membership sync)")?,
            )
        } else {
            None
        };
        let kube = if settings.ssh_route {
            Some(KubeClient::connect(cfg, FIELD_MANAGER).await?)
        } else {
            None
        };
        let crd_wait = cfg.crd_wait();
        Ok(Self {
            gitlab,
            keycloak,
            kube,
            desired: Desired { settings, prune },
            crd_wait,
            group_ids: Mutex::new(BTreeMap::new()),
            branch_ids: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn gitlab(&self) -> &GitLabClient {
        &self.gitlab
    }

    /// Whether GitLab's instance registry still runs (a Helm value this phase cannot change).
    async fn registry_running(&self) -> anyhow::Result<bool> {
        let Some(kube) = &self.kube else {
            return Ok(false);
        };
        let registry = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gitlab-registry", "namespace": self.desired.settings.gitlab_namespace},
        });
        Ok(kube.get(&registry).await?.is_some())
    }

    fn group_id(&self, path: &str) -> anyhow::Result<u64> {
        lock(&self.group_ids).get(path).copied().with_context(|| {
            format!("GitLab group {path} does not exist (it is created earlier in the same apply; rerun apply)")
        })
    }

    async fn branch_id(&self, project: u64, planned: Option<u64>) -> anyhow::Result<u64> {
        if let Some(id) = planned.or_else(|| lock(&self.branch_ids).get(&project).copied()) {
            return Ok(id);
        }
        let branch = self
            .gitlab
            .protected_branch(project, MAIN_BRANCH)
            .await?
            .with_context(|| format!("project {project}: {MAIN_BRANCH} is not protected, so an approval rule cannot be scoped to it"))?;
        Ok(branch.id)
    }

    async fn rule_body(
        &self,
        project: u64,
        rule: &RuleSpec,
        branch: Option<u64>,
    ) -> anyhow::Result<Value> {
        let branch = self.branch_id(project, branch).await?;
        let group_ids = rule
            .groups
            .iter()
            .map(|g| self.group_id(g))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        Ok(json!({
            "name": rule.name,
            "approvals_required": rule.approvals_required,
            "group_ids": group_ids,
            "user_ids": [],
            "protected_branch_ids": [branch],
            "applies_to_all_protected_branches": false,
        }))
    }
}

impl Phase for GitLabHarden {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    /// Reads everything the diff needs. Per project: protected `main`, protected `v*`, and on
    /// Premium the approval settings and rules — four reads (two on Free), run
    /// `GITLAB_CONCURRENCY` projects at a time.
    async fn observe(&self) -> anyhow::Result<Observed> {
        let tier = self.gitlab.tier().await?;
        let me = self.gitlab.current_user().await?;
        let mut groups = BTreeMap::new();
        let mut projects: BTreeMap<u64, Project> = BTreeMap::new();
        for path in &self.desired.settings.groups {
            let group = self.gitlab.group(path).await?.with_context(|| {
                format!(
                    "GitLab group {path} not found (or not visible to the token's user {}): create it, or set {} to the groups to harden",
                    me.username,
                    common::env::GITLAB_GROUPS
                )
            })?;
            for project in self.gitlab.group_projects(&group).await? {
                if !project.archived {
                    projects.insert(project.id, project);
                }
            }
            groups.insert(path.clone(), Some(group));
        }
        if tier.is_paid() {
            let parent = &self.desired.settings.approver_parent;
            if !parent.is_empty() {
                groups.insert(parent.clone(), self.gitlab.group(parent).await?);
            }
            for name in APPROVER_GROUPS {
                let path = self.desired.settings.approver_group(name);
                let group = match groups.get(parent) {
                    Some(None) => None, // the parent does not exist, so neither can its children
                    _ => self.gitlab.group(&path).await?,
                };
                groups.insert(path, group);
            }
        }
        let settings = &self.desired.settings;
        let gitlab = &self.gitlab;
        let mut states: Vec<ProjectState> = futures::stream::iter(projects.into_values())
            .map(|project| async move {
                let main = gitlab.protected_branch(project.id, MAIN_BRANCH).await?;
                let release_tag = gitlab
                    .protected_tag(project.id, RELEASE_TAG_PATTERN)
                    .await?;
                let (approval_settings, rules) = if tier.is_paid() {
                    let s = gitlab.approval_settings(project.id).await?;
                    (
                        Some(s.as_object().cloned().unwrap_or_default()),
                        gitlab.approval_rules(project.id).await?,
                    )
                } else {
                    (None, Vec::new())
                };
                Ok::<_, common::Error>(ProjectState {
                    kind: desired::classify(&project, settings),
                    project,
                    main,
                    release_tag,
                    approval_settings,
                    rules,
                })
            })
            .buffer_unordered(self.desired.settings.concurrency)
            .try_collect()
            .await?;
        states.sort_by(|a, b| {
            a.project
                .path_with_namespace
                .cmp(&b.project.path_with_namespace)
        });

        let (keycloak, missing_keycloak_groups, members, users) = match &self.keycloak {
            None => (None, Vec::new(), BTreeMap::new(), UserIndex::default()),
            Some(kc) => {
                let mut by_group = BTreeMap::new();
                let mut missing = Vec::new();
                let wanted: BTreeSet<&str> = self
                    .desired
                    .settings
                    .group_levels
                    .keys()
                    .map(String::as_str)
                    .chain(APPROVER_GROUPS.iter().copied())
                    .collect();
                for name in wanted {
                    match kc.members_with_subgroups(name).await? {
                        Some(users) => {
                            by_group.insert(name.to_owned(), users);
                        }
                        None => missing.push(name.to_owned()),
                    }
                }
                let mut members = BTreeMap::new();
                for (path, group) in &groups {
                    if let Some(group) = group {
                        if path != &self.desired.settings.approver_parent {
                            members
                                .insert(path.clone(), self.gitlab.group_members(group.id).await?);
                        }
                    }
                }
                let users = UserIndex::new(self.gitlab.active_users().await?);
                (Some(by_group), missing, members, users)
            }
        };
        {
            let mut ids = lock(&self.group_ids);
            for (path, group) in &groups {
                if let Some(g) = group {
                    ids.insert(path.clone(), g.id);
                }
            }
            let mut branches = lock(&self.branch_ids);
            for state in &states {
                if let Some(main) = &state.main {
                    branches.insert(state.project.id, main.id);
                }
            }
        }
        if !me.is_admin {
            tracing::warn!(
                "the GitLab token belongs to {}, not an administrator: user identities are hidden, so Keycloak users are matched by username only",
                me.username
            );
        }
        Ok(Observed {
            tier,
            token_user: me.id,
            projects: states,
            groups,
            members,
            users,
            keycloak,
            missing_keycloak_groups,
            registry_running: self.registry_running().await?,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.desired, observed)
    }

    fn objects(&self, _observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        if self.kube.is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![DesiredObject::new(
            desired::ssh_route(&self.desired.settings),
            Some(INGRESSROUTETCP_CRD),
            "Traefik",
            |object, _| Op::KubeApply { object },
        )])
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        self.kube.as_ref().map(|kube| (kube, self.crd_wait))
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        let g = &self.gitlab;
        match op {
            Op::CreateGroup { path } => {
                let (parent, name) = match path.rsplit_once('/') {
                    Some((parent, name)) => (Some(self.group_id(parent)?), name),
                    None => (None, path.as_str()),
                };
                let group = g.create_group(name, parent).await?;
                lock(&self.group_ids).insert(path.clone(), group.id);
            }
            Op::EditProject { project, body } => {
                g.edit_project(*project, body).await?;
            }
            Op::ProtectBranch { project, body } => {
                let branch = g.protect_branch(*project, body).await?;
                lock(&self.branch_ids).insert(*project, branch.id);
            }
            Op::UpdateProtectedBranch { project, body } => {
                g.update_protected_branch(*project, MAIN_BRANCH, body)
                    .await?;
            }
            Op::ProtectTag { project, body } => {
                g.protect_tag(*project, body).await?;
            }
            Op::ReprotectTag {
                project,
                name,
                body,
            } => {
                g.unprotect_tag(*project, name).await?;
                g.protect_tag(*project, body).await?;
            }
            Op::UpdateApprovalSettings { project, body } => {
                g.update_approval_settings(*project, body).await?;
            }
            Op::CreateApprovalRule {
                project,
                rule,
                branch,
            } => {
                let mut body = self.rule_body(*project, rule, *branch).await?;
                body["rule_type"] = "regular".into();
                g.create_approval_rule(*project, &body).await?;
            }
            Op::UpdateApprovalRule {
                project,
                id,
                rule,
                branch,
            } => {
                let body = self.rule_body(*project, rule, *branch).await?;
                g.update_approval_rule(*project, *id, &body).await?;
            }
            Op::DeleteApprovalRule { project, id } => g.delete_approval_rule(*project, *id).await?,
            Op::AddMember { group, user, level } => {
                let id = self.group_id(group)?;
                match g.add_group_member(id, *user, *level).await {
                    Ok(_) => {}
                    // Added meanwhile (GitLab answers 409 "Member already exists"): set the role.
                    Err(e) if e.status() == Some(409) => {
                        g.edit_group_member(id, *user, *level).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Op::EditMember { group, user, level } => {
                g.edit_group_member(self.group_id(group)?, *user, *level)
                    .await?;
            }
            Op::RemoveMember { group, user } => {
                g.remove_group_member(self.group_id(group)?, *user).await?;
            }
            Op::KubeApply { object } => {
                let kube = self.kube.as_ref().context("no Kubernetes client")?;
                kube.wait_crd_established(INGRESSROUTETCP_CRD, self.crd_wait)
                    .await?;
                kube.apply(object, false).await?;
            }
        }
        Ok(Outcome::Applied)
    }

    fn lane(&self, op: &Op) -> Lane {
        match op {
            Op::CreateGroup { .. } | Op::KubeApply { .. } => Lane::Serial,
            Op::EditProject { project, .. }
            | Op::ProtectBranch { project, .. }
            | Op::UpdateProtectedBranch { project, .. }
            | Op::ProtectTag { project, .. }
            | Op::ReprotectTag { project, .. }
            | Op::UpdateApprovalSettings { project, .. }
            | Op::CreateApprovalRule { project, .. }
            | Op::UpdateApprovalRule { project, .. }
            | Op::DeleteApprovalRule { project, .. } => {
                Lane::Parallel(format!("project {project}"))
            }
            Op::AddMember { group, user, .. }
            | Op::EditMember { group, user, .. }
            | Op::RemoveMember { group, user } => Lane::Parallel(format!("member {group} {user}")),
        }
    }

    fn concurrency(&self) -> usize {
        self.desired.settings.concurrency
    }
}

/// The protected-branch view shown in plans.
fn branch_view(b: &ProtectedBranch, tier: Tier) -> Value {
    let roles = |levels: &[AccessLevelEntry]| -> Vec<u8> {
        levels
            .iter()
            .filter(|e| e.is_role())
            .map(|e| e.access_level)
            .collect()
    };
    let mut v = json!({
        "push_access_levels": roles(&b.push_access_levels),
        "merge_access_levels": roles(&b.merge_access_levels),
        "unprotect_access_levels": roles(&b.unprotect_access_levels),
        "allow_force_push": b.allow_force_push,
    });
    if tier.is_paid() {
        v["code_owner_approval_required"] = b.code_owner_approval_required.into();
    }
    v
}

fn desired_branch_view(d: &BranchProtection) -> Value {
    let mut v = json!({
        "push_access_levels": [d.push_access_level],
        "merge_access_levels": [d.merge_access_level],
        "unprotect_access_levels": [d.unprotect_access_level],
        "allow_force_push": d.allow_force_push,
    });
    if let Some(c) = d.code_owner_approval_required {
        v["code_owner_approval_required"] = c.into();
    }
    v
}

/// The `allowed_to_*` changes that leave exactly one role entry at `want`, editing the existing
/// entry in place (`{id, access_level}`) and destroying extra role entries; `None` if already so.
fn access_changes(observed: &[AccessLevelEntry], want: u8) -> Option<Vec<Value>> {
    let roles: Vec<&AccessLevelEntry> = observed.iter().filter(|e| e.is_role()).collect();
    if roles.len() == 1 && roles[0].access_level == want {
        return None;
    }
    let mut changes = Vec::new();
    match roles.first().and_then(|e| e.id) {
        Some(id) => changes.push(json!({"id": id, "access_level": want})),
        None => changes.push(json!({"access_level": want})),
    }
    for extra in roles.iter().skip(1) {
        if let Some(id) = extra.id {
            changes.push(json!({"id": id, "_destroy": true}));
        }
    }
    Some(changes)
}

fn rule_view(rule: &ApprovalRule) -> Value {
    let mut groups: Vec<&str> = rule.groups.iter().map(|g| g.full_path.as_str()).collect();
    groups.sort_unstable();
    let mut users: Vec<String> = rule
        .users
        .iter()
        .filter_map(|u| u["username"].as_str().map(str::to_owned))
        .collect();
    users.sort();
    json!({
        "approvals_required": rule.approvals_required,
        "groups": groups,
        "users": users,
        "protected_branches": rule.protected_branches.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        "applies_to_all_protected_branches": rule.applies_to_all_protected_branches,
    })
}

fn spec_view(rule: &RuleSpec) -> Value {
    json!({
        "approvals_required": rule.approvals_required,
        "groups": rule.groups,
        "users": [],
        "protected_branches": [MAIN_BRANCH],
        "applies_to_all_protected_branches": false,
    })
}

/// Keys of `want` whose value differs in `have`: (before, after) restricted to those keys.
fn differing(
    have: &Map<String, Value>,
    want: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut before = Map::new();
    let mut after = Map::new();
    for (key, value) in want {
        let current = have.get(key).cloned().unwrap_or(Value::Null);
        if &current != value {
            before.insert(key.clone(), current);
            after.insert(key.clone(), value.clone());
        }
    }
    (before, after)
}

/// Names up to five paths, then how many more.
fn some_paths(paths: &[String]) -> String {
    let mut text = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        text.push_str(&format!(" and {} more", paths.len() - 5));
    }
    text
}

/// The pure diff: what to change so GitLab matches the desired state.
pub fn diff(desired: &Desired, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let (settings, prune) = (&desired.settings, desired.prune);
    let mut plan = Plan::new(PHASE_NAME);
    if o.registry_running {
        // The instance registry is a Helm value: report it, with the values to apply.
        plan.warn(format!(
            "GitLab's container registry still runs (Deployment {ns}/gitlab-registry): it is a Helm value, and this phase has no helm CLI — apply gitlab-harden/helm/registry-off.values.yaml with `helm upgrade gitlab gitlab/gitlab -n {ns} --reuse-values -f registry-off.values.yaml` (per project, registry access is already disabled)",
            ns = settings.gitlab_namespace
        ));
    }
    let tier = o.tier;
    if !tier.is_paid() && !o.projects.is_empty() {
        for feature in [
            "approval rules (Senior Review Required, Production Approval) need GitLab Premium: skipped",
            "approval settings (no author approval, committers cannot approve, reset on push) need GitLab Premium: skipped",
            "code-owner approval on protected main needs GitLab Premium: skipped",
            "merge trains and merged results pipelines need GitLab Premium: skipped",
        ] {
            plan.warn(format!("GitLab Free: {feature}"));
        }
    }

    // Approver groups (Premium): the parent, then the mirrors, created before rules use them.
    for (path, group) in &o.groups {
        if group.is_none() {
            plan.push(Change::create(
                "gitlab group",
                path,
                json!({"visibility": "private", "purpose": "approver group mirrored from Keycloak"}),
                &[],
                Op::CreateGroup { path: path.clone() },
            ));
        }
    }

    let want_settings = desired::project_settings(settings, tier);
    let want_branch = desired::branch_protection(tier);
    let want_approvals = desired::approval_settings();
    let mut frozen_levels = Vec::new();
    for state in &o.projects {
        let p = &state.project;
        let path = &p.path_with_namespace;
        let (before, after) = differing(&p.settings, &want_settings);
        if !after.is_empty() {
            plan.push(Change::update(
                "project settings",
                path,
                Value::Object(before),
                Value::Object(after.clone()),
                &[],
                Op::EditProject {
                    project: p.id,
                    body: Value::Object(after),
                },
            ));
        }

        let branch_name = format!("{path}:{MAIN_BRANCH}");
        match &state.main {
            None => {
                let mut body = json!({
                    "name": want_branch.name,
                    "push_access_level": want_branch.push_access_level,
                    "merge_access_level": want_branch.merge_access_level,
                    "unprotect_access_level": want_branch.unprotect_access_level,
                    "allow_force_push": want_branch.allow_force_push,
                });
                if let Some(c) = want_branch.code_owner_approval_required {
                    body["code_owner_approval_required"] = c.into();
                }
                plan.push(Change::create(
                    "protected branch",
                    &branch_name,
                    desired_branch_view(&want_branch),
                    &[],
                    Op::ProtectBranch {
                        project: p.id,
                        body,
                    },
                ));
            }
            Some(main) => {
                let mut body = Map::new();
                if main.allow_force_push != want_branch.allow_force_push {
                    body.insert(
                        "allow_force_push".into(),
                        want_branch.allow_force_push.into(),
                    );
                }
                if let Some(c) = want_branch.code_owner_approval_required {
                    if main.code_owner_approval_required != c {
                        body.insert("code_owner_approval_required".into(), c.into());
                    }
                }
                let mut levels_differ = false;
                for (key, have, want) in [
                    (
                        "allowed_to_push",
                        &main.push_access_levels,
                        want_branch.push_access_level,
                    ),
                    (
                        "allowed_to_merge",
                        &main.merge_access_levels,
                        want_branch.merge_access_level,
                    ),
                    (
                        "allowed_to_unprotect",
                        &main.unprotect_access_levels,
                        want_branch.unprotect_access_level,
                    ),
                ] {
                    if let Some(changes) = access_changes(have, want) {
                        levels_differ = true;
                        if tier.is_paid() {
                            body.insert(key.into(), Value::Array(changes));
                        }
                    }
                }
                if levels_differ && !tier.is_paid() {
                    frozen_levels.push(path.clone());
                }
                if !body.is_empty() {
                    let before = branch_view(main, tier);
                    let mut after = before.clone();
                    let want_view = desired_branch_view(&want_branch);
                    for key in ["allow_force_push", "code_owner_approval_required"] {
                        if body.contains_key(key) {
                            after[key] = want_view[key].clone();
                        }
                    }
                    for (key, view) in [
                        ("allowed_to_push", "push_access_levels"),
                        ("allowed_to_merge", "merge_access_levels"),
                        ("allowed_to_unprotect", "unprotect_access_levels"),
                    ] {
                        if body.contains_key(key) {
                            after[view] = want_view[view].clone();
                        }
                    }
                    plan.push(Change::update(
                        "protected branch",
                        &branch_name,
                        before,
                        after,
                        &[],
                        Op::UpdateProtectedBranch {
                            project: p.id,
                            body: Value::Object(body),
                        },
                    ));
                }
            }
        }

        diff_release_tag(&mut plan, state);

        if let Some(have) = &state.approval_settings {
            let (before, after) = differing(have, &want_approvals);
            if !after.is_empty() {
                plan.push(Change::update(
                    "approval settings",
                    path,
                    Value::Object(before),
                    Value::Object(after.clone()),
                    &[],
                    Op::UpdateApprovalSettings {
                        project: p.id,
                        body: Value::Object(after),
                    },
                ));
            }
        }

        if tier.is_paid() {
            diff_rules(&mut plan, state, settings);
        }
    }
    if !frozen_levels.is_empty() {
        plan.warn(format!(
            "GitLab Free cannot change who may push, merge or unprotect on an existing protected branch in place (allowed_to_* is Premium), and this phase never unprotects to re-protect: set Maintainers/Maintainers/Administrators by hand on {} project(s): {}",
            frozen_levels.len(),
            some_paths(&frozen_levels)
        ));
    }

    if let Some(keycloak) = &o.keycloak {
        for name in &o.missing_keycloak_groups {
            plan.warn(format!(
                "Keycloak group {name} does not exist in the realm: nobody gets access through it"
            ));
        }
        let (memberships, missing) = desired::memberships(settings, tier, keycloak, &o.users);
        for target in &memberships {
            diff_members(&mut plan, target, o, prune);
        }
        report_missing(&mut plan, &missing);
    }
    Ok(plan)
}

/// Protected `v*` on every project and tier: created when missing; other create levels are
/// replaced (unprotect + protect), which is safe for tags: nothing refers to a protected tag.
fn diff_release_tag(plan: &mut Plan<Op>, state: &ProjectState) {
    let want = desired::release_tag_protection();
    let p = &state.project;
    let title = format!("{}:{}", p.path_with_namespace, want.name);
    let after = json!({"create_access_levels": [want.create_access_level]});
    match &state.release_tag {
        None => plan.push(Change::create(
            "protected tag",
            &title,
            after,
            &[],
            Op::ProtectTag {
                project: p.id,
                body: protect_tag_body(&want.name, want.create_access_level, None),
            },
        )),
        Some(tag) if !tag.allows_only(want.create_access_level) => plan.push(Change::update(
            "protected tag",
            &title,
            json!({"create_access_levels": tag.create_roles()}),
            after,
            &[],
            Op::ReprotectTag {
                project: p.id,
                name: want.name.clone(),
                body: protect_tag_body(&want.name, want.create_access_level, Some(tag)),
            },
        )),
        Some(_) => {}
    }
}

fn diff_rules(plan: &mut Plan<Op>, state: &ProjectState, settings: &Settings) {
    let p = &state.project;
    let path = &p.path_with_namespace;
    let branch = state.main.as_ref().map(|b| b.id);
    let wanted = desired::approval_rules(state.kind, settings);
    let mut by_name: BTreeMap<&str, Vec<&ApprovalRule>> = BTreeMap::new();
    for rule in &state.rules {
        if rule.rule_type == "regular" || rule.rule_type.is_empty() {
            by_name.entry(rule.name.as_str()).or_default().push(rule);
        }
    }
    for list in by_name.values_mut() {
        list.sort_by_key(|r| r.id);
    }
    for spec in &wanted {
        let title = format!("{path}: {}", spec.name);
        match by_name.get(spec.name.as_str()).and_then(|l| l.first()) {
            None => plan.push(Change::create(
                "approval rule",
                &title,
                spec_view(spec),
                &[],
                Op::CreateApprovalRule {
                    project: p.id,
                    rule: spec.clone(),
                    branch,
                },
            )),
            Some(rule) => {
                let (have, want) = (rule_view(rule), spec_view(spec));
                if have != want {
                    plan.push(Change::update(
                        "approval rule",
                        &title,
                        have,
                        want,
                        &[],
                        Op::UpdateApprovalRule {
                            project: p.id,
                            id: rule.id,
                            rule: spec.clone(),
                            branch,
                        },
                    ));
                }
            }
        }
    }
    // Duplicates of a managed rule (the bash phase POSTed one per run), and managed rules this
    // kind of project should not have.
    for name in MANAGED_RULES {
        let Some(list) = by_name.get(name) else {
            continue;
        };
        let keep = usize::from(wanted.iter().any(|w| w.name == *name));
        for rule in list.iter().skip(keep) {
            plan.push(Change::delete(
                "approval rule",
                &format!("{path}: {} (id {})", rule.name, rule.id),
                rule_view(rule),
                &[],
                Op::DeleteApprovalRule {
                    project: p.id,
                    id: rule.id,
                },
            ));
        }
    }
}

fn role(level: u8) -> String {
    format!("{} ({level})", access::name(level))
}

fn diff_members(plan: &mut Plan<Op>, target: &GroupMembership, o: &Observed, prune: bool) {
    let group = &target.group;
    let current: BTreeMap<u64, u8> = o
        .members
        .get(group)
        .map(|m| m.iter().map(|m| (m.id, m.access_level)).collect())
        .unwrap_or_default();
    let username = |id: u64| {
        o.users
            .by_id(id)
            .map_or_else(|| format!("user {id}"), |u| u.username.clone())
    };
    for (user, grant) in &target.grants {
        let title = format!("{group}: {}", username(*user));
        let because: Vec<&str> = grant.because.iter().map(String::as_str).collect();
        match current.get(user) {
            None => plan.push(Change::create(
                "group member",
                &title,
                json!({"role": role(grant.level), "keycloak_groups": because}),
                &[],
                Op::AddMember {
                    group: group.clone(),
                    user: *user,
                    level: grant.level,
                },
            )),
            Some(have)
                if *have < grant.level
                    || (prune && *have > grant.level && *user != o.token_user) =>
            {
                plan.push(Change::update(
                    "group member",
                    &title,
                    json!({"role": role(*have)}),
                    json!({"role": role(grant.level), "keycloak_groups": because}),
                    &[],
                    Op::EditMember {
                        group: group.clone(),
                        user: *user,
                        level: grant.level,
                    },
                ));
            }
            Some(_) => {}
        }
    }
    if !prune {
        return;
    }
    let mut unknown = Vec::new();
    for (user, level) in &current {
        if target.grants.contains_key(user) || *user == o.token_user {
            continue;
        }
        match o.users.by_id(*user) {
            Some(u) if u.is_automation() => {}
            Some(u) => plan.push(Change::delete(
                "group member",
                &format!("{group}: {}", u.username),
                json!({"role": role(*level), "reason": "no mapped Keycloak group grants access"}),
                &[],
                Op::RemoveMember {
                    group: group.clone(),
                    user: *user,
                },
            )),
            None => unknown.push(format!("user {user}")),
        }
    }
    if !unknown.is_empty() {
        plan.warn(format!(
            "--prune left {} member(s) of {group} alone: not active users the token can see ({})",
            unknown.len(),
            some_paths(&unknown)
        ));
    }
}

fn report_missing(plan: &mut Plan<Op>, missing: &[MissingUser]) {
    if missing.is_empty() {
        return;
    }
    let names: Vec<String> = missing
        .iter()
        .map(|m| {
            format!(
                "{} ({})",
                m.username,
                m.groups.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    plan.warn(format!(
        "{} Keycloak user(s) have no GitLab account yet (they get one at their first sign-in; the next run grants their access): {}",
        missing.len(),
        some_paths(&names)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::gitlab::{RuleBranch, RuleGroup};

    fn settings() -> Settings {
        let env = common::config::Environment::load_from(None, std::iter::empty()).unwrap();
        Settings::from_environment(&env).unwrap()
    }

    fn project(id: u64, path: &str, extra: &Value) -> Project {
        let mut v = json!({"id": id, "path_with_namespace": path});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn entry(id: u64, level: u8) -> AccessLevelEntry {
        AccessLevelEntry {
            id: Some(id),
            access_level: level,
            user_id: None,
            group_id: None,
            deploy_key_id: None,
        }
    }

    fn release_tag(level: u8) -> ProtectedTag {
        serde_json::from_value(json!({
            "name": "v*",
            "create_access_levels": [{"id": 9, "access_level": level}],
        }))
        .unwrap()
    }

    /// A project that already matches everything (Premium).
    fn hardened(s: &Settings, id: u64, path: &str) -> ProjectState {
        let settings = Value::Object(desired::project_settings(s, Tier::Premium));
        let rules = desired::approval_rules(ProjectKind::Service, s);
        ProjectState {
            project: project(id, path, &settings),
            kind: ProjectKind::Service,
            main: Some(ProtectedBranch {
                id: 100 + id,
                name: "main".into(),
                push_access_levels: vec![entry(1, 40)],
                merge_access_levels: vec![entry(2, 40)],
                unprotect_access_levels: vec![entry(3, 60)],
                allow_force_push: false,
                code_owner_approval_required: true,
            }),
            release_tag: Some(release_tag(40)),
            approval_settings: Some(desired::approval_settings()),
            rules: rules
                .iter()
                .enumerate()
                .map(|(i, r)| ApprovalRule {
                    id: 500 + i as u64,
                    name: r.name.clone(),
                    rule_type: "regular".into(),
                    approvals_required: r.approvals_required,
                    groups: r
                        .groups
                        .iter()
                        .map(|g| RuleGroup {
                            id: 7,
                            full_path: g.clone(),
                        })
                        .collect(),
                    users: Vec::new(),
                    protected_branches: vec![RuleBranch {
                        id: 100 + id,
                        name: "main".into(),
                    }],
                    applies_to_all_protected_branches: false,
                })
                .collect(),
        }
    }

    fn observed(projects: Vec<ProjectState>, tier: Tier) -> Observed {
        Observed {
            tier,
            token_user: 1,
            projects,
            groups: BTreeMap::new(),
            members: BTreeMap::new(),
            users: UserIndex::default(),
            keycloak: None,
            missing_keycloak_groups: Vec::new(),
            registry_running: false,
        }
    }

    #[test]
    fn noop_matching_state_gives_an_empty_plan() {
        let s = settings();
        let plan = diff(
            &Desired {
                settings: s.clone(),
                prune: false,
            },
            &observed(
                vec![hardened(&s, 1, "ps/a"), hardened(&s, 2, "ps/b")],
                Tier::Premium,
            ),
        )
        .unwrap();
        assert!(plan.is_empty(), "{plan}");
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn release_tags_are_protected_and_other_create_levels_replaced() {
        let s = settings();
        let mut missing = hardened(&s, 1, "ps/a");
        missing.release_tag = None;
        let mut developers = hardened(&s, 2, "ps/b");
        developers.release_tag = Some(release_tag(30));
        let plan = diff(
            &Desired {
                settings: s.clone(),
                prune: false,
            },
            &observed(vec![missing, developers], Tier::Free),
        )
        .unwrap();
        let tags: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.resource == "protected tag")
            .collect();
        assert_eq!(tags.len(), 2, "{plan}");
        assert_eq!(tags[0].name, "ps/a:v*");
        let Op::ProtectTag { project: 1, body } = &tags[0].op else {
            panic!("expected a new protection: {plan}");
        };
        assert_eq!(body, &json!({"name": "v*", "create_access_level": 40}));
        assert_eq!(tags[1].name, "ps/b:v*");
        assert_eq!(tags[1].diff, vec!["~ create_access_levels: [30] -> [40]"]);
        assert!(matches!(
            &tags[1].op,
            Op::ReprotectTag { project: 2, name, .. } if name == "v*"
        ));
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn access_levels_are_patched_in_place_by_entry_id() {
        let s = settings();
        let mut state = hardened(&s, 1, "ps/a");
        let main = state.main.as_mut().unwrap();
        main.push_access_levels = vec![entry(11, 30), entry(12, 40)];
        main.allow_force_push = true;
        let plan = diff(
            &Desired {
                settings: s.clone(),
                prune: false,
            },
            &observed(vec![state], Tier::Premium),
        )
        .unwrap();
        assert_eq!(plan.changes.len(), 1, "{plan}");
        let Op::UpdateProtectedBranch { body, .. } = &plan.changes[0].op else {
            panic!("expected an in-place update: {plan}");
        };
        assert_eq!(
            body,
            &json!({
                "allow_force_push": false,
                "allowed_to_push": [{"id": 11, "access_level": 40}, {"id": 12, "_destroy": true}],
            })
        );
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn duplicate_and_foreign_managed_rules_are_deleted_other_rules_kept() {
        let s = settings();
        let mut state = hardened(&s, 1, "ps/a");
        let mut dup = state.rules[0].clone();
        dup.id = 900;
        state.rules.push(dup);
        let mut prod = state.rules[0].clone();
        prod.id = 901;
        prod.name = desired::PRODUCTION_ADMIN.into();
        state.rules.push(prod);
        let mut custom = state.rules[0].clone();
        custom.id = 902;
        custom.name = "Security team".into();
        state.rules.push(custom);
        let plan = diff(
            &Desired {
                settings: s.clone(),
                prune: false,
            },
            &observed(vec![state], Tier::Premium),
        )
        .unwrap();
        let mut deleted: Vec<u64> = plan
            .changes
            .iter()
            .filter_map(|c| match c.op {
                Op::DeleteApprovalRule { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        deleted.sort_unstable();
        assert_eq!(deleted, vec![900, 901], "{plan}");
        assert_eq!(plan.changes.len(), 2, "{plan}");
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn free_tier_warns_once_per_feature_and_never_reprotects() {
        let s = settings();
        let mut a = hardened(&s, 1, "ps/a");
        a.approval_settings = None;
        a.rules.clear();
        a.main.as_mut().unwrap().push_access_levels = vec![entry(1, 30)];
        a.main.as_mut().unwrap().code_owner_approval_required = false;
        let mut settings_free = Value::Object(desired::project_settings(&s, Tier::Free));
        settings_free["merge_method"] = "merge".into();
        a.project = project(1, "ps/a", &settings_free);
        let plan = diff(
            &Desired {
                settings: s.clone(),
                prune: false,
            },
            &observed(vec![a], Tier::Free),
        )
        .unwrap();
        assert_eq!(plan.changes.len(), 1, "only the project settings: {plan}");
        assert!(matches!(plan.changes[0].op, Op::EditProject { .. }));
        assert_eq!(plan.warnings.len(), 5, "{:?}", plan.warnings);
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("never unprotects") && w.contains("ps/a"))
        );
        insta::assert_snapshot!(plan.to_string());
    }
}
