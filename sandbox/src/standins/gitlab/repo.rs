//! GitLab stand-in, part two: creating projects, their repository (one default branch), tags, and
//! group CI/CD variables. Behaviour from GitLab's API docs (doc/api):
//! - projects.md "Create project": `name`/`path`, `namespace_id`, `visibility` (`private`,
//!   `internal`, `public`), `wiki_enabled` ("(Deprecated) Enable wiki for this project"),
//!   `initialize_with_readme` (a repository with just a `README.md` on the default branch); 400
//!   when the path is taken in the namespace.
//! - repositories.md "List repository tree": `recursive`, `ref`, paginated; blobs carry their git
//!   blob SHA-1 as `id`; 404 "Tree Not Found" on an empty repository.
//! - commits.md "Create a commit with multiple files and actions": `branch`, `commit_message`,
//!   `actions[]` of `create` (400 if the file exists), `update` / `delete` (400 if it does not),
//!   `content` as text or with `encoding: base64`; `start_branch` creates `branch` from it (400 "A
//!   branch called … already exists" when both exist and differ); the first commit of an empty
//!   repository creates the default branch. Size: GitLab refuses a commit request over
//!   `Repositories::CommitsUploader.max_request_size`, 300 MiB by default, and rate-limits those
//!   over 20 MiB (sandbox/fixtures/gitlab-docs/commits-size-limits.md); the stand-in takes bodies
//!   up to 300 MiB (axum's default would cut them at 2 MiB, phase 17 pushes this repository).
//! - tags.md "Get a single repository tag" (404) and "Create a new tag" (`tag_name`, `ref`; 400 when
//!   it exists; 400 when the tag is protected and the caller may not create it, see `tags.rs`).
//! - `group_level_variables.md` (specs/gitlab/api-docs): list (paginated), create (`key`, `value`,
//!   `protected`, `masked`, `raw`, …; 400 "has already been taken"), update by key.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::{
    Caller, GitLabState, Q, Reply, as_bool, bad_param, find_project_id, message, not_found,
    paginate,
};

/// A stand-in project's repository: the default branch (`files`, `commits`), other branches, tags.
#[derive(Debug, Clone, Default)]
pub struct Repository {
    pub files: BTreeMap<String, String>,
    /// Commit ids, oldest first, with their messages.
    pub commits: Vec<(String, String)>,
    pub tags: BTreeMap<String, String>,
    /// The files of each tag made on the default branch's head (the docs' `ref` is a branch, tag
    /// or commit; the stand-in keeps the tree of tags, which is what onboarding reads).
    pub tag_files: BTreeMap<String, BTreeMap<String, String>>,
    /// Branches other than the default one.
    pub branches: BTreeMap<String, Branch>,
}

/// A branch other than the default one.
#[derive(Debug, Clone, Default)]
pub struct Branch {
    pub files: BTreeMap<String, String>,
    pub commits: Vec<(String, String)>,
}

/// The stand-in's default branch (projects.md: `default_branch`, main unless set otherwise).
pub const DEFAULT_BRANCH: &str = "main";

impl Repository {
    pub fn head(&self) -> Option<&str> {
        self.commits.last().map(|(id, _)| id.as_str())
    }

    /// The files of `branch` (the default branch when `None`); `None` when it does not exist.
    pub fn branch_files(&self, branch: Option<&str>) -> Option<&BTreeMap<String, String>> {
        match branch {
            None | Some(DEFAULT_BRANCH) => (!self.commits.is_empty()).then_some(&self.files),
            Some(b) => self
                .branches
                .get(b)
                .map(|b| &b.files)
                .or_else(|| self.tag_files.get(b)),
        }
    }

    /// The head commit of `branch` (the default branch when `None`).
    pub fn branch_head(&self, branch: Option<&str>) -> Option<&str> {
        match branch {
            None | Some(DEFAULT_BRANCH) => self.head(),
            Some(b) => self
                .branches
                .get(b)
                .and_then(|b| b.commits.last())
                .map(|(id, _)| id.as_str()),
        }
    }
}

use base64::Engine as _;
use common::gitlab::git_blob_id;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// GitLab's `Repositories::CommitsUploader.max_request_size` default (300 MiB).
const COMMIT_MAX_REQUEST_BYTES: usize = 300 << 20;

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route("/api/v4/projects", post(create_project))
        .route("/api/v4/projects/{id}/repository/tree", get(tree))
        .route(
            "/api/v4/projects/{id}/repository/commits",
            post(commit).layer(axum::extract::DefaultBodyLimit::max(
                COMMIT_MAX_REQUEST_BYTES,
            )),
        )
        .route("/api/v4/projects/{id}/repository/tags", post(create_tag))
        .route("/api/v4/projects/{id}/repository/tags/{tag}", get(get_tag))
        .route(
            "/api/v4/groups/{id}/variables",
            get(list_variables).post(create_variable),
        )
        .route("/api/v4/groups/{id}/variables/{key}", put(update_variable))
}

async fn create_project(State(s): State<GitLabState>, Json(body): Json<Value>) -> Reply {
    let Some(name) = body["name"].as_str().or(body["path"].as_str()) else {
        return bad_param("name is missing");
    };
    let path = body["path"].as_str().unwrap_or(name).to_owned();
    let mut data = s.lock();
    let namespace = match body.get("namespace_id").and_then(Value::as_u64) {
        Some(id) if data.groups.contains_key(&id) => id,
        Some(_) => return not_found("Namespace"),
        None => {
            return bad_param("namespace_id is missing (the stand-in has no personal namespaces)");
        }
    };
    let full = format!("{}/{path}", data.groups[&namespace].full_path);
    if data.project_by_path(&full).is_some() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": {"path": ["has already been taken"]}})),
        )
            .into_response();
    }
    let visibility = match body.get("visibility") {
        None | Some(Value::Null) => None,
        Some(v) => match v
            .as_str()
            .filter(|v| ["private", "internal", "public"].contains(v))
        {
            Some(v) => Some(v.to_owned()),
            None => return bad_param("visibility does not have a valid value"),
        },
    };
    let flag = |name: &str| body.get(name).and_then(as_bool);
    let id = data.add_project(&path, namespace, &[]);
    let readme_commit = flag("initialize_with_readme")
        .unwrap_or(false)
        .then(|| data.id());
    let project = data.projects.get_mut(&id).expect("just added");
    if let Some(visibility) = visibility {
        project
            .settings
            .insert("visibility".into(), visibility.into());
    }
    if let Some(wiki) = flag("wiki_enabled") {
        project.settings.insert("wiki_enabled".into(), wiki.into());
    }
    if let Some(n) = readme_commit {
        let sha = hex(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            format!("{id}:{n}:Initial commit").as_bytes(),
        )
        .as_ref());
        project
            .repository
            .files
            .insert("README.md".into(), format!("# {name}\n"));
        project
            .repository
            .commits
            .push((sha, "Initial commit".into()));
    }
    let project = data.projects[&id].clone();
    (StatusCode::CREATED, Json(data.project_json(&project))).into_response()
}

async fn tree(
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
    let repo = &data.projects[&pid].repository;
    // `ref`: a branch or tag, the default branch when omitted (repositories API).
    let reference = q.get("ref").map(String::as_str).filter(|r| !r.is_empty());
    let Some(files) = repo.branch_files(reference) else {
        return message(StatusCode::NOT_FOUND, "404 Tree Not Found");
    };
    let recursive = q.get("recursive").is_some_and(|v| v == "true");
    let items: Vec<Value> = files
        .iter()
        .filter(|(path, _)| recursive || !path.contains('/'))
        .map(|(path, content)| {
            json!({
                "id": git_blob_id(content),
                "name": path.rsplit('/').next().unwrap_or(path),
                "type": "blob",
                "path": path,
                "mode": "100644",
            })
        })
        .collect();
    paginate(items, &q, &uri, &headers)
}

async fn commit(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let (Some(branch), Some(msg), Some(actions)) = (
        body["branch"].as_str(),
        body["commit_message"].as_str(),
        body["actions"].as_array(),
    ) else {
        return bad_param("branch is missing, commit_message is missing, actions is missing");
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let default_branch = data.projects[&pid].settings["default_branch"]
        .as_str()
        .unwrap_or(DEFAULT_BRANCH)
        .to_owned();
    if default_branch != DEFAULT_BRANCH {
        return bad_param("the stand-in models default branch main only");
    }
    let repo = &data.projects[&pid].repository;
    let start = body["start_branch"].as_str().filter(|b| *b != branch);
    let (mut files, mut history) = match (repo.branch_files(Some(branch)), start) {
        (Some(_), Some(_)) => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!(
                    "A branch called '{branch}' already exists. Switch to that branch in order to make changes"
                ),
            );
        }
        (Some(files), None) => (files.clone(), branch_commits(repo, branch)),
        (None, Some(from)) => match repo.branch_files(Some(from)) {
            Some(files) => (files.clone(), branch_commits(repo, from)),
            None => {
                return message(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "You can only create or edit files when you are on a branch: {from} does not exist"
                    ),
                );
            }
        },
        (None, None) if branch == DEFAULT_BRANCH => (BTreeMap::new(), Vec::new()),
        (None, None) => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!(
                    "You can only create or edit files when you are on a branch: {branch} does not exist"
                ),
            );
        }
    };
    for action in actions {
        let Some(path) = action["file_path"].as_str() else {
            return bad_param("actions[file_path] is missing");
        };
        let text = action["content"].as_str().unwrap_or_default();
        let content = match action["encoding"].as_str() {
            None | Some("text") => text.to_owned(),
            Some("base64") => {
                match base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                {
                    Some(decoded) => decoded,
                    None => return bad_param("actions[content] is not valid base64 text"),
                }
            }
            Some(_) => return bad_param("actions[encoding] does not have a valid value"),
        };
        match action["action"].as_str() {
            Some("create") if files.contains_key(path) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    &format!("A file with this name already exists: {path}"),
                );
            }
            Some("update") if !files.contains_key(path) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    &format!("A file with this name doesn't exist: {path}"),
                );
            }
            Some("create" | "update") => {
                files.insert(path.to_owned(), content);
            }
            Some("delete") if files.remove(path).is_none() => {
                return message(
                    StatusCode::BAD_REQUEST,
                    &format!("A file with this name doesn't exist: {path}"),
                );
            }
            Some("delete") => {}
            _ => return bad_param("actions[action] does not have a valid value"),
        }
    }
    let n = data.id();
    let sha = hex(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{pid}:{n}:{msg}").as_bytes(),
    )
    .as_ref());
    history.push((sha.clone(), msg.to_owned()));
    let repo = &mut data.projects.get_mut(&pid).expect("found").repository;
    if branch == DEFAULT_BRANCH {
        repo.files = files;
        repo.commits = history;
    } else {
        repo.branches.insert(
            branch.to_owned(),
            Branch {
                files,
                commits: history,
            },
        );
    }
    (
        StatusCode::CREATED,
        Json(json!({"id": sha, "short_id": &sha[..8], "title": msg.lines().next().unwrap_or(""), "message": msg})),
    )
        .into_response()
}

fn branch_commits(repo: &Repository, branch: &str) -> Vec<(String, String)> {
    if branch == DEFAULT_BRANCH {
        repo.commits.clone()
    } else {
        repo.branches
            .get(branch)
            .map(|b| b.commits.clone())
            .unwrap_or_default()
    }
}

async fn get_tag(State(s): State<GitLabState>, Path((id, tag)): Path<(String, String)>) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    match data.projects[&pid].repository.tags.get(&tag) {
        Some(target) => {
            Json(json!({"name": tag, "target": target, "commit": {"id": target}})).into_response()
        }
        None => not_found("Tag"),
    }
}

async fn create_tag(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let (Some(tag), Some(reference)) = (body["tag_name"].as_str(), body["ref"].as_str()) else {
        return bad_param("tag_name is missing, ref is missing");
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let repo = &mut data.projects.get_mut(&pid).expect("found").repository;
    if repo.tags.contains_key(tag) {
        return message(
            StatusCode::BAD_REQUEST,
            &format!("Tag {tag} already exists"),
        );
    }
    let target = match repo.commits.iter().find(|(sha, _)| sha == reference) {
        Some((sha, _)) => sha.clone(),
        None if reference == "main" => match repo.head() {
            Some(head) => head.to_owned(),
            None => return message(StatusCode::BAD_REQUEST, "Target main is invalid"),
        },
        None => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!("Target {reference} is invalid"),
            );
        }
    };
    if !super::tags::may_create_tag(&data, pid, caller, tag) {
        return message(
            StatusCode::BAD_REQUEST,
            "You are not allowed to create this tag as it is protected.",
        );
    }
    let repo = &mut data.projects.get_mut(&pid).expect("found").repository;
    if repo.head() == Some(target.as_str()) {
        let files = repo.files.clone();
        repo.tag_files.insert(tag.to_owned(), files);
    }
    repo.tags.insert(tag.to_owned(), target.clone());
    (
        StatusCode::CREATED,
        Json(json!({"name": tag, "target": target, "commit": {"id": target}})),
    )
        .into_response()
}

const VARIABLE_FIELDS: &[&str] = &[
    "variable_type",
    "value",
    "protected",
    "masked",
    "raw",
    "environment_scope",
    "description",
];

fn variable_from(body: &Value, key: &str) -> Result<Value, Reply> {
    let Some(value) = body["value"].as_str() else {
        return Err(bad_param("value is missing"));
    };
    if body.get("masked").and_then(as_bool) == Some(true)
        && (value.len() < 8 || value.contains(char::is_whitespace))
    {
        return Err(message(
            StatusCode::BAD_REQUEST,
            "value is invalid: a masked value needs 8 or more characters and no whitespace",
        ));
    }
    let mut v = json!({
        "key": key, "value": value, "variable_type": "env_var", "protected": false,
        "masked": false, "raw": false, "environment_scope": "*", "description": null,
    });
    for field in VARIABLE_FIELDS {
        if let Some(x) = body.get(*field) {
            v[*field] = match (*field, as_bool(x)) {
                ("protected" | "masked" | "raw", Some(b)) => b.into(),
                _ => x.clone(),
            };
        }
    }
    Ok(v)
}

async fn list_variables(
    State(s): State<GitLabState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let data = s.lock();
    match data.find_group(&id) {
        Some(g) => paginate(g.variables.clone(), &q, &uri, &headers),
        None => not_found("Group"),
    }
}

async fn create_variable(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(key) = body["key"].as_str().map(str::to_owned) else {
        return bad_param("key is missing");
    };
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || key.len() > 255 {
        return message(
            StatusCode::BAD_REQUEST,
            "key can contain only letters, digits and '_'",
        );
    }
    let variable = match variable_from(&body, &key) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut data = s.lock();
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    let group = data.groups.get_mut(&gid).expect("found");
    if group.variables.iter().any(|v| v["key"] == key.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": {"key": [format!("({key}) has already been taken")]}})),
        )
            .into_response();
    }
    group.variables.push(variable.clone());
    (StatusCode::CREATED, Json(variable)).into_response()
}

async fn update_variable(
    State(s): State<GitLabState>,
    Path((id, key)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let variable = match variable_from(&body, &key) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut data = s.lock();
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    let group = data.groups.get_mut(&gid).expect("found");
    match group
        .variables
        .iter_mut()
        .find(|v| v["key"] == key.as_str())
    {
        Some(slot) => {
            *slot = variable.clone();
            Json(variable).into_response()
        }
        None => not_found("Variable"),
    }
}
