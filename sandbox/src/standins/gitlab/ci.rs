//! GitLab stand-in: the CI history the DORA collector heals missed webhooks from. Behaviour from
//! GitLab's API docs (doc/api):
//! - deployments.md "List project deployments": `updated_after` (ISO 8601; GitLab requires
//!   `order_by=updated_at` with it), paginated; each deployment carries `id`, `status`, `sha`,
//!   `environment.name`, `updated_at`, `finished_at` and `deployable.commit`.
//! - pipelines.md "List project pipelines" (`updated_after`, paginated; `id`, `status`,
//!   `source`, `updated_at`) and "Get a single pipeline" (adds `duration`, `queued_duration`,
//!   `finished_at`; 404 when unknown).
//! - jobs.md "List pipeline jobs" (`stage`, `started_at`, `finished_at`, `queued_duration`,
//!   `tag_list`, `runner`), paginated.
//! - commits.md "Get a single commit" (`committed_date`; 404 "Commit Not Found").
//!
//! Tests seed [`CiHistory`] directly; nothing here is written through the API.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;

use super::{GitLabState, Q, Reply, bad_param, find_project_id, not_found, paginate};

#[derive(Debug, Clone, Default)]
pub struct CiHistory {
    /// Deployments by project id, as the API shows them.
    pub deployments: BTreeMap<u64, Vec<Value>>,
    /// Pipelines by project id, in "Get a single pipeline" form.
    pub pipelines: BTreeMap<u64, Vec<Value>>,
    /// Jobs by pipeline id.
    pub jobs: BTreeMap<u64, Vec<Value>>,
    /// Commits by (project id, sha).
    pub commits: BTreeMap<(u64, String), Value>,
    /// Reads served, for tests that count the healer's calls.
    pub reads: u64,
}

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route("/api/v4/projects/{id}/deployments", get(deployments))
        .route("/api/v4/projects/{id}/pipelines", get(pipelines))
        .route("/api/v4/projects/{id}/pipelines/{pipeline}", get(pipeline))
        .route("/api/v4/projects/{id}/pipelines/{pipeline}/jobs", get(jobs))
        .route(
            "/api/v4/projects/{id}/repository/commits/{sha}",
            get(commit),
        )
}

/// ISO 8601 timestamps of the same form compare as strings; the stand-in only serves its own
/// `YYYY-MM-DDTHH:MM:SS(.sss)Z` values and accepts `updated_after` in that form.
fn updated_after<'a>(items: &'a [Value], q: &BTreeMap<String, String>) -> Vec<Value> {
    let after = q.get("updated_after").map_or("", String::as_str);
    let mut out: Vec<&'a Value> = items
        .iter()
        .filter(|v| v["updated_at"].as_str().unwrap_or("") > after)
        .collect();
    out.sort_by(|a, b| a["updated_at"].as_str().cmp(&b["updated_at"].as_str()));
    out.into_iter().cloned().collect()
}

async fn deployments(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    // deployments.md: updated_after requires order_by=updated_at.
    if q.contains_key("updated_after")
        && q.get("order_by").map(String::as_str) != Some("updated_at")
    {
        return bad_param("order_by must be updated_at when updated_after is given");
    }
    data.ci.reads += 1;
    let items = updated_after(data.ci.deployments.get(&pid).map_or(&[], Vec::as_slice), &q);
    paginate(items, &q, &uri, &headers)
}

async fn pipelines(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    data.ci.reads += 1;
    // The list shows the short form of each pipeline.
    let items: Vec<Value> =
        updated_after(data.ci.pipelines.get(&pid).map_or(&[], Vec::as_slice), &q)
            .into_iter()
            .map(|p| {
                let mut short = serde_json::Map::new();
                for key in [
                    "id",
                    "iid",
                    "project_id",
                    "sha",
                    "ref",
                    "status",
                    "source",
                    "created_at",
                    "updated_at",
                    "web_url",
                ] {
                    if let Some(v) = p.get(key) {
                        short.insert(key.to_owned(), v.clone());
                    }
                }
                Value::Object(short)
            })
            .collect();
    paginate(items, &q, &uri, &headers)
}

async fn pipeline(
    State(s): State<GitLabState>,
    Path((id, pipeline)): Path<(String, u64)>,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    data.ci.reads += 1;
    match data
        .ci
        .pipelines
        .get(&pid)
        .and_then(|list| list.iter().find(|p| p["id"].as_u64() == Some(pipeline)))
    {
        Some(p) => Json(p.clone()).into_response(),
        None => not_found("Pipeline"),
    }
}

async fn jobs(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, pipeline)): Path<(String, u64)>,
    Query(q): Q,
) -> Reply {
    let mut data = s.lock();
    if find_project_id(&data, &id).is_none() {
        return not_found("Project");
    }
    data.ci.reads += 1;
    let items = data.ci.jobs.get(&pipeline).cloned().unwrap_or_default();
    paginate(items, &q, &uri, &headers)
}

async fn commit(State(s): State<GitLabState>, Path((id, sha)): Path<(String, String)>) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    data.ci.reads += 1;
    match data.ci.commits.get(&(pid, sha)) {
        Some(c) => Json(c.clone()).into_response(),
        None => not_found("Commit"),
    }
}
