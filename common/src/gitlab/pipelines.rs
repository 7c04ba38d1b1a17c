//! CI history: deployments, pipelines, jobs, single commits (`api/deployments`, `api/pipelines`).

use serde_json::Value;

use super::{GitLabClient, encode_path};
use crate::error::Result;

/// CI history the DORA collector heals missed webhooks from (doc/api/deployments.md "List project
/// deployments", doc/api/pipelines.md "List project pipelines" / "Get a single pipeline",
/// doc/api/jobs.md "List pipeline jobs", doc/api/commits.md "Get a single commit").
impl GitLabClient {
    /// Deployments of a project updated after `after` (ISO 8601), oldest first, every page.
    pub async fn deployments_updated_after(&self, project: u64, after: &str) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                "listing deployments",
                &format!(
                    "/projects/{project}/deployments?updated_after={}&order_by=updated_at&sort=asc&per_page=100",
                    encode_path(after)
                ),
            )
            .await
    }

    /// Pipelines of a project updated after `after` (ISO 8601), every page.
    pub async fn pipelines_updated_after(&self, project: u64, after: &str) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                "listing pipelines",
                &format!(
                    "/projects/{project}/pipelines?updated_after={}&order_by=updated_at&sort=asc&per_page=100",
                    encode_path(after)
                ),
            )
            .await
    }

    /// One pipeline (with `duration`, `queued_duration`, `finished_at`); `None` when gone.
    pub async fn pipeline(&self, project: u64, id: u64) -> Result<Option<Value>> {
        self.api
            .get_optional(
                "reading a pipeline",
                &format!("/projects/{project}/pipelines/{id}"),
            )
            .await
    }

    /// The jobs of a pipeline, every page.
    pub async fn pipeline_jobs(&self, project: u64, id: u64) -> Result<Vec<Value>> {
        self.api
            .get_all_pages(
                "listing pipeline jobs",
                &format!("/projects/{project}/pipelines/{id}/jobs?per_page=100"),
            )
            .await
    }

    /// One commit of a project (`committed_date`); `None` when unknown.
    pub async fn commit_by_sha(&self, project: &str, sha: &str) -> Result<Option<Value>> {
        self.api
            .get_optional(
                "reading a commit",
                &format!(
                    "/projects/{}/repository/commits/{}",
                    encode_path(project),
                    encode_path(sha)
                ),
            )
            .await
    }
}
