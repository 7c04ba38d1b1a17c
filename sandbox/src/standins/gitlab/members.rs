//! Instance version and licence, users, groups and group members (doc/api users, groups, members).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{
    Caller, GitLabData, GitLabState, GroupRecord, Q, Reply, Tier, UserRecord, as_u64, bad_param,
    message, not_found, paginate,
};

// The JSON renderers are methods of the store, like GitLab's entities, whether or not they
// read it yet.
#[allow(clippy::unused_self)]
impl GitLabData {
    pub(super) fn group_json(&self, g: &GroupRecord) -> Value {
        json!({
            "id": g.id, "name": g.path, "path": g.path, "full_name": g.full_path,
            "full_path": g.full_path, "parent_id": g.parent_id, "visibility": "private",
        })
    }

    fn user_json(&self, u: &UserRecord, admin_view: bool) -> Value {
        let mut v = json!({
            "id": u.id, "username": u.username, "name": u.username, "state": "active",
            "bot": u.bot, "locked": false,
        });
        if admin_view {
            v["is_admin"] = u.is_admin.into();
            v["user_type"] = u.user_type.clone().into();
            v["identities"] = u
                .identities
                .iter()
                .map(|(p, x)| json!({"provider": p, "extern_uid": x, "saml_provider_id": null}))
                .collect();
        }
        v
    }
}

/// doc/api/version.md and doc/api/metadata.md: `enterprise` is true on EE builds.
pub(super) async fn version(State(s): State<GitLabState>) -> Reply {
    let ee = s.lock().tier != Tier::Free;
    Json(json!({
        "version": if ee { "17.11.0-ee" } else { "17.11.0" },
        "revision": "sandbox",
        "kas": {"enabled": false},
        "enterprise": ee,
    }))
    .into_response()
}

/// doc/api/license.md: the current licence with its `plan` (EE only; CE has no such route).
/// "Prerequisites: You must have administrator access to the instance": anyone else gets 403
/// (sandbox/fixtures/gitlab-docs/license.md).
pub(super) async fn license(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
) -> Reply {
    if !caller.admin {
        return message(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    match s.lock().tier {
        Tier::Free => not_found("License"),
        Tier::Premium => {
            Json(json!({"id": 1, "plan": "premium", "expired": false})).into_response()
        }
    }
}

/// `doc/api/personal_access_tokens.md` "Get single personal access token" (`self`: the token of
/// the request; excerpt in sandbox/fixtures/gitlab-docs/personal-access-tokens.md). Personal
/// tokens here carry `api`; project and group tokens their read or write scopes.
pub(super) async fn token_self(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Reply {
    let token = headers
        .get("private-token")
        .or_else(|| headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("Bearer "))
        .unwrap_or_default();
    let data = s.lock();
    let (scopes, expires_at) = match data.token_scopes.get(token) {
        Some(limits) if limits.read_only => (
            json!(["read_api", "read_repository"]),
            json!(limits.expires_at),
        ),
        Some(limits) => (
            json!(["api", "read_repository", "write_repository"]),
            json!(limits.expires_at),
        ),
        None => (json!(["api"]), Value::Null),
    };
    Json(json!({
        "id": caller.id, "name": "token", "revoked": false, "active": true,
        "created_at": "2026-01-01T00:00:00.000Z", "scopes": scopes, "user_id": caller.id,
        "last_used_at": null, "expires_at": expires_at,
    }))
    .into_response()
}

pub(super) async fn current_user(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
) -> Reply {
    let id = caller.id;
    let data = s.lock();
    let user = &data.users[&id];
    Json(data.user_json(user, true)).into_response()
}

/// doc/api/users.md "List users": `active`, `username`, `extern_uid` + `provider` (admin);
/// identities only in the administrator's view.
pub(super) async fn list_users(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Q,
) -> Reply {
    let admin = caller.admin;
    let data = s.lock();
    let items: Vec<Value> = data
        .users
        .values()
        .filter(|u| {
            q.get("username")
                .is_none_or(|n| n.eq_ignore_ascii_case(&u.username))
        })
        .filter(|u| match (q.get("extern_uid"), q.get("provider")) {
            (Some(x), Some(p)) => admin && u.identities.iter().any(|(pp, xx)| pp == p && xx == x),
            _ => true,
        })
        .map(|u| data.user_json(u, admin))
        .collect();
    paginate(items, &q, &uri, &headers)
}

/// doc/api/groups.md "New group": `name` and `path` required; `parent_id` for a subgroup.
pub(super) async fn create_group(
    State(s): State<GitLabState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Reply {
    let user = caller.id;
    let (Some(_name), Some(path)) = (body["name"].as_str(), body["path"].as_str()) else {
        return bad_param("name is missing, path is missing");
    };
    let parent = body.get("parent_id").and_then(as_u64);
    let mut data = s.lock();
    if let Some(p) = parent {
        if !data.groups.contains_key(&p) {
            return not_found("Group");
        }
    }
    let full = match parent.and_then(|p| data.groups.get(&p)) {
        Some(p) => format!("{}/{path}", p.full_path),
        None => path.to_owned(),
    };
    if data.group_by_path(&full).is_some() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": {"path": ["has already been taken"]}})),
        )
            .into_response();
    }
    let id = data.add_group(path, parent, Some(user));
    let g = data.groups[&id].clone();
    (StatusCode::CREATED, Json(data.group_json(&g))).into_response()
}

pub(super) async fn get_group(State(s): State<GitLabState>, Path(id): Path<String>) -> Reply {
    let data = s.lock();
    match data.find_group(&id) {
        Some(g) => Json(data.group_json(g)).into_response(),
        None => not_found("Group"),
    }
}

fn member_json(data: &GitLabData, user: u64, level: u8) -> Value {
    let username = data.users.get(&user).map_or("", |u| u.username.as_str());
    json!({"id": user, "username": username, "name": username, "state": "active", "access_level": level})
}

/// members "List all members of a group or project" (direct members).
pub(super) async fn list_members(
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
    let items = group
        .members
        .iter()
        .map(|(u, l)| member_json(&data, *u, *l))
        .collect();
    paginate(items, &q, &uri, &headers)
}

fn valid_member_level(level: u64) -> bool {
    matches!(level, 5 | 10 | 15 | 20 | 30 | 40 | 50)
}

/// members "Add a member to a group or project": 409 "Member already exists".
pub(super) async fn add_member(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let (Some(user), Some(level)) = (
        body.get("user_id").and_then(as_u64),
        body.get("access_level").and_then(as_u64),
    ) else {
        return bad_param("user_id is missing, access_level is missing");
    };
    if !valid_member_level(level) {
        return bad_param("access_level does not have a valid value");
    }
    let mut data = s.lock();
    if !data.users.contains_key(&user) {
        return not_found("User");
    }
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    let level = u8::try_from(level).unwrap_or(10);
    let group = data.groups.get_mut(&gid).expect("found");
    if group.members.contains_key(&user) {
        return message(StatusCode::CONFLICT, "Member already exists");
    }
    group.members.insert(user, level);
    (StatusCode::CREATED, Json(member_json(&data, user, level))).into_response()
}

pub(super) async fn edit_member(
    State(s): State<GitLabState>,
    Path((id, user)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(level) = body
        .get("access_level")
        .and_then(as_u64)
        .filter(|l| valid_member_level(*l))
    else {
        return bad_param("access_level does not have a valid value");
    };
    let mut data = s.lock();
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    let level = u8::try_from(level).unwrap_or(10);
    match data
        .groups
        .get_mut(&gid)
        .expect("found")
        .members
        .get_mut(&user)
    {
        Some(l) => *l = level,
        None => return not_found("Member"),
    }
    Json(member_json(&data, user, level)).into_response()
}

pub(super) async fn remove_member(
    State(s): State<GitLabState>,
    Path((id, user)): Path<(String, u64)>,
) -> Reply {
    let mut data = s.lock();
    let Some(gid) = data.find_group(&id).map(|g| g.id) else {
        return not_found("Group");
    };
    match data
        .groups
        .get_mut(&gid)
        .expect("found")
        .members
        .remove(&user)
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found("Member"),
    }
}
