//! The stand-in's state: users, groups, projects and their records, seeded and inspected by tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};

/// The tier the stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// GitLab CE: no licence endpoint, no Premium endpoints.
    Free,
    Premium,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: u64,
    pub username: String,
    pub bot: bool,
    pub user_type: String,
    pub is_admin: bool,
    pub identities: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub id: u64,
    pub path: String,
    pub full_path: String,
    pub parent_id: Option<u64>,
    /// Direct members: user id → access level.
    pub members: BTreeMap<u64, u8>,
    /// CI/CD variables, as `GET /groups/:id/variables` shows them.
    pub variables: Vec<Value>,
    /// Group access tokens (see `delivery.rs`).
    pub access_tokens: Vec<crate::standins::gitlab::delivery::AccessTokenRecord>,
}

/// What a project or group access token reaches (`user/project/settings/project_access_tokens`,
/// `user/group/settings/group_access_tokens`: "access to a group and its projects").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenReach {
    Project(u64),
    Group(u64),
}

/// The limits of a project or group access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimits {
    pub reach: TokenReach,
    /// `YYYY-MM-DD`; from that day the token fails authentication.
    pub expires_at: String,
    /// Only `read_*` scopes: a write is refused with 403 `insufficient_scope`.
    pub read_only: bool,
    /// The token's role (`access_level`): below Maintainer (40) the protected branches and tags
    /// of its projects may not be read (403; sandbox/fixtures/gitlab-docs/protected-refs-read.md).
    pub access_level: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub id: u64,
    pub access_level: u8,
    pub user_id: Option<u64>,
    pub group_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ProtectedBranchRecord {
    pub id: u64,
    pub name: String,
    pub push: Vec<AccessRecord>,
    pub merge: Vec<AccessRecord>,
    pub unprotect: Vec<AccessRecord>,
    pub allow_force_push: bool,
    pub code_owner_approval_required: bool,
}

#[derive(Debug, Clone)]
pub struct ApprovalRuleRecord {
    pub id: u64,
    pub name: String,
    pub rule_type: String,
    pub approvals_required: u64,
    pub group_ids: Vec<u64>,
    pub user_ids: Vec<u64>,
    pub protected_branch_ids: Vec<u64>,
    pub applies_to_all_protected_branches: bool,
}

#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub id: u64,
    pub path: String,
    pub namespace_id: u64,
    pub path_with_namespace: String,
    pub topics: Vec<String>,
    pub archived: bool,
    /// Settings as `GET /projects/:id` shows them (the ones this model knows).
    pub settings: Map<String, Value>,
    pub protected_branches: Vec<ProtectedBranchRecord>,
    pub approval_settings: Map<String, Value>,
    pub approval_rules: Vec<ApprovalRuleRecord>,
    /// Protected tag names and wildcards (see `tags.rs`).
    pub protected_tags: Vec<crate::standins::gitlab::tags::ProtectedTagRecord>,
    /// Files, commits and tags of the default branch.
    pub repository: crate::standins::gitlab::repo::Repository,
    /// Merge requests and project access tokens.
    pub delivery: crate::standins::gitlab::delivery::ProjectDelivery,
}

/// Everything the stand-in knows. Tests seed and inspect it directly.
#[derive(Debug)]
pub struct GitLabData {
    pub tier: Tier,
    pub users: BTreeMap<u64, UserRecord>,
    pub(super) tokens: BTreeMap<String, u64>,
    /// Project and group access tokens: what each may touch, until when, and whether it may write.
    pub(super) token_scopes: BTreeMap<String, TokenLimits>,
    pub groups: BTreeMap<u64, GroupRecord>,
    pub projects: BTreeMap<u64, ProjectRecord>,
    /// Runners created through `POST /user/runners` (phase 16).
    pub runners: crate::standins::gitlab::runners::Runners,
    /// Group webhooks (phase 17).
    pub hooks: crate::standins::gitlab::hooks::GroupHooks,
    /// Pipelines, deployments and commits the DORA collector heals from.
    pub ci: crate::standins::gitlab::ci::CiHistory,
    /// Project wikis (phase 12b).
    pub wikis: crate::standins::gitlab::wikis::Wikis,
    pub(super) next_id: u64,
}

impl GitLabData {
    /// An instance with one administrator whose token is `admin_token`.
    pub fn new(tier: Tier, admin_token: &str) -> Self {
        let mut data = Self {
            tier,
            users: BTreeMap::new(),
            tokens: BTreeMap::new(),
            token_scopes: BTreeMap::new(),
            groups: BTreeMap::new(),
            projects: BTreeMap::new(),
            runners: crate::standins::gitlab::runners::Runners::default(),
            hooks: crate::standins::gitlab::hooks::GroupHooks::default(),
            ci: crate::standins::gitlab::ci::CiHistory::default(),
            wikis: crate::standins::gitlab::wikis::Wikis::default(),
            next_id: 1,
        };
        let root = data.add_user("root", &[]);
        if let Some(user) = data.users.get_mut(&root) {
            user.is_admin = true;
        }
        data.tokens.insert(admin_token.to_owned(), root);
        data
    }

    pub(in crate::standins) fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A human user with `(provider, extern_uid)` identities.
    pub fn add_user(&mut self, username: &str, identities: &[(&str, &str)]) -> u64 {
        let id = self.id();
        self.users.insert(
            id,
            UserRecord {
                id,
                username: username.to_owned(),
                bot: false,
                user_type: "human".into(),
                is_admin: false,
                identities: identities
                    .iter()
                    .map(|(p, u)| ((*p).to_owned(), (*u).to_owned()))
                    .collect(),
            },
        );
        id
    }

    /// A project access-token bot (doc/api/users: `bot: true`).
    pub fn add_bot(&mut self, username: &str) -> u64 {
        let id = self.add_user(username, &[]);
        if let Some(user) = self.users.get_mut(&id) {
            user.bot = true;
            user.user_type = "project_bot".into();
        }
        id
    }

    /// Adds a token for an existing user.
    pub fn add_token(&mut self, token: &str, user: u64) {
        self.tokens.insert(token.to_owned(), user);
    }

    /// A project access token: valid for `project` only, until `expires_at` (`YYYY-MM-DD`).
    pub fn add_project_token(&mut self, token: &str, bot: u64, project: u64, expires_at: &str) {
        self.add_scoped_token(
            token,
            bot,
            TokenLimits {
                reach: TokenReach::Project(project),
                expires_at: expires_at.to_owned(),
                read_only: false,
                access_level: 40,
            },
        );
    }

    /// A project or group access token with its limits.
    pub fn add_scoped_token(&mut self, token: &str, bot: u64, limits: TokenLimits) {
        self.tokens.insert(token.to_owned(), bot);
        self.token_scopes.insert(token.to_owned(), limits);
    }

    /// `group` itself or one of its descendants.
    pub fn group_within(&self, group: u64, ancestor: u64) -> bool {
        let mut current = Some(group);
        while let Some(id) = current {
            if id == ancestor {
                return true;
            }
            current = self.groups.get(&id).and_then(|g| g.parent_id);
        }
        false
    }

    /// Revoked: the token no longer authenticates.
    pub fn revoke_token(&mut self, token: &str) {
        self.tokens.remove(token);
        self.token_scopes.remove(token);
    }

    pub fn user_id(&self, username: &str) -> Option<u64> {
        self.users
            .values()
            .find(|u| u.username == username)
            .map(|u| u.id)
    }

    /// A group (under `parent` when given); the creator `owner` becomes its Owner.
    pub fn add_group(&mut self, path: &str, parent: Option<u64>, owner: Option<u64>) -> u64 {
        let id = self.id();
        let full_path = match parent.and_then(|p| self.groups.get(&p)) {
            Some(p) => format!("{}/{path}", p.full_path),
            None => path.to_owned(),
        };
        let mut members = BTreeMap::new();
        if let Some(owner) = owner {
            members.insert(owner, 50);
        }
        self.groups.insert(
            id,
            GroupRecord {
                id,
                path: path.to_owned(),
                full_path,
                parent_id: parent,
                members,
                variables: Vec::new(),
                access_tokens: Vec::new(),
            },
        );
        id
    }

    pub fn add_project(&mut self, path: &str, group: u64, topics: &[&str]) -> u64 {
        let id = self.id();
        let namespace = self
            .groups
            .get(&group)
            .map(|g| g.full_path.clone())
            .unwrap_or_default();
        self.projects.insert(
            id,
            ProjectRecord {
                id,
                path: path.to_owned(),
                namespace_id: group,
                path_with_namespace: format!("{namespace}/{path}"),
                topics: topics.iter().map(|t| (*t).to_owned()).collect(),
                archived: false,
                settings: super::projects::default_project_settings(),
                protected_branches: Vec::new(),
                approval_settings: json!({
                    "reset_approvals_on_push": true,
                    "selective_code_owner_removals": false,
                    "disable_overriding_approvers_per_merge_request": false,
                    "merge_requests_author_approval": true,
                    "merge_requests_disable_committers_approval": false,
                    "require_reauthentication_to_approve": false,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
                approval_rules: Vec::new(),
                protected_tags: Vec::new(),
                repository: crate::standins::gitlab::repo::Repository::default(),
                delivery: crate::standins::gitlab::delivery::ProjectDelivery::default(),
            },
        );
        id
    }

    /// Adds `n` projects under `group` spread over nested subgroups (`teams/team-0..3`, and
    /// `teams/team-0/legacy` a level deeper); every tenth is a `*-manifests` repository. Plus one
    /// archived project. Returns the paths of the active projects of the whole instance.
    pub fn seed_nested_projects(&mut self, group: &str, n: usize) -> Vec<String> {
        let root = self.user_id("root");
        let existing = self.group_by_path(group).map(|g| g.id);
        let top = existing.unwrap_or_else(|| self.add_group(group, None, root));
        let teams = self.add_group("teams", Some(top), root);
        let mut groups = vec![top];
        for k in 0..4 {
            groups.push(self.add_group(&format!("team-{k}"), Some(teams), root));
        }
        groups.push(self.add_group("legacy", Some(groups[1]), root));
        for i in 0..n {
            let suffix = if i % 10 == 0 { "-manifests" } else { "" };
            self.add_project(
                &format!("svc-{i:04}{suffix}"),
                groups[i % groups.len()],
                &[],
            );
        }
        // Security policies and RBAC (phase 12's security gate): by path, and by topic.
        self.add_project("cluster-rbac", top, &[]);
        self.add_project("admission-rules", groups[1], &["security-policies"]);
        let archived = self.add_project("old-archived", top, &[]);
        if let Some(p) = self.projects.get_mut(&archived) {
            p.archived = true;
        }
        self.projects
            .values()
            .filter(|p| !p.archived)
            .map(|p| p.path_with_namespace.clone())
            .collect()
    }

    pub fn group_by_path(&self, full_path: &str) -> Option<&GroupRecord> {
        self.groups.values().find(|g| g.full_path == full_path)
    }

    pub fn project_by_path(&self, full_path: &str) -> Option<&ProjectRecord> {
        self.projects
            .values()
            .find(|p| p.path_with_namespace == full_path)
    }

    pub fn project_by_path_mut(&mut self, full_path: &str) -> Option<&mut ProjectRecord> {
        self.projects
            .values_mut()
            .find(|p| p.path_with_namespace == full_path)
    }

    pub(super) fn descendants(&self, group: u64) -> Vec<u64> {
        let mut out = vec![group];
        let mut i = 0;
        while i < out.len() {
            let current = out[i];
            out.extend(
                self.groups
                    .values()
                    .filter(|g| g.parent_id == Some(current))
                    .map(|g| g.id),
            );
            i += 1;
        }
        out
    }

    pub(in crate::standins) fn find_group(&self, id: &str) -> Option<&GroupRecord> {
        match id.parse::<u64>() {
            Ok(n) => self.groups.get(&n),
            Err(_) => self.group_by_path(id),
        }
    }
}

/// Shared state of the GitLab stand-in.
#[derive(Clone)]
pub struct GitLabState {
    pub jwks: Arc<Value>,
    pub data: Arc<Mutex<GitLabData>>,
}

impl GitLabState {
    pub fn new(jwks: Value, data: GitLabData) -> Self {
        Self {
            jwks: Arc::new(jwks),
            data: Arc::new(Mutex::new(data)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, GitLabData> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The small instance `sandbox up` serves: `platform_services` with subgroups, a few projects and
/// the users of the Keycloak stand-in's demo realm (linked by OIDC identity).
pub fn demo_data(admin_token: &str) -> GitLabData {
    let mut data = GitLabData::new(Tier::Premium, admin_token);
    let root = data.user_id("root");
    let ps = data.add_group("platform_services", None, root);
    let infra = data.add_group("infrastructure", Some(ps), root);
    for name in [
        "packet-relay",
        "netops-dashboard",
        "gitlab-ci-templates",
        "dora-collector",
    ] {
        data.add_project(name, ps, &[]);
    }
    data.add_project("platform-manifests", infra, &["production-manifests"]);
    data.add_project("cluster-terraform", infra, &[]);
    for (username, sub) in crate::standins::keycloak::DEMO_USERS {
        data.add_user(username, &[("openid_connect", sub)]);
    }
    data.add_bot("project_1_bot_5f2c");
    data
}
