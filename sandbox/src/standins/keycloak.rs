//! Keycloak stand-in (specs/keycloak/openapi-26.6.0.json): one realm's public OIDC discovery
//! document, the token endpoint, and the admin REST reads phase 12 makes.
//!
//! - `POST /realms/{realm}/protocol/openid-connect/token` (OAuth 2.0 token endpoint, form-encoded):
//!   `client_credentials` for a confidential client of the realm, `password` for a master-realm admin
//!   through `admin-cli`; 401 `{"error":"invalid_client"}` / `{"error":"invalid_grant"}` otherwise.
//! - The same endpoint, `password` grant for a user of the realm (Keycloak's "Resource Owner Password
//!   Credentials" / direct access grant, sandbox/fixtures/keycloak-docs/oidc-endpoints.md): the
//!   access token and, with scope `openid`, the ID token are signed JWTs whose `groups` claim lists
//!   the user's groups (the "Group Membership" mapper with "Full group path" off), verifiable with
//!   the realm's keys at `GET /realms/{realm}/protocol/openid-connect/certs` (a JWKS).
//! - `GET /admin/realms/{realm}/groups` (`search`, `exact`, `first`, `max`): top-level groups.
//! - `GET /admin/realms/{realm}/groups/{group-id}/children` (`first`, `max`): direct subgroups.
//! - `GET /admin/realms/{realm}/groups/{group-id}/members` (`first`, `max`): direct members.
//!   Admin endpoints need `Authorization: Bearer <access token>` (401 otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};

/// Demo realm users that also exist in the demo GitLab: (username, Keycloak user id).
pub const DEMO_USERS: &[(&str, &str)] = &[
    ("alice", "6f1c0f0e-0000-4000-8000-00000000a11c"),
    ("bob", "6f1c0f0e-0000-4000-8000-000000000b0b"),
    ("carol", "6f1c0f0e-0000-4000-8000-0000000ca201"),
    ("dave", "6f1c0f0e-0000-4000-8000-00000000da7e"),
];

#[derive(Debug, Clone)]
pub struct KeycloakGroupRecord {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub members: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct KeycloakUserRecord {
    pub id: String,
    pub username: String,
    pub enabled: bool,
}

/// One realm's users and groups plus the credentials the token endpoint accepts.
#[derive(Debug, Default)]
pub struct KeycloakData {
    pub realm: String,
    /// Confidential clients of the realm: id → secret.
    pub clients: BTreeMap<String, String>,
    /// Master-realm admins: username → password.
    pub admins: BTreeMap<String, String>,
    pub users: BTreeMap<String, KeycloakUserRecord>,
    /// In creation order (Keycloak lists groups by name; tests rely on order only through names).
    pub groups: Vec<KeycloakGroupRecord>,
    tokens: Vec<String>,
    next: u64,
    /// Realm users' passwords (username → password), for the direct access grant.
    pub passwords: BTreeMap<String, String>,
    /// Public clients of the realm (no secret), e.g. `vault` for `bao login -method=oidc`.
    pub public_clients: BTreeSet<String>,
    /// The realm's token signing key (ES256); none: the password grant for realm users is refused.
    pub signing_key: Option<RealmKey>,
}

/// The realm's signing key (Keycloak keeps one per realm; its public half is the JWKS at `/certs`).
#[derive(Clone)]
pub struct RealmKey(pub Arc<crate::keys::SigningKey>);

impl std::fmt::Debug for RealmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealmKey({})", self.0.kid)
    }
}

impl KeycloakData {
    pub fn new(realm: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            ..Self::default()
        }
    }

    fn uuid(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-0000-4000-8000-{:012x}", self.next)
    }

    pub fn add_user(&mut self, username: &str, id: Option<&str>) -> String {
        let id = id.map_or_else(|| self.uuid("0000aaaa"), str::to_owned);
        self.users.insert(
            id.clone(),
            KeycloakUserRecord {
                id: id.clone(),
                username: username.to_owned(),
                enabled: true,
            },
        );
        id
    }

    pub fn add_group(&mut self, name: &str, parent: Option<&str>) -> String {
        let id = self.uuid("0000bbbb");
        self.groups.push(KeycloakGroupRecord {
            id: id.clone(),
            name: name.to_owned(),
            parent: parent.map(str::to_owned),
            members: Vec::new(),
        });
        id
    }

    pub fn add_member(&mut self, group: &str, user: &str) {
        if let Some(g) = self.groups.iter_mut().find(|g| g.id == group) {
            g.members.push(user.to_owned());
        }
    }

    fn path_of(&self, group: &KeycloakGroupRecord) -> String {
        match group
            .parent
            .as_ref()
            .and_then(|p| self.groups.iter().find(|g| &g.id == p))
        {
            Some(parent) => format!("{}/{}", self.path_of(parent), group.name),
            None => format!("/{}", group.name),
        }
    }

    fn group_json(&self, g: &KeycloakGroupRecord) -> Value {
        let subgroups = self
            .groups
            .iter()
            .filter(|c| c.parent.as_deref() == Some(g.id.as_str()))
            .count();
        json!({
            "id": g.id, "name": g.name, "path": self.path_of(g), "parentId": g.parent,
            "subGroupCount": subgroups,
        })
    }
}

#[derive(Clone)]
pub struct KeycloakState(pub Arc<Mutex<KeycloakData>>);

impl KeycloakState {
    pub fn new(data: KeycloakData) -> Self {
        Self(Arc::new(Mutex::new(data)))
    }
    pub fn lock(&self) -> MutexGuard<'_, KeycloakData> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The public realm endpoints (`/realms/{realm}/…`) of a realm that does not exist: Keycloak's
/// realm lookup fails with 404 and `{"error":"Realm does not exist"}` (its `RealmsResource`; not
/// described by the admin `OpenAPI`, which covers `/admin/realms` only, where the stand-in answers
/// "Realm not found." as for other admin reads).
fn realm_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "Realm does not exist", "error_description": "Realm does not exist"})),
    )
        .into_response()
}

fn oauth_error(error: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": error, "error_description": "Invalid credentials"})),
    )
        .into_response()
}

async fn token(
    State(s): State<KeycloakState>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let mut data = s.lock();
    if realm != data.realm && realm != "master" {
        return realm_not_found();
    }
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let ok = match field("grant_type") {
        "client_credentials" => {
            realm == data.realm
                && data
                    .clients
                    .get(field("client_id"))
                    .is_some_and(|secret| secret == field("client_secret"))
        }
        "password" if realm == "master" => {
            field("client_id") == "admin-cli"
                && data
                    .admins
                    .get(field("username"))
                    .is_some_and(|pw| pw == field("password"))
        }
        "password" if realm == data.realm => {
            return user_tokens(&data, &realm, &headers, &form);
        }
        "password" => false,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    };
    if !ok {
        return oauth_error(if field("grant_type") == "password" {
            "invalid_grant"
        } else {
            "invalid_client"
        });
    }
    let access = format!("kc-access-{}", crate::keys::random_token(24));
    data.tokens.push(access.clone());
    Json(json!({"access_token": access, "expires_in": 300, "token_type": "Bearer", "scope": "profile email"})).into_response()
}

/// The issuer Keycloak puts in tokens: its frontend URL, here the address the client used.
fn issuer(headers: &HeaderMap, realm: &str) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/realms/{realm}")
}

/// A realm user's direct access grant: the client must be a public client of the realm or a
/// confidential one with its secret; the user must exist, be enabled and give their password.
fn user_tokens(
    data: &KeycloakData,
    realm: &str,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> Response {
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    let client = field("client_id");
    let client_ok = data.public_clients.contains(client)
        || data
            .clients
            .get(client)
            .is_some_and(|secret| secret == field("client_secret"));
    if !client_ok {
        return oauth_error("invalid_client");
    }
    let user = data
        .users
        .values()
        .find(|u| u.username == field("username") && u.enabled);
    let (Some(user), Some(key)) = (user, data.signing_key.as_ref()) else {
        return oauth_error("invalid_grant");
    };
    if data.passwords.get(&user.username).map(String::as_str) != Some(field("password")) {
        return oauth_error("invalid_grant");
    }
    let groups: Vec<&str> = data
        .groups
        .iter()
        .filter(|g| g.members.contains(&user.id))
        .map(|g| g.name.as_str())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let iss = issuer(headers, realm);
    let claims = |typ: &str, aud: Value| {
        json!({
            "iss": iss, "sub": user.id, "aud": aud, "azp": client, "typ": typ,
            "iat": now, "exp": now + 300, "auth_time": now,
            "preferred_username": user.username, "groups": groups,
        })
    };
    let sign = |c: &Value| key.0.sign_jwt(c).unwrap_or_default();
    let mut answer = json!({
        "access_token": sign(&claims("Bearer", json!(["account", client]))),
        "expires_in": 300, "token_type": "Bearer", "scope": field("scope"),
    });
    if field("scope").split(' ').any(|s| s == "openid") {
        answer["id_token"] = json!(sign(&claims("ID", json!(client))));
    }
    Json(answer).into_response()
}

fn authorized(data: &KeycloakData, headers: &HeaderMap, realm: &str) -> Result<(), Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| data.tokens.iter().any(|x| x == t)) {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "HTTP 401 Unauthorized"})),
        )
            .into_response());
    }
    if realm != data.realm {
        return Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Realm not found."})),
        )
            .into_response());
    }
    Ok(())
}

/// `first` (default 0) and `max` (default 100 for groups, as Keycloak's admin API does).
fn window<T>(items: Vec<T>, q: &BTreeMap<String, String>) -> Vec<T> {
    let first = q
        .get("first")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    let max = q
        .get("max")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100usize);
    items.into_iter().skip(first).take(max).collect()
}

type Q = Query<BTreeMap<String, String>>;

async fn groups(
    State(s): State<KeycloakState>,
    headers: HeaderMap,
    Path(realm): Path<String>,
    Query(q): Q,
) -> Response {
    let data = s.lock();
    if let Err(r) = authorized(&data, &headers, &realm) {
        return r;
    }
    let search = q.get("search").map(|v| v.to_lowercase());
    let exact = q.get("exact").is_some_and(|v| v == "true");
    let items: Vec<Value> = data
        .groups
        .iter()
        .filter(|g| g.parent.is_none())
        .filter(|g| match &search {
            Some(term) if exact => g.name.to_lowercase() == *term,
            Some(term) => g.name.to_lowercase().contains(term.as_str()),
            None => true,
        })
        .map(|g| data.group_json(g))
        .collect();
    Json(window(items, &q)).into_response()
}

async fn children(
    State(s): State<KeycloakState>,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let data = s.lock();
    if let Err(r) = authorized(&data, &headers, &realm) {
        return r;
    }
    if !data.groups.iter().any(|g| g.id == id) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Could not find group by id"})),
        )
            .into_response();
    }
    let items: Vec<Value> = data
        .groups
        .iter()
        .filter(|g| g.parent.as_deref() == Some(id.as_str()))
        .map(|g| data.group_json(g))
        .collect();
    Json(window(items, &q)).into_response()
}

async fn members(
    State(s): State<KeycloakState>,
    headers: HeaderMap,
    Path((realm, id)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let data = s.lock();
    if let Err(r) = authorized(&data, &headers, &realm) {
        return r;
    }
    let Some(group) = data.groups.iter().find(|g| g.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Could not find group by id"})),
        )
            .into_response();
    };
    let items: Vec<Value> = group
        .members
        .iter()
        .filter_map(|u| data.users.get(u))
        .map(|u| json!({"id": u.id, "username": u.username, "enabled": u.enabled}))
        .collect();
    Json(window(items, &q)).into_response()
}

pub fn routes(state: KeycloakState) -> Router {
    Router::new()
        .route(
            "/realms/{realm}/.well-known/openid-configuration",
            get(|State(s): State<KeycloakState>, Path(realm): Path<String>, headers: HeaderMap| async move {
                if realm != s.lock().realm {
                    return realm_not_found();
                }
                let issuer = issuer(&headers, &realm);
                Json(json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
                    "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
                    "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
                    "userinfo_endpoint": format!("{issuer}/protocol/openid-connect/userinfo"),
                    "id_token_signing_alg_values_supported": ["ES256", "RS256"],
                    "grant_types_supported": ["authorization_code", "password", "client_credentials"],
                }))
                .into_response()
            }),
        )
        .route(
            "/realms/{realm}/protocol/openid-connect/certs",
            get(|State(s): State<KeycloakState>, Path(realm): Path<String>| async move {
                let data = s.lock();
                match data.signing_key.as_ref().filter(|_| realm == data.realm) {
                    Some(key) => Json(key.0.jwks()).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .route("/realms/{realm}/protocol/openid-connect/token", post(token))
        .route("/admin/realms/{realm}/groups", get(groups))
        .route("/admin/realms/{realm}/groups/{id}/children", get(children))
        .route("/admin/realms/{realm}/groups/{id}/members", get(members))
        .with_state(state)
}

/// The realm `sandbox up` serves: the plan's groups with a few users, `erin` not yet in GitLab,
/// `senior-developers` with a nested `sre` subgroup.
pub fn demo_data(realm: &str, client_id: &str, client_secret: &str) -> KeycloakData {
    let mut data = KeycloakData::new(realm);
    data.clients
        .insert(client_id.to_owned(), client_secret.to_owned());
    let ids: BTreeMap<&str, String> = DEMO_USERS
        .iter()
        .map(|(name, id)| (*name, data.add_user(name, Some(id))))
        .collect();
    let erin = data.add_user("erin", None);
    data.public_clients.insert("vault".to_owned());
    data.signing_key = crate::keys::SigningKey::generate()
        .ok()
        .map(|k| RealmKey(Arc::new(k)));
    let admins = data.add_group("platform-admins", None);
    let seniors = data.add_group("senior-developers", None);
    let sre = data.add_group("sre", Some(&seniors));
    let infra = data.add_group("infra-engineers", None);
    let developers = data.add_group("developers", None);
    let viewers = data.add_group("viewers", None);
    data.add_member(&admins, &ids["alice"]);
    data.add_member(&seniors, &ids["bob"]);
    data.add_member(&sre, &ids["carol"]);
    data.add_member(&infra, &ids["carol"]);
    data.add_member(&developers, &ids["dave"]);
    data.add_member(&developers, &erin);
    data.add_member(&viewers, &ids["dave"]);
    // The platform's realm has them (the plan's group table, §2.6); nobody is in them here.
    data.add_group("harvester-admins", None);
    data.add_group("rancher-admins", None);
    // The CI/CD groups of plan §5.4: Vault maps cicd-admins and cicd-security to its policies
    // (phase 13, OIDC), phase 12 mirrors cicd-security as the SEC-1 approver group.
    let cicd_admins = data.add_group("cicd-admins", None);
    let cicd_developers = data.add_group("cicd-developers", None);
    let cicd_security = data.add_group("cicd-security", None);
    data.add_member(&cicd_admins, &ids["alice"]);
    data.add_member(&cicd_developers, &ids["dave"]);
    data.add_member(&cicd_security, &ids["carol"]);
    data
}
