//! Who calls the Harbor stand-in: the administrator (HTTP basic as `admin`), or a robot account
//! with only its permissions (sandbox/fixtures/harbor/robot-permissions.md).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::{HarborState, ProjectRecord, error};

/// Who is calling: the administrator, or a robot with its permissions.
#[derive(Debug, Clone)]
pub(super) enum HarborCaller {
    Admin,
    /// `(namespace, resource, action)` of each `allow` access entry of a project permission.
    Robot(Vec<(String, String, String)>),
}

impl HarborCaller {
    /// Whether the caller may `action` `resource` in project `project` (`*` is every project).
    fn may(&self, project: &ProjectRecord, resource: &str, action: &str) -> bool {
        match self {
            HarborCaller::Admin => true,
            HarborCaller::Robot(grants) => grants.iter().any(|(ns, r, a)| {
                (ns == "*" || *ns == project.name) && r == resource && a == action
            }),
        }
    }

    /// Whether the project is one of the caller's (a robot is a member of its permissions'
    /// projects and may read them).
    pub(super) fn sees(&self, project: &ProjectRecord) -> bool {
        match self {
            HarborCaller::Admin => true,
            HarborCaller::Robot(grants) => grants
                .iter()
                .any(|(ns, _, _)| ns == "*" || *ns == project.name),
        }
    }
}

/// HTTP basic as `admin`, or as an enabled robot (`robot$name` and its secret). A robot may only
/// read (sandbox/fixtures/harbor/robot-permissions.md): the project list shows its projects,
/// `getProject` needs one of its projects, `ListImmuRules` needs `immutable-tag`/`list` there
/// (Harbor's `ImmutableTagRuleAPI.requireAccess`); anything else is 403 FORBIDDEN.
pub(super) async fn authenticate(
    State(s): State<HarborState>,
    mut request: Request,
    next: Next,
) -> Response {
    use base64::Engine as _;
    let basic = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_owned);
    let caller = {
        let d = s.lock();
        match basic {
            Some(b) if b == d.basic => Some(HarborCaller::Admin),
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|pair| {
                    let (name, secret) = pair.split_once(':')?;
                    let robot = d.robot_by_name(name)?;
                    (robot.secret == secret && robot.body["disable"] != true).then(|| {
                        HarborCaller::Robot(
                            robot.body["permissions"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter(|p| p["kind"] == "project")
                                .flat_map(|p| {
                                    let ns = p["namespace"].as_str().unwrap_or_default().to_owned();
                                    p["access"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .filter(|a| {
                                            a["effect"].as_str().unwrap_or("allow") == "allow"
                                        })
                                        .map(move |a| {
                                            (
                                                ns.clone(),
                                                a["resource"]
                                                    .as_str()
                                                    .unwrap_or_default()
                                                    .to_owned(),
                                                a["action"].as_str().unwrap_or_default().to_owned(),
                                            )
                                        })
                                        .collect::<Vec<_>>()
                                })
                                .collect(),
                        )
                    })
                }),
            None => None,
        }
    };
    let Some(caller) = caller else {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized");
    };
    if let HarborCaller::Robot(_) = &caller {
        let forbidden = || error(StatusCode::FORBIDDEN, "FORBIDDEN", "forbidden");
        if request.method() != axum::http::Method::GET {
            return forbidden();
        }
        let path = request.uri().path().to_owned();
        let rest = path.strip_prefix("/api/v2.0/projects").unwrap_or("-");
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let by_name = request
            .headers()
            .get("x-is-resource-name")
            .is_some_and(|v| v == "true");
        let allowed = {
            let d = s.lock();
            let project = |p: &str| {
                d.find_project(p, by_name)
                    .and_then(|id| d.projects.get(&id))
            };
            match parts.as_slice() {
                // The list: filtered to the robot's projects in `list_projects`.
                [] => rest.is_empty(),
                [p] => project(p).is_some_and(|p| caller.sees(p)),
                [p, "immutabletagrules"] => {
                    project(p).is_some_and(|p| caller.may(p, "immutable-tag", "list"))
                }
                _ => false,
            }
        };
        if !allowed {
            return forbidden();
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
