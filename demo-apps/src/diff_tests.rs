//! The pure diff of phase 18, without servers: the Harbor project and the arcade's two seeded
//! projects, whose files people are invited to change (the scenarios). Plans are snapshots
//! (`src/snapshots/`).

use common::gitlab::git_blob_id;
use seeded_projects::seed;

use crate::projects::PROJECTS;
use crate::reconcile::{Desired, Observed, diff, wanted};
use crate::settings::Settings;

const TODAY: i64 = 20_000;

fn desired(reset: bool) -> Desired {
    Desired {
        settings: Settings::example(),
        reset,
    }
}

/// Everything as phase 18 leaves it.
fn converged(d: &Desired) -> Observed {
    Observed {
        group_id: 5,
        harbor_project_exists: true,
        projects: PROJECTS
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let w = wanted(&d.settings, p, d.reset).unwrap();
                (p.name, seed::Observed::as_seeded(&w, 80 + i as u64, TODAY))
            })
            .collect(),
    }
}

/// Every line of a seed commit's file list, reduced to its count (the sources are long).
fn text(plan: common::plan::Plan<crate::reconcile::Op>) -> String {
    let mut plan = plan;
    for change in &mut plan.changes {
        for line in &mut change.diff {
            if line.len() > 200 {
                let head: String = line.chars().take(80).collect();
                *line = format!("{head}… ({} characters)", line.len());
            }
        }
    }
    plan.to_string()
}

#[test]
fn noop_converged_state_plans_nothing() {
    let d = desired(false);
    let plan = diff(&d, &converged(&d)).unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn create_the_harbor_project_and_both_projects_on_a_fresh_platform() {
    let d = desired(false);
    let mut o = converged(&d);
    o.harbor_project_exists = false;
    for project in o.projects.values_mut() {
        *project = seed::Observed {
            today: TODAY,
            ..seed::Observed::default()
        };
    }
    let plan = diff(&d, &o).unwrap();
    assert_eq!(plan.summary().delete, 0, "{plan}");
    assert!(
        plan.summary().create >= 11,
        "Harbor project, then per project: project, protection, token, commit, tag: {plan}"
    );
    insta::assert_snapshot!(text(plan));
}

#[test]
fn update_a_lost_file_and_a_lost_protection_in_place() {
    let d = desired(false);
    let mut o = converged(&d);
    let relay = o.projects.get_mut(PROJECTS[0].name).unwrap();
    // A file the demo needs was deleted, and `v*` lost its protection.
    let first = relay.files.keys().next().cloned().unwrap();
    relay.files.remove(&first);
    relay.release_tags_protected = false;
    let plan = diff(&d, &o).unwrap();
    assert_eq!(plan.summary().delete, 0, "{plan}");
    assert_eq!(
        plan.changes.len(),
        2,
        "the protection and one commit: {plan}"
    );
    insta::assert_snapshot!(text(plan));
}

#[test]
fn never_touch_files_people_changed_unless_reset() {
    let d = desired(false);
    let mut o = converged(&d);
    // Scenario 1: someone re-routed the relay (a changed overlay file), and added a file.
    let relay = o.projects.get_mut(PROJECTS[0].name).unwrap();
    let changed = relay
        .files
        .keys()
        .find(|p| p.ends_with("routing-config.yaml"))
        .cloned()
        .unwrap();
    relay.files.insert(
        changed.clone(),
        git_blob_id("NEXT_HOPS: http://10.0.0.99:8080\n"),
    );
    relay
        .files
        .insert("notes/team.md".into(), git_blob_id("ours\n"));
    let plan = diff(&d, &o).unwrap();
    assert!(plan.is_empty(), "kept, not reverted: {plan}");
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].contains(&changed), "{:?}", plan.warnings);
    insta::assert_snapshot!(plan.to_string());

    // `apply --reset` restores the demo's version.
    let reset = desired(true);
    let plan = diff(&reset, &o).unwrap();
    assert_eq!(plan.changes.len(), 1, "one restoring commit: {plan}");
    insta::assert_snapshot!("reset", text(plan));
}
