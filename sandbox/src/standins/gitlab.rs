//! GitLab stand-in. Behaviour from specs/gitlab (GitLab API docs) and GitLab's CI docs:
//! - `GET /-/jwks`: the key set that signs CI/CD `id_tokens` (docs: ci/secrets/id_token_authentication;
//!   Vault's JWT auth fetches it as `jwks_url`).
//! - `GET /api/v4/version`, `GET /api/v4/user`: need a `PRIVATE-TOKEN` header (docs: api/rest
//!   "Authentication": 401 `{"message":"401 Unauthorized"}` without a valid token).
//!
//! Later phases add their endpoints here.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct GitLabState {
    pub jwks: Arc<Value>,
    pub token: Arc<String>,
}

fn authorized(state: &GitLabState, headers: &HeaderMap) -> bool {
    let private = headers.get("private-token").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    private
        .or(bearer)
        .is_some_and(|t| t == state.token.as_str())
}

fn unauthorized() -> axum::response::Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "401 Unauthorized"})),
    )
        .into_response()
}

pub fn routes(state: GitLabState) -> Router {
    Router::new()
        .route("/-/jwks", get(|State(s): State<GitLabState>| async move { Json((*s.jwks).clone()) }))
        .route("/oauth/discovery/keys", get(|State(s): State<GitLabState>| async move { Json((*s.jwks).clone()) }))
        .route(
            "/api/v4/version",
            get(|State(s): State<GitLabState>, headers: HeaderMap| async move {
                if !authorized(&s, &headers) {
                    return unauthorized();
                }
                Json(json!({"version": "17.11.0-ee", "revision": "sandbox", "enterprise": true})).into_response()
            }),
        )
        .route(
            "/api/v4/user",
            get(|State(s): State<GitLabState>, headers: HeaderMap| async move {
                if !authorized(&s, &headers) {
                    return unauthorized();
                }
                Json(json!({"id": 1, "username": "root", "name": "Administrator", "is_admin": true, "bot": false})).into_response()
            }),
        )
        .with_state(state)
}
