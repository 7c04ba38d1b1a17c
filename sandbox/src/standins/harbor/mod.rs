//! Harbor stand-in (specs/harbor/swagger.yaml, Harbor v2.15.2; sandbox/fixtures/harbor). Request
//! bodies are validated against the swagger `definitions` named by each operation (400 with the
//! errors otherwise). Behaviour per operationId:
//! - `getPing` / `getHealth`: "Pong" and the overall status.
//! - `listProjects` (`name`, `page`, `page_size`), `createProject` (`ProjectReq`; 409 when the name
//!   exists; 201 + `Location`), `getProject`, `updateProject` (`ProjectReq`; metadata merged).
//! - `createRetention` / `getRetention` / `updateRetention` (`RetentionPolicy`; scope.ref is the
//!   project id; creating sets the project's metadata `retention_id`).
//! - `ListImmuRules` / `CreateImmuRule` / `UpdateImmuRule` (`ImmutableRule`).
//! - `ListRobot` (`q=name=~x` fuzzy), `CreateRobot` (`RobotCreate`; the name gets Harbor's default
//!   `robot_name_prefix` `robot$`, and a project robot (`level: project`, one permission) is named
//!   `robot$<project>+<name>`; 409 when taken; `RobotCreated` carries the only copy of the
//!   secret), `GetRobotByID`, `UpdateRobot` (Robot), `RefreshSec` (`RobotSec`; a new secret),
//!   `DeleteRobot`.
//! - `listScanners` (one default Trivy registration, as Harbor installs it) and
//!   `getScannerMetadata` (Harbor asks the adapter: 500 when the adapter is unreachable).
//! - `getScanAllSchedule` (a `Schedule` without `schedule` when none is set),
//!   `createScanAllSchedule` (Schedule; 409 when one exists), `updateScanAllSchedule` (Schedule);
//!   `schedule.type` must be one of `ScheduleObj`'s enum, `Custom` needs a `cron`.
//! - `getSystemCVEAllowlist` / `putSystemCVEAllowlist` (`CVEAllowlist`; the list is replaced).
//! - `ListWebhookPoliciesOfProject`, `CreateWebhookPolicyOfProject` (`WebhookPolicy`; 409 when the
//!   name is taken in the project; `targets` and `event_types` required),
//!   `UpdateWebhookPolicyOfProject` (`WebhookPolicy`, the whole policy).
//!   Authentication: HTTP basic as `admin`, or as an enabled robot, which may only read its
//!   projects and, with `immutable-tag`/`list`, their immutable tag rules (403 otherwise;
//!   sandbox/fixtures/harbor/robot-permissions.md); 401 for anyone else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::swagger::Swagger;
use auth::HarborCaller;

mod auth;

/// Harbor's default `robot_name_prefix` (system configuration).
pub const ROBOT_PREFIX: &str = "robot$";

/// The parsed Harbor swagger (fixtures/harbor/swagger.yaml).
pub fn swagger() -> &'static Swagger {
    static SWAGGER: OnceLock<Swagger> = OnceLock::new();
    SWAGGER.get_or_init(|| {
        Swagger::parse(include_str!("../../../fixtures/harbor/swagger.yaml"))
            .expect("Harbor swagger parses")
    })
}

#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub id: u64,
    pub name: String,
    /// String values, as Harbor keeps them.
    pub metadata: Map<String, Value>,
    pub immutable_rules: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct RobotRecord {
    pub id: u64,
    pub name: String,
    pub secret: String,
    pub body: Value,
}

/// A scanner registration; `healthy: false` makes its metadata call fail as an unreachable
/// adapter does.
#[derive(Debug, Clone)]
pub struct ScannerRecord {
    pub registration: Value,
    pub healthy: bool,
}

#[derive(Debug)]
pub struct HarborData {
    /// `base64(admin:password)`.
    basic: String,
    pub projects: BTreeMap<u64, ProjectRecord>,
    pub retentions: BTreeMap<u64, Value>,
    pub robots: BTreeMap<u64, RobotRecord>,
    /// By registration uuid.
    pub scanners: BTreeMap<String, ScannerRecord>,
    /// The scan-all `Schedule`, once set.
    pub scan_all_schedule: Option<Value>,
    /// The system `CVEAllowlist`.
    pub cve_allowlist: Value,
    /// Webhook policies by id (`project_id` inside).
    pub webhook_policies: BTreeMap<u64, Value>,
    next_id: u64,
}

/// The uuid of the default Trivy registration a Harbor install with Trivy has.
pub const TRIVY_SCANNER_UUID: &str = "6b4c1f2e-0d7a-4a55-9a3e-trivy0000001";

impl HarborData {
    pub fn new(admin_password: &str) -> Self {
        use base64::Engine as _;
        Self {
            basic: base64::engine::general_purpose::STANDARD
                .encode(format!("admin:{admin_password}")),
            projects: BTreeMap::new(),
            retentions: BTreeMap::new(),
            robots: BTreeMap::new(),
            scanners: BTreeMap::from([(
                TRIVY_SCANNER_UUID.to_owned(),
                ScannerRecord {
                    registration: json!({
                        "uuid": TRIVY_SCANNER_UUID, "name": "Trivy", "description": "The Trivy scanner adapter",
                        "url": "http://harbor-trivy:8080", "disabled": false, "is_default": true,
                        "auth": "", "skip_certVerify": false, "use_internal_addr": true,
                        "adapter": "Trivy", "vendor": "Aqua Security",
                    }),
                    healthy: true,
                },
            )]),
            scan_all_schedule: None,
            cve_allowlist: json!({"id": 1, "project_id": 0, "expires_at": null, "items": []}),
            webhook_policies: BTreeMap::new(),
            next_id: 1,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn project_by_name(&self, name: &str) -> Option<&ProjectRecord> {
        self.projects.values().find(|p| p.name == name)
    }

    pub fn robot_by_name(&self, name: &str) -> Option<&RobotRecord> {
        self.robots.values().find(|r| r.name == name)
    }

    fn find_project(&self, name_or_id: &str, by_name: bool) -> Option<u64> {
        match name_or_id.parse::<u64>() {
            Ok(id) if !by_name => self.projects.contains_key(&id).then_some(id),
            _ => self.project_by_name(name_or_id).map(|p| p.id),
        }
    }

    fn project_json(p: &ProjectRecord) -> Value {
        json!({"project_id": p.id, "name": p.name, "metadata": p.metadata, "deleted": false})
    }

    fn robot_json(r: &RobotRecord) -> Value {
        let mut v = r.body.clone();
        v["id"] = r.id.into();
        v["name"] = r.name.clone().into();
        if let Some(o) = v.as_object_mut() {
            o.remove("secret");
        }
        v
    }
}

#[derive(Clone)]
pub struct HarborState(pub Arc<Mutex<HarborData>>);

impl HarborState {
    pub fn new(data: HarborData) -> Self {
        Self(Arc::new(Mutex::new(data)))
    }
    pub fn lock(&self) -> MutexGuard<'_, HarborData> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Harbor's error body (`Errors`): `{"errors": [{"code", "message"}]}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

fn invalid(definition: &str, body: &Value) -> Option<Response> {
    let errors = swagger().validate(definition, body);
    (!errors.is_empty()).then(|| error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &errors.join("; ")))
}

fn created(location: &str) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert("location", v);
    }
    r
}

type Q = Query<BTreeMap<String, String>>;

/// One page of a list as Harbor answers it: the items, `X-Total-Count`, and a `Link` header
/// with `prev` and `next` built from the request's own path and query, relative, joined by
/// " , " (Harbor's `BaseAPI.Links` and `lib.Links.String`, vendored in
/// sandbox/fixtures/harbor-links/). A client that resolves these against the API base instead
/// of the page gets `/api/v2.0/api/v2.0/…`.
fn paged(items: &[Value], q: &BTreeMap<String, String>, uri: &axum::http::Uri) -> Response {
    let (size, number) = page_of(q);
    let total = items.len();
    let link = |page: usize| {
        let mut query: BTreeMap<String, String> = q.clone();
        query.insert("page".into(), page.to_string());
        query.insert("page_size".into(), size.to_string());
        // url.Values.Encode sorts by key; Harbor then unescapes the query.
        let encoded: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("<{}?{}>", uri.path(), encoded.join("&"))
    };
    let mut links = Vec::new();
    if number > 1 && (number - 1) * size < total {
        links.push(format!("{}; rel=\"prev\"", link(number - 1)));
    }
    if size * number < total {
        links.push(format!("{}; rel=\"next\"", link(number + 1)));
    }
    let mut response = Json(page(items, q)).into_response();
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&links.join(" , ")) {
            headers.insert("link", v);
        }
    }
    response
}

fn page_of(q: &BTreeMap<String, String>) -> (usize, usize) {
    let size = q
        .get("page_size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10usize)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    (size, page)
}

fn page<T: Clone>(items: &[T], q: &BTreeMap<String, String>) -> Vec<T> {
    let (size, page) = page_of(q);
    items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect()
}

fn by_name(headers: &HeaderMap) -> bool {
    headers
        .get("x-is-resource-name")
        .is_some_and(|v| v == "true")
}

async fn list_projects(
    State(s): State<HarborState>,
    axum::Extension(caller): axum::Extension<HarborCaller>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> Response {
    let d = s.lock();
    let all: Vec<Value> = d
        .projects
        .values()
        .filter(|p| caller.sees(p))
        .filter(|p| q.get("name").is_none_or(|n| p.name.contains(n.as_str())))
        .map(HarborData::project_json)
        .collect();
    paged(&all, &q, &uri)
}

async fn create_project(State(s): State<HarborState>, Json(body): Json<Value>) -> Response {
    if let Some(r) = invalid("ProjectReq", &body) {
        return r;
    }
    let Some(name) = body["project_name"].as_str().filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "project_name is required",
        );
    };
    let mut d = s.lock();
    if d.project_by_name(name).is_some() {
        return error(
            StatusCode::CONFLICT,
            "CONFLICT",
            &format!("The project named {name} already exists"),
        );
    }
    let id = d.id();
    let mut metadata = Map::new();
    metadata.insert("public".into(), "false".into());
    for (k, v) in body["metadata"].as_object().into_iter().flatten() {
        metadata.insert(k.clone(), v.clone());
    }
    d.projects.insert(
        id,
        ProjectRecord {
            id,
            name: name.to_owned(),
            metadata,
            immutable_rules: Vec::new(),
        },
    );
    created(&format!("/api/v2.0/projects/{id}"))
}

async fn get_project(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path(p): Path<String>,
) -> Response {
    let d = s.lock();
    match d.find_project(&p, by_name(&headers)) {
        Some(id) => Json(HarborData::project_json(&d.projects[&id])).into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found"),
    }
}

async fn update_project(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path(p): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = invalid("ProjectReq", &body) {
        return r;
    }
    let mut d = s.lock();
    let Some(id) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    let project = d.projects.get_mut(&id).expect("found");
    for (k, v) in body["metadata"].as_object().into_iter().flatten() {
        project.metadata.insert(k.clone(), v.clone());
    }
    StatusCode::OK.into_response()
}

async fn create_retention(State(s): State<HarborState>, Json(body): Json<Value>) -> Response {
    if let Some(r) = invalid("RetentionPolicy", &body) {
        return r;
    }
    let mut d = s.lock();
    let Some(project) = body["scope"]["ref"]
        .as_u64()
        .filter(|p| d.projects.contains_key(p))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "scope.ref must be an existing project id",
        );
    };
    let id = d.id();
    let mut policy = body.clone();
    policy["id"] = id.into();
    d.retentions.insert(id, policy);
    d.projects
        .get_mut(&project)
        .expect("checked")
        .metadata
        .insert("retention_id".into(), id.to_string().into());
    created(&format!("/api/v2.0/retentions/{id}"))
}

async fn get_retention(State(s): State<HarborState>, Path(id): Path<u64>) -> Response {
    match s.lock().retentions.get(&id) {
        Some(p) => Json(p.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "retention policy not found",
        ),
    }
}

async fn update_retention(
    State(s): State<HarborState>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = invalid("RetentionPolicy", &body) {
        return r;
    }
    let mut d = s.lock();
    match d.retentions.get_mut(&id) {
        Some(p) => {
            *p = body;
            p["id"] = id.into();
            StatusCode::OK.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "retention policy not found",
        ),
    }
}

async fn list_immutable(
    State(s): State<HarborState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Q,
) -> Response {
    let d = s.lock();
    match d.find_project(&p, by_name(&headers)) {
        Some(id) => paged(&d.projects[&id].immutable_rules, &q, &uri),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found"),
    }
}

async fn create_immutable(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path(p): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = invalid("ImmutableRule", &body) {
        return r;
    }
    let mut d = s.lock();
    let Some(project) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    let id = d.id();
    let mut rule = body;
    rule["id"] = id.into();
    d.projects
        .get_mut(&project)
        .expect("found")
        .immutable_rules
        .push(rule);
    created(&format!(
        "/api/v2.0/projects/{project}/immutabletagrules/{id}"
    ))
}

async fn update_immutable(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path((p, rule_id)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = invalid("ImmutableRule", &body) {
        return r;
    }
    let mut d = s.lock();
    let Some(project) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    let rules = &mut d.projects.get_mut(&project).expect("found").immutable_rules;
    match rules.iter_mut().find(|r| r["id"] == rule_id) {
        Some(rule) => {
            *rule = body;
            rule["id"] = rule_id.into();
            StatusCode::OK.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "immutable rule not found",
        ),
    }
}

/// Swagger `DELETE /projects/{project_name_or_id}/immutabletagrules/{immutable_rule_id}`.
async fn delete_immutable(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path((p, rule_id)): Path<(String, u64)>,
) -> Response {
    let mut d = s.lock();
    let Some(project) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    let rules = &mut d.projects.get_mut(&project).expect("found").immutable_rules;
    let before = rules.len();
    rules.retain(|r| r["id"] != rule_id);
    if rules.len() == before {
        error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "immutable rule not found",
        )
    } else {
        StatusCode::OK.into_response()
    }
}

/// Swagger `GET /users/current` (`UserResp`): the stand-in knows one user, the admin.
async fn current_user() -> Response {
    Json(json!({"user_id": 1, "username": "admin", "sysadmin_flag": true, "admin_role_in_auth": false}))
        .into_response()
}

async fn list_robots(
    State(s): State<HarborState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> Response {
    let d = s.lock();
    // `q=name=~x` is a fuzzy match; `q=name=x` an exact one (swagger: parameter `q`).
    let filter = q.get("q").cloned().unwrap_or_default();
    let all: Vec<Value> = d
        .robots
        .values()
        .filter(|r| match filter.strip_prefix("name=~") {
            Some(part) => r.name.contains(part),
            None => filter
                .strip_prefix("name=")
                .is_none_or(|exact| r.name == exact),
        })
        .map(HarborData::robot_json)
        .collect();
    paged(&all, &q, &uri)
}

async fn create_robot(State(s): State<HarborState>, Json(body): Json<Value>) -> Response {
    if let Some(r) = invalid("RobotCreate", &body) {
        return r;
    }
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "name is required");
    };
    if !matches!(body["level"].as_str(), Some("system" | "project")) {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "level must be system or project",
        );
    }
    let duration = body["duration"].as_i64().unwrap_or(0);
    if duration != -1 && duration <= 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "duration must be -1 or a positive integer",
        );
    }
    let mut d = s.lock();
    // A project robot is scoped to one project, named by its only permission's namespace
    // ("to create a project robot, the permission must be only one project scope": 400 "bad
    // request permission" otherwise), and its name follows `<prefix><project_name>+<account_name>`
    // (Harbor docs, "Create Project Robot Accounts": fixtures/harbor/robot-accounts.md).
    let full = if body["level"] == "project" {
        let permissions = body["permissions"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let [permission] = permissions else {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "bad request permission",
            );
        };
        let project = permission["namespace"].as_str().unwrap_or_default();
        if d.project_by_name(project).is_none() {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("project {project} not found"),
            );
        }
        format!("{ROBOT_PREFIX}{project}+{name}")
    } else {
        format!("{ROBOT_PREFIX}{name}")
    };
    if d.robot_by_name(&full).is_some() {
        return error(
            StatusCode::CONFLICT,
            "CONFLICT",
            &format!("robot account {full} already exists"),
        );
    }
    let id = d.id();
    let secret = crate::keys::random_token(32);
    let mut stored = body.clone();
    stored["level"] = body["level"].clone();
    d.robots.insert(
        id,
        RobotRecord {
            id,
            name: full.clone(),
            secret: secret.clone(),
            body: stored,
        },
    );
    (StatusCode::CREATED, Json(json!({"id": id, "name": full, "secret": secret, "creation_time": "2026-01-01T00:00:00Z", "expires_at": -1})))
        .into_response()
}

async fn get_robot(State(s): State<HarborState>, Path(id): Path<u64>) -> Response {
    match s.lock().robots.get(&id) {
        Some(r) => Json(HarborData::robot_json(r)).into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "robot not found"),
    }
}

async fn update_robot(
    State(s): State<HarborState>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = invalid("Robot", &body) {
        return r;
    }
    let mut d = s.lock();
    let Some(robot) = d.robots.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "robot not found");
    };
    if body["name"].as_str().is_some_and(|n| n != robot.name) {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "cannot change the name of a robot",
        );
    }
    for key in ["description", "duration", "disable", "permissions"] {
        if let Some(v) = body.get(key) {
            robot.body[key] = v.clone();
        }
    }
    StatusCode::OK.into_response()
}

/// `DeleteRobot`: 200 (swagger `responses/200`), 404 when unknown.
async fn delete_robot(State(s): State<HarborState>, Path(id): Path<u64>) -> Response {
    match s.lock().robots.remove(&id) {
        Some(_) => StatusCode::OK.into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "robot not found"),
    }
}

async fn refresh_secret(
    State(s): State<HarborState>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = invalid("RobotSec", &body) {
        return r;
    }
    let mut d = s.lock();
    let Some(robot) = d.robots.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "robot not found");
    };
    robot.secret = body["secret"]
        .as_str()
        .map_or_else(|| crate::keys::random_token(32), str::to_owned);
    Json(json!({"secret": robot.secret})).into_response()
}

async fn list_scanners(
    State(s): State<HarborState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> Response {
    let d = s.lock();
    let all: Vec<Value> = d
        .scanners
        .values()
        .map(|r| r.registration.clone())
        .collect();
    paged(&all, &q, &uri)
}

async fn scanner_metadata(State(s): State<HarborState>, Path(uuid): Path<String>) -> Response {
    let d = s.lock();
    match d.scanners.get(&uuid) {
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "scanner not found"),
        Some(r) if !r.healthy => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            &format!(
                "v1 client: get metadata: Get \"{}/api/v1/metadata\": dial tcp: connection refused",
                r.registration["url"].as_str().unwrap_or_default()
            ),
        ),
        Some(r) => Json(json!({
            "scanner": {"name": r.registration["name"], "vendor": r.registration["vendor"], "version": "v0.58.0"},
            "capabilities": [{"type": "vulnerability",
                "consumes_mime_types": ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"],
                "produces_mime_types": ["application/vnd.security.vulnerability.report; version=1.1"]}],
            "properties": {"harbor.scanner-adapter/scanner-type": "os-package-vulnerability"},
        }))
        .into_response(),
    }
}

/// The checks of a `Schedule` body beyond its definition (`ScheduleObj`'s `type` enum).
fn invalid_schedule(body: &Value) -> Option<Response> {
    if let Some(r) = invalid("Schedule", body) {
        return Some(r);
    }
    let kind = body["schedule"]["type"].as_str().unwrap_or_default();
    let types = [
        "Hourly", "Daily", "Weekly", "Custom", "Manual", "None", "Schedule",
    ];
    if !types.contains(&kind) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("schedule.type {kind:?} is not one of {types:?}"),
        ));
    }
    if kind == "Custom" && body["schedule"]["cron"].as_str().is_none_or(str::is_empty) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a Custom schedule needs a cron",
        ));
    }
    None
}

async fn get_scan_all(State(s): State<HarborState>) -> Response {
    Json(
        s.lock()
            .scan_all_schedule
            .clone()
            .unwrap_or_else(|| json!({})),
    )
    .into_response()
}

async fn create_scan_all(State(s): State<HarborState>, Json(body): Json<Value>) -> Response {
    if let Some(r) = invalid_schedule(&body) {
        return r;
    }
    let mut d = s.lock();
    if d.scan_all_schedule.is_some() {
        return error(
            StatusCode::CONFLICT,
            "CONFLICT",
            "the schedule already exists",
        );
    }
    let id = d.id();
    d.scan_all_schedule =
        Some(json!({"id": id, "schedule": body["schedule"], "status": "Scheduled"}));
    created("/api/v2.0/system/scanAll/schedule")
}

async fn update_scan_all(State(s): State<HarborState>, Json(body): Json<Value>) -> Response {
    if let Some(r) = invalid_schedule(&body) {
        return r;
    }
    let mut d = s.lock();
    let id = d
        .scan_all_schedule
        .as_ref()
        .and_then(|v| v["id"].as_u64())
        .unwrap_or_default();
    d.scan_all_schedule =
        Some(json!({"id": id, "schedule": body["schedule"], "status": "Scheduled"}));
    StatusCode::OK.into_response()
}

async fn get_allowlist(State(s): State<HarborState>) -> Response {
    Json(s.lock().cve_allowlist.clone()).into_response()
}

async fn put_allowlist(State(s): State<HarborState>, Json(body): Json<Value>) -> Response {
    if let Some(r) = invalid("CVEAllowlist", &body) {
        return r;
    }
    let mut d = s.lock();
    d.cve_allowlist["items"] = body["items"].as_array().cloned().unwrap_or_default().into();
    d.cve_allowlist["expires_at"] = body["expires_at"].clone();
    StatusCode::OK.into_response()
}

fn policy_checks(body: &Value) -> Option<Response> {
    if let Some(r) = invalid("WebhookPolicy", body) {
        return Some(r);
    }
    let ok = body["targets"].as_array().is_some_and(|t| !t.is_empty())
        && body["event_types"]
            .as_array()
            .is_some_and(|e| !e.is_empty());
    (!ok).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "targets and event_types are required",
        )
    })
}

async fn list_webhooks(
    State(s): State<HarborState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Q,
) -> Response {
    let d = s.lock();
    let Some(project) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    let all: Vec<Value> = d
        .webhook_policies
        .values()
        .filter(|w| w["project_id"] == project)
        .cloned()
        .collect();
    paged(&all, &q, &uri)
}

async fn create_webhook(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path(p): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = policy_checks(&body) {
        return r;
    }
    let mut d = s.lock();
    let Some(project) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    let taken = d
        .webhook_policies
        .values()
        .any(|w| w["project_id"] == project && w["name"] == body["name"]);
    if taken {
        return error(
            StatusCode::CONFLICT,
            "CONFLICT",
            "a webhook policy with this name exists",
        );
    }
    let id = d.id();
    let mut policy = body;
    policy["id"] = id.into();
    policy["project_id"] = project.into();
    policy["creator"] = "admin".into();
    if policy.get("enabled").is_none() {
        policy["enabled"] = true.into();
    }
    d.webhook_policies.insert(id, policy);
    created(&format!(
        "/api/v2.0/projects/{project}/webhook/policies/{id}"
    ))
}

async fn update_webhook(
    State(s): State<HarborState>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = policy_checks(&body) {
        return r;
    }
    let mut d = s.lock();
    let Some(project) = d.find_project(&p, by_name(&headers)) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found");
    };
    match d.webhook_policies.get_mut(&id) {
        Some(policy) if policy["project_id"] == project => {
            let mut updated = body;
            updated["id"] = id.into();
            updated["project_id"] = project.into();
            updated["creator"] = policy["creator"].clone();
            *policy = updated;
            StatusCode::OK.into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "webhook policy not found",
        ),
    }
}

pub fn routes(state: HarborState) -> Router {
    let api = Router::new()
        .route("/api/v2.0/scanners", get(list_scanners))
        .route("/api/v2.0/scanners/{uuid}/metadata", get(scanner_metadata))
        .route(
            "/api/v2.0/system/scanAll/schedule",
            get(get_scan_all).post(create_scan_all).put(update_scan_all),
        )
        .route(
            "/api/v2.0/system/CVEAllowlist",
            get(get_allowlist).put(put_allowlist),
        )
        .route(
            "/api/v2.0/projects/{p}/webhook/policies",
            get(list_webhooks).post(create_webhook),
        )
        .route(
            "/api/v2.0/projects/{p}/webhook/policies/{id}",
            axum::routing::put(update_webhook),
        )
        .route(
            "/api/v2.0/projects",
            get(list_projects).post(create_project),
        )
        .route(
            "/api/v2.0/projects/{p}",
            get(get_project).put(update_project),
        )
        .route(
            "/api/v2.0/projects/{p}/immutabletagrules",
            get(list_immutable).post(create_immutable),
        )
        .route(
            "/api/v2.0/projects/{p}/immutabletagrules/{rule}",
            axum::routing::put(update_immutable).delete(delete_immutable),
        )
        .route("/api/v2.0/users/current", get(current_user))
        .route(
            "/api/v2.0/retentions",
            axum::routing::post(create_retention),
        )
        .route(
            "/api/v2.0/retentions/{id}",
            get(get_retention).put(update_retention),
        )
        .route("/api/v2.0/robots", get(list_robots).post(create_robot))
        .route(
            "/api/v2.0/robots/{id}",
            get(get_robot)
                .put(update_robot)
                .patch(refresh_secret)
                .delete(delete_robot),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state);
    Router::new()
        .route("/api/v2.0/ping", get(|| async { "Pong" }))
        // Swagger `GET /systeminfo` (`GeneralInfo`), readable without signing in.
        .route(
            "/api/v2.0/systeminfo",
            get(|| async {
                Json(json!({"harbor_version": "v2.13.1-sandbox", "auth_mode": "db_auth", "with_notary": false}))
            }),
        )
        .route(
            "/api/v2.0/health",
            get(|| async { Json(json!({"status": "healthy", "components": []})) }),
        )
        .merge(api)
}
