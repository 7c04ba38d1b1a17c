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
use common::plan::{Change, Plan, changed_fields};
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
    /// Commit the default CODEOWNERS (action `create`: never over an existing file).
    CreateCodeowners {
        project: u64,
        branch: String,
        content: String,
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
    /// Whether the default branch has a CODEOWNERS file.
    pub codeowners: codeowners::CodeownersState,
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
    /// Only these projects (full paths), when set: phase 12b hardens the project it creates
    /// after phase 12 has run ([`GitLabHarden::for_projects`]).
    only_projects: Option<std::collections::BTreeSet<String>>,
}

impl GitLabHarden {
    pub async fn connect(cfg: &PlatformConfig, prune: bool) -> anyhow::Result<Self> {
        Self::build(cfg, prune, None).await
    }

    /// The same phase limited to the projects `paths` (full paths) of its groups, without the
    /// group-wide parts (Keycloak memberships, the SSH route): what a project created after phase
    /// 12 ran (phase 12b's `sop-wiki`) needs so that one run of the driver converges, instead of
    /// the next run of phase 12.
    pub async fn for_projects(
        cfg: &PlatformConfig,
        paths: impl IntoIterator<Item = String>,
    ) -> anyhow::Result<Self> {
        Self::build(cfg, false, Some(paths.into_iter().collect())).await
    }

    async fn build(
        cfg: &PlatformConfig,
        prune: bool,
        only_projects: Option<std::collections::BTreeSet<String>>,
    ) -> anyhow::Result<Self> {
        let settings = Settings::load(cfg)?;
        let gitlab = GitLabClient::connect(cfg)?;
        let whole_platform = only_projects.is_none();
        let keycloak = if settings.keycloak_sync && whole_platform {
            Some(
                KeycloakClient::connect(cfg)
                    .await
                    .context("reading Keycloak groups (set GITLAB_KEYCLOAK_SYNC=false to skip the membership sync)")?,
            )
        } else {
            None
        };
        let kube = if settings.ssh_route && whole_platform {
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
            only_projects,
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
                let wanted = self
                    .only_projects
                    .as_ref()
                    .is_none_or(|only| only.contains(&project.path_with_namespace));
                if !project.archived && wanted {
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
                let codeowners = codeowners::observe(gitlab, &project).await?;
                Ok::<_, common::Error>(ProjectState {
                    codeowners,
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
            Op::CreateCodeowners {
                project,
                branch,
                content,
            } => {
                let action = json!({"action": "create", "file_path": codeowners::DEFAULT_LOCATION, "content": content});
                match g
                    .commit(
                        *project,
                        branch,
                        // [skip ci]: one commit per project must not start a main pipeline in each.
                        "Add default CODEOWNERS (cicd-buildout phase 12) [skip ci]",
                        &[action],
                    )
                    .await
                {
                    Ok(_) => {}
                    // The team committed one since the plan: theirs stays.
                    Err(common::Error::Api {
                        status: 400, body, ..
                    }) if body.contains("already exists") => {
                        return Ok(Outcome::Skipped(
                            "the project got a CODEOWNERS since the plan; left as it is".into(),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
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
            | Op::DeleteApprovalRule { project, .. }
            | Op::CreateCodeowners { project, .. } => Lane::Parallel(format!("project {project}")),
            Op::AddMember { group, user, .. }
            | Op::EditMember { group, user, .. }
            | Op::RemoveMember { group, user } => Lane::Parallel(format!("member {group} {user}")),
        }
    }

    fn concurrency(&self) -> usize {
        self.desired.settings.concurrency
    }
}

pub mod codeowners;
mod diff;
pub mod leftovers;
#[cfg(test)]
mod tests;

pub use diff::diff;
