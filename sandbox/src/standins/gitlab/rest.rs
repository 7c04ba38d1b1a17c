//! REST conventions of every endpoint: token authentication, pagination, error replies (api/rest).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::model::TokenReach;
use super::{GitLabState, find_project_id};

pub(in crate::standins) type Reply = Response;

pub(in crate::standins) fn message(status: StatusCode, text: &str) -> Reply {
    (status, Json(json!({"message": text}))).into_response()
}

pub(in crate::standins) fn not_found(what: &str) -> Reply {
    message(StatusCode::NOT_FOUND, &format!("404 {what} Not Found"))
}

/// Grape's answer to an invalid parameter (400 `{"error": "..."}`).
pub(in crate::standins) fn bad_param(text: &str) -> Reply {
    (StatusCode::BAD_REQUEST, Json(json!({"error": text}))).into_response()
}

/// Who is calling (set by [`require_token`]).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub id: u64,
    pub admin: bool,
}

/// Every `/api/v4` request needs a known token (api/rest "Authentication").
pub(super) async fn require_token(
    State(s): State<GitLabState>,
    mut request: Request,
    next: Next,
) -> Reply {
    let headers = request.headers();
    let private = headers.get("private-token").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let caller = {
        let data = s.lock();
        let token = private.or(bearer);
        // A project or group access token: expired ones fail authentication; what lies outside
        // its project or group is invisible (404, as for a project the caller cannot see); a
        // read-only one may not write (403 insufficient_scope).
        if let Some(limits) = token.and_then(|t| data.token_scopes.get(t)) {
            let expired = common::dates::parse(&limits.expires_at)
                .is_none_or(|day| day <= common::dates::today());
            if expired {
                return message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
            }
            let path = request.uri().path();
            let segment = |prefix: &str| {
                path.strip_prefix(prefix)
                    .and_then(|rest| rest.split('/').next())
                    .map(decode_segment)
            };
            let project = segment("/api/v4/projects/").and_then(|p| find_project_id(&data, &p));
            let group = segment("/api/v4/groups/").and_then(|g| data.find_group(&g).map(|g| g.id));
            let within = |group_id: u64| match limits.reach {
                TokenReach::Group(own) => data.group_within(group_id, own),
                TokenReach::Project(_) => false,
            };
            let reachable = match (project, group) {
                (Some(pid), _) => match limits.reach {
                    TokenReach::Project(own) => pid == own,
                    TokenReach::Group(_) => data
                        .projects
                        .get(&pid)
                        .is_some_and(|p| within(p.namespace_id)),
                },
                (None, Some(gid)) => within(gid),
                // The instance-wide reads every authenticated caller may make (api/version,
                // api/metadata "requires authentication", api/users "current user", the
                // token's own record; api/license then refuses a non-administrator itself).
                (None, None) => matches!(
                    path,
                    "/api/v4/version"
                        | "/api/v4/metadata"
                        | "/api/v4/user"
                        | "/api/v4/personal_access_tokens/self"
                        | "/api/v4/license"
                ),
            };
            if !reachable {
                return not_found(if group.is_some() { "Group" } else { "Project" });
            }
            // Protected branches and tags are a Maintainer's read (`authorize_admin_project`;
            // sandbox/fixtures/gitlab-docs/protected-refs-read.md).
            if limits.access_level < 40
                && (path.contains("/protected_branches") || path.contains("/protected_tags"))
            {
                return message(StatusCode::FORBIDDEN, "403 Forbidden");
            }
            if limits.read_only && !matches!(request.method().as_str(), "GET" | "HEAD") {
                return (
                    StatusCode::FORBIDDEN,
                    Json(json!({
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by the access token.",
                        "scope": "api",
                    })),
                )
                    .into_response();
            }
        }
        token.and_then(|t| data.tokens.get(t)).map(|id| Caller {
            id: *id,
            admin: data.users.get(id).is_some_and(|u| u.is_admin),
        })
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => message(StatusCode::UNAUTHORIZED, "401 Unauthorized"),
    }
}

/// One page of `items` with GitLab's pagination headers.
pub(in crate::standins) fn paginate(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Reply {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(20)
        .min(100);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let link_to = |n: usize| {
        let mut params: BTreeMap<String, String> = query.clone();
        params.insert("page".into(), n.to_string());
        params.insert("per_page".into(), per_page.to_string());
        let qs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("http://{host}{}?{}", uri.path(), qs.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    if page < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    links.push(format!("<{}>; rel=\"last\"", link_to(total_pages)));
    let mut response = Json(Value::Array(slice)).into_response();
    let h = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("x-page", page.to_string());
    set("x-per-page", per_page.to_string());
    set("x-total", total.to_string());
    set("x-total-pages", total_pages.to_string());
    set(
        "x-next-page",
        if page < total_pages {
            (page + 1).to_string()
        } else {
            String::new()
        },
    );
    set(
        "x-prev-page",
        if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        },
    );
    set("link", links.join(", "));
    response
}

pub(in crate::standins) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

pub(super) fn id_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(as_u64).collect()
}

pub(in crate::standins) type Q = Query<BTreeMap<String, String>>;

/// A percent-encoded path segment (`platform_services%2Fpacket-relay`) decoded.
fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::serve_demo;
    use super::*;

    /// api/rest "Offset-based pagination" headers, and "Authentication" (401 without a token).
    #[tokio::test]
    async fn pages_carry_gitlab_headers_and_tokens_are_required() {
        let (running, state) = serve_demo().await;
        let ps = state.lock().group_by_path("platform_services").unwrap().id;
        let http = reqwest::Client::new();
        let url = format!(
            "{}/api/v4/groups/{ps}/projects?include_subgroups=true&per_page=4",
            running.url
        );
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
        let page = http
            .get(&url)
            .header("PRIVATE-TOKEN", "glpat-test")
            .send()
            .await
            .unwrap();
        let h = page.headers().clone();
        assert_eq!(h["x-total"], "6");
        assert_eq!(h["x-total-pages"], "2");
        assert_eq!(h["x-next-page"], "2");
        let link = h["link"].to_str().unwrap();
        assert!(
            link.contains("page=2") && link.contains("rel=\"next\""),
            "{link}"
        );
        assert_eq!(page.json::<Vec<Value>>().await.unwrap().len(), 4);
        let next = common::http::next_link(&h).unwrap();
        let last = http
            .get(&next)
            .header("PRIVATE-TOKEN", "glpat-test")
            .send()
            .await
            .unwrap();
        assert_eq!(last.headers()["x-next-page"], "");
        assert!(
            !last.headers()["link"]
                .to_str()
                .unwrap()
                .contains("rel=\"next\"")
        );
    }
}
