//! GitLab stand-in: a stateful model of only the endpoints the phases call. Each handler names the
//! section of the GitLab API docs (specs/gitlab/api-docs, and doc/api of gitlabhq for projects,
//! groups, users, metadata and licence) its behaviour comes from.
//!
//! - `GET /-/jwks`: the key set that signs CI/CD `id_tokens` (`ci/secrets/id_token_authentication`).
//! - Authentication (api/rest "Authentication"): `PRIVATE-TOKEN` or `Authorization: Bearer`; 401
//!   `{"message":"401 Unauthorized"}` otherwise.
//! - Offset pagination (api/rest "Offset-based pagination"): `page`, `per_page` (default 20, max
//!   100), headers `x-page`, `x-per-page`, `x-total`, `x-total-pages`, `x-next-page`, `x-prev-page`
//!   and `Link` with `rel="next"`/`"prev"`/`"first"`/`"last"`.
//! - Tier: Premium-only endpoints (approval rules and settings) answer 404 on Free, as GitLab CE
//!   does; Premium-only attributes (merge trains, code-owner approval, `allowed_to_*`) are ignored
//!   on write and absent on read, as Grape does with undeclared parameters.

mod approvals;
mod branches;
pub mod ci;
pub mod delivery;
pub mod hooks;
mod members;
mod model;
mod projects;
pub mod repo;
mod rest;
pub mod runners;
pub mod tags;
pub mod wikis;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use approvals::{
    create_rule, delete_rule, get_approval_settings, list_rules, set_approval_settings, update_rule,
};
use branches::{get_protected, list_protected, protect_branch, unprotect_branch, update_protected};
use members::{
    add_member, create_group, current_user, edit_member, get_group, license, list_members,
    list_users, remove_member, token_self, version,
};
use projects::{edit_project, get_project, group_projects};
use rest::require_token;

pub use model::{
    AccessRecord, ApprovalRuleRecord, GitLabData, GitLabState, GroupRecord, ProjectRecord,
    ProtectedBranchRecord, Tier, UserRecord, demo_data,
};
pub(super) use projects::find_project_id;
pub use rest::Caller;
pub(super) use rest::{Q, Reply, as_bool, bad_param, message, not_found, paginate};
use rest::{as_u64, id_list};

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
        .route("/api/v4/personal_access_tokens/self", get(token_self))
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
        .merge(repo::routes())
        .merge(delivery::routes())
        .merge(tags::routes())
        .merge(runners::routes())
        .merge(hooks::routes())
        .merge(ci::routes())
        .merge(wikis::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
        .merge(jwks)
}

/// The demo instance served on a free port, for the tests of the area modules.
#[cfg(test)]
async fn serve_demo() -> (super::Running, GitLabState) {
    common::cli::install_crypto_provider();
    let state = GitLabState::new(serde_json::json!({"keys": []}), demo_data("glpat-test"));
    let running = super::serve("gitlab", routes(state.clone())).await.unwrap();
    (running, state)
}
