//! Merge request approval settings and rules (GitLab docs: `api/merge_request_approvals`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::GitLabClient;
use crate::error::Result;
use crate::http::Retry;

/// A group whose members are eligible approvers of an approval rule.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleGroup {
    /// GitLab's numeric group id.
    pub id: u64,
    /// The group's full path, e.g. `keycloak-groups/platform-admins`.
    pub full_path: String,
}

/// A protected branch an approval rule is scoped to.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleBranch {
    /// Id of the branch protection the rule refers to; protecting `main` anew would unscope the
    /// rule, so phase 12 updates it in place.
    pub id: u64,
    /// Branch name or wildcard, e.g. `main`.
    pub name: String,
}

/// A project's merge request approval rule (`GET /projects/:id/approval_rules`; Premium).
#[derive(Debug, Clone, Deserialize)]
pub struct ApprovalRule {
    /// GitLab's rule id, for updates and deletes.
    pub id: u64,
    /// The rule's name, e.g. `Senior Review Required`.
    pub name: String,
    /// `regular` for rules people define (the kind phase 12 manages), else `any_approver`,
    /// `code_owner`, …; empty when not reported.
    #[serde(default)]
    pub rule_type: String,
    /// Approvals a merge request needs from this rule's approvers.
    pub approvals_required: u32,
    /// Groups whose members may approve.
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
    /// Users eligible by name, raw (phase 12 reads their `username`).
    #[serde(default)]
    pub users: Vec<Value>,
    /// Protected branches the rule applies to; empty means every branch unless
    /// [`ApprovalRule::applies_to_all_protected_branches`].
    #[serde(default)]
    pub protected_branches: Vec<RuleBranch>,
    /// `true` when the rule covers every protected branch.
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

    /// `DELETE /projects/:id/approval_rules/:rule` (already gone: done).
    pub async fn delete_approval_rule(&self, project: u64, rule: u64) -> Result<()> {
        self.api
            .delete(
                &format!("deleting approval rule {rule} of project {project}"),
                &format!("projects/{project}/approval_rules/{rule}"),
            )
            .await
    }
}
