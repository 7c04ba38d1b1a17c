//! GitLab stand-in: protected tags, per project. Behaviour from GitLab's API docs,
//! `doc/api/protected_tags.md` ("Protected tags API", Tier: Free, Premium, Ultimate), and from
//! `lib/api/protected_tags.rb` where the docs are silent:
//! - "Valid access levels": 0 (no one), 30 (Developers + Maintainers), 40 (Maintainers); another
//!   `create_access_level` is a 400 `create_access_level does not have a valid value` (Grape).
//! - "List protected tags": `GET /projects/:id/protected_tags`, paginated.
//! - "Get a protected tag or wildcard protected tag": `GET /projects/:id/protected_tags/:name`
//!   (`v%2A` for `v*`); 404 `{"message":"404 Not found"}` when it is not protected (`find_by!`).
//! - "Protect a repository tag": `POST`, `name` required, `create_access_level` default 40,
//!   `allowed_to_create` (`{user_id}`, `{group_id}`, `{deploy_key_id}`, `{access_level}`) Premium
//!   only, ignored on Free like every undeclared parameter; 201 with the protected tag. A name
//!   already protected: the endpoint's first versions answered 409 `Protected tag '<name>' already
//!   exists`; the current code has no such check and the model's uniqueness validation answers 422
//!   `{"message":["Name has already been taken"]}`, which this stand-in plays (it says 17.11).
//! - "Unprotect repository tags": `DELETE`, 204; 404 when not protected.
//! - Response entries: `id`, `access_level` (null for a user or group), `access_level_description`,
//!   `deploy_key_id`; `user_id` and `group_id` on Premium only.
//!
//! Tag creation honours protection (`Gitlab::Checks::TagCheck`): a tag matching a protected name
//! or wildcard (`*` matches any run of characters, `Gitlab::RefMatcher`) is created only by someone
//! one of its create entries admits; else 400 `You are not allowed to create this tag as it is
//! protected.` (`Tags::CreateService` turns the pre-receive error into a 400).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{
    Caller, GitLabData, GitLabState, Q, Reply, Tier, bad_param, find_project_id, message,
    not_found, paginate,
};

/// One entry of `create_access_levels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAccess {
    pub id: u64,
    /// `None` for a user or group entry.
    pub access_level: Option<u8>,
    pub user_id: Option<u64>,
    pub group_id: Option<u64>,
    pub deploy_key_id: Option<u64>,
}

/// A protected tag name or wildcard of one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedTagRecord {
    pub name: String,
    pub create: Vec<CreateAccess>,
}

impl ProtectedTagRecord {
    /// Whether `tag` falls under this protection (`Gitlab::RefMatcher`).
    pub fn matches(&self, tag: &str) -> bool {
        if !self.name.contains('*') {
            return self.name == tag;
        }
        wildcard_match(&self.name, tag)
    }
}

/// `*` matches any run of characters; everything else literally.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// "Valid access levels" of protected tags.
fn valid_tag_level(level: u64) -> bool {
    matches!(level, 0 | 30 | 40)
}

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route(
            "/api/v4/projects/{id}/protected_tags",
            get(list_protected_tags).post(protect_tag),
        )
        .route(
            "/api/v4/projects/{id}/protected_tags/{name}",
            get(get_protected_tag).delete(unprotect_tag),
        )
}

fn description(level: Option<u8>) -> &'static str {
    match level {
        Some(0) => "No one",
        Some(30) => "Developers + Maintainers",
        Some(40) => "Maintainers",
        _ => "Custom",
    }
}

fn tag_json(tier: Tier, t: &ProtectedTagRecord) -> Value {
    let levels: Vec<Value> = t
        .create
        .iter()
        .map(|a| {
            let mut v = json!({
                "id": a.id,
                "access_level": a.access_level,
                "access_level_description": description(a.access_level),
                "deploy_key_id": a.deploy_key_id,
            });
            if tier == Tier::Premium {
                v["user_id"] = a.user_id.into();
                v["group_id"] = a.group_id.into();
            }
            v
        })
        .collect();
    json!({"name": t.name, "create_access_levels": levels})
}

async fn list_protected_tags(
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
        .protected_tags
        .iter()
        .map(|t| tag_json(data.tier, t))
        .collect();
    paginate(items, &q, &uri, &headers)
}

async fn get_protected_tag(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    match data.projects[&pid]
        .protected_tags
        .iter()
        .find(|t| t.name == name)
    {
        Some(t) => Json(tag_json(data.tier, t)).into_response(),
        None => message(StatusCode::NOT_FOUND, "404 Not found"),
    }
}

/// One `allowed_to_create` element (Premium): exactly one of its four keys.
fn allowed_entry(v: &Value, id: u64) -> Option<CreateAccess> {
    let key = |k: &str| v.get(k).and_then(Value::as_u64);
    let entry = CreateAccess {
        id,
        access_level: None,
        user_id: key("user_id"),
        group_id: key("group_id"),
        deploy_key_id: key("deploy_key_id"),
    };
    let names_someone =
        entry.user_id.is_some() || entry.group_id.is_some() || entry.deploy_key_id.is_some();
    match key("access_level") {
        Some(l) if valid_tag_level(l) => Some(CreateAccess {
            access_level: u8::try_from(l).ok(),
            ..entry
        }),
        None if names_someone => Some(entry),
        _ => None,
    }
}

async fn protect_tag(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return bad_param("name is missing");
    };
    let level = match body.get("create_access_level") {
        None | Some(Value::Null) => 40,
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(l) if valid_tag_level(l) => l,
            _ => return bad_param("create_access_level does not have a valid value"),
        },
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    if data.projects[&pid]
        .protected_tags
        .iter()
        .any(|t| t.name == name)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": ["Name has already been taken"]})),
        )
            .into_response();
    }
    let mut create = vec![CreateAccess {
        id: data.id(),
        access_level: u8::try_from(level).ok(),
        user_id: None,
        group_id: None,
        deploy_key_id: None,
    }];
    if data.tier == Tier::Premium {
        for v in body["allowed_to_create"].as_array().into_iter().flatten() {
            let id = data.id();
            match allowed_entry(v, id) {
                Some(entry) if !create.iter().any(|c| same_grant(c, &entry)) => create.push(entry),
                Some(_) => {}
                None => return bad_param("allowed_to_create is invalid"),
            }
        }
    }
    let record = ProtectedTagRecord {
        name: name.to_owned(),
        create,
    };
    let json = tag_json(data.tier, &record);
    data.projects
        .get_mut(&pid)
        .expect("found above")
        .protected_tags
        .push(record);
    (StatusCode::CREATED, Json(json)).into_response()
}

fn same_grant(a: &CreateAccess, b: &CreateAccess) -> bool {
    (a.access_level, a.user_id, a.group_id, a.deploy_key_id)
        == (b.access_level, b.user_id, b.group_id, b.deploy_key_id)
}

async fn unprotect_tag(
    State(s): State<GitLabState>,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let tags = &mut data.projects.get_mut(&pid).expect("found").protected_tags;
    match tags.iter().position(|t| t.name == name) {
        Some(pos) => {
            tags.remove(pos);
            StatusCode::NO_CONTENT.into_response()
        }
        None => message(StatusCode::NOT_FOUND, "404 Not found"),
    }
}

/// The caller's role in a project: the highest direct membership of its group or an ancestor.
fn project_role(data: &GitLabData, pid: u64, user: u64) -> Option<u8> {
    let mut group = data.projects.get(&pid).map(|p| p.namespace_id);
    let mut best = None;
    while let Some(g) = group.and_then(|g| data.groups.get(&g)) {
        best = best.max(g.members.get(&user).copied());
        group = g.parent_id;
    }
    best
}

/// Whether `caller` may create `tag` in project `pid` (`Gitlab::UserAccess#can_create_tag?`):
/// unprotected tags need no more than the endpoint's own rights; a protected one needs one
/// matching protection with an entry that admits the caller. "No one" admits nobody.
pub(super) fn may_create_tag(data: &GitLabData, pid: u64, caller: Caller, tag: &str) -> bool {
    let project = &data.projects[&pid];
    let matching: Vec<&ProtectedTagRecord> = project
        .protected_tags
        .iter()
        .filter(|t| t.matches(tag))
        .collect();
    if matching.is_empty() {
        return true;
    }
    let role = project_role(data, pid, caller.id);
    let in_group = |g: u64| {
        data.groups
            .get(&g)
            .is_some_and(|g| g.members.contains_key(&caller.id))
    };
    matching.iter().any(|t| {
        t.create.iter().any(|a| match a.access_level {
            Some(0) => false,
            Some(level) => caller.admin || role.is_some_and(|r| r >= level),
            None => a.user_id == Some(caller.id) || a.group_id.is_some_and(in_group),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::{demo_data, routes as gitlab_routes};
    use super::*;

    #[test]
    fn wildcards_match_like_gitlab() {
        let t = |name: &str| ProtectedTagRecord {
            name: name.into(),
            create: Vec::new(),
        };
        assert!(t("v*").matches("v1.2.3"));
        assert!(t("v*").matches("v"));
        assert!(!t("v*").matches("release-v1"));
        assert!(t("*-stable").matches("1-0-stable"));
        assert!(t("release-*-rc*").matches("release-1-rc2"));
        assert!(!t("release-*-rc*").matches("release-1"));
        assert!(t("v1.0").matches("v1.0"));
        assert!(!t("v1.0").matches("v1.0.1"));
    }

    /// "Protect a repository tag" (201, default 40), "Get" by the encoded wildcard, a duplicate
    /// (422), invalid levels (400), "Unprotect" (204, then 404), and tag creation under protection.
    #[tokio::test]
    async fn protected_tags_follow_the_api_and_guard_tag_creation() {
        common::cli::install_crypto_provider();
        let mut demo = demo_data("glpat-test");
        let dev = demo.add_user("devon", &[]);
        demo.add_token("glpat-dev", dev);
        let ps = demo.group_by_path("platform_services").unwrap().id;
        demo.groups.get_mut(&ps).unwrap().members.insert(dev, 30);
        let pid = demo
            .project_by_path("platform_services/packet-relay")
            .unwrap()
            .id;
        demo.projects
            .get_mut(&pid)
            .unwrap()
            .repository
            .commits
            .push(("c0ffee".into(), "init".into()));
        let state = GitLabState::new(json!({"keys": []}), demo);
        let running = super::super::super::serve("gitlab", gitlab_routes(state.clone()))
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let call = |token: &'static str, method: reqwest::Method, path: String, body: Value| {
            let req = http
                .request(method, format!("{}/api/v4/{path}", running.url))
                .header("PRIVATE-TOKEN", token);
            let req = if body.is_null() { req } else { req.json(&body) };
            req.send()
        };
        let admin = |method, path, body| call("glpat-test", method, path, body);
        let base = format!("projects/{pid}/protected_tags");

        let missing = admin(reqwest::Method::GET, format!("{base}/v%2A"), Value::Null)
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let created = admin(reqwest::Method::POST, base.clone(), json!({"name": "v*"}))
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["create_access_levels"][0]["access_level"], 40);
        let read: Value = admin(reqwest::Method::GET, format!("{base}/v%2A"), Value::Null)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read, created);
        let dup = admin(
            reqwest::Method::POST,
            base.clone(),
            json!({"name": "v*", "create_access_level": 30}),
        )
        .await
        .unwrap();
        assert_eq!(dup.status(), 422);
        assert_eq!(
            dup.json::<Value>().await.unwrap(),
            json!({"message": ["Name has already been taken"]})
        );
        let bad = admin(
            reqwest::Method::POST,
            base.clone(),
            json!({"name": "rc-*", "create_access_level": 60}),
        )
        .await
        .unwrap();
        assert_eq!(bad.status(), 400);

        // A developer cannot create a protected tag; an unprotected one, and Maintainers, can.
        let tag = |token: &'static str, name: &str| {
            call(
                token,
                reqwest::Method::POST,
                format!("projects/{pid}/repository/tags"),
                json!({"tag_name": name, "ref": "main"}),
            )
        };
        let denied = tag("glpat-dev", "v1.0.0").await.unwrap();
        assert_eq!(denied.status(), 400);
        assert_eq!(
            denied.json::<Value>().await.unwrap()["message"],
            "You are not allowed to create this tag as it is protected."
        );
        assert_eq!(tag("glpat-dev", "nightly-1").await.unwrap().status(), 201);
        assert_eq!(tag("glpat-test", "v1.0.0").await.unwrap().status(), 201);

        let listed: Value = admin(reqwest::Method::GET, base.clone(), Value::Null)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let gone = admin(reqwest::Method::DELETE, format!("{base}/v%2A"), Value::Null)
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        let again = admin(reqwest::Method::DELETE, format!("{base}/v%2A"), Value::Null)
            .await
            .unwrap();
        assert_eq!(again.status(), 404);
        assert_eq!(tag("glpat-dev", "v1.0.1").await.unwrap().status(), 201);
        assert!(state.lock().projects[&pid].protected_tags.is_empty());
    }

    /// `common`'s shared helper, as a phase that creates a project uses it: protects `v*` once,
    /// then reads only; replaces other create levels (DELETE + POST) keeping a user entry; a
    /// repeated protection (422 here, 409 on older GitLab) is accepted when it is as asked.
    #[tokio::test]
    async fn ensure_release_tag_protection_writes_only_what_differs() {
        use common::gitlab::{GitLabClient, RELEASE_TAG_PATTERN, protect_tag_body};
        use std::sync::atomic::Ordering;

        common::cli::install_crypto_provider();
        let state = GitLabState::new(json!({"keys": []}), demo_data("glpat-test"));
        let pid = state
            .lock()
            .project_by_path("platform_services/dora-collector")
            .unwrap()
            .id;
        let running = super::super::super::serve("gitlab", gitlab_routes(state.clone()))
            .await
            .unwrap();
        let client = GitLabClient::new(
            &running.url,
            common::config::Credential {
                value: "glpat-test".to_owned().into(),
                source: "the test".into(),
            },
            reqwest::Client::new(),
            0,
        );
        let writes = || running.control.counters.writes.load(Ordering::Relaxed);

        assert!(client.ensure_release_tag_protection(pid).await.unwrap());
        assert_eq!(writes(), 1);
        assert!(!client.ensure_release_tag_protection(pid).await.unwrap());
        assert_eq!(writes(), 1, "already protected: reads only");
        let again = client
            .protect_tag(pid, &protect_tag_body(RELEASE_TAG_PATTERN, 40, None))
            .await
            .unwrap();
        assert_eq!(again.create_roles(), vec![40], "a repeat is accepted");
        let other = client
            .protect_tag(pid, &protect_tag_body(RELEASE_TAG_PATTERN, 30, None))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            other.contains("protecting tag v* of project")
                && other.contains("Name has already been taken")
                && other.contains("Protected tags"),
            "names the operation, the answer and the fix: {other}"
        );

        let user = {
            let mut data = state.lock();
            let user = data.user_id("alice").unwrap();
            let tag = &mut data.projects.get_mut(&pid).unwrap().protected_tags[0];
            tag.create[0].access_level = Some(30);
            tag.create.push(CreateAccess {
                id: 77,
                access_level: None,
                user_id: Some(user),
                group_id: None,
                deploy_key_id: None,
            });
            user
        };
        let before = writes();
        assert!(client.ensure_release_tag_protection(pid).await.unwrap());
        assert_eq!(writes() - before, 2, "unprotect, then protect");
        let tag = client
            .protected_tag(pid, RELEASE_TAG_PATTERN)
            .await
            .unwrap()
            .unwrap();
        assert!(tag.allows_only(40));
        assert!(
            tag.create_access_levels
                .iter()
                .any(|e| e.user_id == Some(user)),
            "{tag:?}"
        );
        assert_eq!(client.protected_tags(pid).await.unwrap().len(), 1);
    }
}
