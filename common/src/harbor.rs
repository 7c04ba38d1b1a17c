//! Harbor API v2.0 client (specs/harbor/swagger.yaml, Harbor v2.15): projects and their metadata,
//! retention policies, immutable tag rules and robot accounts.

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Credential, PlatformConfig};
use crate::env;
use crate::error::{Error, Result};
use crate::http::{ApiClient, Fixes, Retry, build_reqwest};
use crate::redact;

const SERVICE: &str = "Harbor";
/// The admin user the base platform creates (its password is `HARBOR_ADMIN_PASSWORD`).
const ADMIN_USER: &str = "admin";

/// A Harbor project as `GET /projects?name=` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    /// Harbor's numeric project id, for updates and immutable tag rules.
    pub project_id: u64,
    /// The project's name, e.g. `platform-services`.
    pub name: String,
    /// String values (`"true"`), as Harbor stores them (swagger: `ProjectMetadata`).
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

/// A robot account as `GET /robots` shows it (the secret is never returned).
#[derive(Debug, Clone, Deserialize)]
pub struct Robot {
    /// Harbor's robot id, for updates and secret refreshes.
    pub id: u64,
    /// The full name, with Harbor's prefix (`robot$ci-push`).
    pub name: String,
    /// The robot's description.
    #[serde(default)]
    pub description: String,
    /// `system` or `project`; [`HarborClient::robot`] looks at system robots only.
    #[serde(default)]
    pub level: String,
    /// `true` when the robot is disabled.
    #[serde(default)]
    pub disable: bool,
    /// Lifetime in days; `-1` for never expiring.
    #[serde(default)]
    pub duration: Option<i64>,
    /// What it may do per project (`kind`, `namespace`, `access`), raw.
    #[serde(default)]
    pub permissions: Vec<Value>,
}

/// A robot's secret, only ever returned by create and refresh.
pub struct RobotSecret {
    /// The robot's id.
    pub id: u64,
    /// The robot's full name as Harbor answered it (`robot$ci-push`).
    pub name: String,
    /// The secret, registered for redaction.
    pub secret: SecretString,
}

/// Harbor API v2.0 client signed in as the admin user (basic auth).
#[derive(Clone, Debug)]
pub struct HarborClient {
    api: ApiClient,
}

impl HarborClient {
    /// Basic auth as `admin` with `HARBOR_ADMIN_PASSWORD` at `HARBOR_URL` (or `https://harbor.$DOMAIN`).
    pub fn connect(cfg: &PlatformConfig) -> Result<Self> {
        let url = cfg.require_url(env::HARBOR_URL)?.to_owned();
        let password = cfg
            .environment()
            .get(env::HARBOR_ADMIN_PASSWORD)
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} is not set: the Harbor admin password (scripts/.env of the base platform)",
                    env::HARBOR_ADMIN_PASSWORD
                ))
            })?;
        redact::register(password);
        let basic = base64_basic(ADMIN_USER, password);
        redact::register(&basic);
        let credential = Credential {
            value: basic.into(),
            source: env::HARBOR_ADMIN_PASSWORD.to_owned(),
        };
        Ok(Self::new(
            &url,
            credential,
            build_reqwest(cfg)?,
            cfg.http_retries,
        ))
    }

    /// A client acting as a robot account (`robot$name` and its secret, read from `source`), for
    /// a workload that reads with the robot's permissions only.
    pub fn connect_robot(
        cfg: &PlatformConfig,
        username: &str,
        secret: &str,
        source: &str,
    ) -> Result<Self> {
        let url = cfg.require_url(env::HARBOR_URL)?.to_owned();
        redact::register(secret);
        let basic = base64_basic(username, secret);
        redact::register(&basic);
        let mut client = Self::new(
            &url,
            Credential {
                value: basic.into(),
                source: source.to_owned(),
            },
            build_reqwest(cfg)?,
            cfg.http_retries,
        );
        client.api = client.api.with_fixes(Fixes {
            unauthorized: format!(
                "Harbor refused robot {username} (secret from {source}): it was deleted, disabled or its secret refreshed; rerun phase 14 (ci-templates apply) to store a new one"
            ),
            forbidden: format!(
                "robot {username} lacks this permission: phase 14 (ci-templates) grants it; rerun it"
            ),
            unreachable: format!(
                "check {}, that Harbor is up, and for TLS errors set {} to the platform CA bundle",
                env::HARBOR_URL,
                env::CICD_CA_BUNDLE
            ),
        });
        Ok(client)
    }

    /// `credential` is the base64 of `user:password`.
    pub fn new(url: &str, credential: Credential, reqwest: reqwest::Client, retries: u32) -> Self {
        let fixes = Fixes {
            unauthorized: format!(
                "Harbor refused the admin credentials: check {} (user admin)",
                credential.source
            ),
            forbidden: format!(
                "the Harbor user admin (password from {}) lacks system admin rights",
                credential.source
            ),
            unreachable: format!(
                "check {}, that Harbor is up, and for TLS errors set {} to the platform CA bundle",
                env::HARBOR_URL,
                env::CICD_CA_BUNDLE
            ),
        };
        let api = ApiClient::new(
            SERVICE,
            &format!("{}/api/v2.0", url.trim_end_matches('/')),
            reqwest,
            retries,
        )
        .with_auth("authorization", "Basic ", credential)
        .with_fixes(fixes);
        Self { api }
    }

    /// The HTTP layer (request counters).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// Sets the retry backoff unit (tests shorten it).
    #[must_use]
    pub fn with_backoff(mut self, unit: std::time::Duration) -> Self {
        self.api = self.api.with_backoff(unit);
        self
    }

    /// Swagger `GET /systeminfo` (`GeneralInfo`: `harbor_version`, …), readable without admin rights.
    pub async fn system_info(&self) -> Result<Value> {
        self.api
            .call_json(
                "reading Harbor's system info",
                Method::GET,
                "systeminfo",
                None,
                Retry::Safe,
            )
            .await
    }

    /// Swagger `GET /users/current` (`UserResp`: `username`, `sysadmin_flag`): the credentials in use.
    pub async fn current_user(&self) -> Result<Value> {
        self.api
            .call_json(
                "reading the current Harbor user",
                Method::GET,
                "users/current",
                None,
                Retry::Safe,
            )
            .await
    }

    /// `GET /projects/{name}` with `X-Is-Resource-Name`-free lookup by exact name
    /// (`GET /projects?name=`, then an exact match); `None` when absent.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        let list: Vec<Project> = self
            .api
            .call_json(
                &format!("finding project {name}"),
                Method::GET,
                &format!(
                    "projects?name={}&page_size=100",
                    crate::gitlab::encode_path(name)
                ),
                None,
                Retry::Safe,
            )
            .await?;
        Ok(list.into_iter().find(|p| p.name == name))
    }

    /// `POST /projects` (201, no body).
    pub async fn create_project(&self, body: &Value) -> Result<()> {
        let name = body["project_name"].as_str().unwrap_or_default();
        self.api
            .call(
                &format!("creating project {name}"),
                Method::POST,
                "projects",
                Some(body),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }

    /// `PUT /projects/{id}` with the metadata to set.
    pub async fn update_project(&self, id: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating project {id}"),
                Method::PUT,
                &format!("projects/{id}"),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// `GET /retentions/{id}`.
    pub async fn retention(&self, id: u64) -> Result<Value> {
        self.api
            .call_json(
                &format!("reading retention policy {id}"),
                Method::GET,
                &format!("retentions/{id}"),
                None,
                Retry::Safe,
            )
            .await
    }

    /// `POST /retentions` (Harbor links it to the project as metadata `retention_id`).
    pub async fn create_retention(&self, body: &Value) -> Result<()> {
        self.api
            .call(
                "creating a retention policy",
                Method::POST,
                "retentions",
                Some(body),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }

    /// `PUT /retentions/{id}`.
    pub async fn update_retention(&self, id: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating retention policy {id}"),
                Method::PUT,
                &format!("retentions/{id}"),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// `GET /projects/{id}/immutabletagrules`.
    pub async fn immutable_rules(&self, project: u64) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                &format!("listing immutable tag rules of project {project}"),
                &format!("projects/{project}/immutabletagrules?page_size=100"),
            )
            .await
    }

    /// `POST /projects/{id}/immutabletagrules`.
    pub async fn create_immutable_rule(&self, project: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("creating an immutable tag rule in project {project}"),
                Method::POST,
                &format!("projects/{project}/immutabletagrules"),
                Some(body),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }

    /// `PUT /projects/{id}/immutabletagrules/{rule}`.
    pub async fn update_immutable_rule(&self, project: u64, rule: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating immutable tag rule {rule} of project {project}"),
                Method::PUT,
                &format!("projects/{project}/immutabletagrules/{rule}"),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// Every robot whose name contains `part` (`GET /robots?q=name=~part`, a fuzzy match, all
    /// pages): system and project robots alike.
    pub async fn robots_matching(&self, part: &str) -> Result<Vec<Robot>> {
        let robots: Vec<Value> = self
            .api
            .get_all_pages(
                &format!("finding robot {part}"),
                &format!(
                    "robots?q=name%3D~{}&page_size=100",
                    crate::gitlab::encode_path(part)
                ),
            )
            .await?;
        Ok(robots
            .into_iter()
            .filter_map(|r| serde_json::from_value(r).ok())
            .collect())
    }

    /// The system robot among `robots` whose name is exactly `robot$<name>` (any prefix Harbor is
    /// configured with).
    pub fn system_robot<'a>(robots: &'a [Robot], name: &str) -> Option<&'a Robot> {
        robots.iter().find(|r| {
            r.level == "system"
                && r.name
                    .rsplit_once('$')
                    .map_or(r.name == name, |(_, n)| n == name)
        })
    }

    /// The system robot whose name is exactly `robot$<name>` (any prefix Harbor is configured
    /// with).
    pub async fn robot(&self, name: &str) -> Result<Option<Robot>> {
        let robots = self.robots_matching(name).await?;
        Ok(Self::system_robot(&robots, name).cloned())
    }

    /// `POST /robots`: the answer carries the only copy of the secret.
    pub async fn create_robot(&self, body: &Value) -> Result<RobotSecret> {
        let name = body["name"].as_str().unwrap_or_default();
        let created: Value = self
            .api
            .call_json(
                &format!("creating robot {name}"),
                Method::POST,
                "robots",
                Some(body),
                Retry::Never,
            )
            .await?;
        secret_of(&created, name)
    }

    /// `PUT /robots/{id}`: permissions, description, duration (the whole robot).
    pub async fn update_robot(&self, id: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating robot {id}"),
                Method::PUT,
                &format!("robots/{id}"),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// `DELETE /robots/{id}` (swagger `DeleteRobot`): the robot and its secret are gone.
    pub async fn delete_robot(&self, id: u64, name: &str) -> Result<()> {
        self.api
            .delete(
                &format!("deleting robot {name} (id {id})"),
                &format!("robots/{id}"),
            )
            .await
    }

    /// `PATCH /robots/{id}` with an empty body: Harbor generates a new secret and returns it.
    pub async fn refresh_robot_secret(&self, id: u64, name: &str) -> Result<RobotSecret> {
        let answer: Value = self
            .api
            .call_json(
                &format!("refreshing the secret of robot {name}"),
                Method::PATCH,
                &format!("robots/{id}"),
                Some(&json!({})),
                Retry::Never,
            )
            .await?;
        let mut secret = secret_of(&answer, name)?;
        secret.id = id;
        Ok(secret)
    }
}

/// Scanners, scan-all schedule, CVE allowlist and webhook policies (phase 16).
impl HarborClient {
    /// `GET /scanners`: every scanner registration (`ScannerRegistration`).
    pub async fn scanners(&self) -> Result<Vec<Value>> {
        self.api
            .get_all_pages("listing scanners", "scanners?page_size=100")
            .await
    }

    /// `GET /scanners/{registration_id}/metadata`: Harbor asks the adapter, so a failure means the
    /// scanner is unreachable or unhealthy.
    pub async fn scanner_metadata(&self, uuid: &str, name: &str) -> Result<Value> {
        self.api
            .call_json(
                &format!("checking the health of scanner {name}"),
                Method::GET,
                &format!("scanners/{}/metadata", crate::gitlab::encode_path(uuid)),
                None,
                Retry::Safe,
            )
            .await
    }

    /// `GET /system/scanAll/schedule` (`Schedule`; without `schedule` when none is set).
    pub async fn scan_all_schedule(&self) -> Result<Value> {
        self.api
            .call_json(
                "reading the scan-all schedule",
                Method::GET,
                "system/scanAll/schedule",
                None,
                Retry::Safe,
            )
            .await
    }

    /// `POST` (none yet) or `PUT` (replace) `/system/scanAll/schedule`.
    pub async fn set_scan_all_schedule(&self, body: &Value, exists: bool) -> Result<()> {
        let (method, retry) = if exists {
            (Method::PUT, Retry::Safe)
        } else {
            (Method::POST, Retry::Never)
        };
        self.api
            .call(
                "setting the scan-all schedule",
                method,
                "system/scanAll/schedule",
                Some(body),
                retry,
            )
            .await
            .map(|_| ())
    }

    /// `GET /system/CVEAllowlist`.
    pub async fn system_cve_allowlist(&self) -> Result<Value> {
        self.api
            .call_json(
                "reading the system CVE allowlist",
                Method::GET,
                "system/CVEAllowlist",
                None,
                Retry::Safe,
            )
            .await
    }

    /// `PUT /system/CVEAllowlist`: replaces the whole list.
    pub async fn set_system_cve_allowlist(&self, body: &Value) -> Result<()> {
        self.api
            .call(
                "updating the system CVE allowlist",
                Method::PUT,
                "system/CVEAllowlist",
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// `GET /projects/{name}/webhook/policies`, all pages (`WebhookPolicy`, addresses included).
    pub async fn webhook_policies(&self, project: &str) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                &format!("listing webhook policies of project {project}"),
                &format!(
                    "projects/{}/webhook/policies?page_size=100",
                    crate::gitlab::encode_path(project)
                ),
            )
            .await
    }

    /// `POST /projects/{name}/webhook/policies`.
    pub async fn create_webhook_policy(&self, project: &str, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("creating a webhook policy in project {project}"),
                Method::POST,
                &format!(
                    "projects/{}/webhook/policies",
                    crate::gitlab::encode_path(project)
                ),
                Some(body),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }

    /// `PUT /projects/{name}/webhook/policies/{id}` (the whole policy).
    pub async fn update_webhook_policy(&self, project: &str, id: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating webhook policy {id} of project {project}"),
                Method::PUT,
                &format!(
                    "projects/{}/webhook/policies/{id}",
                    crate::gitlab::encode_path(project)
                ),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }
}

fn secret_of(answer: &Value, name: &str) -> Result<RobotSecret> {
    let secret = answer["secret"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Decode {
            service: SERVICE,
            operation: format!("reading the secret of robot {name}"),
            url: String::new(),
            cause: "no secret in the answer".into(),
        })?;
    redact::register(secret);
    Ok(RobotSecret {
        id: answer["id"].as_u64().unwrap_or_default(),
        name: answer["name"].as_str().unwrap_or(name).to_owned(),
        secret: secret.to_owned().into(),
    })
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
