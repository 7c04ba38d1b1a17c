//! Argo CD REST API client: the calls phase 15 makes to mint the project-role token CI deploys
//! ephemeral environments with (docs/adr/0008). Argo CD's API (server/*.proto through
//! grpc-gateway, `assets/swagger.json`): `POST /api/v1/session`, `GET /api/v1/projects/{name}`,
//! `POST /api/v1/projects/{project}/roles/{role}/token`, `DELETE …/token/{iat}?id=`.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Credential, PlatformConfig};
use crate::error::{Error, Result};
use crate::http::{ApiClient, Fixes, Retry, build_reqwest};
use crate::{env, redact};

const SERVICE: &str = "Argo CD";

/// A JWT of a project role as Argo CD lists it (`status.jwtTokensByRole`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ProjectToken {
    /// Issued-at time in Unix seconds: the key Argo CD revokes a token by (`…/token/{iat}`).
    pub iat: i64,
    /// Expiry in Unix seconds; `None` for a token that never expires.
    #[serde(default)]
    pub exp: Option<i64>,
    /// The token id given when it was minted; `None` for a token minted without one.
    #[serde(default)]
    pub id: Option<String>,
}

/// An Argo CD API session (a bearer token from `POST /api/v1/session`).
pub struct ArgoCdClient {
    api: ApiClient,
}

fn fixes(source: &str) -> Fixes {
    Fixes {
        unauthorized: format!(
            "Argo CD refused the admin credentials from {source}: set {} to the admin password (argocd-initial-admin-secret, or the one you set)",
            env::ARGOCD_ADMIN_PASSWORD
        ),
        forbidden: format!(
            "the Argo CD account from {source} lacks the right for this: use the admin account (policy role:admin)"
        ),
        unreachable: format!(
            "check {} (Argo CD's API, e.g. https://argo.$DOMAIN), that Argo CD is up, and for TLS errors set {} to the platform CA bundle",
            env::ARGOCD_URL,
            env::CICD_CA_BUNDLE
        ),
    }
}

impl ArgoCdClient {
    /// Signs in as `username` with `password` (its source named in errors).
    pub async fn login(
        cfg: &PlatformConfig,
        username: &str,
        password: &Credential,
    ) -> Result<Self> {
        let url = cfg.require_url(env::ARGOCD_URL)?;
        let base = format!("{}/api/v1", url.trim_end_matches('/'));
        let anonymous = ApiClient::new(SERVICE, &base, build_reqwest(cfg)?, cfg.http_retries)
            .with_fixes(fixes(&password.source));
        let session: Value = anonymous
            .call_json(
                &format!("signing in to Argo CD as {username}"),
                Method::POST,
                "session",
                Some(&json!({"username": username, "password": password.value.expose_secret()})),
                Retry::Safe,
            )
            .await?;
        let token = session["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Precondition {
                operation: format!("signing in to Argo CD as {username}"),
                message: "the session answer carried no token: is ARGOCD_URL Argo CD's API server?"
                    .into(),
            })?;
        redact::register(token);
        let credential = Credential {
            value: token.to_owned().into(),
            source: format!("an Argo CD session of {username}"),
        };
        let api = ApiClient::new(SERVICE, &base, build_reqwest(cfg)?, cfg.http_retries)
            .with_auth("authorization", "Bearer ", credential)
            .with_fixes(fixes(&password.source));
        Ok(Self { api })
    }

    /// The HTTP layer of the signed-in session (request counters).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// The tokens of `role` in the `AppProject` `project`; `None` when the project does not exist.
    pub async fn project_role_tokens(
        &self,
        project: &str,
        role: &str,
    ) -> Result<Option<Vec<ProjectToken>>> {
        let live: Option<Value> = self
            .api
            .get_optional(
                &format!("reading Argo CD project {project}"),
                &format!("projects/{project}"),
            )
            .await?;
        Ok(live.map(|p| {
            // Argo CD keeps them in status (2.4+) and, before, in the role's spec.
            let from_status = &p["status"]["jwtTokensByRole"][role]["items"];
            let from_spec = p["spec"]["roles"]
                .as_array()
                .and_then(|roles| roles.iter().find(|r| r["name"] == role))
                .map_or(Value::Null, |r| r["jwtTokens"].clone());
            let items = if from_status.is_array() {
                from_status.clone()
            } else {
                from_spec
            };
            serde_json::from_value(items).unwrap_or_default()
        }))
    }

    /// Mints a JWT for `proj:<project>:<role>`, valid `expires_in_secs`, with token id `id`.
    pub async fn create_project_role_token(
        &self,
        project: &str,
        role: &str,
        id: &str,
        description: &str,
        expires_in_secs: u64,
    ) -> Result<SecretString> {
        let answer: Value = self
            .api
            .call_json(
                &format!("creating a token for role {role} of Argo CD project {project}"),
                Method::POST,
                &format!("projects/{project}/roles/{role}/token"),
                Some(&json!({
                    "project": project, "role": role, "id": id,
                    "description": description, "expiresIn": expires_in_secs,
                })),
                Retry::Never,
            )
            .await?;
        let token = answer["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Precondition {
                operation: format!("creating a token for role {role} of Argo CD project {project}"),
                message: "Argo CD answered no token".into(),
            })?;
        redact::register(token);
        Ok(token.to_owned().into())
    }

    /// Revokes the token of `role` issued at `iat` with `id`.
    pub async fn delete_project_role_token(
        &self,
        project: &str,
        role: &str,
        iat: i64,
        id: &str,
    ) -> Result<()> {
        self.api
            .call(
                &format!("revoking token {id} of role {role} in Argo CD project {project}"),
                Method::DELETE,
                &format!("projects/{project}/roles/{role}/token/{iat}?id={id}"),
                None,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }
}
