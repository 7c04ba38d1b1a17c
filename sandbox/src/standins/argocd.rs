//! Argo CD API stand-in: the calls phase 15 makes to mint CI's project-role token, and the calls
//! the CI library's deploy-ephemeral/cleanup-ephemeral make with that token. Behaviour from Argo
//! CD's API (its `assets/swagger.json`, the `argocd proj role create-token` and `argocd app`
//! command references, and docs/operator-manual/rbac.md; excerpts in
//! `sandbox/fixtures/argocd/api.md`). Like Argo CD's API server it keeps `AppProjects` and
//! Applications in the cluster: it reads them from, and writes Applications to, the sandbox's
//! kube-apiserver (field manager `argocd-server`). No controller runs: sync and wait answer from the
//! object as it is.
//!
//! - `POST /api/v1/session` `{username, password}` → `{token}`; 401 `{"error","code":16,"message"}`.
//! - `GET /api/v1/projects/{name}` → the `AppProject` with `status.jwtTokensByRole`.
//! - `POST /api/v1/projects/{p}/roles/{r}/token` `{expiresIn, id, description}` → `{token}`: a
//!   JWT `sub: proj:<p>:<r>`, `jti: id`; 404 (code 5) when the project or role does not exist.
//! - `DELETE /api/v1/projects/{p}/roles/{r}/token/{iat}?id=` revokes it.
//! - `POST /api/v1/applications?upsert=true`, `GET|DELETE /api/v1/applications/{name}`,
//!   `POST /api/v1/applications/{name}/sync`: with a project token, allowed only as the role's
//!   policies say (`p, proj:<p>:<r>, applications, <action>, <p>/*, allow`), and only into the
//!   project's destinations; 403 (code 7) "permission denied" otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A project-role token Argo CD issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub iat: i64,
    pub exp: Option<i64>,
    pub id: String,
}

#[derive(Debug)]
pub struct ArgoCdData {
    admin_password: String,
    signing_key: Vec<u8>,
    sessions: Vec<String>,
    /// `(project, role)` → tokens.
    pub tokens: BTreeMap<(String, String), Vec<IssuedToken>>,
    /// The sandbox's kubeconfig (written once kube-apiserver runs).
    kubeconfig: PathBuf,
    namespace: String,
}

#[derive(Clone)]
pub struct ArgoCdState {
    data: Arc<Mutex<ArgoCdData>>,
}

impl ArgoCdState {
    pub fn new(admin_password: &str, kubeconfig: PathBuf) -> Self {
        Self {
            data: Arc::new(Mutex::new(ArgoCdData {
                admin_password: admin_password.to_owned(),
                signing_key: crate::keys::random_token(32).into_bytes(),
                sessions: Vec::new(),
                tokens: BTreeMap::new(),
                kubeconfig,
                namespace: "argocd".into(),
            })),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ArgoCdData> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn kube(&self) -> Result<common::kube::KubeClient, Response> {
        let path = self.lock().kubeconfig.clone();
        common::kube::KubeClient::from_kubeconfig(&path, "argocd-server")
            .await
            .map_err(|e| {
                grpc(
                    StatusCode::SERVICE_UNAVAILABLE,
                    14,
                    &format!("no cluster: {e}"),
                )
            })
    }
}

/// grpc-gateway's error body.
fn grpc(status: StatusCode, code: u8, text: &str) -> Response {
    (
        status,
        Json(json!({"error": text, "code": code, "message": text, "details": []})),
    )
        .into_response()
}

fn denied() -> Response {
    grpc(StatusCode::FORBIDDEN, 7, "permission denied")
}

fn now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(0)
}

impl ArgoCdData {
    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.signing_key);
        let tag = ring::hmac::sign(&key, format!("{header}.{body}").as_bytes());
        format!("{header}.{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The verified claims of a token this server issued.
    fn verify(&self, token: &str) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.signing_key);
        ring::hmac::verify(&key, input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
        let body = input.split('.').nth(1)?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }
}

/// Who calls: the admin (a session), a project role (its token), or nobody.
enum Caller {
    Admin,
    Role { project: String, role: String },
}

fn caller(state: &ArgoCdState, headers: &HeaderMap) -> Result<Caller, Response> {
    let unauthenticated = || {
        grpc(
            StatusCode::UNAUTHORIZED,
            16,
            "invalid session: token is invalid",
        )
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    let data = state.lock();
    if data.sessions.iter().any(|s| s == token) {
        return Ok(Caller::Admin);
    }
    let claims = data.verify(token).ok_or_else(unauthenticated)?;
    let sub = claims["sub"].as_str().unwrap_or_default();
    let mut parts = sub.splitn(3, ':');
    let (Some("proj"), Some(project), Some(role)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthenticated());
    };
    let id = claims["jti"].as_str().unwrap_or_default();
    let live = data
        .tokens
        .get(&(project.to_owned(), role.to_owned()))
        .is_some_and(|tokens| {
            tokens
                .iter()
                .any(|t| t.id == id && t.exp.is_none_or(|exp| exp > now()))
        });
    if !live {
        return Err(unauthenticated());
    }
    Ok(Caller::Role {
        project: project.to_owned(),
        role: role.to_owned(),
    })
}

pub fn routes(state: ArgoCdState) -> Router {
    Router::new()
        .route("/api/v1/session", post(session))
        .route("/api/v1/projects/{name}", get(project))
        .route(
            "/api/v1/projects/{project}/roles/{role}/token",
            post(create_token),
        )
        .route(
            "/api/v1/projects/{project}/roles/{role}/token/{iat}",
            delete(delete_token),
        )
        .route("/api/v1/applications", post(create_application))
        .route(
            "/api/v1/applications/{name}",
            get(get_application).delete(delete_application),
        )
        .route("/api/v1/applications/{name}/sync", post(sync_application))
        .with_state(state)
}

async fn session(State(s): State<ArgoCdState>, Json(body): Json<Value>) -> Response {
    let mut data = s.lock();
    if body["username"] != "admin" || body["password"].as_str() != Some(&data.admin_password) {
        return grpc(StatusCode::UNAUTHORIZED, 16, "Invalid username or password");
    }
    let token = data.sign(&json!({"iss": "argocd", "sub": "admin", "iat": now(), "jti": crate::keys::random_token(9)}));
    data.sessions.push(token.clone());
    Json(json!({"token": token})).into_response()
}

async fn app_project(s: &ArgoCdState, name: &str) -> Result<Option<Value>, Response> {
    let kube = s.kube().await?;
    let namespace = s.lock().namespace.clone();
    kube.get(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": name, "namespace": namespace}}))
        .await
        .map_err(|e| grpc(StatusCode::INTERNAL_SERVER_ERROR, 13, &e.to_string()))
}

async fn project(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    match caller(&s, &headers) {
        Ok(Caller::Admin) => {}
        Ok(Caller::Role { .. }) => return denied(),
        Err(r) => return r,
    }
    let mut live = match app_project(&s, &name).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return grpc(
                StatusCode::NOT_FOUND,
                5,
                &format!("appproject.argoproj.io \"{name}\" not found"),
            );
        }
        Err(r) => return r,
    };
    let data = s.lock();
    let by_role: serde_json::Map<String, Value> = data
        .tokens
        .iter()
        .filter(|((p, _), _)| *p == name)
        .map(|((_, role), tokens)| {
            let items: Vec<Value> = tokens
                .iter()
                .map(|t| json!({"iat": t.iat, "exp": t.exp, "id": t.id}))
                .collect();
            (role.clone(), json!({"items": items}))
        })
        .collect();
    live["status"]["jwtTokensByRole"] = Value::Object(by_role);
    Json(live).into_response()
}

async fn create_token(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Path((project, role)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    match caller(&s, &headers) {
        Ok(Caller::Admin) => {}
        Ok(Caller::Role { .. }) => return denied(),
        Err(r) => return r,
    }
    let live = match app_project(&s, &project).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return grpc(
                StatusCode::NOT_FOUND,
                5,
                &format!("appproject.argoproj.io \"{project}\" not found"),
            );
        }
        Err(r) => return r,
    };
    let has_role = live["spec"]["roles"]
        .as_array()
        .is_some_and(|roles| roles.iter().any(|r| r["name"] == role.as_str()));
    if !has_role {
        return grpc(
            StatusCode::NOT_FOUND,
            5,
            &format!("role '{role}' does not exist in project '{project}'"),
        );
    }
    let iat = now();
    let exp = body["expiresIn"]
        .as_i64()
        .or_else(|| body["expiresIn"].as_str().and_then(|v| v.parse().ok()))
        .filter(|e| *e > 0)
        .map(|e| iat + e);
    let id = body["id"]
        .as_str()
        .filter(|i| !i.is_empty())
        .map_or_else(|| crate::keys::random_token(12), str::to_owned);
    let mut data = s.lock();
    let mut claims = json!({"iss": "argocd", "sub": format!("proj:{project}:{role}"), "iat": iat, "nbf": iat, "jti": id});
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    let token = data.sign(&claims);
    data.tokens
        .entry((project, role))
        .or_default()
        .push(IssuedToken { iat, exp, id });
    Json(json!({"token": token})).into_response()
}

async fn delete_token(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Path((project, role, iat)): Path<(String, String, i64)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    match caller(&s, &headers) {
        Ok(Caller::Admin) => {}
        Ok(Caller::Role { .. }) => return denied(),
        Err(r) => return r,
    }
    let mut data = s.lock();
    if let Some(tokens) = data.tokens.get_mut(&(project, role)) {
        tokens.retain(|t| !(t.iat == iat && q.get("id").is_none_or(|id| *id == t.id)));
    }
    Json(json!({})).into_response()
}

/// docs/operator-manual/rbac.md: `p, <subject>, applications, <action>, <project>/<app>, allow`,
/// `*` matching anything in the action and object.
fn role_allows(project: &Value, role: &str, action: &str, object: &str) -> bool {
    let glob = |pattern: &str, text: &str| {
        pattern == "*"
            || pattern == text
            || pattern
                .strip_suffix('*')
                .is_some_and(|prefix| text.starts_with(prefix))
    };
    let project_name = project["metadata"]["name"].as_str().unwrap_or_default();
    let subject = format!("proj:{project_name}:{role}");
    project["spec"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == role)
        .flat_map(|r| r["policies"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_owned))
        .any(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            f.len() == 6
                && f[0] == "p"
                && f[1] == subject
                && f[2] == "applications"
                && glob(f[3], action)
                && glob(f[4], object)
                && f[5] == "allow"
        })
}

/// The caller may do `action` on Application `name` of `project`.
async fn authorize(
    s: &ArgoCdState,
    headers: &HeaderMap,
    project: &str,
    name: &str,
    action: &str,
) -> Result<Option<Value>, Response> {
    let who = caller(s, headers)?;
    let live = app_project(s, project).await?;
    match who {
        Caller::Admin => Ok(live),
        Caller::Role { project: p, role } => match &live {
            Some(proj)
                if p == project
                    && role_allows(proj, &role, action, &format!("{project}/{name}")) =>
            {
                Ok(live)
            }
            _ => Err(denied()),
        },
    }
}

fn application_ref(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name, "namespace": namespace}})
}

async fn create_application(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    Json(mut app): Json<Value>,
) -> Response {
    let name = app["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let project = app["spec"]["project"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() || project.is_empty() {
        return grpc(
            StatusCode::BAD_REQUEST,
            3,
            "application name and spec.project are required",
        );
    }
    let namespace = s.lock().namespace.clone();
    let kube = match s.kube().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let existing = kube
        .get(&application_ref(&namespace, &name))
        .await
        .ok()
        .flatten();
    let upsert = q.get("upsert").is_some_and(|v| v == "true");
    let action = match (&existing, upsert) {
        (Some(_), false) => {
            return grpc(
                StatusCode::BAD_REQUEST,
                3,
                &format!(
                    "existing application spec is different, use upsert flag to force update: {name}"
                ),
            );
        }
        (Some(_), true) => "update",
        (None, _) => "create",
    };
    let proj = match authorize(&s, &headers, &project, &name, action).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return grpc(
                StatusCode::NOT_FOUND,
                5,
                &format!("appproject.argoproj.io \"{project}\" not found"),
            );
        }
        Err(r) => return r,
    };
    // The project's destinations (docs: "destinations": namespace globs of a server).
    let dest = app["spec"]["destination"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let allowed = proj["spec"]["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| {
            let pattern = d["namespace"].as_str().unwrap_or_default();
            pattern == "*"
                || pattern == dest
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|p| dest.starts_with(p))
        });
    if !allowed {
        return grpc(
            StatusCode::BAD_REQUEST,
            3,
            &format!(
                "application destination {{https://kubernetes.default.svc {dest}}} is not permitted in project '{project}'"
            ),
        );
    }
    app["metadata"]["namespace"] = json!(namespace);
    app["apiVersion"] = json!("argoproj.io/v1alpha1");
    app["kind"] = json!("Application");
    match kube.apply(&app, false).await {
        Ok(live) => Json(live).into_response(),
        Err(e) => grpc(StatusCode::BAD_REQUEST, 3, &e.to_string()),
    }
}

async fn live_application(s: &ArgoCdState, name: &str) -> Result<Value, Response> {
    let namespace = s.lock().namespace.clone();
    let kube = s.kube().await?;
    match kube.get(&application_ref(&namespace, name)).await {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(grpc(
            StatusCode::NOT_FOUND,
            5,
            &format!("applications.argoproj.io \"{name}\" not found"),
        )),
        Err(e) => Err(grpc(StatusCode::INTERNAL_SERVER_ERROR, 13, &e.to_string())),
    }
}

async fn get_application(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let app = match live_application(&s, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let project = app["spec"]["project"].as_str().unwrap_or_default();
    match authorize(&s, &headers, project, &name, "get").await {
        Ok(_) => Json(app).into_response(),
        Err(r) => r,
    }
}

async fn sync_application(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let app = match live_application(&s, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let project = app["spec"]["project"].as_str().unwrap_or_default();
    match authorize(&s, &headers, project, &name, "sync").await {
        // No controller here: the sync is accepted and nothing runs.
        Ok(_) => Json(app).into_response(),
        Err(r) => r,
    }
}

async fn delete_application(
    State(s): State<ArgoCdState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let app = match live_application(&s, &name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let project = app["spec"]["project"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Err(r) = authorize(&s, &headers, &project, &name, "delete").await {
        return r;
    }
    let kube = match s.kube().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    match kube.delete(&app).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => grpc(StatusCode::INTERNAL_SERVER_ERROR, 13, &e.to_string()),
    }
}
