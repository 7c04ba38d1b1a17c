//! Unit tests of the pure diff, with plan snapshots (`snapshots/`).

use super::*;
use common::gitlab::{RuleBranch, RuleGroup};

pub(crate) fn settings() -> Settings {
    let env = common::config::Environment::load_from(None, std::iter::empty()).unwrap();
    Settings::from_environment(&env).unwrap()
}

fn project(id: u64, path: &str, extra: &Value) -> Project {
    let mut v = json!({"id": id, "path_with_namespace": path});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn entry(id: u64, level: u8) -> AccessLevelEntry {
    AccessLevelEntry {
        id: Some(id),
        access_level: level,
        user_id: None,
        group_id: None,
        deploy_key_id: None,
    }
}

fn release_tag(level: u8) -> ProtectedTag {
    serde_json::from_value(json!({
        "name": "v*",
        "create_access_levels": [{"id": 9, "access_level": level}],
    }))
    .unwrap()
}

/// A project that already matches everything (Premium).
fn hardened(s: &Settings, id: u64, path: &str) -> ProjectState {
    let settings = Value::Object(desired::project_settings(s, Tier::Premium));
    let rules = desired::approval_rules(ProjectKind::Service, s);
    ProjectState {
        codeowners: super::codeowners::CodeownersState::Present("CODEOWNERS".into()),
        project: project(id, path, &settings),
        kind: ProjectKind::Service,
        main: Some(ProtectedBranch {
            id: 100 + id,
            name: "main".into(),
            push_access_levels: vec![entry(1, 40)],
            merge_access_levels: vec![entry(2, 40)],
            unprotect_access_levels: vec![entry(3, 60)],
            allow_force_push: false,
            code_owner_approval_required: true,
        }),
        release_tag: Some(release_tag(40)),
        approval_settings: Some(desired::approval_settings()),
        rules: rules
            .iter()
            .enumerate()
            .map(|(i, r)| ApprovalRule {
                id: 500 + i as u64,
                name: r.name.clone(),
                rule_type: "regular".into(),
                approvals_required: r.approvals_required,
                groups: r
                    .groups
                    .iter()
                    .map(|g| RuleGroup {
                        id: 7,
                        full_path: g.clone(),
                    })
                    .collect(),
                users: Vec::new(),
                protected_branches: vec![RuleBranch {
                    id: 100 + id,
                    name: "main".into(),
                }],
                applies_to_all_protected_branches: false,
            })
            .collect(),
    }
}

fn observed(projects: Vec<ProjectState>, tier: Tier) -> Observed {
    Observed {
        tier,
        token_user: 1,
        projects,
        groups: BTreeMap::new(),
        members: BTreeMap::new(),
        users: UserIndex::default(),
        keycloak: None,
        missing_keycloak_groups: Vec::new(),
        registry_running: false,
    }
}

#[test]
fn noop_matching_state_gives_an_empty_plan() {
    let s = settings();
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(
            vec![hardened(&s, 1, "ps/a"), hardened(&s, 2, "ps/b")],
            Tier::Premium,
        ),
    )
    .unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn release_tags_are_protected_and_other_create_levels_replaced() {
    let s = settings();
    let mut missing = hardened(&s, 1, "ps/a");
    missing.release_tag = None;
    let mut developers = hardened(&s, 2, "ps/b");
    developers.release_tag = Some(release_tag(30));
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![missing, developers], Tier::Free),
    )
    .unwrap();
    let tags: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.resource == "protected tag")
        .collect();
    assert_eq!(tags.len(), 2, "{plan}");
    assert_eq!(tags[0].name, "ps/a:v*");
    let Op::ProtectTag { project: 1, body } = &tags[0].op else {
        panic!("expected a new protection: {plan}");
    };
    assert_eq!(body, &json!({"name": "v*", "create_access_level": 40}));
    assert_eq!(tags[1].name, "ps/b:v*");
    assert_eq!(tags[1].diff, vec!["~ create_access_levels: [30] -> [40]"]);
    assert!(matches!(
        &tags[1].op,
        Op::ReprotectTag { project: 2, name, .. } if name == "v*"
    ));
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn access_levels_are_patched_in_place_by_entry_id() {
    let s = settings();
    let mut state = hardened(&s, 1, "ps/a");
    let main = state.main.as_mut().unwrap();
    main.push_access_levels = vec![entry(11, 30), entry(12, 40)];
    main.allow_force_push = true;
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![state], Tier::Premium),
    )
    .unwrap();
    assert_eq!(plan.changes.len(), 1, "{plan}");
    let Op::UpdateProtectedBranch { body, .. } = &plan.changes[0].op else {
        panic!("expected an in-place update: {plan}");
    };
    assert_eq!(
        body,
        &json!({
            "allow_force_push": false,
            "allowed_to_push": [{"id": 11, "access_level": 40}, {"id": 12, "_destroy": true}],
        })
    );
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn duplicate_and_foreign_managed_rules_are_deleted_other_rules_kept() {
    let s = settings();
    let mut state = hardened(&s, 1, "ps/a");
    let mut dup = state.rules[0].clone();
    dup.id = 900;
    state.rules.push(dup);
    let mut prod = state.rules[0].clone();
    prod.id = 901;
    prod.name = desired::PRODUCTION_ADMIN.into();
    state.rules.push(prod);
    let mut custom = state.rules[0].clone();
    custom.id = 902;
    custom.name = "Security team".into();
    state.rules.push(custom);
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![state], Tier::Premium),
    )
    .unwrap();
    let mut deleted: Vec<u64> = plan
        .changes
        .iter()
        .filter_map(|c| match c.op {
            Op::DeleteApprovalRule { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, vec![900, 901], "{plan}");
    assert_eq!(plan.changes.len(), 2, "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn free_tier_warns_once_per_feature_and_never_reprotects() {
    let s = settings();
    let mut a = hardened(&s, 1, "ps/a");
    a.approval_settings = None;
    a.rules.clear();
    a.main.as_mut().unwrap().push_access_levels = vec![entry(1, 30)];
    a.main.as_mut().unwrap().code_owner_approval_required = false;
    let mut settings_free = Value::Object(desired::project_settings(&s, Tier::Free));
    settings_free["merge_method"] = "merge".into();
    a.project = project(1, "ps/a", &settings_free);
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![a], Tier::Free),
    )
    .unwrap();
    assert_eq!(plan.changes.len(), 1, "only the project settings: {plan}");
    assert!(matches!(plan.changes[0].op, Op::EditProject { .. }));
    assert_eq!(plan.warnings.len(), 5, "{:?}", plan.warnings);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("never unprotects") && w.contains("ps/a"))
    );
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn create_everything_on_a_fresh_project() {
    let s = settings();
    let fresh = ProjectState {
        project: project(3, "ps/new", &json!({})),
        kind: ProjectKind::Service,
        main: None,
        release_tag: None,
        approval_settings: Some(serde_json::Map::new()),
        rules: Vec::new(),
        codeowners: super::codeowners::CodeownersState::Missing {
            branch: "main".into(),
        },
    };
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![fresh], Tier::Premium),
    )
    .unwrap();
    assert_eq!(plan.summary().delete, 0, "{plan}");
    // Settings, protected main, protected v*, approval settings, every approval rule, CODEOWNERS.
    let rules = desired::approval_rules(ProjectKind::Service, &s).len();
    assert_eq!(plan.changes.len(), 4 + rules + 1, "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

fn user(id: u64, username: &str, bot: bool) -> common::gitlab::User {
    serde_json::from_value(json!({"id": id, "username": username, "state": "active", "bot": bot}))
        .unwrap()
}

/// The token's user (1) owns the group; alice comes from Keycloak `developers`; bob has a role
/// no mapped group grants; a project bot and a user the token cannot see are members too.
fn membership_state(s: &Settings) -> Observed {
    let mut o = observed(Vec::new(), Tier::Premium);
    let group = s.groups[0].clone();
    let member = |id: u64, username: &str, access_level: u8| Member {
        id,
        username: username.into(),
        access_level,
    };
    o.members.insert(
        group.clone(),
        vec![
            member(1, "root", 50),
            member(11, "alice", 30),
            member(12, "bob", 40),
            member(13, "project_7_bot", 40),
            member(99, "hidden", 30),
        ],
    );
    o.users = UserIndex::new(vec![
        user(1, "root", false),
        user(11, "alice", false),
        user(12, "bob", false),
        user(13, "project_7_bot", true),
    ]);
    let developer = common::keycloak::KeycloakUser {
        id: "kc-alice".into(),
        username: "alice".into(),
        enabled: true,
    };
    let kc: BTreeMap<String, Vec<common::keycloak::KeycloakUser>> = s
        .group_levels
        .keys()
        .map(|g| {
            let members = if g == "developers" {
                vec![developer.clone()]
            } else {
                Vec::new()
            };
            (g.clone(), members)
        })
        .collect();
    o.keycloak = Some(kc);
    o
}

#[test]
fn never_touch_members_without_prune_and_never_the_token_or_bots_with_it() {
    let s = settings();
    assert!(
        s.group_levels.contains_key("developers"),
        "{:?}",
        s.group_levels
    );
    let o = membership_state(&s);
    let keep = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &o,
    )
    .unwrap();
    assert!(
        keep.changes
            .iter()
            .all(|c| c.action != common::plan::Action::Delete),
        "{keep}"
    );
    insta::assert_snapshot!("members_kept", keep.to_string());

    let pruned = diff(
        &Desired {
            settings: s.clone(),
            prune: true,
        },
        &o,
    )
    .unwrap();
    let deleted: Vec<&str> = pruned
        .changes
        .iter()
        .filter(|c| c.action == common::plan::Action::Delete)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        deleted,
        [format!("{}: bob", s.groups[0]).as_str()],
        "{pruned}"
    );
    assert!(
        pruned.warnings.iter().any(|w| w.contains("user 99")),
        "the member the token cannot see is reported, not removed: {:?}",
        pruned.warnings
    );
    insta::assert_snapshot!("members_pruned", pruned.to_string());
}

/// The rule the bash phase sent with `POST`: `{"name":"Senior Review Required","approvals_required":2}`.
fn bash_rule(id: u64) -> ApprovalRule {
    ApprovalRule {
        id,
        name: desired::SENIOR_REVIEW.into(),
        rule_type: "regular".into(),
        approvals_required: 2,
        groups: Vec::new(),
        users: Vec::new(),
        protected_branches: Vec::new(),
        applies_to_all_protected_branches: false,
    }
}

fn left_by_bash(plan: &Plan<Op>) -> Vec<(String, String)> {
    plan.changes
        .iter()
        .filter(|c| c.is_bash_leftover())
        .map(|c| (json!(c.action).as_str().unwrap().to_owned(), c.name.clone()))
        .collect()
}

#[test]
fn bash_rules_are_adopted_once_and_their_duplicates_deleted_with_the_reason() {
    let s = settings();
    // A service project with only the bash rule and two copies of it.
    let mut service = hardened(&s, 1, "ps/a");
    service.rules = vec![bash_rule(600), bash_rule(601), bash_rule(602)];
    // A service project where our rule already exists beside a bash copy: ours is kept.
    let mut mixed = hardened(&s, 2, "ps/b");
    mixed.rules.insert(0, bash_rule(400));
    // A production manifests repository: it gets no "Senior Review Required" at all.
    let mut production = hardened(&s, 3, "ps/infra/platform-manifests");
    production.kind = ProjectKind::ProductionManifests;
    production.rules = vec![bash_rule(700)];
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![service, mixed, production], Tier::Premium),
    )
    .unwrap();
    let reason = format!(
        "{}: {}",
        common::contract::LEFT_BY_BASH,
        leftovers::BASH_RULE
    );
    for change in plan.changes.iter().filter(|c| c.is_bash_leftover()) {
        assert_eq!(change.reason.as_deref(), Some(reason.as_str()));
    }
    assert_eq!(
        left_by_bash(&plan),
        [
            // Duplicates go before the update: GitLab refuses to save a rule whose name is taken.
            ("delete", "ps/a: Senior Review Required (id 601)"),
            ("delete", "ps/a: Senior Review Required (id 602)"),
            ("update", "ps/a: Senior Review Required"),
            ("delete", "ps/b: Senior Review Required (id 400)"),
            (
                "delete",
                "ps/infra/platform-manifests: Senior Review Required (id 700)"
            ),
        ]
        .map(|(a, n)| (a.to_owned(), n.to_owned())),
        "{plan}"
    );
    // The oldest bash rule becomes ours in place: same id, our approvers and branch scope.
    let adopted = plan
        .changes
        .iter()
        .find_map(|c| match &c.op {
            Op::UpdateApprovalRule { id, rule, .. } => Some((*id, rule.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(adopted.0, 600);
    assert_eq!(
        adopted.1,
        desired::approval_rules(ProjectKind::Service, &s)[0]
    );
    // Only the production repository's own two rules are created; nothing else changes.
    assert_eq!(plan.summary().create, 2, "{plan}");
    assert_eq!(plan.changes.len(), 7, "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn the_bash_rule_identity_never_matches_a_rule_of_ours() {
    let s = settings();
    for kind in [ProjectKind::Service, ProjectKind::ProductionManifests] {
        let mut state = hardened(&s, 1, "ps/a");
        let ours = desired::approval_rules(kind, &s);
        state.rules.truncate(0);
        for (i, spec) in ours.iter().enumerate() {
            let mut rule = hardened(&s, 1, "ps/a").rules[0].clone();
            rule.id = 800 + i as u64;
            rule.name.clone_from(&spec.name);
            rule.approvals_required = spec.approvals_required;
            state.rules.push(rule);
        }
        for rule in &state.rules {
            assert!(!leftovers::is_bash_rule(rule), "{kind:?}: {rule:?}");
        }
    }
    // Each field of the bash identity matters: any difference is not the bash rule.
    assert!(leftovers::is_bash_rule(&bash_rule(1)));
    let variants: [fn(&mut ApprovalRule); 6] = [
        |r| r.approvals_required = 1,
        |r| r.name = "Senior review required".into(),
        |r| r.rule_type = "any_approver".into(),
        |r| {
            r.groups.push(RuleGroup {
                id: 7,
                full_path: "keycloak-groups/platform-admins".into(),
            });
        },
        |r| {
            r.protected_branches.push(RuleBranch {
                id: 9,
                name: "main".into(),
            });
        },
        |r| r.users.push(json!({"username": "alice"})),
    ];
    for change in variants {
        let mut rule = bash_rule(1);
        change(&mut rule);
        assert!(!leftovers::is_bash_rule(&rule), "{rule:?}");
    }
}

/// CODEOWNERS: created where missing, never where the team has one, and an empty repository only
/// gets a warning (a commit would create its default branch).
#[test]
fn codeowners_only_where_missing_and_never_into_an_empty_repository() {
    use super::codeowners::CodeownersState;
    let s = settings();
    let mut missing = hardened(&s, 1, "ps/a");
    missing.codeowners = CodeownersState::Missing {
        branch: "main".into(),
    };
    let mut empty = hardened(&s, 2, "ps/b");
    empty.codeowners = CodeownersState::EmptyRepository;
    let mut theirs = hardened(&s, 3, "ps/c");
    theirs.codeowners = CodeownersState::Present("docs/CODEOWNERS".into());
    let plan = diff(
        &Desired {
            settings: s.clone(),
            prune: false,
        },
        &observed(vec![missing, empty, theirs], Tier::Premium),
    )
    .unwrap();
    let titles: Vec<String> = plan
        .changes
        .iter()
        .map(common::plan::Change::title)
        .collect();
    assert_eq!(titles, ["codeowners ps/a:.gitlab/CODEOWNERS"], "{plan}");
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.starts_with("1 empty repository get no CODEOWNERS") && w.contains("ps/b")),
        "{plan}"
    );
}
