//! The default CODEOWNERS of a project (plan §2.6, GATE 4: code owner approval is required on
//! protected main). Phase 12 commits it to hardened projects that have none; the phases that create
//! a project with content (the library, the seeded services) include it in their first commit, so
//! phase 12 finds one there and a rerun after them stays empty.
//!
//! GitLab reads the first of `CODEOWNERS`, `docs/CODEOWNERS`, `.gitlab/CODEOWNERS` on the default
//! branch (GitLab docs, user/project/codeowners "Code Owners file"); sections group path-based
//! owners with their own approval count ("Sections"). Owners are the approver groups phase 12
//! mirrors from Keycloak (`GITLAB_APPROVER_GROUP_PARENT`/<keycloak group>). A CODEOWNERS is never
//! deleted or reset by the phase that seeded it.

use std::collections::BTreeMap;

use crate::config::Environment;
use crate::env;

/// Where GitLab looks for the file, in its order.
pub const LOCATIONS: [&str; 3] = ["CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS"];
/// Where the default goes.
pub const DEFAULT_LOCATION: &str = ".gitlab/CODEOWNERS";
/// The GitLab group holding the approver mirrors unless `GITLAB_APPROVER_GROUP_PARENT` says otherwise.
pub const DEFAULT_APPROVER_PARENT: &str = "keycloak-groups";

/// Which gate a project has (phase 12's project kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnersKind {
    /// A service: senior developers and infra engineers own the code.
    Service,
    /// Production manifests: platform-admins and senior-developers, two approvals.
    ProductionManifests,
    /// Infrastructure code and platform-owned repositories (the CI library): platform-admins.
    Infrastructure,
    /// Security policies and RBAC: platform-admins and the SEC-1 reviewers (cicd-security).
    Security,
}

/// The approver mirror of Keycloak group `name` under `parent` (empty: top level).
pub fn approver_group(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// `GITLAB_APPROVER_GROUP_PARENT`, or its default.
pub fn approver_parent(environment: &Environment) -> String {
    environment
        .get(env::GITLAB_APPROVER_GROUP_PARENT)
        .unwrap_or(DEFAULT_APPROVER_PARENT)
        .trim_matches('/')
        .to_owned()
}

/// The file's text.
pub fn render(kind: OwnersKind, parent: &str) -> String {
    let g = |name: &str| format!("@{}", approver_group(parent, name));
    let (admins, seniors, infra, security) = (
        g("platform-admins"),
        g("senior-developers"),
        g("infra-engineers"),
        g("cicd-security"),
    );
    let mut out = String::from(
        "# Default code owners, written by cicd-buildout because this project had none.\n\
         # Edit it freely: cicd-buildout never overwrites a CODEOWNERS file (here, at the root or in docs/).\n\
         # Owners are the approver groups mirrored from Keycloak; each section needs its approvals.\n\n",
    );
    match kind {
        OwnersKind::Service => {
            out.push_str(&format!("[Code][1]\n* {seniors} {infra}\n\n"));
            out.push_str(&format!(
                "[Pipeline and access][1]\n/.gitlab-ci.yml {admins} {infra}\n/.gitlab/ {admins}\n/deploy/**/*rbac* {admins} {security}\n"
            ));
        }
        OwnersKind::ProductionManifests => {
            out.push_str(&format!("[Production][2]\n* {admins} {seniors}\n"));
        }
        OwnersKind::Infrastructure => {
            out.push_str(&format!("[Platform][2]\n* {admins}\n"));
        }
        OwnersKind::Security => {
            out.push_str(&format!(
                "[Security policies][2]\n* {admins}\n\n[SEC-1][1]\n* {security}\n"
            ));
        }
    }
    out
}

/// `wanted` plus the default CODEOWNERS when this is the project's first commit (`observed` is
/// empty) and `wanted` has none. Later commits leave it to phase 12, which adds one only where
/// none exists: a phase that seeds content never adds a file to a project people already use.
pub fn with_default<V>(
    wanted: &BTreeMap<String, String>,
    observed: &BTreeMap<String, V>,
    kind: OwnersKind,
    parent: &str,
) -> BTreeMap<String, String> {
    let mut out = wanted.clone();
    let has_one = LOCATIONS.iter().any(|l| wanted.contains_key(*l));
    if observed.is_empty() && !has_one {
        out.insert(DEFAULT_LOCATION.to_owned(), render(kind, parent));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_names_its_approver_groups_and_a_team_file_wins() {
        let service = render(OwnersKind::Service, "keycloak-groups");
        assert!(
            service.contains(
                "[Code][1]\n* @keycloak-groups/senior-developers @keycloak-groups/infra-engineers"
            ),
            "{service}"
        );
        assert!(render(OwnersKind::Security, "").contains("[SEC-1][1]\n* @cicd-security"));
        let wanted: BTreeMap<String, String> = [("README.md".to_owned(), "x".to_owned())].into();
        let seeded: BTreeMap<String, String> = [("README.md".to_owned(), "blob".to_owned())].into();
        assert!(
            !with_default(&wanted, &seeded, OwnersKind::Service, "p")
                .contains_key(DEFAULT_LOCATION),
            "only the first commit"
        );
        let own: BTreeMap<String, String> = [("CODEOWNERS".to_owned(), "* @me".to_owned())].into();
        assert!(
            !with_default(
                &own,
                &BTreeMap::<String, String>::new(),
                OwnersKind::Service,
                "p"
            )
            .contains_key(DEFAULT_LOCATION),
            "content with its own"
        );
        assert!(
            with_default(
                &wanted,
                &BTreeMap::<String, String>::new(),
                OwnersKind::Service,
                "p"
            )
            .contains_key(DEFAULT_LOCATION)
        );
    }
}
