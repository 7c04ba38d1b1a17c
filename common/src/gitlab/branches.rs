//! Protected branches and tags (GitLab docs: `api/protected_branches`, `api/protected_tags`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{GitLabClient, access, encode_path};
use crate::error::{Error, Result};
use crate::http::Retry;

/// One entry of `push_access_levels`, `merge_access_levels` or `unprotect_access_levels`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AccessLevelEntry {
    /// The entry's id, which an update names to remove it (`_destroy`).
    #[serde(default)]
    pub id: Option<u64>,
    /// The role it grants, an [`access`] level (meaningful for role entries, see
    /// [`AccessLevelEntry::is_role`]).
    pub access_level: u8,
    /// Set when the entry grants one user (Premium).
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Set when the entry grants one group's members (Premium).
    #[serde(default)]
    pub group_id: Option<u64>,
    /// Set when the entry grants a deploy key.
    #[serde(default)]
    pub deploy_key_id: Option<u64>,
}

impl AccessLevelEntry {
    /// A role-based entry (not a specific user, group or deploy key).
    pub fn is_role(&self) -> bool {
        self.user_id.is_none() && self.group_id.is_none() && self.deploy_key_id.is_none()
    }
}

/// A protected branch or wildcard (`GET /projects/:id/protected_branches/:name`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedBranch {
    /// Id of the protection, which approval rules scoped to the branch refer to.
    pub id: u64,
    /// Branch name or wildcard, e.g. `main`.
    pub name: String,
    /// Who may push to it.
    #[serde(default)]
    pub push_access_levels: Vec<AccessLevelEntry>,
    /// Who may merge into it.
    #[serde(default)]
    pub merge_access_levels: Vec<AccessLevelEntry>,
    /// Who may unprotect it.
    #[serde(default)]
    pub unprotect_access_levels: Vec<AccessLevelEntry>,
    /// `true` when force pushes are allowed.
    #[serde(default)]
    pub allow_force_push: bool,
    /// `true` when changes to files with code owners need their approval (Premium).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub code_owner_approval_required: bool,
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
    /// The entry's id; unused, since GitLab cannot update a protected tag's entries.
    #[serde(default)]
    pub id: Option<u64>,
    /// The role that may create tags, an [`access`] level; `None` for user and group entries.
    #[serde(default)]
    pub access_level: Option<u8>,
    /// Set when the entry lets one user create tags (Premium).
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Set when the entry lets one group's members create tags (Premium).
    #[serde(default)]
    pub group_id: Option<u64>,
    /// Set when the entry lets a deploy key create tags.
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
    /// Tag name or wildcard, e.g. `v*`.
    pub name: String,
    /// Who may create matching tags.
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

impl GitLabClient {
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
        self.api
            .delete(
                &format!("unprotecting tag {name} of project {project}"),
                &format!("projects/{project}/protected_tags/{}", encode_path(name)),
            )
            .await
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_owner_flag_reads_bool_and_string() {
        let b: ProtectedBranch = serde_json::from_value(serde_json::json!({
            "id": 1, "name": "main", "code_owner_approval_required": "true"
        }))
        .unwrap();
        assert!(b.code_owner_approval_required);
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
}
