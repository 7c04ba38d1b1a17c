//! GitLab stand-in: runners created through the runner-creation API (phase 16). Behaviour from
//! GitLab's API docs (doc/api; excerpts in fixtures/gitlab-docs/runners-apis.md):
//! - users.md "Create a runner linked to a user" (`POST /user/runners`): `runner_type`
//!   (`instance_type`, `group_type`, `project_type`; `instance_type` needs an administrator, 403
//!   otherwise), `group_id` for a group runner (400 when missing, 404 when the group does not
//!   exist), `description`, `paused`, `locked`, `run_untagged`, `tag_list` (an array or a
//!   comma-separated string: GitLab coerces it with `CommaSeparatedToArray`), `access_level`; 201
//!   with `id`, `token` (`glrt-…`) and `token_expires_at`. Creating twice makes two runners
//!   (nothing is unique), which is how the bash phase 16 left one runner per run.
//! - runners.md "List all runners" (`GET /runners/all`, administrators only, `type` filter,
//!   paginated; no tags in the list) and "Delete a runner by ID" (`DELETE /runners/:id`, 204).
//! - runners.md "List group's runners" (`GET /groups/:id/runners`, `type` filter, paginated; no
//!   tags in the list), "Get runner's details" (`GET /runners/:id`, with `tag_list`,
//!   `run_untagged`, `locked`, `access_level`), "Update runner's details" (`PUT /runners/:id`,
//!   only the given attributes) and "Reset runner's authentication token by using the runner ID"
//!   (`POST /runners/:id/reset_authentication_token`, 201 with the new `token`).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Caller, GitLabState, Q, Reply, as_bool, bad_param, message, not_found, paginate};

/// One runner.
#[derive(Debug, Clone)]
pub struct RunnerRecord {
    pub id: u64,
    pub description: String,
    pub runner_type: String,
    pub group_id: Option<u64>,
    pub tag_list: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
    pub access_level: String,
    /// The current authentication token (`glrt-…`).
    pub token: String,
}

#[derive(Debug, Clone, Default)]
pub struct Runners {
    pub runners: BTreeMap<u64, RunnerRecord>,
    next_id: u64,
}

impl Runners {
    /// Runners whose description is `description`.
    pub fn with_description(&self, description: &str) -> Vec<&RunnerRecord> {
        self.runners
            .values()
            .filter(|r| r.description == description)
            .collect()
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }
}

fn new_token() -> String {
    format!("glrt-{}", crate::keys::random_token(20))
}

fn tags(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().map(|s| s.trim().to_owned()))
            .collect(),
        Value::String(s) => Some(
            s.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
        _ => None,
    }
}

fn summary(r: &RunnerRecord) -> Value {
    json!({
        "id": r.id, "description": r.description, "ip_address": null, "active": !r.paused,
        "paused": r.paused, "is_shared": r.runner_type == "instance_type", "runner_type": r.runner_type,
        "name": null, "online": false, "status": "never_contacted",
    })
}

fn details(r: &RunnerRecord) -> Value {
    let mut v = summary(r);
    v["tag_list"] = json!(r.tag_list);
    v["run_untagged"] = r.run_untagged.into();
    v["locked"] = r.locked.into();
    v["access_level"] = r.access_level.clone().into();
    v["maximum_timeout"] = Value::Null;
    v["groups"] = json!(
        r.group_id
            .map(|g| vec![json!({"id": g})])
            .unwrap_or_default()
    );
    v
}

const ACCESS_LEVELS: &[&str] = &["not_protected", "ref_protected"];

/// Applies the optional attributes of a create or update body; an error text for a 400.
fn apply_attributes(r: &mut RunnerRecord, body: &Value) -> Result<(), String> {
    if let Some(d) = body.get("description") {
        d.as_str()
            .ok_or("description is invalid")?
            .clone_into(&mut r.description);
    }
    for (key, slot) in [
        ("paused", &mut r.paused),
        ("locked", &mut r.locked),
        ("run_untagged", &mut r.run_untagged),
    ] {
        if let Some(v) = body.get(key) {
            *slot = as_bool(v).ok_or(format!("{key} is invalid"))?;
        }
    }
    if let Some(v) = body.get("tag_list") {
        r.tag_list = tags(v).ok_or("tag_list is invalid")?;
    }
    if let Some(v) = body.get("access_level") {
        let level = v.as_str().unwrap_or_default();
        if !ACCESS_LEVELS.contains(&level) {
            return Err("access_level does not have a valid value".into());
        }
        level.clone_into(&mut r.access_level);
    }
    Ok(())
}

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route("/api/v4/user/runners", post(create_runner))
        .route("/api/v4/groups/{id}/runners", get(group_runners))
        .route("/api/v4/runners/all", get(all_runners))
        .route(
            "/api/v4/runners/{id}",
            get(get_runner).put(update_runner).delete(delete_runner),
        )
        .route(
            "/api/v4/runners/{id}/reset_authentication_token",
            post(reset_token),
        )
}

/// users.md "Create a runner linked to a user".
async fn create_runner(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Reply {
    let runner_type = body["runner_type"].as_str().unwrap_or_default().to_owned();
    if runner_type == "instance_type" && !caller.admin {
        return message(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    let mut data = s.lock();
    let group_id = match runner_type.as_str() {
        "group_type" => {
            let Some(id) = body.get("group_id").and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }) else {
                return bad_param("group_id is missing");
            };
            if !data.groups.contains_key(&id) {
                return not_found("Group");
            }
            Some(id)
        }
        "instance_type" => None,
        "project_type" => {
            return bad_param("project_type runners are not modelled by the stand-in");
        }
        _ => return bad_param("runner_type does not have a valid value"),
    };
    let id = data.runners.next();
    let mut record = RunnerRecord {
        id,
        description: String::new(),
        runner_type,
        group_id,
        tag_list: Vec::new(),
        run_untagged: true,
        locked: false,
        paused: false,
        access_level: "not_protected".into(),
        token: new_token(),
    };
    if let Err(e) = apply_attributes(&mut record, &body) {
        return bad_param(&e);
    }
    let token = record.token.clone();
    data.runners.runners.insert(id, record);
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "token": token, "token_expires_at": null})),
    )
        .into_response()
}

/// runners.md "List group's runners".
async fn group_runners(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(group) = data.find_group(&id) else {
        return not_found("Group");
    };
    let group_id = group.id;
    let items: Vec<Value> = data
        .runners
        .runners
        .values()
        .filter(|r| r.group_id == Some(group_id))
        .filter(|r| q.get("type").is_none_or(|t| *t == r.runner_type))
        .map(summary)
        .collect();
    paginate(items, &q, &uri, &headers)
}

/// runners.md "List all runners": every runner of the instance, for administrators.
async fn all_runners(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Q,
) -> Reply {
    if !caller.admin {
        return message(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    let data = s.lock();
    let items: Vec<Value> = data
        .runners
        .runners
        .values()
        .filter(|r| q.get("type").is_none_or(|t| *t == r.runner_type))
        .map(summary)
        .collect();
    paginate(items, &q, &uri, &headers)
}

/// runners.md "Delete a runner by ID".
async fn delete_runner(State(s): State<GitLabState>, Path(id): Path<u64>) -> Reply {
    match s.lock().runners.runners.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found("Runner"),
    }
}

/// runners.md "Get runner's details".
async fn get_runner(State(s): State<GitLabState>, Path(id): Path<u64>) -> Reply {
    match s.lock().runners.runners.get(&id) {
        Some(r) => Json(details(r)).into_response(),
        None => not_found("Runner"),
    }
}

/// runners.md "Update runner's details".
async fn update_runner(
    State(s): State<GitLabState>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Reply {
    let mut data = s.lock();
    let Some(r) = data.runners.runners.get_mut(&id) else {
        return not_found("Runner");
    };
    let mut updated = r.clone();
    if let Err(e) = apply_attributes(&mut updated, &body) {
        return bad_param(&e);
    }
    *r = updated;
    Json(details(r)).into_response()
}

/// runners.md "Reset runner's authentication token by using the runner ID".
async fn reset_token(State(s): State<GitLabState>, Path(id): Path<u64>) -> Reply {
    let mut data = s.lock();
    let Some(r) = data.runners.runners.get_mut(&id) else {
        return not_found("Runner");
    };
    r.token = new_token();
    (
        StatusCode::CREATED,
        Json(json!({"token": r.token, "token_expires_at": null})),
    )
        .into_response()
}
