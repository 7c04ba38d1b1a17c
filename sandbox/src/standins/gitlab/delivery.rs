//! GitLab stand-in, the endpoints promotion uses (docs/adr/0008 of this project): repository files,
//! branches, merge requests and project access tokens. Behaviour from GitLab's API docs (doc/api;
//! excerpts with their provenance in sandbox/fixtures/gitlab-docs/delivery-apis.md):
//! - `repository_files.md` "Get raw file from repository" (`GET …/files/:file_path/raw?ref=`, the
//!   path URL-encoded; 404 "404 File Not Found") and "Get file from repository" (JSON, base64).
//! - `branches.md` "Get single repository branch" (404 "404 Branch Not Found").
//! - `merge_requests.md` "List project merge requests" (`state`, `source_branch`, `target_branch`,
//!   paginated) and "Create MR" (`source_branch`, `target_branch`, `title` required; 409 when an open
//!   MR already exists for the source branch; labels as a comma-separated string).
//! - `project_access_tokens.md` "List", "Create" (`name`, `scopes` required; `access_level` default
//!   40; `expires_at` YYYY-MM-DD; the token value only in this answer), "Rotate" (revokes the token,
//!   answers a new one with the same name, scopes and role) and "Revoke".
//! - `group_access_tokens.md` (sandbox/fixtures/gitlab-docs/group-access-tokens.md): the same four
//!   calls under `/groups/:id`; a group token reaches the group and its projects, `read_api` only reads.
//! - `user/project/settings/project_access_tokens.md`: a project access token authenticates as a bot
//!   user and "cannot access resources in other projects" (the stand-in answers 404 for them, as
//!   GitLab does for a project the caller cannot see); an expired or revoked token gets 401.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use super::model::{GitLabData, TokenLimits, TokenReach};
use super::{GitLabState, Q, Reply, bad_param, find_project_id, message, not_found, paginate};

/// A merge request as this model keeps it.
#[derive(Debug, Clone)]
pub struct MergeRequestRecord {
    pub iid: u64,
    pub id: u64,
    pub title: String,
    pub description: String,
    pub source_branch: String,
    pub target_branch: String,
    pub state: String,
    pub labels: Vec<String>,
    pub remove_source_branch: bool,
    /// The source branch's head when the MR was opened.
    pub sha: String,
}

/// A project access token as this model keeps it (the secret is in the token table).
#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub id: u64,
    pub name: String,
    pub scopes: Vec<String>,
    pub access_level: u8,
    pub expires_at: String,
    pub user_id: u64,
    pub active: bool,
    pub revoked: bool,
    pub secret: String,
}

/// Per-project delivery state: merge requests and access tokens.
#[derive(Debug, Clone, Default)]
pub struct ProjectDelivery {
    pub merge_requests: Vec<MergeRequestRecord>,
    pub access_tokens: Vec<AccessTokenRecord>,
}

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route(
            "/api/v4/projects/{id}/repository/files/{file}/raw",
            get(raw_file),
        )
        .route("/api/v4/projects/{id}/repository/files/{file}", get(file))
        .route(
            "/api/v4/projects/{id}/repository/branches/{branch}",
            get(branch),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests",
            get(list_merge_requests).post(create_merge_request),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}",
            get(get_merge_request),
        )
        .merge(token_routes("projects", Owner::Project))
        .merge(token_routes("groups", Owner::Group))
}

fn reference(q: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    q.get("ref").map(String::as_str).filter(|r| !r.is_empty())
}

async fn raw_file(
    State(s): State<GitLabState>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let repo = &data.projects[&pid].repository;
    match repo.branch_files(reference(&q)).and_then(|f| f.get(&file)) {
        Some(content) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content.clone(),
        )
            .into_response(),
        None => not_found("File"),
    }
}

async fn file(
    State(s): State<GitLabState>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let repo = &data.projects[&pid].repository;
    let Some(r) = reference(&q) else {
        return bad_param("ref is missing");
    };
    match repo.branch_files(Some(r)).and_then(|f| f.get(&file)) {
        Some(content) => Json(json!({
            "file_name": file.rsplit('/').next().unwrap_or(&file),
            "file_path": file,
            "size": content.len(),
            "encoding": "base64",
            "content": base64::engine::general_purpose::STANDARD.encode(content),
            "ref": r,
            "blob_id": common::gitlab::git_blob_id(content),
            "last_commit_id": repo.branch_head(Some(r)),
        }))
        .into_response(),
        None => not_found("File"),
    }
}

async fn branch(State(s): State<GitLabState>, Path((id, branch)): Path<(String, String)>) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let repo = &data.projects[&pid].repository;
    match repo.branch_head(Some(&branch)) {
        Some(head) => {
            Json(json!({"name": branch, "commit": {"id": head}, "merged": false})).into_response()
        }
        None => not_found("Branch"),
    }
}

fn mr_json(project: u64, web: &str, mr: &MergeRequestRecord) -> Value {
    json!({
        "id": mr.id, "iid": mr.iid, "project_id": project, "title": mr.title,
        "description": mr.description, "state": mr.state, "source_branch": mr.source_branch,
        "target_branch": mr.target_branch, "labels": mr.labels, "sha": mr.sha,
        "force_remove_source_branch": mr.remove_source_branch,
        "web_url": format!("{web}/-/merge_requests/{}", mr.iid),
    })
}

async fn list_merge_requests(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let project = &data.projects[&pid];
    let web = format!("/{}", project.path_with_namespace);
    let wanted = |key: &str, value: &str| q.get(key).is_none_or(|w| w == value || w == "all");
    let items: Vec<Value> = project
        .delivery
        .merge_requests
        .iter()
        .rev()
        .filter(|mr| {
            wanted("state", &mr.state)
                && wanted("source_branch", &mr.source_branch)
                && wanted("target_branch", &mr.target_branch)
        })
        .map(|mr| mr_json(pid, &web, mr))
        .collect();
    paginate(items, &q, &uri, &headers)
}

async fn get_merge_request(
    State(s): State<GitLabState>,
    Path((id, iid)): Path<(String, u64)>,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let project = &data.projects[&pid];
    let web = format!("/{}", project.path_with_namespace);
    match project
        .delivery
        .merge_requests
        .iter()
        .find(|m| m.iid == iid)
    {
        Some(mr) => Json(mr_json(pid, &web, mr)).into_response(),
        None => not_found("Merge Request"),
    }
}

async fn create_merge_request(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let (Some(source), Some(target), Some(title)) = (
        body["source_branch"].as_str(),
        body["target_branch"].as_str(),
        body["title"].as_str(),
    ) else {
        return bad_param("source_branch is missing, target_branch is missing, title is missing");
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let next = data.id();
    let project = data.projects.get_mut(&pid).expect("found");
    let Some(sha) = project
        .repository
        .branch_head(Some(source))
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": [format!("Source branch \"{source}\" does not exist")]})),
        )
            .into_response();
    };
    if project.repository.branch_head(Some(target)).is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": [format!("Target branch \"{target}\" does not exist")]})),
        )
            .into_response();
    }
    if let Some(open) = project
        .delivery
        .merge_requests
        .iter()
        .find(|m| m.state == "opened" && m.source_branch == source && m.target_branch == target)
    {
        return (
            StatusCode::CONFLICT,
            Json(json!({"message": [format!("Another open merge request already exists for this source branch: !{}", open.iid)]})),
        )
            .into_response();
    }
    let labels = match &body["labels"] {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mr = MergeRequestRecord {
        iid: project.delivery.merge_requests.len() as u64 + 1,
        id: next,
        title: title.to_owned(),
        description: body["description"].as_str().unwrap_or_default().to_owned(),
        source_branch: source.to_owned(),
        target_branch: target.to_owned(),
        state: "opened".into(),
        labels,
        remove_source_branch: body["remove_source_branch"].as_bool().unwrap_or(false),
        sha,
    };
    let web = format!("/{}", project.path_with_namespace);
    let answer = mr_json(pid, &web, &mr);
    project.delivery.merge_requests.push(mr);
    (StatusCode::CREATED, Json(answer)).into_response()
}

const SCOPES: &[&str] = &[
    "api",
    "read_api",
    "read_registry",
    "write_registry",
    "read_repository",
    "write_repository",
    "create_runner",
    "manage_runner",
    "ai_features",
    "k8s_proxy",
    "self_rotate",
];

fn token_json(t: &AccessTokenRecord, with_secret: bool) -> Value {
    let mut v = json!({
        "id": t.id, "name": t.name, "scopes": t.scopes, "access_level": t.access_level,
        "expires_at": t.expires_at, "user_id": t.user_id, "active": t.active, "revoked": t.revoked,
        "created_at": "2026-01-01T00:00:00.000Z", "last_used_at": null,
    });
    if with_secret {
        v["token"] = json!(t.secret);
    }
    v
}

fn expires_at(body: &Value) -> Result<String, Reply> {
    match body.get("expires_at").and_then(Value::as_str) {
        Some(date) if common::dates::parse(date).is_some() && date.len() == 10 => {
            Ok(date.to_owned())
        }
        Some(_) => Err(bad_param("expires_at is invalid")),
        // GitLab 16.0+: the instance's maximum lifetime (365 days) when omitted.
        None => Ok(common::dates::format(common::dates::today() + 365)),
    }
}

/// Whose access tokens a route manages: a project's (`project_access_tokens.md`) or a group's
/// (`group_access_tokens.md`, sandbox/fixtures/gitlab-docs/group-access-tokens.md): the same
/// list, create, rotate and revoke, and a token reaches its project, or its group and everything in it.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Project,
    Group,
}

fn resolve(data: &GitLabData, owner: Owner, id: &str) -> Result<TokenReach, Reply> {
    match owner {
        Owner::Project => find_project_id(data, id)
            .map(TokenReach::Project)
            .ok_or_else(|| not_found("Project")),
        Owner::Group => data
            .find_group(id)
            .map(|g| TokenReach::Group(g.id))
            .ok_or_else(|| not_found("Group")),
    }
}

fn tokens(data: &GitLabData, reach: TokenReach) -> &Vec<AccessTokenRecord> {
    match reach {
        TokenReach::Project(p) => &data.projects[&p].delivery.access_tokens,
        TokenReach::Group(g) => &data.groups[&g].access_tokens,
    }
}

fn tokens_mut(data: &mut GitLabData, reach: TokenReach) -> &mut Vec<AccessTokenRecord> {
    match reach {
        TokenReach::Project(p) => {
            &mut data
                .projects
                .get_mut(&p)
                .expect("resolved")
                .delivery
                .access_tokens
        }
        TokenReach::Group(g) => &mut data.groups.get_mut(&g).expect("resolved").access_tokens,
    }
}

/// Only `read_*` scopes: the token may not write.
fn read_only(scopes: &[String]) -> bool {
    scopes.iter().all(|s| s.starts_with("read_"))
}

fn list_tokens(
    s: &GitLabState,
    owner: Owner,
    id: &str,
    headers: &HeaderMap,
    uri: &Uri,
    q: &std::collections::BTreeMap<String, String>,
) -> Reply {
    let data = s.lock();
    let reach = match resolve(&data, owner, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let items: Vec<Value> = tokens(&data, reach)
        .iter()
        .map(|t| token_json(t, false))
        .collect();
    paginate(items, q, uri, headers)
}

fn create_token(s: &GitLabState, owner: Owner, id: &str, body: &Value) -> Reply {
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return bad_param("name is missing");
    };
    let scopes: Vec<String> = body["scopes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        return bad_param("scopes is missing");
    }
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return bad_param(&format!("scopes does not have a valid value: {bad}"));
    }
    let access_level = match body.get("access_level").map(Value::as_u64) {
        None => 40,
        Some(Some(l @ (10 | 20 | 30 | 40 | 50))) => u8::try_from(l).unwrap_or(40),
        Some(_) => return bad_param("access_level does not have a valid value"),
    };
    let expires = match expires_at(body) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let mut data = s.lock();
    let reach = match resolve(&data, owner, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let token_id = data.id();
    let bot = data.add_bot(&match reach {
        TokenReach::Project(p) => format!("project_{p}_bot_{token_id}"),
        TokenReach::Group(g) => format!("group_{g}_bot_{token_id}"),
    });
    let secret = format!("glpat-{}", crate::keys::random_token(15));
    data.add_scoped_token(
        &secret,
        bot,
        TokenLimits {
            reach,
            expires_at: expires.clone(),
            read_only: read_only(&scopes),
            access_level,
        },
    );
    let record = AccessTokenRecord {
        id: token_id,
        name: name.to_owned(),
        scopes,
        access_level,
        expires_at: expires,
        user_id: bot,
        active: true,
        revoked: false,
        secret,
    };
    let answer = token_json(&record, true);
    tokens_mut(&mut data, reach).push(record);
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn rotate_token(s: &GitLabState, owner: Owner, id: &str, token_id: u64, body: &Value) -> Reply {
    let expires = match expires_at(body) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let mut data = s.lock();
    let reach = match resolve(&data, owner, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(old) = tokens(&data, reach)
        .iter()
        .find(|t| t.id == token_id && t.active)
        .cloned()
    else {
        return not_found("Token");
    };
    data.revoke_token(&old.secret);
    let new_id = data.id();
    let secret = format!("glpat-{}", crate::keys::random_token(15));
    data.add_scoped_token(
        &secret,
        old.user_id,
        TokenLimits {
            reach,
            expires_at: expires.clone(),
            read_only: read_only(&old.scopes),
            access_level: old.access_level,
        },
    );
    let record = AccessTokenRecord {
        id: new_id,
        expires_at: expires,
        active: true,
        revoked: false,
        secret,
        ..old.clone()
    };
    let answer = token_json(&record, true);
    let list = tokens_mut(&mut data, reach);
    if let Some(slot) = list.iter_mut().find(|t| t.id == token_id) {
        slot.active = false;
        slot.revoked = true;
    }
    list.push(record);
    (StatusCode::OK, Json(answer)).into_response()
}

fn revoke_token(s: &GitLabState, owner: Owner, id: &str, token_id: u64) -> Reply {
    let mut data = s.lock();
    let reach = match resolve(&data, owner, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(secret) = tokens(&data, reach)
        .iter()
        .find(|t| t.id == token_id && t.active)
        .map(|t| t.secret.clone())
    else {
        return not_found("Token");
    };
    data.revoke_token(&secret);
    if let Some(t) = tokens_mut(&mut data, reach)
        .iter_mut()
        .find(|t| t.id == token_id)
    {
        t.active = false;
        t.revoked = true;
    }
    message(StatusCode::NO_CONTENT, "")
}

/// The routes of one owner kind (`projects` or `groups`).
fn token_routes(prefix: &'static str, owner: Owner) -> Router<GitLabState> {
    Router::new()
        .route(
            &format!("/api/v4/{prefix}/{{id}}/access_tokens"),
            get(
                move |State(s): State<GitLabState>,
                      headers: HeaderMap,
                      uri: Uri,
                      Path(id): Path<String>,
                      Query(q): Q| async move {
                    list_tokens(&s, owner, &id, &headers, &uri, &q)
                },
            )
            .post(
                move |State(s): State<GitLabState>,
                      Path(id): Path<String>,
                      Json(body): Json<Value>| async move {
                    create_token(&s, owner, &id, &body)
                },
            ),
        )
        .route(
            &format!("/api/v4/{prefix}/{{id}}/access_tokens/{{token_id}}/rotate"),
            post(
                move |State(s): State<GitLabState>,
                      Path((id, token_id)): Path<(String, u64)>,
                      body: Option<Json<Value>>| async move {
                    let body = body.map_or(Value::Null, |Json(b)| b);
                    rotate_token(&s, owner, &id, token_id, &body)
                },
            ),
        )
        .route(
            &format!("/api/v4/{prefix}/{{id}}/access_tokens/{{token_id}}"),
            delete(
                move |State(s): State<GitLabState>,
                      Path((id, token_id)): Path<(String, u64)>| async move {
                    revoke_token(&s, owner, &id, token_id)
                },
            ),
        )
}
