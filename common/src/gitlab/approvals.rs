//! Merge request approval settings and rules (GitLab docs: `api/merge_request_approvals`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::GitLabClient;
use crate::error::Result;
use crate::http::Retry;

#[derive(Debug, Clone, Deserialize)]
pub struct RuleGroup {
    pub id: u64,
    pub full_path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleBranch {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApprovalRule {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub rule_type: String,
    pub approvals_required: u32,
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
    #[serde(default)]
    pub users: Vec<Value>,
    #[serde(default)]
    pub protected_branches: Vec<RuleBranch>,
    #[serde(default)]
    pub applies_to_all_protected_branches: bool,
}

impl GitLabClient {
    /// `GET /projects/:id/approvals` (Premium).
    pub async fn approval_settings(&self, project: u64) -> Result<Value> {
        self.get(
            &format!("reading approval settings of project {project}"),
            &format!("projects/{project}/approvals"),
        )
        .await
    }

    /// `POST /projects/:id/approvals` (Premium): sets the given fields; an upsert, so retried.
    pub async fn update_approval_settings(&self, project: u64, body: &Value) -> Result<Value> {
        self.write(
            &format!("updating approval settings of project {project}"),
            Method::POST,
            &format!("projects/{project}/approvals"),
            body,
            Retry::Safe,
        )
        .await
    }

    /// `GET /projects/:id/approval_rules`, all pages (Premium).
    pub async fn approval_rules(&self, project: u64) -> Result<Vec<ApprovalRule>> {
        self.list(
            &format!("listing approval rules of project {project}"),
            &format!("projects/{project}/approval_rules?per_page=100"),
        )
        .await
    }

    /// `POST /projects/:id/approval_rules`.
    pub async fn create_approval_rule(&self, project: u64, body: &Value) -> Result<ApprovalRule> {
        self.write(
            &format!("creating an approval rule of project {project}"),
            Method::POST,
            &format!("projects/{project}/approval_rules"),
            body,
            Retry::Never,
        )
        .await
    }

    /// `PUT /projects/:id/approval_rules/:rule`.
    pub async fn update_approval_rule(
        &self,
        project: u64,
        rule: u64,
        body: &Value,
    ) -> Result<ApprovalRule> {
        self.write(
            &format!("updating approval rule {rule} of project {project}"),
            Method::PUT,
            &format!("projects/{project}/approval_rules/{rule}"),
            body,
            Retry::Safe,
        )
        .await
    }

    /// `DELETE /projects/:id/approval_rules/:rule`.
    pub async fn delete_approval_rule(&self, project: u64, rule: u64) -> Result<()> {
        self.api
            .call(
                &format!("deleting approval rule {rule} of project {project}"),
                Method::DELETE,
                &format!("projects/{project}/approval_rules/{rule}"),
                None,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }
}
