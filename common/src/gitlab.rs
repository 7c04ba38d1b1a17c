//! GitLab REST API v4 client: the endpoints the phases call, typed where the phases read fields and
//! raw JSON where they only pass settings through. Built on [`ApiClient`] (retries, pagination,
//! counters, one-line errors) rather than the `gitlab` crate, which has no endpoint to update a
//! protected branch in place (ADR 0006).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{Credential, PlatformConfig};
use crate::env;
use crate::error::{Error, Result};
use crate::http::{ApiClient, Fixes, Retry, build_reqwest};

const SERVICE: &str = "GitLab";

/// Access levels (GitLab docs: api/members "Roles"; `api/protected_branches` "Valid access levels").
pub mod access {
    pub const NO_ACCESS: u8 = 0;
    pub const GUEST: u8 = 10;
    pub const REPORTER: u8 = 20;
    pub const DEVELOPER: u8 = 30;
    pub const MAINTAINER: u8 = 40;
    pub const OWNER: u8 = 50;
    pub const ADMIN: u8 = 60;

    /// The role name GitLab shows for a level.
    pub fn name(level: u8) -> &'static str {
        match level {
            NO_ACCESS => "No access",
            GUEST => "Guest",
            REPORTER => "Reporter",
            DEVELOPER => "Developer",
            MAINTAINER => "Maintainer",
            OWNER => "Owner",
            ADMIN => "Administrator",
            _ => "custom",
        }
    }
}

/// Which paid features the instance has: approval rules, code-owner approval, merge trains and
/// granular protected-branch access are Premium (GitLab docs: the "Tier" of each API page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// GitLab CE, or EE without a Premium/Ultimate licence.
    Free,
    Premium,
    Ultimate,
}

impl Tier {
    pub fn is_paid(self) -> bool {
        self != Tier::Free
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CurrentUser {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// One external identity of a user (admin view of the users API).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub provider: String,
    pub extern_uid: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub state: String,
    /// Project/group access-token bots (GitLab docs: api/users, `bot`).
    #[serde(default)]
    pub bot: bool,
    /// `human`, `project_bot`, `service_account`, … (admin view).
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub identities: Vec<Identity>,
}

impl User {
    /// A bot or service account: never pruned, never matched to a person.
    pub fn is_automation(&self) -> bool {
        self.bot
            || self
                .user_type
                .as_deref()
                .is_some_and(|t| t != "human" && !t.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub id: u64,
    pub full_path: String,
    #[serde(default)]
    pub parent_id: Option<u64>,
}

/// A project as the list endpoints return it; settings stay raw so a phase reads the ones it manages.
#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    pub id: u64,
    pub path_with_namespace: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// One entry of `push_access_levels`, `merge_access_levels` or `unprotect_access_levels`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AccessLevelEntry {
    #[serde(default)]
    pub id: Option<u64>,
    pub access_level: u8,
    #[serde(default)]
    pub user_id: Option<u64>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub deploy_key_id: Option<u64>,
}

impl AccessLevelEntry {
    /// A role-based entry (not a specific user, group or deploy key).
    pub fn is_role(&self) -> bool {
        self.user_id.is_none() && self.group_id.is_none() && self.deploy_key_id.is_none()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedBranch {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub push_access_levels: Vec<AccessLevelEntry>,
    #[serde(default)]
    pub merge_access_levels: Vec<AccessLevelEntry>,
    #[serde(default)]
    pub unprotect_access_levels: Vec<AccessLevelEntry>,
    #[serde(default)]
    pub allow_force_push: bool,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub code_owner_approval_required: bool,
}

/// Release tags: the pattern every phase protects before a release tag is pushed. A tag pipeline's
/// `id_token` carries `ref_protected: "true"` only if its tag matched a protected tag when it was
/// pushed, and Vault's CI roles bind that claim (ADR 0008, decision 1).
pub const RELEASE_TAG_PATTERN: &str = "v*";
/// Who may create release tags: Maintainers (GitLab docs: `api/protected_tags` "Valid access levels").
pub const RELEASE_TAG_CREATE_LEVEL: u8 = access::MAINTAINER;

/// One entry of a protected tag's `create_access_levels`: a role, or (Premium) a user or group, or
/// a deploy key; `access_level` is null for user and group entries (`api/protected_tags`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TagAccessEntry {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub access_level: Option<u8>,
    #[serde(default)]
    pub user_id: Option<u64>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub deploy_key_id: Option<u64>,
}

impl TagAccessEntry {
    /// A role-based entry (not a specific user, group or deploy key).
    pub fn is_role(&self) -> bool {
        self.user_id.is_none() && self.group_id.is_none() && self.deploy_key_id.is_none()
    }
}

/// A protected tag or wildcard (`GET /projects/:id/protected_tags/:name`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedTag {
    pub name: String,
    #[serde(default)]
    pub create_access_levels: Vec<TagAccessEntry>,
}

impl ProtectedTag {
    /// The roles allowed to create matching tags (user, group and deploy-key entries left out).
    pub fn create_roles(&self) -> Vec<u8> {
        self.create_access_levels
            .iter()
            .filter(|e| e.is_role())
            .filter_map(|e| e.access_level)
            .collect()
    }

    /// Exactly one role may create: `level`. User, group and deploy-key entries are not judged,
    /// as for protected branches.
    pub fn allows_only(&self, level: u8) -> bool {
        self.create_roles() == [level]
    }
}

/// The `POST /projects/:id/protected_tags` body that protects `name` for `create_access_level`,
/// keeping the user, group and deploy-key entries of `existing` (`allowed_to_create`, Premium;
/// GitLab Free ignores the attribute). Pure: phases plan with it.
pub fn protect_tag_body(
    name: &str,
    create_access_level: u8,
    existing: Option<&ProtectedTag>,
) -> Value {
    let mut body = serde_json::json!({"name": name, "create_access_level": create_access_level});
    let keep: Vec<Value> = existing
        .into_iter()
        .flat_map(|t| &t.create_access_levels)
        .filter_map(|e| {
            if let Some(user) = e.user_id {
                Some(serde_json::json!({"user_id": user}))
            } else if let Some(group) = e.group_id {
                Some(serde_json::json!({"group_id": group}))
            } else {
                e.deploy_key_id
                    .map(|key| serde_json::json!({"deploy_key_id": key}))
            }
        })
        .collect();
    if !keep.is_empty() {
        body["allowed_to_create"] = Value::Array(keep);
    }
    body
}

/// GitLab returns `code_owner_approval_required` as a boolean, and as the string `"false"` inside
/// approval rules (GitLab docs: `api/merge_request_approvals`, "List all approval rules").
fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::String(s) => s == "true",
        _ => false,
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleGroup {
    pub id: u64,
    pub full_path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleBranch {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApprovalRule {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub rule_type: String,
    pub approvals_required: u32,
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
    #[serde(default)]
    pub users: Vec<Value>,
    #[serde(default)]
    pub protected_branches: Vec<RuleBranch>,
    #[serde(default)]
    pub applies_to_all_protected_branches: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub id: u64,
    pub username: String,
    pub access_level: u8,
}

/// Percent-encodes a namespaced path for use as `:id` (GitLab docs: api/rest "Namespaced paths").
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// GitLab client bound to one instance and token.
#[derive(Clone, Debug)]
pub struct GitLabClient {
    api: ApiClient,
}

impl GitLabClient {
    /// Connects with `GITLAB_URL` (or `https://gitlab.$DOMAIN`) and `GITLAB_API_TOKEN` (or the token file).
    pub fn connect(cfg: &PlatformConfig) -> Result<Self> {
        let url = cfg.require_url(env::GITLAB_URL)?.to_owned();
        let credential = cfg.gitlab_token()?.ok_or_else(|| {
            Error::Config(format!(
                "no GitLab token: set {} or write it to {} (an admin personal access token with the api scope)",
                env::GITLAB_API_TOKEN,
                cfg.gitlab_token_file.display()
            ))
        })?;
        Ok(Self::new(
            &url,
            credential,
            build_reqwest(cfg)?,
            cfg.http_retries,
        ))
    }

    pub fn new(url: &str, credential: Credential, reqwest: reqwest::Client, retries: u32) -> Self {
        let fixes = Fixes {
            unauthorized: format!(
                "the GitLab token from {} is invalid, expired or revoked: create an admin personal access token with the api scope",
                credential.source
            ),
            forbidden: format!(
                "the GitLab token from {} lacks the rights for this: use an administrator's token (or an Owner of the groups) with the api scope",
                credential.source
            ),
            unreachable: format!(
                "check {}, that GitLab is up, and for TLS errors set {} to the platform CA bundle",
                env::GITLAB_URL,
                env::CICD_CA_BUNDLE
            ),
        };
        let base = format!("{}/api/v4", url.trim_end_matches('/'));
        let api = ApiClient::new(SERVICE, &base, reqwest, retries)
            .with_auth("private-token", "", credential)
            .with_fixes(fixes);
        Self { api }
    }

    /// The underlying client (request counters, backoff for tests).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    #[must_use]
    pub fn with_backoff(mut self, unit: std::time::Duration) -> Self {
        self.api = self.api.with_backoff(unit);
        self
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, operation: &str, path: &str) -> Result<T> {
        self.api
            .call_json(operation, Method::GET, path, None, Retry::Safe)
            .await
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<Vec<T>> {
        self.api.get_all(operation, path).await
    }

    async fn write<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: &Value,
        retry: Retry,
    ) -> Result<T> {
        self.api
            .call_json(operation, method, path, Some(body), retry)
            .await
    }

    /// `GET /user`: whose token this is.
    pub async fn current_user(&self) -> Result<CurrentUser> {
        self.get("reading the token's user", "user").await
    }

    /// The instance's tier: `GET /metadata` (`enterprise`), then `GET /license` (`plan`) on EE
    /// (GitLab docs: api/metadata, api/license). CE and unlicensed EE are Free.
    pub async fn tier(&self) -> Result<Tier> {
        let metadata: Value = self.get("reading instance metadata", "metadata").await?;
        if metadata["enterprise"] != Value::Bool(true) {
            return Ok(Tier::Free);
        }
        let license: Option<Value> = self
            .api
            .get_optional("reading the licence", "license")
            .await?;
        Ok(
            match license
                .as_ref()
                .and_then(|l| l["plan"].as_str())
                .unwrap_or("")
            {
                "premium" => Tier::Premium,
                "ultimate" => Tier::Ultimate,
                _ => Tier::Free,
            },
        )
    }

    /// `GET /groups/:id` by full path; `None` when it does not exist (or is not visible).
    pub async fn group(&self, full_path: &str) -> Result<Option<Group>> {
        self.api
            .get_optional(
                &format!("reading group {full_path}"),
                &format!("groups/{}", encode_path(full_path)),
            )
            .await
    }

    /// `POST /groups` (private), under `parent_id` when given.
    pub async fn create_group(&self, path: &str, parent_id: Option<u64>) -> Result<Group> {
        let mut body = serde_json::json!({"name": path, "path": path, "visibility": "private"});
        if let Some(parent) = parent_id {
            body["parent_id"] = parent.into();
        }
        self.write(
            &format!("creating group {path}"),
            Method::POST,
            "groups",
            &body,
            Retry::Never,
        )
        .await
    }

    /// Every project of a group and its subgroups, all pages (`include_subgroups=true`).
    pub async fn group_projects(&self, group: &Group) -> Result<Vec<Project>> {
        self.list(
            &format!("listing projects of {}", group.full_path),
            &format!(
                "groups/{}/projects?include_subgroups=true&with_shared=false&archived=false&order_by=id&sort=asc&per_page=100",
                group.id
            ),
        )
        .await
    }

    /// `PUT /projects/:id` with only the given settings.
    pub async fn edit_project(&self, project: u64, settings: &Value) -> Result<Value> {
        self.write(
            &format!("editing project {project}"),
            Method::PUT,
            &format!("projects/{project}"),
            settings,
            Retry::Safe,
        )
        .await
    }

    /// `GET /projects/:id/protected_branches/:name`; `None` when the branch is not protected.
    pub async fn protected_branch(
        &self,
        project: u64,
        name: &str,
    ) -> Result<Option<ProtectedBranch>> {
        self.api
            .get_optional(
                &format!("reading protected branch {name} of project {project}"),
                &format!(
                    "projects/{project}/protected_branches/{}",
                    encode_path(name)
                ),
            )
            .await
    }

    /// `POST /projects/:id/protected_branches`.
    pub async fn protect_branch(&self, project: u64, body: &Value) -> Result<ProtectedBranch> {
        self.write(
            &format!("protecting a branch of project {project}"),
            Method::POST,
            &format!("projects/{project}/protected_branches"),
            body,
            Retry::Never,
        )
        .await
    }

    /// `PATCH /projects/:id/protected_branches/:name`: updates in place, keeping the protected
    /// branch's id (approval rules scoped to it stay scoped). Setting values is idempotent, so retried.
    pub async fn update_protected_branch(
        &self,
        project: u64,
        name: &str,
        body: &Value,
    ) -> Result<ProtectedBranch> {
        self.write(
            &format!("updating protected branch {name} of project {project}"),
            Method::PATCH,
            &format!(
                "projects/{project}/protected_branches/{}",
                encode_path(name)
            ),
            body,
            Retry::Safe,
        )
        .await
    }

    /// `GET /projects/:id/protected_tags/:name` (`api/protected_tags` "Get a protected tag or
    /// wildcard protected tag"); `None` when nothing of that name is protected.
    pub async fn protected_tag(&self, project: u64, name: &str) -> Result<Option<ProtectedTag>> {
        self.api
            .get_optional(
                &format!("reading protected tag {name} of project {project}"),
                &format!("projects/{project}/protected_tags/{}", encode_path(name)),
            )
            .await
    }

    /// `GET /projects/:id/protected_tags`, all pages (`api/protected_tags` "List protected tags").
    pub async fn protected_tags(&self, project: u64) -> Result<Vec<ProtectedTag>> {
        self.list(
            &format!("listing protected tags of project {project}"),
            &format!("projects/{project}/protected_tags?per_page=100"),
        )
        .await
    }

    /// `POST /projects/:id/protected_tags` (`api/protected_tags` "Protect a repository tag"), with
    /// a body from [`protect_tag_body`]. Retried: a repeat of a POST that had succeeded answers 422
    /// "Name has already been taken" (older GitLab: 409 "Protected tag 'v*' already exists"),
    /// accepted when the tag is protected as asked.
    pub async fn protect_tag(&self, project: u64, body: &Value) -> Result<ProtectedTag> {
        let name = body["name"].as_str().unwrap_or_default();
        let operation = format!("protecting tag {name} of project {project}");
        let err = match self
            .write(
                &operation,
                Method::POST,
                &format!("projects/{project}/protected_tags"),
                body,
                Retry::Safe,
            )
            .await
        {
            Err(e) if matches!(e.status(), Some(409 | 422)) => e,
            other => return other,
        };
        let level = body["create_access_level"]
            .as_u64()
            .and_then(|l| u8::try_from(l).ok());
        match self.protected_tag(project, name).await? {
            Some(tag) if level.is_some_and(|l| tag.allows_only(l)) => Ok(tag),
            // Not protected: the answer was about something else (a 422 validation error).
            None => Err(err),
            Some(_) => Err(Error::Precondition {
                operation,
                message: format!(
                    "{} (it was protected meanwhile with other create levels): run again, or set the roles allowed to create {name} in the project's Settings > Repository > Protected tags",
                    err.one_line()
                ),
            }),
        }
    }

    /// `DELETE /projects/:id/protected_tags/:name` (`api/protected_tags` "Unprotect repository
    /// tags"). Already unprotected (404, e.g. a retried DELETE that had succeeded) is success.
    pub async fn unprotect_tag(&self, project: u64, name: &str) -> Result<()> {
        match self
            .api
            .call(
                &format!("unprotecting tag {name} of project {project}"),
                Method::DELETE,
                &format!("projects/{project}/protected_tags/{}", encode_path(name)),
                None,
                Retry::Safe,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes [`RELEASE_TAG_PATTERN`] protected so that only Maintainers create release tags;
    /// `true` when it changed something. For a phase that creates a project: call it before the
    /// first tag push (a tag pipeline's `ref_protected` is fixed when the tag is pushed).
    ///
    /// GitLab has no update for protected tags, so other create levels are fixed by unprotecting
    /// and protecting again. Safe for tags, unlike branches: nothing refers to a protected tag by
    /// id (approval rules do to a protected branch and would lose their scope), running pipelines
    /// keep the `ref_protected` they started with, and the pattern is unprotected only between
    /// two requests.
    pub async fn ensure_release_tag_protection(&self, project: u64) -> Result<bool> {
        let existing = self.protected_tag(project, RELEASE_TAG_PATTERN).await?;
        if existing
            .as_ref()
            .is_some_and(|t| t.allows_only(RELEASE_TAG_CREATE_LEVEL))
        {
            return Ok(false);
        }
        let body = protect_tag_body(
            RELEASE_TAG_PATTERN,
            RELEASE_TAG_CREATE_LEVEL,
            existing.as_ref(),
        );
        if existing.is_some() {
            self.unprotect_tag(project, RELEASE_TAG_PATTERN).await?;
        }
        self.protect_tag(project, &body).await?;
        Ok(true)
    }

    /// `GET /projects/:id/approvals` (Premium).
    pub async fn approval_settings(&self, project: u64) -> Result<Value> {
        self.get(
            &format!("reading approval settings of project {project}"),
            &format!("projects/{project}/approvals"),
        )
        .await
    }

    /// `POST /projects/:id/approvals` (Premium): sets the given fields; an upsert, so retried.
    pub async fn update_approval_settings(&self, project: u64, body: &Value) -> Result<Value> {
        self.write(
            &format!("updating approval settings of project {project}"),
            Method::POST,
            &format!("projects/{project}/approvals"),
            body,
            Retry::Safe,
        )
        .await
    }

    /// `GET /projects/:id/approval_rules`, all pages (Premium).
    pub async fn approval_rules(&self, project: u64) -> Result<Vec<ApprovalRule>> {
        self.list(
            &format!("listing approval rules of project {project}"),
            &format!("projects/{project}/approval_rules?per_page=100"),
        )
        .await
    }

    /// `POST /projects/:id/approval_rules`.
    pub async fn create_approval_rule(&self, project: u64, body: &Value) -> Result<ApprovalRule> {
        self.write(
            &format!("creating an approval rule of project {project}"),
            Method::POST,
            &format!("projects/{project}/approval_rules"),
            body,
            Retry::Never,
        )
        .await
    }

    /// `PUT /projects/:id/approval_rules/:rule`.
    pub async fn update_approval_rule(
        &self,
        project: u64,
        rule: u64,
        body: &Value,
    ) -> Result<ApprovalRule> {
        self.write(
            &format!("updating approval rule {rule} of project {project}"),
            Method::PUT,
            &format!("projects/{project}/approval_rules/{rule}"),
            body,
            Retry::Safe,
        )
        .await
    }

    /// `DELETE /projects/:id/approval_rules/:rule`.
    pub async fn delete_approval_rule(&self, project: u64, rule: u64) -> Result<()> {
        self.api
            .call(
                &format!("deleting approval rule {rule} of project {project}"),
                Method::DELETE,
                &format!("projects/{project}/approval_rules/{rule}"),
                None,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// Direct members of a group, all pages (`GET /groups/:id/members`).
    pub async fn group_members(&self, group: u64) -> Result<Vec<Member>> {
        self.list(
            &format!("listing members of group {group}"),
            &format!("groups/{group}/members?per_page=100"),
        )
        .await
    }

    /// `POST /groups/:id/members`.
    pub async fn add_group_member(&self, group: u64, user: u64, level: u8) -> Result<Member> {
        self.write(
            &format!("adding user {user} to group {group}"),
            Method::POST,
            &format!("groups/{group}/members"),
            &serde_json::json!({"user_id": user, "access_level": level}),
            Retry::Never,
        )
        .await
    }

    /// `PUT /groups/:id/members/:user_id`.
    pub async fn edit_group_member(&self, group: u64, user: u64, level: u8) -> Result<Member> {
        self.write(
            &format!("changing the role of user {user} in group {group}"),
            Method::PUT,
            &format!("groups/{group}/members/{user}"),
            &serde_json::json!({"access_level": level}),
            Retry::Safe,
        )
        .await
    }

    /// `DELETE /groups/:id/members/:user_id`.
    pub async fn remove_group_member(&self, group: u64, user: u64) -> Result<()> {
        self.api
            .call(
                &format!("removing user {user} from group {group}"),
                Method::DELETE,
                &format!("groups/{group}/members/{user}"),
                None,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// Every active user, all pages, with identities when the token is an administrator's.
    pub async fn active_users(&self) -> Result<Vec<User>> {
        self.list(
            "listing users",
            "users?active=true&order_by=id&sort=asc&per_page=100",
        )
        .await
    }
}

/// Git's blob id of a file's content (SHA-1 of `blob <len>\0<content>`), as the repository
/// tree API reports it: unchanged files are recognised without downloading them.
pub fn git_blob_id(content: &str) -> String {
    let mut data = format!("blob {}\0", content.len()).into_bytes();
    data.extend_from_slice(content.as_bytes());
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One entry of `GET /projects/:id/repository/tree`.
#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    pub id: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One CI/CD variable of a group.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct CiVariable {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub masked: bool,
    #[serde(default)]
    pub raw: bool,
    #[serde(default = "all_environments")]
    pub environment_scope: String,
}

/// A project access token (doc/api/project_access_tokens); `token` only in create and rotate answers.
#[derive(Clone, Deserialize)]
pub struct ProjectAccessToken {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub access_level: u8,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub token: Option<secrecy::SecretString>,
}

impl std::fmt::Debug for ProjectAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectAccessToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("access_level", &self.access_level)
            .field("expires_at", &self.expires_at)
            .field("active", &self.active)
            .field("token", &self.token.as_ref().map(|_| "(sensitive)"))
            .finish()
    }
}

fn all_environments() -> String {
    "*".into()
}

impl GitLabClient {
    /// `GET /projects/:path`; `None` when it does not exist.
    pub async fn project(&self, full_path: &str) -> Result<Option<Project>> {
        self.api
            .get_optional(
                &format!("reading project {full_path}"),
                &format!("projects/{}", encode_path(full_path)),
            )
            .await
    }

    /// `POST /projects` in a group namespace.
    pub async fn create_project(
        &self,
        path: &str,
        namespace_id: u64,
        description: &str,
    ) -> Result<Project> {
        self.write(
            &format!("creating project {path}"),
            Method::POST,
            "projects",
            &serde_json::json!({
                "name": path, "path": path, "namespace_id": namespace_id, "visibility": "internal",
                "description": description, "initialize_with_readme": false, "default_branch": "main",
            }),
            Retry::Never,
        )
        .await
    }

    /// Every file of `reference` (`GET …/repository/tree?recursive=true`); empty for an empty
    /// repository (GitLab answers 404 "Tree Not Found").
    pub async fn repository_files(&self, project: u64, reference: &str) -> Result<Vec<TreeEntry>> {
        let path = format!(
            "projects/{project}/repository/tree?recursive=true&ref={reference}&per_page=100"
        );
        let entries: Vec<TreeEntry> = match self
            .list(&format!("listing files of project {project}"), &path)
            .await
        {
            Ok(entries) => entries,
            // An empty repository has no tree yet.
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(entries.into_iter().filter(|e| e.kind == "blob").collect())
    }

    /// `POST /projects/:id/repository/commits` with `actions`; returns the commit id.
    pub async fn commit(
        &self,
        project: u64,
        branch: &str,
        message: &str,
        actions: &[Value],
    ) -> Result<String> {
        let commit: Value = self
            .write(
                &format!("committing {} file change(s) to project {project}", actions.len()),
                Method::POST,
                &format!("projects/{project}/repository/commits"),
                &serde_json::json!({"branch": branch, "commit_message": message, "actions": actions}),
                Retry::Never,
            )
            .await?;
        Ok(commit["id"].as_str().unwrap_or_default().to_owned())
    }

    /// The commit a tag points at; `None` when the tag does not exist.
    pub async fn tag_target(&self, project: u64, tag: &str) -> Result<Option<String>> {
        let tag: Option<Value> = self
            .api
            .get_optional(
                &format!("reading tag {tag} of project {project}"),
                &format!("projects/{project}/repository/tags/{}", encode_path(tag)),
            )
            .await?;
        Ok(tag.and_then(|t| {
            t["commit"]["id"]
                .as_str()
                .or(t["target"].as_str())
                .map(str::to_owned)
        }))
    }

    /// `POST /projects/:id/repository/tags`.
    pub async fn create_tag(
        &self,
        project: u64,
        tag: &str,
        reference: &str,
        message: &str,
    ) -> Result<()> {
        self.api
            .call(
                &format!("creating tag {tag} in project {project}"),
                Method::POST,
                &format!("projects/{project}/repository/tags"),
                Some(&serde_json::json!({"tag_name": tag, "ref": reference, "message": message})),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }

    /// `GET /projects/:id/access_tokens`: the project's access tokens, active and not (doc/api
    /// project_access_tokens "List all project access tokens").
    pub async fn project_access_tokens(&self, project: u64) -> Result<Vec<ProjectAccessToken>> {
        self.list(
            &format!("listing access tokens of project {project}"),
            &format!("projects/{project}/access_tokens?per_page=100"),
        )
        .await
    }

    /// `POST /projects/:id/access_tokens`: a new token; its secret is only in this answer.
    pub async fn create_project_access_token(
        &self,
        project: u64,
        name: &str,
        scopes: &[&str],
        access_level: u8,
        expires_at: &str,
    ) -> Result<ProjectAccessToken> {
        self.write(
            &format!("creating access token {name} of project {project}"),
            Method::POST,
            &format!("projects/{project}/access_tokens"),
            &serde_json::json!({"name": name, "scopes": scopes, "access_level": access_level, "expires_at": expires_at}),
            Retry::Never,
        )
        .await
    }

    /// `POST /projects/:id/access_tokens/:token_id/rotate`: revokes the token and answers a new
    /// one with the same name, scopes and role.
    pub async fn rotate_project_access_token(
        &self,
        project: u64,
        token: u64,
        expires_at: &str,
    ) -> Result<ProjectAccessToken> {
        self.write(
            &format!("rotating access token {token} of project {project}"),
            Method::POST,
            &format!("projects/{project}/access_tokens/{token}/rotate"),
            &serde_json::json!({"expires_at": expires_at}),
            Retry::Never,
        )
        .await
    }

    /// CI/CD variables of a group, all pages.
    pub async fn group_variables(&self, group: u64) -> Result<Vec<CiVariable>> {
        self.list(
            &format!("listing CI/CD variables of group {group}"),
            &format!("groups/{group}/variables?per_page=100"),
        )
        .await
    }

    /// `POST /groups/:id/variables`.
    pub async fn create_group_variable(&self, group: u64, variable: &CiVariable) -> Result<()> {
        let body = serde_json::to_value(variable).unwrap_or_default();
        self.api
            .call(
                &format!("creating CI/CD variable {} of group {group}", variable.key),
                Method::POST,
                &format!("groups/{group}/variables"),
                Some(&body),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }

    /// `PUT /groups/:id/variables/:key`.
    pub async fn update_group_variable(&self, group: u64, variable: &CiVariable) -> Result<()> {
        let body = serde_json::to_value(variable).unwrap_or_default();
        self.api
            .call(
                &format!("updating CI/CD variable {} of group {group}", variable.key),
                Method::PUT,
                &format!("groups/{group}/variables/{}", variable.key),
                Some(&body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }
}

/// A runner as `GET /groups/:id/runners` and `GET /runners/:id` show it (doc/api/runners.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Runner {
    pub id: u64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub runner_type: String,
    #[serde(default)]
    pub paused: bool,
    /// Only in the runner's details.
    #[serde(default)]
    pub tag_list: Vec<String>,
    #[serde(default)]
    pub run_untagged: bool,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub access_level: String,
}

/// A runner's id and authentication token (`glrt-…`), only ever returned by create and reset.
pub struct RunnerToken {
    pub id: u64,
    pub token: secrecy::SecretString,
}

fn runner_token(answer: &Value, id: u64, operation: &str) -> Result<RunnerToken> {
    let token = answer["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Decode {
            service: "GitLab",
            operation: operation.to_owned(),
            url: String::new(),
            cause: "no token in the answer".into(),
        })?;
    crate::redact::register(token);
    Ok(RunnerToken {
        id: answer["id"].as_u64().unwrap_or(id),
        token: token.to_owned().into(),
    })
}

/// Runners (doc/api/users.md "Create a runner linked to a user", doc/api/runners.md).
impl GitLabClient {
    /// `GET /groups/:id/runners?type=group_type`, all pages.
    pub async fn group_runners(&self, group: u64) -> Result<Vec<Runner>> {
        self.list(
            &format!("listing runners of group {group}"),
            &format!("groups/{group}/runners?type=group_type&per_page=100"),
        )
        .await
    }

    /// `GET /runners/:id`: the details (tags, `run_untagged`, …).
    pub async fn runner(&self, id: u64) -> Result<Runner> {
        self.get(&format!("reading runner {id}"), &format!("runners/{id}"))
            .await
    }

    /// `POST /user/runners`: a new runner; the answer carries the only copy of its token.
    pub async fn create_runner(&self, body: &Value) -> Result<RunnerToken> {
        let operation = format!(
            "creating runner {}",
            body["description"].as_str().unwrap_or_default()
        );
        let answer: Value = self
            .write(&operation, Method::POST, "user/runners", body, Retry::Never)
            .await?;
        runner_token(&answer, 0, &operation)
    }

    /// `PUT /runners/:id` with the attributes to change.
    pub async fn update_runner(&self, id: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating runner {id}"),
                Method::PUT,
                &format!("runners/{id}"),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// `POST /runners/:id/reset_authentication_token`: a new token (the old one stops working).
    pub async fn reset_runner_token(&self, id: u64) -> Result<RunnerToken> {
        let operation = format!("resetting the authentication token of runner {id}");
        let answer: Value = self
            .write(
                &operation,
                Method::POST,
                &format!("runners/{id}/reset_authentication_token"),
                &serde_json::json!({}),
                Retry::Never,
            )
            .await?;
        runner_token(&answer, id, &operation)
    }
}

/// A group webhook as `GET /groups/:id/hooks` returns it (GitLab docs: `api/group_webhooks` "List
/// group hooks"); the secret token is never returned. Event flags stay raw.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupHook {
    pub id: u64,
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

impl GitLabClient {
    /// `GET /groups/:id/hooks`, all pages (`api/group_webhooks` "List group hooks"; Premium).
    pub async fn group_hooks(&self, group: u64) -> Result<Vec<GroupHook>> {
        self.list(
            &format!("listing webhooks of group {group}"),
            &format!("groups/{group}/hooks?per_page=100"),
        )
        .await
    }

    /// `POST /groups/:id/hooks` (`api/group_webhooks` "Add a group hook"): `url`, event flags,
    /// `enable_ssl_verification`, `token` (write-only).
    pub async fn create_group_hook(&self, group: u64, body: &Value) -> Result<GroupHook> {
        self.write(
            &format!("adding a webhook to group {group}"),
            Method::POST,
            &format!("groups/{group}/hooks"),
            body,
            Retry::Never,
        )
        .await
    }

    /// `PUT /groups/:id/hooks/:hook_id` (`api/group_webhooks` "Edit group hook"). GitLab resets the
    /// token when the URL changes, so callers send `token` with every edit.
    pub async fn edit_group_hook(&self, group: u64, hook: u64, body: &Value) -> Result<GroupHook> {
        self.write(
            &format!("editing webhook {hook} of group {group}"),
            Method::PUT,
            &format!("groups/{group}/hooks/{hook}"),
            body,
            Retry::Safe,
        )
        .await
    }
}

/// Users indexed for matching: by `(provider, extern_uid)` and by lower-case username.
#[derive(Debug, Default)]
pub struct UserIndex {
    by_identity: BTreeMap<(String, String), usize>,
    by_username: BTreeMap<String, usize>,
    pub users: Vec<User>,
}

impl UserIndex {
    pub fn new(users: Vec<User>) -> Self {
        let mut index = Self::default();
        for (i, user) in users.iter().enumerate() {
            for identity in &user.identities {
                index
                    .by_identity
                    .insert((identity.provider.clone(), identity.extern_uid.clone()), i);
            }
            index.by_username.insert(user.username.to_lowercase(), i);
        }
        index.users = users;
        index
    }

    /// The user linked to `extern_uid` at `provider`, else the one with that username.
    pub fn find(&self, provider: &str, extern_uid: &str, username: &str) -> Option<&User> {
        self.by_identity
            .get(&(provider.to_owned(), extern_uid.to_owned()))
            .or_else(|| self.by_username.get(&username.to_lowercase()))
            .map(|&i| &self.users[i])
    }

    pub fn by_id(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }
}

/// CI history the DORA collector heals missed webhooks from (doc/api/deployments.md "List project
/// deployments", doc/api/pipelines.md "List project pipelines" / "Get a single pipeline",
/// doc/api/jobs.md "List pipeline jobs", doc/api/commits.md "Get a single commit").
impl GitLabClient {
    /// Deployments of a project updated after `after` (ISO 8601), oldest first, every page.
    pub async fn deployments_updated_after(&self, project: u64, after: &str) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                "listing deployments",
                &format!(
                    "/projects/{project}/deployments?updated_after={}&order_by=updated_at&sort=asc&per_page=100",
                    encode_path(after)
                ),
            )
            .await
    }

    /// Pipelines of a project updated after `after` (ISO 8601), every page.
    pub async fn pipelines_updated_after(&self, project: u64, after: &str) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                "listing pipelines",
                &format!(
                    "/projects/{project}/pipelines?updated_after={}&order_by=updated_at&sort=asc&per_page=100",
                    encode_path(after)
                ),
            )
            .await
    }

    /// One pipeline (with `duration`, `queued_duration`, `finished_at`); `None` when gone.
    pub async fn pipeline(&self, project: u64, id: u64) -> Result<Option<Value>> {
        self.api
            .get_optional(
                "reading a pipeline",
                &format!("/projects/{project}/pipelines/{id}"),
            )
            .await
    }

    /// The jobs of a pipeline, every page.
    pub async fn pipeline_jobs(&self, project: u64, id: u64) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                "listing pipeline jobs",
                &format!("/projects/{project}/pipelines/{id}/jobs?per_page=100"),
            )
            .await
    }

    /// One commit of a project (`committed_date`); `None` when unknown.
    pub async fn commit_by_sha(&self, project: &str, sha: &str) -> Result<Option<Value>> {
        self.api
            .get_optional(
                "reading a commit",
                &format!(
                    "/projects/{}/repository/commits/{}",
                    encode_path(project),
                    encode_path(sha)
                ),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64, username: &str, identities: &[(&str, &str)]) -> User {
        User {
            id,
            username: username.into(),
            state: "active".into(),
            bot: false,
            user_type: Some("human".into()),
            identities: identities
                .iter()
                .map(|(p, u)| Identity {
                    provider: (*p).into(),
                    extern_uid: (*u).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn identity_wins_over_username() {
        let index = UserIndex::new(vec![
            user(1, "alice", &[]),
            user(2, "alice.smith", &[("openid_connect", "kc-uuid-1")]),
        ]);
        assert_eq!(
            index
                .find("openid_connect", "kc-uuid-1", "alice")
                .unwrap()
                .id,
            2
        );
        assert_eq!(
            index
                .find("openid_connect", "kc-uuid-9", "Alice")
                .unwrap()
                .id,
            1
        );
        assert!(index.find("openid_connect", "kc-uuid-9", "bob").is_none());
    }

    #[test]
    fn code_owner_flag_reads_bool_and_string() {
        let b: ProtectedBranch = serde_json::from_value(serde_json::json!({
            "id": 1, "name": "main", "code_owner_approval_required": "true"
        }))
        .unwrap();
        assert!(b.code_owner_approval_required);
    }

    #[test]
    fn bots_and_service_accounts_are_automation() {
        let mut bot = user(3, "project_7_bot_abc", &[]);
        bot.bot = true;
        assert!(bot.is_automation());
        let mut sa = user(4, "service_account_x", &[]);
        sa.user_type = Some("service_account".into());
        assert!(sa.is_automation());
        assert!(!user(5, "carol", &[]).is_automation());
    }

    #[test]
    fn blob_ids_are_git_blob_ids() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_id("hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn release_tag_protection_judges_roles_and_keeps_other_entries() {
        let tag: ProtectedTag = serde_json::from_value(serde_json::json!({
            "name": "v*",
            "create_access_levels": [
                {"id": 1, "access_level": 30, "access_level_description": "Developers + Maintainers"},
                {"id": 2, "access_level": null, "user_id": 7, "group_id": null},
                {"id": 3, "access_level": 40, "deploy_key_id": 9},
            ]
        }))
        .unwrap();
        assert_eq!(tag.create_roles(), vec![30]);
        assert!(!tag.allows_only(RELEASE_TAG_CREATE_LEVEL));
        assert_eq!(
            protect_tag_body(RELEASE_TAG_PATTERN, RELEASE_TAG_CREATE_LEVEL, Some(&tag)),
            serde_json::json!({
                "name": "v*", "create_access_level": 40,
                "allowed_to_create": [{"user_id": 7}, {"deploy_key_id": 9}],
            })
        );
        assert_eq!(
            protect_tag_body("v*", 40, None),
            serde_json::json!({"name": "v*", "create_access_level": 40})
        );
        assert_eq!(encode_path(RELEASE_TAG_PATTERN), "v%2A");
    }

    #[test]
    fn namespaced_paths_are_encoded() {
        assert_eq!(
            encode_path("platform_services/sub group/x"),
            "platform_services%2Fsub%20group%2Fx"
        );
    }
}
