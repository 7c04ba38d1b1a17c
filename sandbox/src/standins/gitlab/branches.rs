//! Protected branches: list, protect, update in place, unprotect (`api/protected_branches`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{
    AccessRecord, GitLabData, GitLabState, ProtectedBranchRecord, Q, Reply, Tier, as_bool, as_u64,
    bad_param, find_project_id, message, not_found, paginate,
};

/// Valid protected-branch access levels (docs: `protected_branches` "Valid access levels").
fn valid_level(level: u64) -> bool {
    matches!(level, 0 | 30 | 40 | 60)
}

fn access_description(level: u8) -> &'static str {
    match level {
        0 => "No one",
        30 => "Developers + Maintainers",
        40 => "Maintainers",
        60 => "Administrators",
        _ => "Custom",
    }
}

// The JSON renderers are methods of the store, like GitLab's entities, whether or not they
// read it yet.
#[allow(clippy::unused_self)]
impl GitLabData {
    fn access_json(&self, levels: &[AccessRecord]) -> Value {
        levels
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "access_level": a.access_level,
                    "access_level_description": access_description(a.access_level),
                    "user_id": a.user_id,
                    "group_id": a.group_id,
                })
            })
            .collect()
    }

    pub(super) fn branch_json(&self, b: &ProtectedBranchRecord) -> Value {
        let mut v = json!({
            "id": b.id,
            "name": b.name,
            "push_access_levels": self.access_json(&b.push),
            "merge_access_levels": self.access_json(&b.merge),
            "unprotect_access_levels": self.access_json(&b.unprotect),
            "allow_force_push": b.allow_force_push,
        });
        if self.tier == Tier::Premium {
            v["code_owner_approval_required"] = b.code_owner_approval_required.into();
        }
        v
    }
}

pub(super) async fn list_protected(
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
    let items = data.projects[&pid]
        .protected_branches
        .iter()
        .map(|b| data.branch_json(b))
        .collect();
    paginate(items, &q, &uri, &headers)
}

pub(super) async fn get_protected(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    match data.projects[&pid]
        .protected_branches
        .iter()
        .find(|b| b.name == name)
    {
        Some(b) => Json(data.branch_json(b)).into_response(),
        None => not_found("Protected Branch"),
    }
}

/// `protected_branches` "Protect repository branches": `name` required; `push_access_level`,
/// `merge_access_level`, `unprotect_access_level` default to 40; 409 when already protected.
pub(super) async fn protect_branch(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(name) = body["name"].as_str().map(str::to_owned) else {
        return bad_param("name is missing");
    };
    let mut levels = [40u64; 3];
    for (i, key) in [
        "push_access_level",
        "merge_access_level",
        "unprotect_access_level",
    ]
    .iter()
    .enumerate()
    {
        if let Some(v) = body.get(*key) {
            match as_u64(v).filter(|l| valid_level(*l) && !(i == 2 && *l == 0)) {
                Some(l) => levels[i] = l,
                None => return bad_param(&format!("{key} does not have a valid value")),
            }
        }
    }
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    if data.projects[&pid]
        .protected_branches
        .iter()
        .any(|b| b.name == name)
    {
        return message(
            StatusCode::CONFLICT,
            &format!("Protected branch '{name}' already exists"),
        );
    }
    let premium = data.tier == Tier::Premium;
    let ids = [data.id(), data.id(), data.id(), data.id()];
    let record = |id: u64, level: u64| AccessRecord {
        id,
        access_level: u8::try_from(level).unwrap_or(40),
        user_id: None,
        group_id: None,
    };
    let branch = ProtectedBranchRecord {
        id: ids[0],
        name,
        push: vec![record(ids[1], levels[0])],
        merge: vec![record(ids[2], levels[1])],
        unprotect: vec![record(ids[3], levels[2])],
        allow_force_push: body
            .get("allow_force_push")
            .and_then(as_bool)
            .unwrap_or(false),
        code_owner_approval_required: premium
            && body
                .get("code_owner_approval_required")
                .and_then(as_bool)
                .unwrap_or(false),
    };
    let json = data.branch_json(&branch);
    data.projects
        .get_mut(&pid)
        .expect("found")
        .protected_branches
        .push(branch);
    (StatusCode::CREATED, Json(json)).into_response()
}

/// Applies one `allowed_to_*` array (`protected_branches` "Update a protected branch"): `{access_level}`
/// creates, `{id, access_level}` updates, `{id, _destroy: true}` deletes.
fn apply_allowed(
    list: &mut Vec<AccessRecord>,
    changes: &[Value],
    next_id: &mut dyn FnMut() -> u64,
) -> Result<(), String> {
    for change in changes {
        let id = change.get("id").and_then(as_u64);
        if change.get("_destroy").and_then(as_bool) == Some(true) {
            let Some(id) = id else {
                return Err("_destroy needs id".into());
            };
            list.retain(|a| a.id != id);
            continue;
        }
        let level = change.get("access_level").and_then(as_u64);
        if let Some(l) = level {
            if !valid_level(l) {
                return Err("access_level does not have a valid value".into());
            }
        }
        match id {
            Some(id) => {
                let Some(entry) = list.iter_mut().find(|a| a.id == id) else {
                    return Err(format!("access level {id} not found"));
                };
                if let Some(l) = level {
                    entry.access_level = u8::try_from(l).unwrap_or(40);
                }
            }
            None => list.push(AccessRecord {
                id: next_id(),
                access_level: u8::try_from(level.unwrap_or(40)).unwrap_or(40),
                user_id: change.get("user_id").and_then(as_u64),
                group_id: change.get("group_id").and_then(as_u64),
            }),
        }
    }
    Ok(())
}

pub(super) async fn update_protected(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let mut guard = s.lock();
    let data = &mut *guard;
    let Some(pid) = find_project_id(data, &id) else {
        return not_found("Project");
    };
    let premium = data.tier == Tier::Premium;
    let mut next = data.next_id;
    let Some(branch) = data
        .projects
        .get_mut(&pid)
        .and_then(|p| p.protected_branches.iter_mut().find(|b| b.name == name))
    else {
        return not_found("Protected Branch");
    };
    if let Some(v) = body.get("allow_force_push").and_then(as_bool) {
        branch.allow_force_push = v;
    }
    if premium {
        if let Some(v) = body.get("code_owner_approval_required").and_then(as_bool) {
            branch.code_owner_approval_required = v;
        }
        let mut alloc = || {
            next += 1;
            next - 1
        };
        for (key, list) in [
            ("allowed_to_push", &mut branch.push),
            ("allowed_to_merge", &mut branch.merge),
            ("allowed_to_unprotect", &mut branch.unprotect),
        ] {
            if let Some(changes) = body.get(key).and_then(Value::as_array) {
                if let Err(e) = apply_allowed(list, changes, &mut alloc) {
                    return bad_param(&format!("{key}: {e}"));
                }
            }
        }
    }
    let branch = branch.clone();
    data.next_id = next;
    Json(data.branch_json(&branch)).into_response()
}

/// Unprotecting deletes the protected branch; approval rules lose it from their scope (the reason
/// the phases never unprotect to change settings).
pub(super) async fn unprotect_branch(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let project = data.projects.get_mut(&pid).expect("found");
    let Some(pos) = project
        .protected_branches
        .iter()
        .position(|b| b.name == name)
    else {
        return not_found("Protected Branch");
    };
    let removed = project.protected_branches.remove(pos);
    for rule in &mut project.approval_rules {
        rule.protected_branch_ids.retain(|b| *b != removed.id);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::super::serve_demo;
    use super::*;

    /// `protected_branches` "Update a protected branch" edits entries by id; "Unprotect" removes
    /// the branch from approval rules' scope (why the phases never unprotect).
    #[tokio::test]
    async fn patch_keeps_ids_and_unprotect_drops_rule_scope() {
        let (running, state) = serve_demo().await;
        let pid = state
            .lock()
            .project_by_path("platform_services/packet-relay")
            .unwrap()
            .id;
        let http = reqwest::Client::new();
        let call = |method: reqwest::Method, path: String, body: Value| {
            http.request(method, format!("{}/api/v4/{path}", running.url))
                .header("PRIVATE-TOKEN", "glpat-test")
                .json(&body)
                .send()
        };
        let created: Value = call(
            reqwest::Method::POST,
            format!("projects/{pid}/protected_branches"),
            json!({"name": "main", "push_access_level": 30}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let entry = created["push_access_levels"][0]["id"].as_u64().unwrap();
        let patched: Value = call(
            reqwest::Method::PATCH,
            format!("projects/{pid}/protected_branches/main"),
            json!({"allowed_to_push": [{"id": entry, "access_level": 40}]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(patched["id"], created["id"]);
        assert_eq!(
            patched["push_access_levels"],
            json!([{"id": entry, "access_level": 40, "access_level_description": "Maintainers", "user_id": null, "group_id": null}])
        );
        let rule: Value = call(
            reqwest::Method::POST,
            format!("projects/{pid}/approval_rules"),
            json!({"name": "r", "approvals_required": 1, "protected_branch_ids": [created["id"]]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(
            rule["protected_branches"][0]["code_owner_approval_required"],
            "false"
        );
        let dup = call(
            reqwest::Method::POST,
            format!("projects/{pid}/approval_rules"),
            json!({"name": "r", "approvals_required": 1}),
        )
        .await
        .unwrap();
        assert_eq!(dup.status(), 400, "rule names are unique per project");
        assert_eq!(
            call(
                reqwest::Method::DELETE,
                format!("projects/{pid}/protected_branches/main"),
                json!({})
            )
            .await
            .unwrap()
            .status(),
            204
        );
        let rules: Value = call(
            reqwest::Method::GET,
            format!("projects/{pid}/approval_rules"),
            Value::Null,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(rules[0]["protected_branches"], json!([]));
    }
}
