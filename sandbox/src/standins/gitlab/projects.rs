//! Projects: list a group's projects, read and edit one (doc/api/projects.md, doc/api/groups.md).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::{
    GitLabData, GitLabState, ProjectRecord, Q, Reply, Tier, as_bool, bad_param, not_found, paginate,
};

/// Project settings GitLab defaults to on a new project (doc/api/projects "Create project" defaults).
pub(super) fn default_project_settings() -> Map<String, Value> {
    let v = json!({
        "only_allow_merge_if_pipeline_succeeds": false,
        "only_allow_merge_if_all_discussions_are_resolved": false,
        "merge_method": "merge",
        "remove_source_branch_after_merge": true,
        "container_registry_access_level": "enabled",
        "container_registry_enabled": true,
        "default_branch": "main",
        "merge_trains_enabled": false,
        "merge_pipelines_enabled": false,
        "visibility": "private",
        "wiki_enabled": true,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// Attributes of `PUT /projects/:id` this model stores, with the values the docs allow.
const PROJECT_EDITABLE: &[(&str, &[&str])] = &[
    ("only_allow_merge_if_pipeline_succeeds", &[]),
    ("only_allow_merge_if_all_discussions_are_resolved", &[]),
    ("merge_method", &["merge", "rebase_merge", "ff"]),
    ("remove_source_branch_after_merge", &[]),
    (
        "container_registry_access_level",
        &["disabled", "private", "enabled"],
    ),
    ("merge_trains_enabled", &[]),
    ("merge_pipelines_enabled", &[]),
    ("visibility", &["private", "internal", "public"]),
    ("wiki_enabled", &[]),
];
/// Returned and accepted only with a Premium licence.
const PROJECT_PREMIUM: &[&str] = &["merge_trains_enabled", "merge_pipelines_enabled"];

impl GitLabData {
    pub(in crate::standins) fn project_json(&self, p: &ProjectRecord) -> Value {
        let mut v = json!({
            "id": p.id,
            "name": p.path,
            "path": p.path,
            "path_with_namespace": p.path_with_namespace,
            "namespace": {"id": p.namespace_id, "full_path": p.path_with_namespace.rsplit_once('/').map_or("", |x| x.0)},
            "topics": p.topics,
            "archived": p.archived,
            // projects.md: `empty_repo`, true until the first commit.
            "empty_repo": p.repository.commits.is_empty(),
        });
        for (key, value) in &p.settings {
            if self.tier == Tier::Free && PROJECT_PREMIUM.contains(&key.as_str()) {
                continue;
            }
            v[key] = value.clone();
        }
        v
    }
}

/// doc/api/groups.md "List projects": `include_subgroups`, `archived`, ordered by id here.
pub(super) async fn group_projects(
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
    let namespaces = if q.get("include_subgroups").is_some_and(|v| v == "true") {
        data.descendants(group.id)
    } else {
        vec![group.id]
    };
    let archived = q.get("archived").map(String::as_str);
    let items: Vec<Value> = data
        .projects
        .values()
        .filter(|p| namespaces.contains(&p.namespace_id))
        .filter(|p| match archived {
            Some("false") => !p.archived,
            Some("true") => p.archived,
            _ => true,
        })
        .map(|p| data.project_json(p))
        .collect();
    paginate(items, &q, &uri, &headers)
}

pub(in crate::standins) fn find_project_id(data: &GitLabData, id: &str) -> Option<u64> {
    match id.parse::<u64>() {
        Ok(n) => data.projects.contains_key(&n).then_some(n),
        Err(_) => data.project_by_path(id).map(|p| p.id),
    }
}

pub(super) async fn get_project(State(s): State<GitLabState>, Path(id): Path<String>) -> Reply {
    let data = s.lock();
    match find_project_id(&data, &id) {
        Some(pid) => Json(data.project_json(&data.projects[&pid])).into_response(),
        None => not_found("Project"),
    }
}

/// doc/api/projects.md "Edit a project": only the given attributes change; enumerated ones are
/// validated (400 `<attr> does not have a valid value`); Premium attributes are ignored on Free.
pub(super) async fn edit_project(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(fields) = body.as_object() else {
        return bad_param("body must be a JSON object");
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let tier = data.tier;
    let mut updates = Map::new();
    for (key, value) in fields {
        let Some((_, allowed)) = PROJECT_EDITABLE.iter().find(|(k, _)| k == key) else {
            continue; // Grape ignores undeclared parameters.
        };
        if tier == Tier::Free && PROJECT_PREMIUM.contains(&key.as_str()) {
            continue;
        }
        if allowed.is_empty() {
            match as_bool(value) {
                Some(b) => updates.insert(key.clone(), b.into()),
                None => return bad_param(&format!("{key} is invalid")),
            };
        } else {
            match value.as_str().filter(|v| allowed.contains(v)) {
                Some(v) => updates.insert(key.clone(), v.into()),
                None => return bad_param(&format!("{key} does not have a valid value")),
            };
        }
    }
    let project = data.projects.get_mut(&pid).expect("found above");
    for (key, value) in updates {
        if key == "container_registry_access_level" {
            project.settings.insert(
                "container_registry_enabled".into(),
                (value != "disabled").into(),
            );
        }
        project.settings.insert(key, value);
    }
    let project = data.projects[&pid].clone();
    Json(data.project_json(&project)).into_response()
}
