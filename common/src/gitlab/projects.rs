//! Projects: list, read, create, edit (GitLab docs: `api/projects`, `api/groups` "List projects").

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{GitLabClient, Group, encode_path};
use crate::error::Result;
use crate::http::Retry;

/// A project as the list endpoints return it; settings stay raw so a phase reads the ones it manages.
#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    /// GitLab's numeric project id.
    pub id: u64,
    /// The project's full path, e.g. `platform_services/dora-collector`.
    pub path_with_namespace: String,
    /// `true` for an archived, read-only project.
    #[serde(default)]
    pub archived: bool,
    /// The project's topics (phase 12 recognises production-manifest repositories by one).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Every other field of the answer, e.g. `merge_method` or
    /// `only_allow_merge_if_pipeline_succeeds`.
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

impl GitLabClient {
    /// Every project of a group and its subgroups, all pages (`include_subgroups=true`).
    pub async fn group_projects(&self, group: &Group) -> Result<Vec<Project>> {
        self.list(
            &format!("listing projects of {}", group.full_path),
            &format!(
                "groups/{}/projects?include_subgroups=true&with_shared=false&archived=false&order_by=id&sort=asc&per_page=100",
                group.id
            ),
        )
        .await
    }

    /// `PUT /projects/:id` with only the given settings.
    pub async fn edit_project(&self, project: u64, settings: &Value) -> Result<Value> {
        self.write(
            &format!("editing project {project}"),
            Method::PUT,
            &format!("projects/{project}"),
            settings,
            Retry::Safe,
        )
        .await
    }

    /// `GET /projects/:path`; `None` when it does not exist.
    pub async fn project(&self, full_path: &str) -> Result<Option<Project>> {
        self.api
            .get_optional(
                &format!("reading project {full_path}"),
                &format!("projects/{}", encode_path(full_path)),
            )
            .await
    }

    /// `POST /projects` with a caller's `body` (`name`, `path`, `namespace_id` and any settings).
    pub async fn create_project_with(&self, body: &Value) -> Result<Project> {
        self.write(
            &format!(
                "creating project {}",
                body["path"].as_str().unwrap_or_default()
            ),
            Method::POST,
            "projects",
            body,
            Retry::Never,
        )
        .await
    }

    /// `POST /projects` in a group namespace.
    pub async fn create_project(
        &self,
        path: &str,
        namespace_id: u64,
        description: &str,
    ) -> Result<Project> {
        self.write(
            &format!("creating project {path}"),
            Method::POST,
            "projects",
            &serde_json::json!({
                "name": path, "path": path, "namespace_id": namespace_id, "visibility": "internal",
                "description": description, "initialize_with_readme": false, "default_branch": "main",
            }),
            Retry::Never,
        )
        .await
    }
}
