//! GitLab stand-in: group webhooks (phase 17). Behaviour from GitLab's API docs, `doc/api/group_webhooks.md`
//! ("Group webhooks API", Tier: Premium, Ultimate):
//! - Prerequisite: an Administrator or the group's Owner; others get 403. On Free (CE) the routes
//!   do not exist: 404, as for the other Premium endpoints of this stand-in.
//! - "List group hooks": `GET /groups/:id/hooks`, paginated.
//! - "Add a group hook": `POST /groups/:id/hooks`, `url` required, event flags and
//!   `enable_ssl_verification` optional, `token` write-only ("not returned in the response"); 201.
//! - "Edit group hook": `PUT /groups/:id/hooks/:hook_id`, `url` required; "When you change the
//!   webhook URL, the secret token is reset and not retained."
//!
//! Defaults of a new hook (the flags a request leaves out): `push_events` true, every other event
//! false, `enable_ssl_verification` true (GitLab's `WebHook` model defaults).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

use super::{
    Caller, GitLabData, GitLabState, Q, Reply, Tier, as_bool, bad_param, message, not_found,
    paginate,
};

/// Boolean attributes of "Add a group hook" / "Edit group hook" this model stores.
pub const HOOK_FLAGS: &[&str] = &[
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "deployment_events",
    "feature_flag_events",
    "releases_events",
    "subgroup_events",
    "member_events",
    "resource_access_token_events",
    "enable_ssl_verification",
];

/// String attributes this model stores (besides `url` and the write-only `token`).
const HOOK_STRINGS: &[&str] = &[
    "name",
    "description",
    "push_events_branch_filter",
    "branch_filter_strategy",
];

/// One group hook, as the server keeps it (the token included, which the API never returns).
#[derive(Debug, Clone)]
pub struct GroupHook {
    pub id: u64,
    pub group_id: u64,
    pub url: String,
    /// The secret token GitLab sends as `X-Gitlab-Token`; empty when none is set.
    pub token: String,
    /// Event flags and names, as returned.
    pub fields: Map<String, Value>,
}

impl GroupHook {
    fn json(&self) -> Value {
        let mut out = self.fields.clone();
        out.insert("id".into(), json!(self.id));
        out.insert("url".into(), json!(self.url));
        out.insert("group_id".into(), json!(self.group_id));
        out.insert("alert_status".into(), json!("executable"));
        out.insert("disabled_until".into(), Value::Null);
        out.insert("url_variables".into(), json!([]));
        out.insert("custom_headers".into(), json!([]));
        out.insert("created_at".into(), json!("2026-01-01T00:00:00.000Z"));
        Value::Object(out)
    }
}

/// Every group hook of the instance, by id.
#[derive(Debug, Clone, Default)]
pub struct GroupHooks {
    pub hooks: BTreeMap<u64, GroupHook>,
}

impl GroupHooks {
    /// The hooks of one group.
    pub fn of_group(&self, group: u64) -> Vec<&GroupHook> {
        self.hooks
            .values()
            .filter(|h| h.group_id == group)
            .collect()
    }
}

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route("/api/v4/groups/{id}/hooks", get(list_hooks).post(add_hook))
        .route("/api/v4/groups/{id}/hooks/{hook}", put(edit_hook))
}

/// The group, when the tier has group hooks and the caller may manage them (`group_webhooks.md`:
/// Tier Premium; "You must be an Administrator or have the Owner role for the group").
fn group_for(data: &GitLabData, id: &str, caller: Caller) -> Result<u64, Reply> {
    if data.tier == Tier::Free {
        return Err(message(StatusCode::NOT_FOUND, "404 Not Found"));
    }
    let group = data.find_group(id).ok_or_else(|| not_found("Group"))?;
    let owner = group.members.get(&caller.id).is_some_and(|l| *l >= 50);
    if !(caller.admin || owner) {
        return Err(message(StatusCode::FORBIDDEN, "403 Forbidden"));
    }
    Ok(group.id)
}

/// Checks and stores the optional attributes of an add/edit request.
fn apply_fields(hook: &mut GroupHook, body: &Value) -> Result<(), Reply> {
    for flag in HOOK_FLAGS {
        if let Some(v) = body.get(*flag) {
            let b = as_bool(v).ok_or_else(|| bad_param(&format!("{flag} is invalid")))?;
            hook.fields.insert((*flag).to_owned(), Value::Bool(b));
        }
    }
    for key in HOOK_STRINGS {
        if let Some(v) = body.get(*key) {
            let s = v
                .as_str()
                .ok_or_else(|| bad_param(&format!("{key} is invalid")))?;
            hook.fields.insert((*key).to_owned(), json!(s));
        }
    }
    if let Some(v) = body.get("token") {
        v.as_str()
            .ok_or_else(|| bad_param("token is invalid"))?
            .clone_into(&mut hook.token);
    }
    Ok(())
}

fn valid_url(body: &Value) -> Result<String, Reply> {
    let url = body["url"]
        .as_str()
        .ok_or_else(|| bad_param("url is missing"))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": {"url": ["is blocked: Only allowed schemes are http, https"]}})),
        )
            .into_response());
    }
    Ok(url.to_owned())
}

/// `group_webhooks.md` "List group hooks".
async fn list_hooks(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let group = match group_for(&data, &id, caller) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let items = data
        .hooks
        .of_group(group)
        .into_iter()
        .map(GroupHook::json)
        .collect();
    paginate(items, &q, &uri, &headers)
}

/// `group_webhooks.md` "Add a group hook".
async fn add_hook(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let mut data = s.lock();
    let group = match group_for(&data, &id, caller) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let url = match valid_url(&body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut fields = Map::new();
    for flag in HOOK_FLAGS {
        let default = matches!(*flag, "push_events" | "enable_ssl_verification");
        fields.insert((*flag).to_owned(), Value::Bool(default));
    }
    fields.insert("push_events_branch_filter".into(), json!(""));
    fields.insert("branch_filter_strategy".into(), json!("wildcard"));
    let mut hook = GroupHook {
        id: data.id(),
        group_id: group,
        url,
        token: String::new(),
        fields,
    };
    if let Err(r) = apply_fields(&mut hook, &body) {
        return r;
    }
    let reply = hook.json();
    data.hooks.hooks.insert(hook.id, hook);
    (StatusCode::CREATED, Json(reply)).into_response()
}

/// `group_webhooks.md` "Edit group hook": a new URL resets the token unless one is sent.
async fn edit_hook(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    Path((id, hook_id)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Reply {
    let mut data = s.lock();
    let group = match group_for(&data, &id, caller) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let url = match valid_url(&body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(existing) = data
        .hooks
        .hooks
        .get(&hook_id)
        .filter(|h| h.group_id == group)
    else {
        return not_found("Hook");
    };
    let mut hook = existing.clone();
    if hook.url != url {
        hook.token = String::new();
        hook.url = url;
    }
    if let Err(r) = apply_fields(&mut hook, &body) {
        return r;
    }
    let reply = hook.json();
    data.hooks.hooks.insert(hook_id, hook);
    Json(reply).into_response()
}

#[cfg(test)]
mod tests {
    use super::super::{demo_data, routes as gitlab_routes};
    use super::*;

    #[tokio::test]
    async fn add_list_edit_and_token_reset_on_url_change() {
        common::cli::install_crypto_provider();
        let state = GitLabState::new(json!({"keys": []}), demo_data("glpat-test"));
        let running = super::super::super::serve("gitlab", gitlab_routes(state.clone()))
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("{}/api/v4/groups/platform_services/hooks", running.url);
        let created: Value = http
            .post(&base)
            .header("private-token", "glpat-test")
            .json(&json!({"url": "https://dora.example/webhooks/gitlab", "pipeline_events": true, "token": "s3cret-token"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created["pipeline_events"], true);
        assert_eq!(created["push_events"], true, "default");
        assert_eq!(created["deployment_events"], false, "default");
        assert!(created.get("token").is_none(), "never returned");
        let id = created["id"].as_u64().unwrap();
        assert_eq!(state.lock().hooks.hooks[&id].token, "s3cret-token");

        let list: Value = http
            .get(&base)
            .header("private-token", "glpat-test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);

        // Same URL: the token stays; a new URL without a token resets it.
        let edit = |body: Value| {
            http.put(format!("{base}/{id}"))
                .header("private-token", "glpat-test")
                .json(&body)
                .send()
        };
        let r = edit(json!({"url": "https://dora.example/webhooks/gitlab", "push_events": false}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(state.lock().hooks.hooks[&id].token, "s3cret-token");
        let r = edit(json!({"url": "https://other.example/hook"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(state.lock().hooks.hooks[&id].token, "");
        assert_eq!(
            edit(json!({"push_events": true})).await.unwrap().status(),
            400,
            "url is required"
        );
        assert_eq!(edit(json!({"url": "ftp://x"})).await.unwrap().status(), 422);

        // Free tier: no group hooks.
        state.lock().tier = Tier::Free;
        let r = http
            .get(&base)
            .header("private-token", "glpat-test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}
