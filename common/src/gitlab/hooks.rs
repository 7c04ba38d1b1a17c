//! Group webhooks (GitLab docs: `api/group_webhooks`; Premium).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::GitLabClient;
use crate::error::Result;
use crate::http::Retry;

/// A group webhook as `GET /groups/:id/hooks` returns it (GitLab docs: `api/group_webhooks` "List
/// group hooks"); the secret token is never returned. Event flags stay raw.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupHook {
    /// GitLab's hook id, for edits.
    pub id: u64,
    /// Where GitLab posts the events (phase 17: the DORA collector's webhook URL).
    pub url: String,
    /// The hook's display name, when the instance reports one.
    #[serde(default)]
    pub name: Option<String>,
    /// Every other field of the answer: event flags (`pipeline_events`, …),
    /// `enable_ssl_verification`, ….
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

impl GitLabClient {
    /// `GET /groups/:id/hooks`, all pages (`api/group_webhooks` "List group hooks"; Premium).
    pub async fn group_hooks(&self, group: u64) -> Result<Vec<GroupHook>> {
        self.list(
            &format!("listing webhooks of group {group}"),
            &format!("groups/{group}/hooks?per_page=100"),
        )
        .await
    }

    /// `POST /groups/:id/hooks` (`api/group_webhooks` "Add a group hook"): `url`, event flags,
    /// `enable_ssl_verification`, `token` (write-only).
    pub async fn create_group_hook(&self, group: u64, body: &Value) -> Result<GroupHook> {
        self.write(
            &format!("adding a webhook to group {group}"),
            Method::POST,
            &format!("groups/{group}/hooks"),
            body,
            Retry::Never,
        )
        .await
    }

    /// `PUT /groups/:id/hooks/:hook_id` (`api/group_webhooks` "Edit group hook"). GitLab resets the
    /// token when the URL changes, so callers send `token` with every edit.
    pub async fn edit_group_hook(&self, group: u64, hook: u64, body: &Value) -> Result<GroupHook> {
        self.write(
            &format!("editing webhook {hook} of group {group}"),
            Method::PUT,
            &format!("groups/{group}/hooks/{hook}"),
            body,
            Retry::Safe,
        )
        .await
    }
}
