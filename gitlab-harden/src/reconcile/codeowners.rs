//! A default CODEOWNERS (`common::codeowners`) for every hardened project that has none (plan §2.6, GATE 4: code owner
//! approval is required on protected main, so a project without the file has no owners at all).
//!
//! GitLab reads the first of `CODEOWNERS`, `docs/CODEOWNERS`, `.gitlab/CODEOWNERS` on the default
//! branch (GitLab docs, user/project/codeowners "Code Owners file"): a file in any of them is the
//! team's, and never touched. The default is committed with the Commits API action `create`, which
//! GitLab refuses (400) when the file exists, so a team's own file written meanwhile is never
//! overwritten either. An empty repository gets nothing: the commit would create its default branch
//! and break the team's first push; it gets the file on the first run after its first commit.
//! Path-based review uses CODEOWNERS sections (GitLab docs, "Sections"), since approval rules
//! cannot be scoped by path.

pub use common::codeowners::{DEFAULT_LOCATION, LOCATIONS};
use common::codeowners::{OwnersKind, render as render_for};
use common::gitlab::{GitLabClient, Project};

use crate::desired::ProjectKind;
use crate::settings::Settings;

/// A project's CODEOWNERS as phase 12 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeownersState {
    /// The team has one at this location: never touched.
    Present(String),
    /// None on the default branch `branch`.
    Missing { branch: String },
    /// No commit yet.
    EmptyRepository,
}

/// Reads the project's default branch (reads only; one to three GETs).
pub async fn observe(gitlab: &GitLabClient, project: &Project) -> common::Result<CodeownersState> {
    let empty = project
        .settings
        .get("empty_repo")
        .and_then(serde_json::Value::as_bool);
    let branch = project
        .settings
        .get("default_branch")
        .and_then(serde_json::Value::as_str)
        .filter(|b| !b.is_empty());
    let (Some(branch), false) = (branch, empty.unwrap_or(false)) else {
        return Ok(CodeownersState::EmptyRepository);
    };
    for location in LOCATIONS {
        if gitlab
            .file_text(project.id, location, branch)
            .await?
            .is_some()
        {
            return Ok(CodeownersState::Present(location.to_owned()));
        }
    }
    Ok(CodeownersState::Missing {
        branch: branch.to_owned(),
    })
}

/// The default file for a project of `kind` (`common::codeowners`): owners are the approver
/// groups Keycloak mirrors into GitLab, so whoever may approve a merge request also owns the code.
pub fn render(kind: ProjectKind, settings: &Settings) -> String {
    let kind = match kind {
        ProjectKind::Service => OwnersKind::Service,
        ProjectKind::ProductionManifests => OwnersKind::ProductionManifests,
        ProjectKind::Infrastructure => OwnersKind::Infrastructure,
        ProjectKind::Security => OwnersKind::Security,
    };
    render_for(kind, &settings.approver_parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_names_its_approver_groups() {
        let s: Settings = crate::reconcile::tests::settings();
        let service = render(ProjectKind::Service, &s);
        assert!(
            service
                .contains("* @keycloak-groups/senior-developers @keycloak-groups/infra-engineers"),
            "{service}"
        );
        assert!(
            render(ProjectKind::Security, &s)
                .contains("[SEC-1][1]\n* @keycloak-groups/cicd-security")
        );
        assert!(
            render(ProjectKind::Infrastructure, &s)
                .contains("[Platform][2]\n* @keycloak-groups/platform-admins")
        );
        insta::assert_snapshot!(service);
    }
}
