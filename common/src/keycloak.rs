//! Keycloak admin REST client (read-only): groups, subgroups and group members of one realm.
//! Endpoints and parameters from specs/keycloak/openapi-26.6.0.json.

use std::collections::BTreeMap;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Credential, PlatformConfig};
use crate::env;
use crate::error::{Error, Result};
use crate::http::{ApiClient, Fixes, Retry, build_reqwest};
use crate::redact;

const SERVICE: &str = "Keycloak";
/// Page size for `first`/`max` paging.
const PAGE: usize = 100;

/// How the tool signs in to Keycloak's admin API.
#[derive(Clone)]
pub enum KeycloakLogin {
    /// `client_credentials` grant of a confidential client in the realm whose service account
    /// holds realm-management `view-users` and `query-groups`.
    Client {
        /// The client's id (`KEYCLOAK_ADMIN_CLIENT_ID`).
        id: String,
        /// Its secret (`KEYCLOAK_ADMIN_CLIENT_SECRET`).
        secret: Credential,
    },
    /// `password` grant of an admin user against the master realm's `admin-cli` client.
    Admin {
        /// The admin's user name (`KEYCLOAK_ADMIN_USER`, default `admin`).
        username: String,
        /// Its password (`KEYCLOAK_ADMIN_PASSWORD`).
        password: Credential,
    },
}

impl std::fmt::Debug for KeycloakLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeycloakLogin::Client { id, .. } => write!(f, "client {id}"),
            KeycloakLogin::Admin { username, .. } => write!(f, "admin user {username}"),
        }
    }
}

impl KeycloakLogin {
    /// From `KEYCLOAK_ADMIN_CLIENT_ID`/`_SECRET`, else `KEYCLOAK_ADMIN_USER`/`KEYCLOAK_ADMIN_PASSWORD`.
    pub fn from_config(cfg: &PlatformConfig) -> Result<Self> {
        let e = cfg.environment();
        if let Some(secret) = e.get(env::KEYCLOAK_ADMIN_CLIENT_SECRET) {
            redact::register(secret);
            let id = e
                .get(env::KEYCLOAK_ADMIN_CLIENT_ID)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{} is set but {} is not: name the confidential client the secret belongs to",
                        env::KEYCLOAK_ADMIN_CLIENT_SECRET,
                        env::KEYCLOAK_ADMIN_CLIENT_ID
                    ))
                })?
                .to_owned();
            return Ok(KeycloakLogin::Client {
                id,
                secret: Credential {
                    value: secret.to_owned().into(),
                    source: env::KEYCLOAK_ADMIN_CLIENT_SECRET.to_owned(),
                },
            });
        }
        if let Some(password) = e.get(env::KEYCLOAK_ADMIN_PASSWORD) {
            redact::register(password);
            return Ok(KeycloakLogin::Admin {
                username: e
                    .get(env::KEYCLOAK_ADMIN_USER)
                    .unwrap_or("admin")
                    .to_owned(),
                password: Credential {
                    value: password.to_owned().into(),
                    source: env::KEYCLOAK_ADMIN_PASSWORD.to_owned(),
                },
            });
        }
        Err(Error::Config(format!(
            "no Keycloak credentials: set {} and {} (a client whose service account has realm-management view-users and query-groups) or {} (and {}, default admin)",
            env::KEYCLOAK_ADMIN_CLIENT_ID,
            env::KEYCLOAK_ADMIN_CLIENT_SECRET,
            env::KEYCLOAK_ADMIN_PASSWORD,
            env::KEYCLOAK_ADMIN_USER
        )))
    }
}

/// A group as the admin API lists it (brief representation).
#[derive(Debug, Clone, Deserialize)]
pub struct KeycloakGroup {
    /// Keycloak's group id (a UUID), used in the group's URLs.
    pub id: String,
    /// The group's name, e.g. `platform-admins`.
    pub name: String,
    /// Path from the realm root, e.g. `/platform-admins`; empty when not reported.
    #[serde(default)]
    pub path: String,
    /// Number of direct subgroups (`subGroupCount`); `None` when not reported, and then the
    /// subgroups are listed anyway.
    #[serde(default, rename = "subGroupCount")]
    pub sub_group_count: Option<u64>,
}

/// A user as a group's member list shows it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeycloakUser {
    /// The OIDC `sub` GitLab stores as the identity's `extern_uid`.
    pub id: String,
    /// The login name, matched to a GitLab username when no identity links them.
    pub username: String,
    /// `false` for a disabled account, which the membership sync leaves out.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// Keycloak admin client for one realm, signed in.
#[derive(Debug, Clone)]
pub struct KeycloakClient {
    api: ApiClient,
    realm: String,
}

/// The realm's public OIDC discovery document (`GET /realms/{KC_REALM}/.well-known/openid-configuration`,
/// what Vault's OIDC auth reads); `None` when the realm does not exist (404). No credentials.
pub async fn discovery_document(cfg: &PlatformConfig) -> Result<Option<Value>> {
    let url = cfg.require_url(env::KEYCLOAK_URL)?;
    let realm = cfg.environment().get(env::KC_REALM).ok_or_else(|| {
        Error::Config(format!(
            "{} is not set: name the Keycloak realm the platform's users live in",
            env::KC_REALM
        ))
    })?;
    ApiClient::new(SERVICE, url, build_reqwest(cfg)?, cfg.http_retries)
        .get_optional(
            &format!("reading realm {realm}'s discovery document"),
            &format!("realms/{realm}/.well-known/openid-configuration"),
        )
        .await
}

impl KeycloakClient {
    /// Signs in (`KEYCLOAK_URL`, `KC_REALM`, credentials per [`KeycloakLogin::from_config`]).
    pub async fn connect(cfg: &PlatformConfig) -> Result<Self> {
        let url = cfg.require_url(env::KEYCLOAK_URL)?.to_owned();
        let realm = cfg
            .environment()
            .get(env::KC_REALM)
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} is not set: name the Keycloak realm the platform's users live in",
                    env::KC_REALM
                ))
            })?
            .to_owned();
        let login = KeycloakLogin::from_config(cfg)?;
        Self::sign_in(&url, &realm, &login, build_reqwest(cfg)?, cfg.http_retries).await
    }

    /// Signs in at `url` with `login` (client credentials in `realm`, or an admin user in `master`)
    /// and returns a client of `realm`'s admin API.
    pub async fn sign_in(
        url: &str,
        realm: &str,
        login: &KeycloakLogin,
        reqwest: reqwest::Client,
        retries: u32,
    ) -> Result<Self> {
        let url = url.trim_end_matches('/');
        let (token_realm, form, source) = match login {
            KeycloakLogin::Client { id, secret } => (
                realm,
                vec![
                    ("grant_type", "client_credentials".to_owned()),
                    ("client_id", id.clone()),
                    ("client_secret", secret.value.expose_secret().to_owned()),
                ],
                secret.source.clone(),
            ),
            KeycloakLogin::Admin { username, password } => (
                "master",
                vec![
                    ("grant_type", "password".to_owned()),
                    ("client_id", "admin-cli".to_owned()),
                    ("username", username.clone()),
                    ("password", password.value.expose_secret().to_owned()),
                ],
                password.source.clone(),
            ),
        };
        let token_url = format!("{url}/realms/{token_realm}/protocol/openid-connect/token");
        let operation = format!("signing in as {login:?}");
        let resp = reqwest
            .post(&token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::Unreachable {
                service: SERVICE,
                operation: operation.clone(),
                method: "POST".into(),
                url: token_url.clone(),
                cause: crate::error::error_chain(&e),
                fix: format!(
                    "check {}, that Keycloak is up, and for TLS errors set {} to the platform CA bundle",
                    env::KEYCLOAK_URL,
                    env::CICD_CA_BUNDLE
                ),
            })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::Api {
                service: SERVICE,
                operation,
                method: "POST".into(),
                url: token_url,
                status: status.as_u16(),
                body: crate::error::short_body(&body),
                fix: format!(
                    "the credentials from {source} were refused: check them and that the client or user exists in realm {token_realm}"
                ),
            });
        }
        let token: Value = serde_json::from_str(&body).map_err(|e| Error::Decode {
            service: SERVICE,
            operation: operation.clone(),
            url: token_url.clone(),
            cause: e.to_string(),
        })?;
        let access = token["access_token"]
            .as_str()
            .ok_or_else(|| Error::Decode {
                service: SERVICE,
                operation,
                url: token_url,
                cause: "no access_token in the answer".into(),
            })?;
        redact::register(access);
        let credential = Credential {
            value: SecretString::from(access.to_owned()),
            source: format!("the token Keycloak issued for {source}"),
        };
        let api = ApiClient::new(SERVICE, &format!("{url}/admin/realms/{realm}"), reqwest, retries)
            .with_auth("authorization", "Bearer ", credential)
            .with_fixes(Fixes {
                unauthorized: format!("Keycloak refused the admin token obtained with {source}: check the credentials"),
                forbidden: format!(
                    "the Keycloak account from {source} lacks realm-management view-users and query-groups in realm {realm}"
                ),
                unreachable: format!("check {} and that Keycloak is up", env::KEYCLOAK_URL),
            });
        Ok(Self {
            api,
            realm: realm.to_owned(),
        })
    }

    /// The HTTP layer (request counters).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// The realm whose groups and users this client reads.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Pages through a `first`/`max` list until a short page.
    async fn paged<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut first = 0usize;
        loop {
            let page_path = format!("{path}{sep}first={first}&max={PAGE}");
            let resp = self
                .api
                .call(operation, Method::GET, &page_path, None, Retry::Safe)
                .await?;
            let page: Vec<T> = resp.json(SERVICE, operation, &self.api.url(&page_path))?;
            let n = page.len();
            items.extend(page);
            if n < PAGE {
                return Ok(items);
            }
            first += n;
        }
    }

    /// A top-level group by exact name (`GET /groups?search=…&exact=true`).
    pub async fn top_level_group(&self, name: &str) -> Result<Option<KeycloakGroup>> {
        let encoded = crate::gitlab::encode_path(name);
        let groups: Vec<KeycloakGroup> = self
            .paged(
                &format!("finding group {name}"),
                &format!("groups?search={encoded}&exact=true&briefRepresentation=true"),
            )
            .await?;
        Ok(groups
            .into_iter()
            .find(|g| g.name == name && (g.path.is_empty() || g.path == format!("/{name}"))))
    }

    /// Direct subgroups (`GET /groups/:id/children`).
    pub async fn children(&self, group: &KeycloakGroup) -> Result<Vec<KeycloakGroup>> {
        self.paged(
            &format!("listing subgroups of {}", group.name),
            &format!("groups/{}/children?briefRepresentation=true", group.id),
        )
        .await
    }

    /// Direct members (`GET /groups/:id/members`).
    pub async fn members(&self, group: &KeycloakGroup) -> Result<Vec<KeycloakUser>> {
        self.paged(
            &format!("listing members of {}", group.name),
            &format!("groups/{}/members?briefRepresentation=true", group.id),
        )
        .await
    }

    /// Members of a group and of all its subgroups (Keycloak puts subgroup members in the parent's
    /// token claim too), enabled users only. `None` when the group does not exist.
    pub async fn members_with_subgroups(&self, name: &str) -> Result<Option<Vec<KeycloakUser>>> {
        let Some(root) = self.top_level_group(name).await? else {
            return Ok(None);
        };
        let mut users = BTreeMap::new();
        let mut pending = vec![root];
        while let Some(group) = pending.pop() {
            for user in self.members(&group).await? {
                if user.enabled {
                    users.insert(user.id.clone(), user);
                }
            }
            if group.sub_group_count != Some(0) {
                pending.extend(self.children(&group).await?);
            }
        }
        Ok(Some(users.into_values().collect()))
    }
}
