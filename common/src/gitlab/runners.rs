//! Runners: list, read, create, update, reset their tokens (`api/runners`, `api/users`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::GitLabClient;
use crate::error::{Error, Result};
use crate::http::Retry;

/// A runner as `GET /groups/:id/runners` and `GET /runners/:id` show it (doc/api/runners.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Runner {
    /// GitLab's runner id.
    pub id: u64,
    /// The runner's description, by which phase 16 finds a pool's runner (`<pool>-runners`).
    #[serde(default)]
    pub description: String,
    /// `instance_type`, `group_type` or `project_type`.
    #[serde(default)]
    pub runner_type: String,
    /// `true` when the runner takes no new jobs.
    #[serde(default)]
    pub paused: bool,
    /// Only in the runner's details.
    #[serde(default)]
    pub tag_list: Vec<String>,
    /// `true` when the runner also takes jobs without tags.
    #[serde(default)]
    pub run_untagged: bool,
    /// `true` when the runner cannot be assigned to other projects.
    #[serde(default)]
    pub locked: bool,
    /// `not_protected`, or `ref_protected` for jobs of protected branches and tags only.
    #[serde(default)]
    pub access_level: String,
}

/// A runner's id and authentication token (`glrt-…`), only ever returned by create and reset.
pub struct RunnerToken {
    /// The runner's id.
    pub id: u64,
    /// The authentication token, registered for redaction.
    pub token: secrecy::SecretString,
}

fn runner_token(answer: &Value, id: u64, operation: &str) -> Result<RunnerToken> {
    let token = answer["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Decode {
            service: "GitLab",
            operation: operation.to_owned(),
            url: String::new(),
            cause: "no token in the answer".into(),
        })?;
    crate::redact::register(token);
    Ok(RunnerToken {
        id: answer["id"].as_u64().unwrap_or(id),
        token: token.to_owned().into(),
    })
}

/// Runners (doc/api/users.md "Create a runner linked to a user", doc/api/runners.md).
impl GitLabClient {
    /// `GET /groups/:id/runners?type=group_type`, all pages.
    pub async fn group_runners(&self, group: u64) -> Result<Vec<Runner>> {
        self.list(
            &format!("listing runners of group {group}"),
            &format!("groups/{group}/runners?type=group_type&per_page=100"),
        )
        .await
    }

    /// `GET /runners/all?type=<runner_type>`, all pages: every runner of that type in the
    /// instance (administrators only; the list has no tags).
    pub async fn all_runners(&self, runner_type: &str) -> Result<Vec<Runner>> {
        self.list(
            &format!("listing the instance's runners of type {runner_type}"),
            &format!("runners/all?type={runner_type}&per_page=100"),
        )
        .await
    }

    /// `DELETE /runners/:id`: the runner is unregistered and its token stops working.
    pub async fn delete_runner(&self, id: u64) -> Result<()> {
        self.api
            .delete(&format!("deleting runner {id}"), &format!("runners/{id}"))
            .await
    }

    /// `GET /runners/:id`: the details (tags, `run_untagged`, …).
    pub async fn runner(&self, id: u64) -> Result<Runner> {
        self.get(&format!("reading runner {id}"), &format!("runners/{id}"))
            .await
    }

    /// `POST /user/runners`: a new runner; the answer carries the only copy of its token.
    pub async fn create_runner(&self, body: &Value) -> Result<RunnerToken> {
        let operation = format!(
            "creating runner {}",
            body["description"].as_str().unwrap_or_default()
        );
        let answer: Value = self
            .write(&operation, Method::POST, "user/runners", body, Retry::Never)
            .await?;
        runner_token(&answer, 0, &operation)
    }

    /// `PUT /runners/:id` with the attributes to change.
    pub async fn update_runner(&self, id: u64, body: &Value) -> Result<()> {
        self.api
            .call(
                &format!("updating runner {id}"),
                Method::PUT,
                &format!("runners/{id}"),
                Some(body),
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// `POST /runners/:id/reset_authentication_token`: a new token (the old one stops working).
    pub async fn reset_runner_token(&self, id: u64) -> Result<RunnerToken> {
        let operation = format!("resetting the authentication token of runner {id}");
        let answer: Value = self
            .write(
                &operation,
                Method::POST,
                &format!("runners/{id}/reset_authentication_token"),
                &serde_json::json!({}),
                Retry::Never,
            )
            .await?;
        runner_token(&answer, id, &operation)
    }
}
