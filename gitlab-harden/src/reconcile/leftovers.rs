//! What the platform's bash phase 12 left behind (docs/research/upstream-bash-phases.md section 3.7): its
//! "Senior Review Required" approval rule.
//!
//! The bash helper sent exactly `{"name":"Senior Review Required","approvals_required":2}`: no
//! `group_ids`, `user_ids`, `protected_branch_ids` or `rule_type`. So its rule is a regular rule of
//! that name requiring 2 approvals with no approver group or user and no branch scope. A rule of
//! ours always names the approver groups and is scoped to protected `main`
//! ([`crate::desired::approval_rules`]), so the identity can never match one we made.

use common::gitlab::ApprovalRule;

use crate::desired::SENIOR_REVIEW;

/// The bash rule's identity, as plans and `--adopt-report` show it.
pub const BASH_RULE: &str = "approval rule \"Senior Review Required\" (regular, approvals_required 2, no approver groups or users, no branch scope) POSTed by the bash phase's gitlab_add_approval_rule";

/// Approvals the bash phase required.
const BASH_APPROVALS: u32 = 2;

/// Whether `rule` is exactly the rule the bash phase created.
pub fn is_bash_rule(rule: &ApprovalRule) -> bool {
    rule.name == SENIOR_REVIEW
        && (rule.rule_type == "regular" || rule.rule_type.is_empty())
        && rule.approvals_required == BASH_APPROVALS
        && rule.groups.is_empty()
        && rule.users.is_empty()
        && rule.protected_branches.is_empty()
        && !rule.applies_to_all_protected_branches
}
