//! Group CI/CD variables and project access tokens (GitLab docs: group variables, access tokens).

use reqwest::Method;
use serde::Deserialize;

use super::GitLabClient;
use crate::error::Result;
use crate::http::Retry;

/// One CI/CD variable of a group.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct CiVariable {
    /// Variable name, e.g. `COVERAGE_THRESHOLD`.
    pub key: String,
    /// The variable's value.
    pub value: String,
    /// `true` when only pipelines of protected branches and tags get it.
    #[serde(default)]
    pub protected: bool,
    /// `true` when GitLab hides the value in job logs.
    #[serde(default)]
    pub masked: bool,
    /// `true` when `$` references in the value are not expanded.
    #[serde(default)]
    pub raw: bool,
    /// Environments that get it; `*` (all) by default.
    #[serde(default = "all_environments")]
    pub environment_scope: String,
}

/// A project access token (`doc/api/project_access_tokens`); `token` only in create and rotate answers.
#[derive(Clone, Deserialize)]
pub struct ProjectAccessToken {
    /// GitLab's token id: what rotation names and Vault's `token-id` metadata records.
    pub id: u64,
    /// The token's name, e.g. `cicd-promote`.
    pub name: String,
    /// Granted scopes, e.g. `api`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Role of the token's bot user in the project, an [`super::access`] level.
    #[serde(default)]
    pub access_level: u8,
    /// Expiry date, `YYYY-MM-DD`; `None` when it never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// `true` while the token works: neither revoked nor expired.
    #[serde(default)]
    pub active: bool,
    /// `true` once the token is revoked (a rotation revokes the old one).
    #[serde(default)]
    pub revoked: bool,
    /// The secret (`glpat-…`); only in create and rotate answers, `None` in lists.
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
            .field("revoked", &self.revoked)
            .field("token", &self.token.as_ref().map(|_| "(sensitive)"))
            .finish()
    }
}

/// Who holds an access token: a project or a group (the APIs are the same under either prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHolder {
    /// A project access token of the project with this id.
    Project(u64),
    /// A group access token of the group with this id (reaches its projects and subgroups).
    Group(u64),
}

impl TokenHolder {
    fn api_path(self) -> String {
        match self {
            Self::Project(id) => format!("projects/{id}"),
            Self::Group(id) => format!("groups/{id}"),
        }
    }
}

impl std::fmt::Display for TokenHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Project(id) => write!(f, "project {id}"),
            Self::Group(id) => write!(f, "group {id}"),
        }
    }
}

fn all_environments() -> String {
    "*".into()
}

impl GitLabClient {
    /// `GET /projects/:id/access_tokens`: the project's access tokens, active and not (doc/api
    /// `project_access_tokens` "List all project access tokens").
    pub async fn project_access_tokens(&self, project: u64) -> Result<Vec<ProjectAccessToken>> {
        self.access_tokens(TokenHolder::Project(project)).await
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
        self.create_access_token(
            TokenHolder::Project(project),
            name,
            scopes,
            access_level,
            expires_at,
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
        self.rotate_access_token(TokenHolder::Project(project), token, expires_at)
            .await
    }

    /// `GET /{projects,groups}/:id/access_tokens`: the holder's access tokens, active and not
    /// (`project_access_tokens`, `group_access_tokens` "List all … access tokens").
    pub async fn access_tokens(&self, holder: TokenHolder) -> Result<Vec<ProjectAccessToken>> {
        self.list(
            &format!("listing access tokens of {holder}"),
            &format!("{}/access_tokens?per_page=100", holder.api_path()),
        )
        .await
    }

    /// `POST /{projects,groups}/:id/access_tokens`: a new token; its secret is only in this answer.
    pub async fn create_access_token(
        &self,
        holder: TokenHolder,
        name: &str,
        scopes: &[&str],
        access_level: u8,
        expires_at: &str,
    ) -> Result<ProjectAccessToken> {
        self.write(
            &format!("creating access token {name} of {holder}"),
            Method::POST,
            &format!("{}/access_tokens", holder.api_path()),
            &serde_json::json!({"name": name, "scopes": scopes, "access_level": access_level, "expires_at": expires_at}),
            Retry::Never,
        )
        .await
    }

    /// `DELETE /{projects,groups}/:id/access_tokens/:token_id`: revokes the token at once (done
    /// also when it is already gone).
    pub async fn revoke_access_token(&self, holder: TokenHolder, token: u64) -> Result<()> {
        self.api
            .delete(
                &format!("revoking access token {token} of {holder}"),
                &format!("{}/access_tokens/{token}", holder.api_path()),
            )
            .await
    }

    /// `POST /{projects,groups}/:id/access_tokens/:token_id/rotate`: revokes the token and answers
    /// a new one with the same name, scopes and role.
    pub async fn rotate_access_token(
        &self,
        holder: TokenHolder,
        token: u64,
        expires_at: &str,
    ) -> Result<ProjectAccessToken> {
        self.write(
            &format!("rotating access token {token} of {holder}"),
            Method::POST,
            &format!("{}/access_tokens/{token}/rotate", holder.api_path()),
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
