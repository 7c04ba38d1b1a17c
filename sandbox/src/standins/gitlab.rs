//! GitLab stand-in: a stateful model of only the endpoints the phases call. Each handler names the
//! section of the GitLab API docs (specs/gitlab/api-docs, and doc/api of gitlabhq for projects,
//! groups, users, metadata and licence) its behaviour comes from.
//!
//! - `GET /-/jwks`: the key set that signs CI/CD `id_tokens` (ci/secrets/id_token_authentication).
//! - Authentication (api/rest "Authentication"): `PRIVATE-TOKEN` or `Authorization: Bearer`; 401
//!   `{"message":"401 Unauthorized"}` otherwise.
//! - Offset pagination (api/rest "Offset-based pagination"): `page`, `per_page` (default 20, max
//!   100), headers `x-page`, `x-per-page`, `x-total`, `x-total-pages`, `x-next-page`, `x-prev-page`
//!   and `Link` with `rel="next"`/`"prev"`/`"first"`/`"last"`.
//! - Tier: Premium-only endpoints (approval rules and settings) answer 404 on Free, as GitLab CE
//!   does; Premium-only attributes (merge trains, code-owner approval, `allowed_to_*`) are ignored
//!   on write and absent on read, as Grape does with undeclared parameters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
    /// Protected tag names and wildcards (`gitlab_tags`).
    pub protected_tags: Vec<super::gitlab_tags::ProtectedTagRecord>,
    /// Files, commits and tags of the default branch.
    pub repository: super::gitlab_repo::Repository,
    /// Merge requests and project access tokens.
    pub delivery: super::gitlab_delivery::ProjectDelivery,
}

/// Everything the stand-in knows. Tests seed and inspect it directly.
#[derive(Debug)]
pub struct GitLabData {
    pub tier: Tier,
    pub users: BTreeMap<u64, UserRecord>,
    tokens: BTreeMap<String, u64>,
    /// Project access tokens: token → (the only project it may touch, `YYYY-MM-DD` expiry).
    token_scopes: BTreeMap<String, (u64, String)>,
    pub groups: BTreeMap<u64, GroupRecord>,
    pub projects: BTreeMap<u64, ProjectRecord>,
    /// Runners created through `POST /user/runners` (phase 16).
    pub runners: super::gitlab_runners::Runners,
    /// Group webhooks (phase 17).
    pub hooks: super::gitlab_hooks::GroupHooks,
    /// Pipelines, deployments and commits the DORA collector heals from.
    pub ci: super::gitlab_ci::CiHistory,
    next_id: u64,
}

/// Project settings GitLab defaults to on a new project (doc/api/projects "Create project" defaults).
fn default_project_settings() -> Map<String, Value> {
    let v = json!({
        "only_allow_merge_if_pipeline_succeeds": false,
        "only_allow_merge_if_all_discussions_are_resolved": false,
        "merge_method": "merge",
        "remove_source_branch_after_merge": true,
        "container_registry_access_level": "enabled",
        "container_registry_enabled": true,
        "default_branch": "main",
        "merge_trains_enabled": false,
        "merge_pipelines_enabled": false,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// Attributes of `PUT /projects/:id` this model stores, with the values the docs allow.
const PROJECT_EDITABLE: &[(&str, &[&str])] = &[
    ("only_allow_merge_if_pipeline_succeeds", &[]),
    ("only_allow_merge_if_all_discussions_are_resolved", &[]),
    ("merge_method", &["merge", "rebase_merge", "ff"]),
    ("remove_source_branch_after_merge", &[]),
    (
        "container_registry_access_level",
        &["disabled", "private", "enabled"],
    ),
    ("merge_trains_enabled", &[]),
    ("merge_pipelines_enabled", &[]),
];
/// Returned and accepted only with a Premium licence.
const PROJECT_PREMIUM: &[&str] = &["merge_trains_enabled", "merge_pipelines_enabled"];

const APPROVAL_SETTINGS: &[&str] = &[
    "reset_approvals_on_push",
    "selective_code_owner_removals",
    "disable_overriding_approvers_per_merge_request",
    "merge_requests_author_approval",
    "merge_requests_disable_committers_approval",
    "require_reauthentication_to_approve",
];

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
            runners: super::gitlab_runners::Runners::default(),
            hooks: super::gitlab_hooks::GroupHooks::default(),
            ci: super::gitlab_ci::CiHistory::default(),
            next_id: 1,
        };
        let root = data.add_user("root", &[]);
        if let Some(user) = data.users.get_mut(&root) {
            user.is_admin = true;
        }
        data.tokens.insert(admin_token.to_owned(), root);
        data
    }

    pub(super) fn id(&mut self) -> u64 {
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
        self.tokens.insert(token.to_owned(), bot);
        self.token_scopes
            .insert(token.to_owned(), (project, expires_at.to_owned()));
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
                settings: default_project_settings(),
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
                repository: super::gitlab_repo::Repository::default(),
                delivery: super::gitlab_delivery::ProjectDelivery::default(),
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

    fn descendants(&self, group: u64) -> Vec<u64> {
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

    pub(super) fn find_group(&self, id: &str) -> Option<&GroupRecord> {
        match id.parse::<u64>() {
            Ok(n) => self.groups.get(&n),
            Err(_) => self.group_by_path(id),
        }
    }

    fn group_json(&self, g: &GroupRecord) -> Value {
        json!({
            "id": g.id, "name": g.path, "path": g.path, "full_name": g.full_path,
            "full_path": g.full_path, "parent_id": g.parent_id, "visibility": "private",
        })
    }

    pub(super) fn project_json(&self, p: &ProjectRecord) -> Value {
        let mut v = json!({
            "id": p.id,
            "name": p.path,
            "path": p.path,
            "path_with_namespace": p.path_with_namespace,
            "namespace": {"id": p.namespace_id, "full_path": p.path_with_namespace.rsplit_once('/').map_or("", |x| x.0)},
            "topics": p.topics,
            "archived": p.archived,
        });
        for (key, value) in &p.settings {
            if self.tier == Tier::Free && PROJECT_PREMIUM.contains(&key.as_str()) {
                continue;
            }
            v[key] = value.clone();
        }
        v
    }

    fn access_json(&self, levels: &[AccessRecord]) -> Value {
        levels
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "access_level": a.access_level,
                    "access_level_description": access_description(a.access_level),
                    "user_id": a.user_id,
                    "group_id": a.group_id,
                })
            })
            .collect()
    }

    fn branch_json(&self, b: &ProtectedBranchRecord) -> Value {
        let mut v = json!({
            "id": b.id,
            "name": b.name,
            "push_access_levels": self.access_json(&b.push),
            "merge_access_levels": self.access_json(&b.merge),
            "unprotect_access_levels": self.access_json(&b.unprotect),
            "allow_force_push": b.allow_force_push,
        });
        if self.tier == Tier::Premium {
            v["code_owner_approval_required"] = b.code_owner_approval_required.into();
        }
        v
    }

    fn rule_json(&self, p: &ProjectRecord, r: &ApprovalRuleRecord) -> Value {
        let groups: Vec<Value> = r
            .group_ids
            .iter()
            .filter_map(|g| self.groups.get(g))
            .map(|g| self.group_json(g))
            .collect();
        let users: Vec<Value> = r
            .user_ids
            .iter()
            .filter_map(|u| self.users.get(u))
            .map(|u| json!({"id": u.id, "username": u.username, "state": "active"}))
            .collect();
        // Approval rules embed protected branches with `code_owner_approval_required` as a
        // string (docs: merge_request_approvals, "List all approval rules for a project").
        let branches: Vec<Value> = r
            .protected_branch_ids
            .iter()
            .filter_map(|id| p.protected_branches.iter().find(|b| b.id == *id))
            .map(|b| {
                let mut v = self.branch_json(b);
                v["code_owner_approval_required"] =
                    b.code_owner_approval_required.to_string().into();
                v
            })
            .collect();
        json!({
            "id": r.id,
            "name": r.name,
            "rule_type": r.rule_type,
            "report_type": null,
            "eligible_approvers": users,
            "approvals_required": r.approvals_required,
            "users": users,
            "groups": groups,
            "applies_to_all_protected_branches": r.applies_to_all_protected_branches,
            "protected_branches": branches,
            "contains_hidden_groups": false,
        })
    }

    fn user_json(&self, u: &UserRecord, admin_view: bool) -> Value {
        let mut v = json!({
            "id": u.id, "username": u.username, "name": u.username, "state": "active",
            "bot": u.bot, "locked": false,
        });
        if admin_view {
            v["is_admin"] = u.is_admin.into();
            v["user_type"] = u.user_type.clone().into();
            v["identities"] = u
                .identities
                .iter()
                .map(|(p, x)| json!({"provider": p, "extern_uid": x, "saml_provider_id": null}))
                .collect();
        }
        v
    }
}

fn access_description(level: u8) -> &'static str {
    match level {
        0 => "No one",
        30 => "Developers + Maintainers",
        40 => "Maintainers",
        60 => "Administrators",
        _ => "Custom",
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

pub(super) type Reply = Response;

pub(super) fn message(status: StatusCode, text: &str) -> Reply {
    (status, Json(json!({"message": text}))).into_response()
}

pub(super) fn not_found(what: &str) -> Reply {
    message(StatusCode::NOT_FOUND, &format!("404 {what} Not Found"))
}

/// Grape's answer to an invalid parameter (400 `{"error": "..."}`).
pub(super) fn bad_param(text: &str) -> Reply {
    (StatusCode::BAD_REQUEST, Json(json!({"error": text}))).into_response()
}

/// Who is calling (set by [`require_token`]).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub id: u64,
    pub admin: bool,
}

/// Every `/api/v4` request needs a known token (api/rest "Authentication").
async fn require_token(State(s): State<GitLabState>, mut request: Request, next: Next) -> Reply {
    let headers = request.headers();
    let private = headers.get("private-token").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let caller = {
        let data = s.lock();
        let token = private.or(bearer);
        // A project access token: expired ones fail authentication; other projects are invisible.
        if let Some((project, expires)) = token.and_then(|t| data.token_scopes.get(t)) {
            let expired =
                common::dates::parse(expires).is_none_or(|day| day <= common::dates::today());
            if expired {
                return message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
            }
            let path = request.uri().path();
            let own = path
                .strip_prefix("/api/v4/projects/")
                .and_then(|rest| rest.split('/').next())
                .and_then(|segment| find_project_id(&data, &decode_segment(segment)))
                == Some(*project);
            if !own {
                return not_found("Project");
            }
        }
        token.and_then(|t| data.tokens.get(t)).map(|id| Caller {
            id: *id,
            admin: data.users.get(id).is_some_and(|u| u.is_admin),
        })
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => message(StatusCode::UNAUTHORIZED, "401 Unauthorized"),
    }
}

/// One page of `items` with GitLab's pagination headers.
pub(super) fn paginate(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Reply {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(20)
        .min(100);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let link_to = |n: usize| {
        let mut params: BTreeMap<String, String> = query.clone();
        params.insert("page".into(), n.to_string());
        params.insert("per_page".into(), per_page.to_string());
        let qs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("http://{host}{}?{}", uri.path(), qs.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    if page < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    links.push(format!("<{}>; rel=\"last\"", link_to(total_pages)));
    let mut response = Json(Value::Array(slice)).into_response();
    let h = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("x-page", page.to_string());
    set("x-per-page", per_page.to_string());
    set("x-total", total.to_string());
    set("x-total-pages", total_pages.to_string());
    set(
        "x-next-page",
        if page < total_pages {
            (page + 1).to_string()
        } else {
            String::new()
        },
    );
    set(
        "x-prev-page",
        if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        },
    );
    set("link", links.join(", "));
    response
}

pub(super) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn id_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(as_u64).collect()
}

/// Valid protected-branch access levels (docs: protected_branches "Valid access levels").
fn valid_level(level: u64) -> bool {
    matches!(level, 0 | 30 | 40 | 60)
}

pub fn routes(state: GitLabState) -> Router {
    let jwks = Router::new()
        .route(
            "/-/jwks",
            get(|State(s): State<GitLabState>| async move { Json((*s.jwks).clone()) }),
        )
        .route(
            "/oauth/discovery/keys",
            get(|State(s): State<GitLabState>| async move { Json((*s.jwks).clone()) }),
        )
        .with_state(state.clone());
    Router::new()
        .route("/api/v4/version", get(version))
        .route("/api/v4/metadata", get(version))
        .route("/api/v4/license", get(license))
        .route("/api/v4/user", get(current_user))
        .route("/api/v4/users", get(list_users))
        .route("/api/v4/groups", axum::routing::post(create_group))
        .route("/api/v4/groups/{id}", get(get_group))
        .route("/api/v4/groups/{id}/projects", get(group_projects))
        .route(
            "/api/v4/groups/{id}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/api/v4/groups/{id}/members/{user}",
            axum::routing::put(edit_member).delete(remove_member),
        )
        .route("/api/v4/projects/{id}", get(get_project).put(edit_project))
        .route(
            "/api/v4/projects/{id}/protected_branches",
            get(list_protected).post(protect_branch),
        )
        .route(
            "/api/v4/projects/{id}/protected_branches/{name}",
            get(get_protected)
                .patch(update_protected)
                .delete(unprotect_branch),
        )
        .route(
            "/api/v4/projects/{id}/approvals",
            get(get_approval_settings).post(set_approval_settings),
        )
        .route(
            "/api/v4/projects/{id}/approval_rules",
            get(list_rules).post(create_rule),
        )
        .route(
            "/api/v4/projects/{id}/approval_rules/{rule}",
            axum::routing::put(update_rule).delete(delete_rule),
        )
        .merge(super::gitlab_repo::routes())
        .merge(super::gitlab_delivery::routes())
        .merge(super::gitlab_tags::routes())
        .merge(super::gitlab_runners::routes())
        .merge(super::gitlab_hooks::routes())
        .merge(super::gitlab_ci::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
        .merge(jwks)
}

pub(super) type Q = Query<BTreeMap<String, String>>;

/// A percent-encoded path segment (`platform_services%2Fpacket-relay`) decoded.
fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// doc/api/version.md and doc/api/metadata.md: `enterprise` is true on EE builds.
async fn version(State(s): State<GitLabState>) -> Reply {
    let ee = s.lock().tier != Tier::Free;
    Json(json!({
        "version": if ee { "17.11.0-ee" } else { "17.11.0" },
        "revision": "sandbox",
        "kas": {"enabled": false},
        "enterprise": ee,
    }))
    .into_response()
}

/// doc/api/license.md: the current licence with its `plan` (EE only; CE has no such route).
async fn license(State(s): State<GitLabState>) -> Reply {
    match s.lock().tier {
        Tier::Free => not_found("License"),
        Tier::Premium => {
            Json(json!({"id": 1, "plan": "premium", "expired": false})).into_response()
        }
    }
}

async fn current_user(State(s): State<GitLabState>, Extension(caller): Extension<Caller>) -> Reply {
    let id = caller.id;
    let data = s.lock();
    let user = &data.users[&id];
    Json(data.user_json(user, true)).into_response()
}

/// doc/api/users.md "List users": `active`, `username`, `extern_uid` + `provider` (admin);
/// identities only in the administrator's view.
async fn list_users(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Q,
) -> Reply {
    let admin = caller.admin;
    let data = s.lock();
    let items: Vec<Value> = data
        .users
        .values()
        .filter(|u| {
            q.get("username")
                .is_none_or(|n| n.eq_ignore_ascii_case(&u.username))
        })
        .filter(|u| match (q.get("extern_uid"), q.get("provider")) {
            (Some(x), Some(p)) => admin && u.identities.iter().any(|(pp, xx)| pp == p && xx == x),
            _ => true,
        })
        .map(|u| data.user_json(u, admin))
        .collect();
    paginate(items, &q, &uri, &headers)
}

/// doc/api/groups.md "New group": `name` and `path` required; `parent_id` for a subgroup.
async fn create_group(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Reply {
    let user = caller.id;
    let (Some(_name), Some(path)) = (body["name"].as_str(), body["path"].as_str()) else {
        return bad_param("name is missing, path is missing");
    };
    let parent = body.get("parent_id").and_then(as_u64);
    let mut data = s.lock();
    if let Some(p) = parent {
        if !data.groups.contains_key(&p) {
            return not_found("Group");
        }
    }
    let full = match parent.and_then(|p| data.groups.get(&p)) {
        Some(p) => format!("{}/{path}", p.full_path),
        None => path.to_owned(),
    };
    if data.group_by_path(&full).is_some() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": {"path": ["has already been taken"]}})),
        )
            .into_response();
    }
    let id = data.add_group(path, parent, Some(user));
    let g = data.groups[&id].clone();
    (StatusCode::CREATED, Json(data.group_json(&g))).into_response()
}

async fn get_group(State(s): State<GitLabState>, Path(id): Path<String>) -> Reply {
    let data = s.lock();
    match data.find_group(&id) {
        Some(g) => Json(data.group_json(g)).into_response(),
        None => not_found("Group"),
    }
}

/// doc/api/groups.md "List projects": `include_subgroups`, `archived`, ordered by id here.
async fn group_projects(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(group) = data.find_group(&id) else {
        return not_found("Group");
    };
    let namespaces = if q.get("include_subgroups").is_some_and(|v| v == "true") {
        data.descendants(group.id)
    } else {
        vec![group.id]
    };
    let archived = q.get("archived").map(String::as_str);
    let items: Vec<Value> = data
        .projects
        .values()
        .filter(|p| namespaces.contains(&p.namespace_id))
        .filter(|p| match archived {
            Some("false") => !p.archived,
            Some("true") => p.archived,
            _ => true,
        })
        .map(|p| data.project_json(p))
        .collect();
    paginate(items, &q, &uri, &headers)
}

pub(super) fn find_project_id(data: &GitLabData, id: &str) -> Option<u64> {
    match id.parse::<u64>() {
        Ok(n) => data.projects.contains_key(&n).then_some(n),
        Err(_) => data.project_by_path(id).map(|p| p.id),
    }
}

async fn get_project(State(s): State<GitLabState>, Path(id): Path<String>) -> Reply {
    let data = s.lock();
    match find_project_id(&data, &id) {
        Some(pid) => Json(data.project_json(&data.projects[&pid])).into_response(),
        None => not_found("Project"),
    }
}

/// doc/api/projects.md "Edit a project": only the given attributes change; enumerated ones are
/// validated (400 `<attr> does not have a valid value`); Premium attributes are ignored on Free.
async fn edit_project(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(fields) = body.as_object() else {
        return bad_param("body must be a JSON object");
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let tier = data.tier;
    let mut updates = Map::new();
    for (key, value) in fields {
        let Some((_, allowed)) = PROJECT_EDITABLE.iter().find(|(k, _)| k == key) else {
            continue; // Grape ignores undeclared parameters.
        };
        if tier == Tier::Free && PROJECT_PREMIUM.contains(&key.as_str()) {
            continue;
        }
        if allowed.is_empty() {
            match as_bool(value) {
                Some(b) => updates.insert(key.clone(), b.into()),
                None => return bad_param(&format!("{key} is invalid")),
            };
        } else {
            match value.as_str().filter(|v| allowed.contains(v)) {
                Some(v) => updates.insert(key.clone(), v.into()),
                None => return bad_param(&format!("{key} does not have a valid value")),
            };
        }
    }
    let project = data.projects.get_mut(&pid).expect("found above");
    for (key, value) in updates {
        if key == "container_registry_access_level" {
            project.settings.insert(
                "container_registry_enabled".into(),
                (value != "disabled").into(),
            );
        }
        project.settings.insert(key, value);
    }
    let project = data.projects[&pid].clone();
    Json(data.project_json(&project)).into_response()
}

async fn list_protected(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let items = data.projects[&pid]
        .protected_branches
        .iter()
        .map(|b| data.branch_json(b))
        .collect();
    paginate(items, &q, &uri, &headers)
}

async fn get_protected(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    match data.projects[&pid]
        .protected_branches
        .iter()
        .find(|b| b.name == name)
    {
        Some(b) => Json(data.branch_json(b)).into_response(),
        None => not_found("Protected Branch"),
    }
}

/// protected_branches "Protect repository branches": `name` required; `push_access_level`,
/// `merge_access_level`, `unprotect_access_level` default to 40; 409 when already protected.
async fn protect_branch(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(name) = body["name"].as_str().map(str::to_owned) else {
        return bad_param("name is missing");
    };
    let mut levels = [40u64; 3];
    for (i, key) in [
        "push_access_level",
        "merge_access_level",
        "unprotect_access_level",
    ]
    .iter()
    .enumerate()
    {
        if let Some(v) = body.get(*key) {
            match as_u64(v).filter(|l| valid_level(*l) && !(i == 2 && *l == 0)) {
                Some(l) => levels[i] = l,
                None => return bad_param(&format!("{key} does not have a valid value")),
            }
        }
    }
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    if data.projects[&pid]
        .protected_branches
        .iter()
        .any(|b| b.name == name)
    {
        return message(
            StatusCode::CONFLICT,
            &format!("Protected branch '{name}' already exists"),
        );
    }
    let premium = data.tier == Tier::Premium;
    let ids = [data.id(), data.id(), data.id(), data.id()];
    let record = |id: u64, level: u64| AccessRecord {
        id,
        access_level: u8::try_from(level).unwrap_or(40),
        user_id: None,
        group_id: None,
    };
    let branch = ProtectedBranchRecord {
        id: ids[0],
        name,
        push: vec![record(ids[1], levels[0])],
        merge: vec![record(ids[2], levels[1])],
        unprotect: vec![record(ids[3], levels[2])],
        allow_force_push: body
            .get("allow_force_push")
            .and_then(as_bool)
            .unwrap_or(false),
        code_owner_approval_required: premium
            && body
                .get("code_owner_approval_required")
                .and_then(as_bool)
                .unwrap_or(false),
    };
    let json = data.branch_json(&branch);
    data.projects
        .get_mut(&pid)
        .expect("found")
        .protected_branches
        .push(branch);
    (StatusCode::CREATED, Json(json)).into_response()
}

/// Applies one `allowed_to_*` array (protected_branches "Update a protected branch"): `{access_level}`
/// creates, `{id, access_level}` updates, `{id, _destroy: true}` deletes.
fn apply_allowed(
    list: &mut Vec<AccessRecord>,
    changes: &[Value],
    next_id: &mut dyn FnMut() -> u64,
) -> Result<(), String> {
    for change in changes {
        let id = change.get("id").and_then(as_u64);
        if change.get("_destroy").and_then(as_bool) == Some(true) {
            let Some(id) = id else {
                return Err("_destroy needs id".into());
            };
            list.retain(|a| a.id != id);
            continue;
        }
        let level = change.get("access_level").and_then(as_u64);
        if let Some(l) = level {
            if !valid_level(l) {
                return Err("access_level does not have a valid value".into());
            }
        }
        match id {
            Some(id) => {
                let Some(entry) = list.iter_mut().find(|a| a.id == id) else {
                    return Err(format!("access level {id} not found"));
                };
                if let Some(l) = level {
                    entry.access_level = u8::try_from(l).unwrap_or(40);
                }
            }
            None => list.push(AccessRecord {
                id: next_id(),
                access_level: u8::try_from(level.unwrap_or(40)).unwrap_or(40),
                user_id: change.get("user_id").and_then(as_u64),
                group_id: change.get("group_id").and_then(as_u64),
            }),
        }
    }
    Ok(())
}

async fn update_protected(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let mut guard = s.lock();
    let data = &mut *guard;
    let Some(pid) = find_project_id(data, &id) else {
        return not_found("Project");
    };
    let premium = data.tier == Tier::Premium;
    let mut next = data.next_id;
    let Some(branch) = data
        .projects
        .get_mut(&pid)
        .and_then(|p| p.protected_branches.iter_mut().find(|b| b.name == name))
    else {
        return not_found("Protected Branch");
    };
    if let Some(v) = body.get("allow_force_push").and_then(as_bool) {
        branch.allow_force_push = v;
    }
    if premium {
        if let Some(v) = body.get("code_owner_approval_required").and_then(as_bool) {
            branch.code_owner_approval_required = v;
        }
        let mut alloc = || {
            next += 1;
            next - 1
        };
        for (key, list) in [
            ("allowed_to_push", &mut branch.push),
            ("allowed_to_merge", &mut branch.merge),
            ("allowed_to_unprotect", &mut branch.unprotect),
        ] {
            if let Some(changes) = body.get(key).and_then(Value::as_array) {
                if let Err(e) = apply_allowed(list, changes, &mut alloc) {
                    return bad_param(&format!("{key}: {e}"));
                }
            }
        }
    }
    let branch = branch.clone();
    data.next_id = next;
    Json(data.branch_json(&branch)).into_response()
}

/// Unprotecting deletes the protected branch; approval rules lose it from their scope (the reason
/// the phases never unprotect to change settings).
async fn unprotect_branch(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let project = data.projects.get_mut(&pid).expect("found");
    let Some(pos) = project
        .protected_branches
        .iter()
        .position(|b| b.name == name)
    else {
        return not_found("Protected Branch");
    };
    let removed = project.protected_branches.remove(pos);
    for rule in &mut project.approval_rules {
        rule.protected_branch_ids.retain(|b| *b != removed.id);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Premium endpoints on Free answer 404 (GitLab CE has no such route).
fn premium_project(data: &GitLabData, id: &str) -> Result<u64, Reply> {
    if data.tier == Tier::Free {
        return Err(message(StatusCode::NOT_FOUND, "404 Not Found"));
    }
    find_project_id(data, id).ok_or_else(|| not_found("Project"))
}

async fn get_approval_settings(State(s): State<GitLabState>, Path(id): Path<String>) -> Reply {
    let data = s.lock();
    match premium_project(&data, &id) {
        Ok(pid) => {
            Json(Value::Object(data.projects[&pid].approval_settings.clone())).into_response()
        }
        Err(r) => r,
    }
}

/// merge_request_approvals "Update approval configuration for a project".
async fn set_approval_settings(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let mut data = s.lock();
    let pid = match premium_project(&data, &id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let settings = &mut data
        .projects
        .get_mut(&pid)
        .expect("found")
        .approval_settings;
    for (key, value) in body.as_object().into_iter().flatten() {
        if APPROVAL_SETTINGS.contains(&key.as_str()) {
            match as_bool(value) {
                Some(b) => {
                    settings.insert(key.clone(), b.into());
                }
                None => return bad_param(&format!("{key} is invalid")),
            }
        }
    }
    (StatusCode::CREATED, Json(Value::Object(settings.clone()))).into_response()
}

async fn list_rules(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let pid = match premium_project(&data, &id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let project = &data.projects[&pid];
    let items = project
        .approval_rules
        .iter()
        .map(|r| data.rule_json(project, r))
        .collect();
    paginate(items, &q, &uri, &headers)
}

/// Checks and applies the optional attributes of a rule create/update
/// (merge_request_approvals "Create/Update an approval rule for a project").
fn apply_rule_fields(
    data: &GitLabData,
    pid: u64,
    rule: &mut ApprovalRuleRecord,
    body: &Value,
) -> Result<(), Reply> {
    if let Some(v) = body.get("approvals_required") {
        rule.approvals_required =
            as_u64(v).ok_or_else(|| bad_param("approvals_required is invalid"))?;
    }
    if let Some(v) = body.get("name") {
        rule.name = v
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= 1024)
            .ok_or_else(|| bad_param("name is invalid"))?
            .to_owned();
    }
    if let Some(v) = body.get("group_ids") {
        let ids = id_list(v).ok_or_else(|| bad_param("group_ids is invalid"))?;
        if ids.iter().any(|g| !data.groups.contains_key(g)) {
            return Err(not_found("Group"));
        }
        rule.group_ids = ids;
    }
    if let Some(v) = body.get("user_ids") {
        rule.user_ids = id_list(v).ok_or_else(|| bad_param("user_ids is invalid"))?;
    }
    if let Some(v) = body.get("protected_branch_ids") {
        let ids = id_list(v).ok_or_else(|| bad_param("protected_branch_ids is invalid"))?;
        let project = &data.projects[&pid];
        if ids
            .iter()
            .any(|b| !project.protected_branches.iter().any(|p| p.id == *b))
        {
            return Err(bad_param(
                "protected_branch_ids does not have a valid value",
            ));
        }
        rule.protected_branch_ids = ids;
    }
    if let Some(v) = body.get("applies_to_all_protected_branches") {
        rule.applies_to_all_protected_branches =
            as_bool(v).ok_or_else(|| bad_param("applies_to_all_protected_branches is invalid"))?;
    }
    if let Some(v) = body.get("rule_type") {
        let t = v.as_str().unwrap_or_default();
        if !matches!(t, "any_approver" | "regular") {
            return Err(bad_param("rule_type does not have a valid value"));
        }
        rule.rule_type = t.to_owned();
    }
    let taken = data.projects[&pid]
        .approval_rules
        .iter()
        .any(|r| r.id != rule.id && r.name == rule.name && r.rule_type == rule.rule_type);
    if taken {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"message": {"name": ["has already been taken"]}})),
        )
            .into_response());
    }
    Ok(())
}

async fn create_rule(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    if body.get("name").is_none() || body.get("approvals_required").is_none() {
        return bad_param("name is missing, approvals_required is missing");
    }
    let mut data = s.lock();
    let pid = match premium_project(&data, &id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut rule = ApprovalRuleRecord {
        id: 0,
        name: String::new(),
        rule_type: "regular".into(),
        approvals_required: 0,
        group_ids: Vec::new(),
        user_ids: Vec::new(),
        protected_branch_ids: Vec::new(),
        applies_to_all_protected_branches: false,
    };
    if let Err(r) = apply_rule_fields(&data, pid, &mut rule, &body) {
        return r;
    }
    rule.id = data.id();
    let project = data.projects.get_mut(&pid).expect("found");
    project.approval_rules.push(rule.clone());
    let project = project.clone();
    (StatusCode::CREATED, Json(data.rule_json(&project, &rule))).into_response()
}

async fn update_rule(
    State(s): State<GitLabState>,
    Path((id, rule_id)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Reply {
    let mut data = s.lock();
    let pid = match premium_project(&data, &id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(mut rule) = data.projects[&pid]
        .approval_rules
        .iter()
        .find(|r| r.id == rule_id)
        .cloned()
    else {
        return not_found("Approval Rule");
    };
    if let Err(r) = apply_rule_fields(&data, pid, &mut rule, &body) {
        return r;
    }
    let project = data.projects.get_mut(&pid).expect("found");
    if let Some(slot) = project.approval_rules.iter_mut().find(|r| r.id == rule_id) {
        *slot = rule.clone();
    }
    let project = project.clone();
    Json(data.rule_json(&project, &rule)).into_response()
}

async fn delete_rule(
    State(s): State<GitLabState>,
    Path((id, rule_id)): Path<(String, u64)>,
) -> Reply {
    let mut data = s.lock();
    let pid = match premium_project(&data, &id) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rules = &mut data.projects.get_mut(&pid).expect("found").approval_rules;
    let before = rules.len();
    rules.retain(|r| r.id != rule_id);
    if rules.len() == before {
        return not_found("Approval Rule");
    }
    StatusCode::NO_CONTENT.into_response()
}

fn member_json(data: &GitLabData, user: u64, level: u8) -> Value {
    let username = data.users.get(&user).map_or("", |u| u.username.as_str());
    json!({"id": user, "username": username, "name": username, "state": "active", "access_level": level})
}

/// members "List all members of a group or project" (direct members).
async fn list_members(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(group) = data.find_group(&id) else {
        return not_found("Group");
    };
    let items = group
        .members
        .iter()
        .map(|(u, l)| member_json(&data, *u, *l))
        .collect();
    paginate(items, &q, &uri, &headers)
}

fn valid_member_level(level: u64) -> bool {
    matches!(level, 5 | 10 | 15 | 20 | 30 | 40 | 50)
}

/// members "Add a member to a group or project": 409 "Member already exists".
async fn add_member(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let (Some(user), Some(level)) = (
        body.get("user_id").and_then(as_u64),
        body.get("access_level").and_then(as_u64),
    ) else {
        return bad_param("user_id is missing, access_level is missing");
    };
    if !valid_member_level(level) {
        return bad_param("access_level does not have a valid value");
    }
    let mut data = s.lock();
    if !data.users.contains_key(&user) {
        return not_found("User");
    }
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    let level = u8::try_from(level).unwrap_or(10);
    let group = data.groups.get_mut(&gid).expect("found");
    if group.members.contains_key(&user) {
        return message(StatusCode::CONFLICT, "Member already exists");
    }
    group.members.insert(user, level);
    (StatusCode::CREATED, Json(member_json(&data, user, level))).into_response()
}

async fn edit_member(
    State(s): State<GitLabState>,
    Path((id, user)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(level) = body
        .get("access_level")
        .and_then(as_u64)
        .filter(|l| valid_member_level(*l))
    else {
        return bad_param("access_level does not have a valid value");
    };
    let mut data = s.lock();
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    let level = u8::try_from(level).unwrap_or(10);
    match data
        .groups
        .get_mut(&gid)
        .expect("found")
        .members
        .get_mut(&user)
    {
        Some(l) => *l = level,
        None => return not_found("Member"),
    }
    Json(member_json(&data, user, level)).into_response()
}

async fn remove_member(
    State(s): State<GitLabState>,
    Path((id, user)): Path<(String, u64)>,
) -> Reply {
    let mut data = s.lock();
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    match data
        .groups
        .get_mut(&gid)
        .expect("found")
        .members
        .remove(&user)
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found("Member"),
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
    for (username, sub) in super::keycloak::DEMO_USERS {
        data.add_user(username, &[("openid_connect", sub)]);
    }
    data.add_bot("project_1_bot_5f2c");
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_demo() -> (super::super::Running, GitLabState) {
        common::cli::install_crypto_provider();
        let state = GitLabState::new(json!({"keys": []}), demo_data("glpat-test"));
        let running = super::super::serve("gitlab", routes(state.clone()))
            .await
            .unwrap();
        (running, state)
    }

    /// api/rest "Offset-based pagination" headers, and "Authentication" (401 without a token).
    #[tokio::test]
    async fn pages_carry_gitlab_headers_and_tokens_are_required() {
        let (running, state) = serve_demo().await;
        let ps = state.lock().group_by_path("platform_services").unwrap().id;
        let http = reqwest::Client::new();
        let url = format!(
            "{}/api/v4/groups/{ps}/projects?include_subgroups=true&per_page=4",
            running.url
        );
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
        let page = http
            .get(&url)
            .header("PRIVATE-TOKEN", "glpat-test")
            .send()
            .await
            .unwrap();
        let h = page.headers().clone();
        assert_eq!(h["x-total"], "6");
        assert_eq!(h["x-total-pages"], "2");
        assert_eq!(h["x-next-page"], "2");
        let link = h["link"].to_str().unwrap();
        assert!(
            link.contains("page=2") && link.contains("rel=\"next\""),
            "{link}"
        );
        assert_eq!(page.json::<Vec<Value>>().await.unwrap().len(), 4);
        let next = common::http::next_link(&h).unwrap();
        let last = http
            .get(&next)
            .header("PRIVATE-TOKEN", "glpat-test")
            .send()
            .await
            .unwrap();
        assert_eq!(last.headers()["x-next-page"], "");
        assert!(
            !last.headers()["link"]
                .to_str()
                .unwrap()
                .contains("rel=\"next\"")
        );
    }

    /// protected_branches "Update a protected branch" edits entries by id; "Unprotect" removes
    /// the branch from approval rules' scope (why the phases never unprotect).
    #[tokio::test]
    async fn patch_keeps_ids_and_unprotect_drops_rule_scope() {
        let (running, state) = serve_demo().await;
        let pid = state
            .lock()
            .project_by_path("platform_services/packet-relay")
            .unwrap()
            .id;
        let http = reqwest::Client::new();
        let call = |method: reqwest::Method, path: String, body: Value| {
            http.request(method, format!("{}/api/v4/{path}", running.url))
                .header("PRIVATE-TOKEN", "glpat-test")
                .json(&body)
                .send()
        };
        let created: Value = call(
            reqwest::Method::POST,
            format!("projects/{pid}/protected_branches"),
            json!({"name": "main", "push_access_level": 30}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let entry = created["push_access_levels"][0]["id"].as_u64().unwrap();
        let patched: Value = call(
            reqwest::Method::PATCH,
            format!("projects/{pid}/protected_branches/main"),
            json!({"allowed_to_push": [{"id": entry, "access_level": 40}]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(patched["id"], created["id"]);
        assert_eq!(
            patched["push_access_levels"],
            json!([{"id": entry, "access_level": 40, "access_level_description": "Maintainers", "user_id": null, "group_id": null}])
        );
        let rule: Value = call(
            reqwest::Method::POST,
            format!("projects/{pid}/approval_rules"),
            json!({"name": "r", "approvals_required": 1, "protected_branch_ids": [created["id"]]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(
            rule["protected_branches"][0]["code_owner_approval_required"],
            "false"
        );
        let dup = call(
            reqwest::Method::POST,
            format!("projects/{pid}/approval_rules"),
            json!({"name": "r", "approvals_required": 1}),
        )
        .await
        .unwrap();
        assert_eq!(dup.status(), 400, "rule names are unique per project");
        assert_eq!(
            call(
                reqwest::Method::DELETE,
                format!("projects/{pid}/protected_branches/main"),
                json!({})
            )
            .await
            .unwrap()
            .status(),
            204
        );
        let rules: Value = call(
            reqwest::Method::GET,
            format!("projects/{pid}/approval_rules"),
            Value::Null,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(rules[0]["protected_branches"], json!([]));
    }
}
