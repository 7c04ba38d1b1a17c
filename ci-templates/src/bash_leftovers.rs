//! What the platform's bash phase 14 left in Harbor and Vault (docs/research/upstream-bash-phases.md
//! section 3.6, section 3.8), each recognised by its exact bash identity, never by name alone:
//!
//! - **System robots** `robot$ci-push` and `robot$argocd-pull`: the names of two of our robots, but
//!   made by `create_harbor_robot` with `{"name","duration":-1,"level":"system","permissions"}`: no
//!   description, never expiring, and exactly the bash grants. They are adopted: converged to ours in
//!   place and given a new secret, so the one the bash phase stored stops working.
//! - **Project robots** `robot$platform-services+ci-push` and `robot$platform-services+argocd-pull`
//!   (the shape the issue and upstream-contract.md describe for
//!   `create_harbor_robot "ci-push" "platform-services"`): level `project` on `platform-services`,
//!   no description, never expiring, only the bash grants. They are deleted. Phase 14 makes system
//!   robots only, so the level alone keeps ours out.
//! - **The secret at `kv/ci/harbor-push`**: the bash phase's copy of the ci-push secret, holding only
//!   `username` (the robot's name, `robot$ci-push`) and `password`. It is deleted with all its
//!   versions. Ours lives at [`common::contract::KV_HARBOR_PUSH`] and also carries `registry` and
//!   our `managed-by` metadata; the base platform's placeholder at the same path (username
//!   `harbor-ci-push`, no `$`) is left alone.

use std::collections::BTreeSet;

use common::harbor::Robot;
use common::plan::{Change, Plan};
use serde_json::{Value, json};

use crate::desired::{self, KV_MOUNT, MANAGED_BY};
use crate::reconcile::Op;

/// The Harbor project the bash phase named in `create_harbor_robot`.
pub const BASH_PROJECT: &str = "platform-services";
/// Where the bash phase stored the ci-push secret (under [`KV_MOUNT`]).
pub const BASH_PUSH_SECRET: &str = "ci/harbor-push";

/// A robot the bash phase made, and its grants.
#[derive(Debug, Clone, Copy)]
pub struct BashRobot {
    /// The name it passed (`robot$` is Harbor's prefix).
    pub name: &'static str,
    /// Repository actions per project of the system robot (research section 3.6).
    pub system_grants: &'static [(&'static str, &'static [&'static str])],
    /// Repository actions of the project robot on [`BASH_PROJECT`].
    pub project_actions: &'static [&'static str],
}

pub const BASH_ROBOTS: &[BashRobot] = &[
    BashRobot {
        name: "ci-push",
        system_grants: &[
            ("platform-services", &["push", "pull"]),
            ("ci-cache", &["push", "pull"]),
        ],
        project_actions: &["push", "pull"],
    },
    BashRobot {
        name: "argocd-pull",
        system_grants: &[("platform-services", &["pull"])],
        project_actions: &["pull"],
    },
];

/// A KV v2 secret as observed: its data keys, `username`, and our `managed-by` mark if any (the
/// password is never kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSecret {
    pub keys: BTreeSet<String>,
    pub username: Option<String>,
    pub managed_by: Option<String>,
}

/// What the observation found that may be a bash leftover; [`diff`] decides by identity.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Robots whose name contains a bash robot's name, other than our system robots.
    pub robots: Vec<Robot>,
    /// The secret at [`BASH_PUSH_SECRET`], when it has a live current version.
    pub push_secret: Option<StoredSecret>,
}

/// `permissions` as the bash body had them.
fn grants(grants: &[(&str, &[&str])]) -> Vec<Value> {
    grants
        .iter()
        .map(|(namespace, actions)| {
            json!({
                "kind": "project",
                "namespace": namespace,
                "access": actions.iter().map(|a| json!({"resource": "repository", "action": a})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The name after Harbor's prefix (whatever prefix the instance is configured with).
fn bare_name(full: &str) -> &str {
    full.rsplit_once('$').map_or(full, |(_, n)| n)
}

/// Whether `robot` is exactly how the bash body would look once Harbor stored it: no description,
/// never expiring, enabled, exactly `permissions`.
fn has_bash_body(robot: &Robot, permissions: &[Value]) -> bool {
    desired::robot_view(
        &robot.description,
        robot.duration,
        robot.disable,
        &robot.permissions,
    ) == desired::robot_view("", Some(-1), false, permissions)
}

/// The bash system robot `have` is, if it is one: the identity shown in the plan.
pub fn bash_system_robot(have: &Robot) -> Option<String> {
    let bash = BASH_ROBOTS
        .iter()
        .find(|b| b.name == bare_name(&have.name))?;
    let grants_text = bash
        .system_grants
        .iter()
        .map(|(project, actions)| format!("{} on {project}", actions.join("+")))
        .collect::<Vec<_>>()
        .join(", ");
    (have.level == "system" && has_bash_body(have, &grants(bash.system_grants))).then(|| {
        format!(
            "system robot {} (no description, duration -1, exactly {grants_text}) made by create_harbor_robot",
            have.name
        )
    })
}

/// The bash project robot `robot` is, if it is one: the identity shown in the plan.
pub fn bash_project_robot(robot: &Robot) -> Option<String> {
    let bash = BASH_ROBOTS
        .iter()
        .find(|b| bare_name(&robot.name) == format!("{BASH_PROJECT}+{}", b.name))?;
    let permissions = grants(&[(BASH_PROJECT, bash.project_actions)]);
    (robot.level == "project" && has_bash_body(robot, &permissions)).then(|| {
        format!(
            "project robot {} of {BASH_PROJECT} (level project, no description, duration -1, exactly {} on {BASH_PROJECT})",
            robot.name,
            bash.project_actions.join("+")
        )
    })
}

/// Whether the secret at [`BASH_PUSH_SECRET`] is the bash phase's copy of a ci-push secret.
pub fn is_bash_push_secret(secret: &StoredSecret) -> bool {
    let keys: BTreeSet<&str> = secret.keys.iter().map(String::as_str).collect();
    keys == BTreeSet::from(["password", "username"])
        && secret.managed_by.as_deref() != Some(MANAGED_BY)
        && secret
            .username
            .as_deref()
            .is_some_and(|u| u.contains('$') && bare_name(u) == "ci-push")
}

/// Plans the removal of the bash project robots and of the stale secret.
pub fn diff(plan: &mut Plan<Op>, found: &Candidates) {
    for robot in &found.robots {
        let Some(identity) = bash_project_robot(robot) else {
            continue;
        };
        let before = desired::robot_view(
            &robot.description,
            robot.duration,
            robot.disable,
            &robot.permissions,
        );
        plan.push(
            Change::delete(
                "harbor robot",
                &robot.name,
                before,
                &[],
                Op::DeleteRobot {
                    id: robot.id,
                    name: robot.name.clone(),
                },
            )
            .left_by_bash(&identity),
        );
    }
    if let Some(secret) = found
        .push_secret
        .as_ref()
        .filter(|s| is_bash_push_secret(s))
    {
        plan.push(
            Change::delete(
                "vault secret",
                &format!("{KV_MOUNT}/{BASH_PUSH_SECRET}"),
                json!({"keys": secret.keys, "username": secret.username}),
                &[],
                Op::DeleteStaleSecret {
                    path: BASH_PUSH_SECRET,
                },
            )
            .left_by_bash(&format!(
                "KV secret {KV_MOUNT}/{BASH_PUSH_SECRET} holding only username {} and password: the bash phase's copy of the ci-push secret, void once the robot has a new one",
                secret.username.as_deref().unwrap_or_default()
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::ROBOTS;

    fn ours() -> Vec<Robot> {
        ROBOTS
            .iter()
            .enumerate()
            .map(|(i, r)| Robot {
                id: i as u64,
                name: format!("robot${}", r.name),
                description: r.description.to_owned(),
                level: "system".into(),
                disable: false,
                duration: Some(-1),
                permissions: r.permissions().as_array().cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn bash_system(name: &str) -> Robot {
        let bash = BASH_ROBOTS.iter().find(|b| b.name == name).unwrap();
        Robot {
            id: 7,
            name: format!("robot${name}"),
            description: String::new(),
            level: "system".into(),
            disable: false,
            duration: Some(-1),
            permissions: grants(bash.system_grants),
        }
    }

    #[test]
    fn the_bash_identities_never_match_our_robots_or_our_secret() {
        assert!(
            ROBOTS.iter().all(|r| r.vault_path != BASH_PUSH_SECRET),
            "no robot of ours keeps its secret at the bash path"
        );
        for robot in ours() {
            assert_eq!(bash_system_robot(&robot), None, "{}", robot.name);
            assert_eq!(bash_project_robot(&robot), None, "{}", robot.name);
            // Even as a project robot of the bash project, ours carries a description.
            let mut as_project = robot.clone();
            as_project.level = "project".into();
            as_project.name = format!("robot${BASH_PROJECT}+{}", bare_name(&robot.name));
            assert_eq!(bash_project_robot(&as_project), None, "{}", robot.name);
        }
        // What phase 14 stores for a robot: registry too, and our mark.
        let ours = StoredSecret {
            keys: ["password", "registry", "username"]
                .map(str::to_owned)
                .into(),
            username: Some("robot$ci-push".into()),
            managed_by: Some(MANAGED_BY.into()),
        };
        assert!(!is_bash_push_secret(&ours));
        let mut marked = ours.clone();
        marked.keys.remove("registry");
        assert!(!is_bash_push_secret(&marked), "our mark keeps it ours");
    }

    #[test]
    fn the_bash_robots_are_recognised_only_with_their_exact_body() {
        for name in ["ci-push", "argocd-pull"] {
            let robot = bash_system(name);
            assert!(bash_system_robot(&robot).is_some(), "{name}");
            let mut described = robot.clone();
            described.description = "made by hand".into();
            assert_eq!(bash_system_robot(&described), None);
            let mut expiring = robot.clone();
            expiring.duration = Some(30);
            assert_eq!(bash_system_robot(&expiring), None);
            let mut wider = robot.clone();
            wider.permissions.push(json!({"kind": "project", "namespace": "application-services", "access": [{"resource": "repository", "action": "pull"}]}));
            assert_eq!(bash_system_robot(&wider), None);
            let mut project_level = robot.clone();
            project_level.level = "project".into();
            assert_eq!(bash_system_robot(&project_level), None);
        }
        let bash = &BASH_ROBOTS[0];
        let project = Robot {
            id: 8,
            name: "robot$platform-services+ci-push".into(),
            description: String::new(),
            level: "project".into(),
            disable: false,
            duration: Some(-1),
            permissions: grants(&[(BASH_PROJECT, bash.project_actions)]),
        };
        assert!(bash_project_robot(&project).is_some());
        let mut other_project = project.clone();
        other_project.name = "robot$ci-cache+ci-push".into();
        assert_eq!(bash_project_robot(&other_project), None);
        let mut system = project.clone();
        system.level = "system".into();
        assert_eq!(bash_project_robot(&system), None);
    }

    #[test]
    fn only_the_bash_copy_of_the_push_secret_is_recognised() {
        let secret = |username: &str, keys: &[&str]| StoredSecret {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            username: Some(username.into()),
            managed_by: None,
        };
        assert!(is_bash_push_secret(&secret(
            "robot$ci-push",
            &["username", "password"]
        )));
        // The base platform's placeholder, another robot, extra keys: left alone.
        assert!(!is_bash_push_secret(&secret(
            "harbor-ci-push",
            &["username", "password"]
        )));
        assert!(!is_bash_push_secret(&secret(
            "robot$argocd-pull",
            &["username", "password"]
        )));
        assert!(!is_bash_push_secret(&secret(
            "robot$ci-push",
            &["username", "password", "registry"]
        )));
    }
}
