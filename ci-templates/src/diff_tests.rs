//! The pure diff of phase 14, without servers: a converged state plans nothing, an empty one
//! plans everything, a drifted field is updated in place, and what the phase does not own (other
//! variables, other Harbor metadata, other robots, foreign library files are the phase's own) is
//! never touched. Plans are snapshots (`src/snapshots/`), reviewed like code.

use std::collections::BTreeMap;

use common::config::PlatformConfig;
use common::gitlab::{CiVariable, git_blob_id};
use common::harbor::Robot;
use common::vault::KvMetadata;
use serde_json::{Value, json};

use crate::desired::{self, HARBOR_PROJECTS, ROBOTS};
use crate::reconcile::{HarborProjectState, Observed, diff};
use crate::settings::Settings;

fn settings() -> Settings {
    Settings::load(&PlatformConfig::example(&[]).unwrap()).unwrap()
}

/// Nothing exists yet: a fresh GitLab group, Harbor and Vault.
fn fresh() -> Observed {
    Observed {
        group_id: 10,
        namespace_id: 11,
        templates: None,
        tag_target: None,
        variables: Vec::new(),
        harbor_projects: HARBOR_PROJECTS.iter().map(|p| (p.name, None)).collect(),
        robots: ROBOTS.iter().map(|r| (r.name, None)).collect(),
        robot_secrets: ROBOTS.iter().map(|r| (r.name, None)).collect(),
        bash: crate::bash_leftovers::Candidates::default(),
        service_template: seeded_projects::seed::Observed::default(),
    }
}

/// Everything as phase 14 leaves it.
fn converged(s: &Settings) -> Observed {
    let files = desired::library_files()
        .into_iter()
        .map(|(path, content)| (path.to_owned(), git_blob_id(content)))
        .collect();
    let harbor_projects = HARBOR_PROJECTS
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let id = 100 + i as u64;
            let metadata = spec
                .metadata()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            let immutable_rules = if spec.immutable_semver {
                vec![desired::immutable_rule()]
            } else {
                Vec::new()
            };
            let state = HarborProjectState {
                id,
                metadata,
                retention: Some((200 + id, spec.retention_policy(id))),
                immutable_rules,
            };
            (spec.name, Some(state))
        })
        .collect();
    let robots: BTreeMap<_, _> = ROBOTS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let robot = Robot {
                id: 300 + i as u64,
                name: format!("robot${}", r.name),
                description: r.description.to_owned(),
                level: "system".into(),
                disable: false,
                duration: Some(-1),
                permissions: r.permissions().as_array().cloned().unwrap_or_default(),
            };
            (r.name, Some(robot))
        })
        .collect();
    let robot_secrets = robots
        .iter()
        .map(|(name, robot)| {
            let id = robot.as_ref().map(|r| r.id).unwrap_or_default();
            let meta = KvMetadata {
                current_version: 1,
                custom_metadata: BTreeMap::from([("harbor-robot-id".into(), id.to_string())]),
                current_deleted: false,
            };
            (*name, Some(meta))
        })
        .collect();
    Observed {
        templates: Some((12, files)),
        tag_target: Some("0123abcd".into()),
        variables: desired::group_variables(s),
        harbor_projects,
        robots,
        robot_secrets,
        service_template: seeded_projects::seed::Observed::as_seeded(
            &crate::reconcile::service_template_wanted(s),
            13,
            20_000,
        ),
        ..fresh()
    }
}

#[test]
fn noop_converged_state_plans_nothing() {
    let s = settings();
    let plan = diff(&s, &converged(&s)).unwrap();
    assert!(plan.is_empty(), "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn create_everything_on_a_fresh_platform() {
    let plan = diff(&settings(), &fresh()).unwrap();
    let summary = plan.summary();
    // Everything is created; the library commit is the one update (of the new project).
    assert_eq!(summary.delete, 0, "{plan}");
    assert_eq!(summary.update, 1, "{plan}");
    // The project, its commit (an update of the empty project), the tag, every variable, each
    // Harbor project with its policies, each robot.
    assert!(
        plan.changes.len() > ROBOTS.len() + HARBOR_PROJECTS.len() * 2,
        "{plan}"
    );
    // The library commit lists every file of this version: the snapshot keeps their count
    // (a new library file changes one line of it, and the version tag line).
    let mut plan = plan;
    for change in &mut plan.changes {
        if change.resource == "library commit" {
            assert!(
                change.diff.iter().all(|l| l.starts_with("+ ")),
                "{:?}",
                change.diff
            );
            change.diff = vec![format!("+ {} library file(s)", change.diff.len())];
        }
    }
    let text = plan.to_string();
    insta::assert_snapshot!(text);
}

#[test]
fn update_drifted_fields_in_place() {
    let s = settings();
    let mut o = converged(&s);
    // A variable changed by hand, Harbor metadata switched off, a robot's description edited.
    o.variables[0].value = "changed by hand".into();
    let platform = HARBOR_PROJECTS[0].name;
    if let Some(Some(state)) = o.harbor_projects.get_mut(platform) {
        state
            .metadata
            .insert("auto_scan".into(), Value::String("false".into()));
    }
    if let Some(Some(robot)) = o.robots.get_mut(ROBOTS[0].name) {
        robot.description = "edited".into();
    }
    let plan = diff(&s, &o).unwrap();
    assert_eq!(plan.summary().create, 0, "{plan}");
    assert_eq!(plan.summary().delete, 0, "{plan}");
    assert_eq!(plan.summary().update, 3, "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn never_touch_what_the_phase_does_not_own() {
    let s = settings();
    let mut o = converged(&s);
    // A team's own group variable, extra Harbor metadata, a robot of someone else, and a
    // second retention-free immutable rule: none of them is the phase's.
    o.variables.push(CiVariable {
        key: "TEAM_OWN_SETTING".into(),
        value: "kept".into(),
        protected: true,
        masked: false,
        raw: false,
        environment_scope: "*".into(),
    });
    if let Some(Some(state)) = o.harbor_projects.get_mut(HARBOR_PROJECTS[0].name) {
        state
            .metadata
            .insert("enable_content_trust".into(), json!("true"));
        state
            .immutable_rules
            .push(json!({"id": 9, "tag_selectors": [{"pattern": "release-*"}]}));
    }
    o.robots.insert(
        "someone-elses",
        Some(Robot {
            id: 999,
            name: "robot$someone-elses".into(),
            description: "not ours".into(),
            level: "system".into(),
            disable: true,
            duration: Some(30),
            permissions: Vec::new(),
        }),
    );
    let plan = diff(&s, &o).unwrap();
    assert!(plan.is_empty(), "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

/// A robot as the bash phase 14 made it: no description, never expiring, `grants` only.
fn bash_robot(id: u64, name: &str, level: &str, grants: &[(&str, &[&str])]) -> Robot {
    Robot {
        id,
        name: name.into(),
        description: String::new(),
        level: level.into(),
        disable: false,
        duration: Some(-1),
        permissions: grants
            .iter()
            .map(|(namespace, actions)| {
                json!({
                    "kind": "project", "namespace": namespace,
                    "access": actions.iter().map(|a| json!({"resource": "repository", "action": a})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    }
}

#[test]
fn bash_leftovers_are_adopted_or_deleted_with_their_reason() {
    use crate::bash_leftovers::StoredSecret;
    use crate::reconcile::Op;

    let s = settings();
    let mut o = converged(&s);
    let push_pull: &[&str] = &["push", "pull"];
    let pull: &[&str] = &["pull"];
    // The bash system robots under our names; Vault has no secret of ours for them.
    o.robots.insert(
        "ci-push",
        Some(bash_robot(
            50,
            "robot$ci-push",
            "system",
            &[("platform-services", push_pull), ("ci-cache", push_pull)],
        )),
    );
    o.robots.insert(
        "argocd-pull",
        Some(bash_robot(
            51,
            "robot$argocd-pull",
            "system",
            &[("platform-services", pull)],
        )),
    );
    for name in ["ci-push", "argocd-pull"] {
        o.robot_secrets.insert(name, None);
    }
    o.bash.robots = vec![
        bash_robot(
            52,
            "robot$platform-services+ci-push",
            "project",
            &[("platform-services", push_pull)],
        ),
        bash_robot(
            53,
            "robot$platform-services+argocd-pull",
            "project",
            &[("platform-services", pull)],
        ),
        // Someone's own project robot of that name pattern, with a description: not the bash one.
        Robot {
            description: "made by the team".into(),
            ..bash_robot(
                54,
                "robot$ci-cache+ci-push",
                "project",
                &[("ci-cache", push_pull)],
            )
        },
    ];
    o.bash.push_secret = Some(StoredSecret {
        keys: ["password", "username"].map(str::to_owned).into(),
        username: Some("robot$ci-push".into()),
        managed_by: None,
    });
    let plan = diff(&s, &o).unwrap();
    assert!(
        plan.changes
            .iter()
            .all(common::plan::Change::is_bash_leftover),
        "{plan}"
    );
    assert_eq!(plan.summary().update, 4, "{plan}");
    assert_eq!(plan.summary().delete, 3, "{plan}");
    let deleted: Vec<u64> = plan
        .changes
        .iter()
        .filter_map(|c| match c.op {
            Op::DeleteRobot { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [52, 53], "never the team's robot 54");
    insta::assert_snapshot!(plan.to_string());
}
