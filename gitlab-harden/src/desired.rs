//! What phase 12 wants, as data (no I/O): per-project settings, the protection of `main` and of
//! release tags, the approval rules (plan §2.6), the Keycloak → GitLab memberships, the SSH route.

use std::collections::{BTreeMap, BTreeSet};

use common::gitlab::{
    Project, RELEASE_TAG_CREATE_LEVEL, RELEASE_TAG_PATTERN, Tier, UserIndex, access,
};
use common::keycloak::KeycloakUser;
use common::kube::owned_labels;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::settings::{
    APPROVER_GROUP_LEVEL, CICD_SECURITY, INFRA_ENGINEERS, PLATFORM_ADMINS, SENIOR_DEVELOPERS,
    Settings,
};

/// The Helm values change that turns the instance registry off (GitLab chart: `registry.enabled`
/// and `global.registry.enabled`); applied with `helm upgrade`, which this phase does not run.
pub const REGISTRY_OFF_VALUES: &str = include_str!("../helm/registry-off.values.yaml");
/// The phase label value on Kubernetes objects.
pub const PHASE_LABEL: &str = "12";
/// Topic that marks a production manifest repository, besides the path globs.
pub const PRODUCTION_TOPIC: &str = "production-manifests";
/// Topic that marks an infrastructure (Terraform) repository, besides the path globs.
pub const INFRASTRUCTURE_TOPIC: &str = "infrastructure";
/// Topic that marks a security-policy or RBAC repository, besides the path globs.
pub const SECURITY_TOPIC: &str = "security-policies";

/// Which gate a project gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectKind {
    /// A service repository: "Senior Review Required".
    Service,
    /// Holds production manifests: one platform-admin and one senior-developer.
    ProductionManifests,
    /// Infrastructure code (Terraform): two platform-admins (plan §2.6, "Infrastructure/Terraform").
    Infrastructure,
    /// Security policies and RBAC: two platform-admins and a SEC-1 review by cicd-security (plan
    /// §2.6, "Security policies/RBAC").
    Security,
}

/// `*` matches any run of characters (slashes included); everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

pub fn classify(project: &Project, settings: &Settings) -> ProjectKind {
    let by_topic = project.topics.iter().any(|t| t == PRODUCTION_TOPIC);
    let by_path = settings
        .production_repos
        .iter()
        .any(|g| glob_match(g, &project.path_with_namespace));
    let infrastructure = project.topics.iter().any(|t| t == INFRASTRUCTURE_TOPIC)
        || settings
            .infrastructure_repos
            .iter()
            .any(|g| glob_match(g, &project.path_with_namespace));
    let security = project.topics.iter().any(|t| t == SECURITY_TOPIC)
        || settings
            .security_repos
            .iter()
            .any(|g| glob_match(g, &project.path_with_namespace));
    // Production manifests first: their gate (one of each group) is the stricter mix; then
    // security (it adds a reviewer to infrastructure's two admins).
    if by_topic || by_path {
        ProjectKind::ProductionManifests
    } else if security {
        ProjectKind::Security
    } else if infrastructure {
        ProjectKind::Infrastructure
    } else {
        ProjectKind::Service
    }
}

/// Project attributes (`PUT /projects/:id`) every hardened project gets.
pub fn project_settings(settings: &Settings, tier: Tier) -> Map<String, Value> {
    let mut m = Map::new();
    // GATE 1 and GATE 5 of plan §2.6.
    m.insert("only_allow_merge_if_pipeline_succeeds".into(), true.into());
    m.insert(
        "only_allow_merge_if_all_discussions_are_resolved".into(),
        true.into(),
    );
    // GATE 6: the branch must be up to date with main.
    m.insert("merge_method".into(), settings.merge_method.as_str().into());
    m.insert("remove_source_branch_after_merge".into(), true.into());
    // Images go to Harbor, never to GitLab's registry.
    m.insert("container_registry_access_level".into(), "disabled".into());
    if tier.is_paid() {
        // Merge trains need merged results pipelines.
        m.insert("merge_pipelines_enabled".into(), true.into());
        m.insert("merge_trains_enabled".into(), true.into());
    }
    m
}

/// Approval settings (`POST /projects/:id/approvals`, Premium).
pub fn approval_settings() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("merge_requests_author_approval".into(), false.into());
    m.insert(
        "merge_requests_disable_committers_approval".into(),
        true.into(),
    );
    // A new push invalidates approvals, and an MR cannot lower its own rules.
    m.insert("reset_approvals_on_push".into(), true.into());
    m.insert(
        "disable_overriding_approvers_per_merge_request".into(),
        true.into(),
    );
    m
}

/// How `main` is protected (plan §2.6 "GitLab Protected Branch Configuration").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BranchProtection {
    pub name: String,
    pub push_access_level: u8,
    pub merge_access_level: u8,
    pub unprotect_access_level: u8,
    pub allow_force_push: bool,
    /// `None` on Free (code owners approval is Premium).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_owner_approval_required: Option<bool>,
}

pub fn branch_protection(tier: Tier) -> BranchProtection {
    BranchProtection {
        name: crate::settings::MAIN_BRANCH.to_owned(),
        push_access_level: access::MAINTAINER,
        merge_access_level: access::MAINTAINER,
        unprotect_access_level: access::ADMIN,
        allow_force_push: false,
        // GATE 4: CODEOWNERS approval.
        code_owner_approval_required: tier.is_paid().then_some(true),
    }
}

/// A protected tag name or wildcard and the one role that may create matching tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedTagRule {
    pub name: String,
    pub create_access_level: u8,
}

/// Release tags `v*`, created by Maintainers only, on every hardened project of either kind and
/// on every tier (protected tags are Free): a tag pipeline then gets `ref_protected: "true"`,
/// which Vault's CI roles bind (ADR 0008, decision 1).
pub fn release_tag_protection() -> ProtectedTagRule {
    ProtectedTagRule {
        name: RELEASE_TAG_PATTERN.to_owned(),
        create_access_level: RELEASE_TAG_CREATE_LEVEL,
    }
}

/// One approval rule, scoped to protected `main`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    pub name: String,
    pub approvals_required: u32,
    /// Full paths of the approver groups, sorted.
    pub groups: Vec<String>,
}

pub const SENIOR_REVIEW: &str = "Senior Review Required";
pub const PRODUCTION_ADMIN: &str = "Production Approval (platform-admins)";
pub const PRODUCTION_SENIOR: &str = "Production Approval (senior-developers)";
pub const INFRASTRUCTURE_ADMIN: &str = "Infrastructure Approval (platform-admins)";
pub const SECURITY_ADMIN: &str = "Security Approval (platform-admins)";
/// The plan's "SEC-1 review": SEC-1 is the Keycloak group cicd-security.
pub const SECURITY_REVIEW: &str = "SEC-1 Review (cicd-security)";
/// Rule names this phase owns: a rule with one of these names that a project should not have
/// (or a second one) is deleted; rules with other names are left alone.
pub const MANAGED_RULES: &[&str] = &[
    SENIOR_REVIEW,
    PRODUCTION_ADMIN,
    PRODUCTION_SENIOR,
    INFRASTRUCTURE_ADMIN,
    SECURITY_ADMIN,
    SECURITY_REVIEW,
];

pub fn approval_rules(kind: ProjectKind, settings: &Settings) -> Vec<RuleSpec> {
    let group = |name: &str| settings.approver_group(name);
    match kind {
        // "Staging (main branch): senior-developers OR infra-engineers, 2": the plan's own script
        // names this rule "Senior Review Required" with platform-admins too, so the one rule gets
        // all three groups (updated in place), not a second rule.
        ProjectKind::Service => {
            let mut groups = vec![
                group(SENIOR_DEVELOPERS),
                group(INFRA_ENGINEERS),
                group(PLATFORM_ADMINS),
            ];
            groups.sort();
            vec![RuleSpec {
                name: SENIOR_REVIEW.into(),
                approvals_required: 2,
                groups,
            }]
        }
        // "Production promotion: platform-admins AND senior-developers, 2 (one from each)".
        ProjectKind::ProductionManifests => vec![
            RuleSpec {
                name: PRODUCTION_ADMIN.into(),
                approvals_required: 1,
                groups: vec![group(PLATFORM_ADMINS)],
            },
            RuleSpec {
                name: PRODUCTION_SENIOR.into(),
                approvals_required: 1,
                groups: vec![group(SENIOR_DEVELOPERS)],
            },
        ],
        // "Infrastructure/Terraform: platform-admins, 2". GitLab cannot scope a rule by path, so
        // the rule is scoped by project (path globs or topic).
        ProjectKind::Infrastructure => vec![RuleSpec {
            name: INFRASTRUCTURE_ADMIN.into(),
            approvals_required: 2,
            groups: vec![group(PLATFORM_ADMINS)],
        }],
        // "Security policies/RBAC: platform-admins, 2 + SEC-1 review".
        ProjectKind::Security => vec![
            RuleSpec {
                name: SECURITY_ADMIN.into(),
                approvals_required: 2,
                groups: vec![group(PLATFORM_ADMINS)],
            },
            RuleSpec {
                name: SECURITY_REVIEW.into(),
                approvals_required: 1,
                groups: vec![group(CICD_SECURITY)],
            },
        ],
    }
}

/// The Keycloak groups whose GitLab mirrors approval rules name.
pub const APPROVER_GROUPS: &[&str] = &[
    PLATFORM_ADMINS,
    SENIOR_DEVELOPERS,
    INFRA_ENGINEERS,
    CICD_SECURITY,
];

/// A GitLab role someone should hold, and which Keycloak groups grant it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub level: u8,
    pub because: BTreeSet<String>,
}

/// Desired direct members of one GitLab group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMembership {
    pub group: String,
    pub grants: BTreeMap<u64, Grant>,
}

/// A Keycloak user with no GitLab account yet (they get one at first OIDC sign-in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingUser {
    pub username: String,
    pub groups: BTreeSet<String>,
}

/// Who gets which role where: the hardened groups get the highest mapped level of each person's
/// Keycloak groups; each approver mirror group gets its Keycloak group's members.
pub fn memberships(
    settings: &Settings,
    tier: Tier,
    keycloak: &BTreeMap<String, Vec<KeycloakUser>>,
    users: &UserIndex,
) -> (Vec<GroupMembership>, Vec<MissingUser>) {
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut matched: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (kc_group, members) in keycloak {
        for member in members {
            match users.find(&settings.oidc_provider, &member.id, &member.username) {
                Some(user) if !user.is_automation() => {
                    matched.entry(kc_group.clone()).or_default().push(user.id);
                }
                Some(_) => {}
                None => {
                    missing
                        .entry(member.username.clone())
                        .or_default()
                        .insert(kc_group.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    for group in &settings.groups {
        let mut grants: BTreeMap<u64, Grant> = BTreeMap::new();
        for (kc_group, level) in &settings.group_levels {
            for user in matched.get(kc_group).into_iter().flatten() {
                let grant = grants.entry(*user).or_insert(Grant {
                    level: 0,
                    because: BTreeSet::new(),
                });
                grant.level = grant.level.max(*level);
                grant.because.insert(kc_group.clone());
            }
        }
        out.push(GroupMembership {
            group: group.clone(),
            grants,
        });
    }
    if tier.is_paid() {
        for kc_group in APPROVER_GROUPS {
            let grants = matched
                .get(*kc_group)
                .into_iter()
                .flatten()
                .map(|u| {
                    (
                        *u,
                        Grant {
                            level: APPROVER_GROUP_LEVEL,
                            because: BTreeSet::from([(*kc_group).to_owned()]),
                        },
                    )
                })
                .collect();
            out.push(GroupMembership {
                group: settings.approver_group(kc_group),
                grants,
            });
        }
    }
    let missing = missing
        .into_iter()
        .map(|(username, groups)| MissingUser { username, groups })
        .collect();
    (out, missing)
}

/// Traefik `IngressRouteTCP` that sends the `ssh` entry point to gitlab-shell (plain TCP: SSH
/// has no SNI, hence `HostSNI(`*`)`).
pub fn ssh_route(settings: &Settings) -> Value {
    json!({
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRouteTCP",
        "metadata": {
            "name": "gitlab-ssh",
            "namespace": settings.gitlab_namespace,
            "labels": owned_labels(PHASE_LABEL),
        },
        "spec": {
            "entryPoints": [settings.ssh_entrypoint],
            "routes": [{
                "match": "HostSNI(`*`)",
                "services": [{"name": settings.shell_service, "port": 22}],
            }],
        },
    })
}

pub const INGRESSROUTETCP_CRD: &str = "ingressroutetcps.traefik.io";

#[cfg(test)]
mod tests {
    use super::*;
    use common::gitlab::{Identity, User};

    fn settings() -> Settings {
        let env = common::config::Environment::load_from(None, std::iter::empty()).unwrap();
        Settings::from_environment(&env).unwrap()
    }

    fn project(path: &str, topics: &[&str]) -> Project {
        serde_json::from_value(json!({"id": 1, "path_with_namespace": path, "topics": topics}))
            .unwrap()
    }

    #[test]
    fn globs_match_across_slashes() {
        assert!(glob_match(
            "*-manifests",
            "platform_services/infra/platform-manifests"
        ));
        assert!(glob_match(
            "*/production-*",
            "platform_services/production-overlays"
        ));
        assert!(!glob_match(
            "*-manifests",
            "platform_services/manifests-tool"
        ));
        assert!(glob_match("platform_services/*", "platform_services/a/b"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn production_repos_by_path_or_topic() {
        let s = settings();
        assert_eq!(
            classify(&project("ps/app-manifests", &[]), &s),
            ProjectKind::ProductionManifests
        );
        assert_eq!(
            classify(&project("ps/app", &[PRODUCTION_TOPIC]), &s),
            ProjectKind::ProductionManifests
        );
        assert_eq!(
            classify(&project("ps/packet-relay", &[]), &s),
            ProjectKind::Service
        );
        assert_eq!(
            classify(&project("ps/infrastructure/cluster-terraform", &[]), &s),
            ProjectKind::Infrastructure
        );
        assert_eq!(
            classify(&project("ps/network", &[INFRASTRUCTURE_TOPIC]), &s),
            ProjectKind::Infrastructure
        );
        assert_eq!(
            classify(&project("ps/cluster-rbac", &[]), &s),
            ProjectKind::Security
        );
        assert_eq!(
            classify(&project("ps/opa", &[SECURITY_TOPIC]), &s),
            ProjectKind::Security
        );
        // Security beats infrastructure (it adds a reviewer to the same two admins).
        assert_eq!(
            classify(&project("ps/infrastructure/security-policies", &[]), &s),
            ProjectKind::Security
        );
        // A production manifest repository under infrastructure/ keeps the production gate.
        assert_eq!(
            classify(&project("ps/infrastructure/platform-manifests", &[]), &s),
            ProjectKind::ProductionManifests
        );
    }

    #[test]
    fn rules_follow_the_plan_table() {
        let s = settings();
        let service = approval_rules(ProjectKind::Service, &s);
        assert_eq!(service.len(), 1);
        assert_eq!(service[0].approvals_required, 2);
        assert_eq!(
            service[0].groups,
            vec![
                "keycloak-groups/infra-engineers",
                "keycloak-groups/platform-admins",
                "keycloak-groups/senior-developers"
            ]
        );
        // "Security policies/RBAC: platform-admins, 2 + SEC-1 review" (SEC-1 = cicd-security).
        let security = approval_rules(ProjectKind::Security, &s);
        let shape: Vec<(&str, u32, Vec<String>)> = security
            .iter()
            .map(|r| (r.name.as_str(), r.approvals_required, r.groups.clone()))
            .collect();
        assert_eq!(
            shape,
            [
                (
                    SECURITY_ADMIN,
                    2,
                    vec!["keycloak-groups/platform-admins".to_owned()]
                ),
                (
                    SECURITY_REVIEW,
                    1,
                    vec!["keycloak-groups/cicd-security".to_owned()]
                )
            ]
        );
        let prod = approval_rules(ProjectKind::ProductionManifests, &s);
        assert_eq!(prod.iter().map(|r| r.approvals_required).sum::<u32>(), 2);
        assert!(prod.iter().all(|r| r.groups.len() == 1));
        let infrastructure = approval_rules(ProjectKind::Infrastructure, &s);
        assert_eq!(infrastructure.len(), 1);
        assert_eq!(infrastructure[0].approvals_required, 2);
        assert_eq!(
            infrastructure[0].groups,
            vec!["keycloak-groups/platform-admins"]
        );
    }

    #[test]
    fn free_tier_wants_no_premium_settings() {
        let s = settings();
        let free = project_settings(&s, Tier::Free);
        assert!(!free.contains_key("merge_trains_enabled"));
        assert_eq!(free["container_registry_access_level"], "disabled");
        assert!(project_settings(&s, Tier::Premium).contains_key("merge_trains_enabled"));
        assert_eq!(
            branch_protection(Tier::Free).code_owner_approval_required,
            None
        );
        assert_eq!(branch_protection(Tier::Premium).unprotect_access_level, 60);
    }

    #[test]
    fn release_tags_are_created_by_maintainers_only() {
        assert_eq!(
            release_tag_protection(),
            ProtectedTagRule {
                name: "v*".into(),
                create_access_level: 40
            }
        );
    }

    fn user(id: u64, name: &str, sub: Option<&str>, bot: bool) -> User {
        User {
            id,
            username: name.into(),
            state: "active".into(),
            bot,
            user_type: None,
            identities: sub
                .map(|s| Identity {
                    provider: "openid_connect".into(),
                    extern_uid: s.into(),
                })
                .into_iter()
                .collect(),
        }
    }

    fn kc(id: &str, name: &str) -> KeycloakUser {
        KeycloakUser {
            id: id.into(),
            username: name.into(),
            enabled: true,
        }
    }

    #[test]
    fn highest_mapped_level_wins_and_missing_users_are_reported() {
        let s = settings();
        let users = UserIndex::new(vec![
            user(2, "alice.gitlab", Some("kc-a"), false),
            user(3, "bob", None, false),
            user(4, "bot", None, true),
        ]);
        let keycloak = BTreeMap::from([
            (
                "developers".to_owned(),
                vec![kc("kc-a", "alice"), kc("kc-b", "bob"), kc("kc-e", "erin")],
            ),
            ("senior-developers".to_owned(), vec![kc("kc-a", "alice")]),
            ("viewers".to_owned(), vec![kc("kc-x", "bot")]),
        ]);
        let (groups, missing) = memberships(&s, Tier::Premium, &keycloak, &users);
        let ps = &groups[0];
        assert_eq!(ps.group, "platform_services");
        assert_eq!(
            ps.grants[&2].level, 40,
            "alice: senior-developers beats developers"
        );
        assert_eq!(ps.grants[&3].level, 30, "bob matched by username");
        assert!(!ps.grants.contains_key(&4), "bots are never granted");
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].username, "erin");
        let seniors = groups
            .iter()
            .find(|g| g.group == "keycloak-groups/senior-developers")
            .unwrap();
        assert_eq!(seniors.grants.keys().copied().collect::<Vec<_>>(), vec![2]);
        let (free, _) = memberships(&s, Tier::Free, &keycloak, &users);
        assert_eq!(free.len(), 1, "no approver groups on Free");
    }
}
