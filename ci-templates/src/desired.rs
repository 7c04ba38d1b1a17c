//! What phase 14 wants, as data (no I/O): the library files and their version tag, the Harbor
//! projects, policies and robot accounts of plan §3.3, and the group CI/CD variables of §1.3.

use std::collections::BTreeMap;

use common::contract;
use common::gitlab::CiVariable;
use serde::Serialize;
use serde_json::{Value, json};

use crate::library;
use crate::settings::Settings;

pub use common::contract::KV_MOUNT;
/// Marks KV secrets this phase writes.
pub const MANAGED_BY: &str = "cicd-buildout/ci-templates";

/// A Harbor project and its policies (plan §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HarborProject {
    pub name: &'static str,
    pub retention_days: u32,
    /// Always keep this many most recently pushed tags per repository.
    pub keep_last: Option<u32>,
    pub scan_on_push: bool,
    /// Tags matching `v*` cannot be overwritten or deleted.
    pub immutable_semver: bool,
}

pub const HARBOR_PROJECTS: &[HarborProject] = &[
    HarborProject {
        name: "platform-services",
        retention_days: 90,
        keep_last: Some(10),
        scan_on_push: true,
        immutable_semver: true,
    },
    HarborProject {
        name: "application-services",
        retention_days: 30,
        keep_last: Some(5),
        scan_on_push: true,
        immutable_semver: true,
    },
    HarborProject {
        name: "ci-cache",
        retention_days: 7,
        keep_last: None,
        scan_on_push: false,
        immutable_semver: false,
    },
    // Merge request images for per-MR environments only (docs/adr/0008): short-lived, never
    // released, so neither scanned on push nor immutable.
    HarborProject {
        name: contract::HARBOR_SCRATCH_PROJECT,
        retention_days: 3,
        keep_last: None,
        scan_on_push: false,
        immutable_semver: false,
    },
];

/// Pattern of the immutable tags (semver releases).
pub const IMMUTABLE_TAG_PATTERN: &str = "v*";
/// When Harbor runs the retention policies (Harbor's 6-field cron: sec min hour day month weekday).
pub const RETENTION_SCHEDULE: &str = "0 0 3 * * *";

impl HarborProject {
    /// Project metadata this phase owns (Harbor keeps them as strings).
    pub fn metadata(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("auto_scan", self.scan_on_push.to_string()),
            ("public", "false".into()),
        ])
    }

    /// `POST /projects` body (`ProjectReq`).
    pub fn create_body(&self) -> Value {
        json!({"project_name": self.name, "metadata": self.metadata(), "storage_limit": -1})
    }

    /// The retention policy's rules and trigger (`RetentionPolicy` without id/scope): retained when
    /// pushed within `retention_days`, or among the `keep_last` latest pushes of its repository.
    pub fn retention_rules(&self) -> Value {
        let rule = |template: &str, params: Value| {
            json!({
                "disabled": false,
                "action": "retain",
                "template": template,
                "params": params,
                "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
            })
        };
        let mut rules = vec![rule(
            "nDaysSinceLastPush",
            json!({"nDaysSinceLastPush": self.retention_days}),
        )];
        if let Some(k) = self.keep_last {
            rules.push(rule("latestPushedK", json!({"latestPushedK": k})));
        }
        json!({
            "algorithm": "or",
            "rules": rules,
            "trigger": {"kind": "Schedule", "settings": {"cron": RETENTION_SCHEDULE}},
        })
    }

    /// The full `RetentionPolicy` for project `id`.
    pub fn retention_policy(&self, project_id: u64) -> Value {
        let mut policy = self.retention_rules();
        policy["scope"] = json!({"level": "project", "ref": project_id});
        policy
    }
}

/// The immutable tag rule (`ImmutableRule`) for semver tags in every repository.
pub fn immutable_rule() -> Value {
    json!({
        "disabled": false,
        "action": "immutable",
        "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": IMMUTABLE_TAG_PATTERN}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
    })
}

/// A system robot account of plan §3.3 and where its secret lives in Vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RobotAccount {
    pub name: &'static str,
    pub description: &'static str,
    pub projects: &'static [&'static str],
    /// The Harbor resource the actions apply to: `repository` for the registry robots.
    pub resource: &'static str,
    /// Actions on [`RobotAccount::resource`] in each of those projects.
    pub actions: &'static [&'static str],
    /// KV v2 path (under `kv/`) holding `username` and `password`.
    pub vault_path: &'static str,
}

pub const ROBOTS: &[RobotAccount] = &[
    RobotAccount {
        name: "ci-push",
        description: "GitLab CI pushes images (cicd-buildout phase 14)",
        projects: &["platform-services", "application-services", "ci-cache"],
        resource: "repository",
        actions: &["push", "pull"],
        vault_path: contract::KV_HARBOR_PUSH,
    },
    // Workloads pull with it (the harbor-pull Secret of every labelled namespace), ephemeral
    // environments included, whose merge request images live in ci-scratch.
    RobotAccount {
        name: "argocd-pull",
        description: "Argo CD pulls images (cicd-buildout phase 14)",
        projects: &[
            "platform-services",
            "application-services",
            contract::HARBOR_SCRATCH_PROJECT,
        ],
        resource: "repository",
        actions: &["pull"],
        vault_path: contract::KV_HARBOR_PULL,
    },
    // Merge request pipelines push only here (Vault role gitlab-ci-mr).
    RobotAccount {
        name: "ci-scratch-push",
        description: "GitLab CI pushes merge request images (cicd-buildout phase 14)",
        projects: &[contract::HARBOR_SCRATCH_PROJECT],
        resource: "repository",
        actions: &["push", "pull"],
        vault_path: contract::KV_HARBOR_SCRATCH,
    },
    RobotAccount {
        name: "trivy-scan",
        description: "Trivy scans images (cicd-buildout phase 14)",
        projects: &["platform-services", "application-services"],
        resource: "repository",
        actions: &["pull"],
        vault_path: "security/harbor-trivy",
    },
    // The in-cluster readiness report (phase 17's CronJob, docs/adr/0012 decision 8): it lists
    // the immutable tag rules of the release projects and can do nothing else. Its Vault path is
    // read only by the report's own Vault role.
    RobotAccount {
        name: contract::READINESS_HARBOR_ROBOT,
        description: "The readiness report reads immutable tag rules (cicd-buildout phase 14)",
        projects: &["platform-services", "application-services"],
        resource: "immutable-tag",
        actions: &["list"],
        vault_path: contract::KV_READINESS_HARBOR,
    },
];

impl RobotAccount {
    /// `permissions` of RobotCreate/Robot, in a stable order.
    pub fn permissions(&self) -> Value {
        self.projects
            .iter()
            .map(|project| {
                json!({
                    "kind": "project",
                    "namespace": project,
                    "access": self.actions.iter().map(|a| json!({"resource": self.resource, "action": a, "effect": "allow"})).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// `POST /robots` body (RobotCreate): a system robot that never expires.
    pub fn create_body(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "level": "system",
            "duration": -1,
            "disable": false,
            "permissions": self.permissions(),
        })
    }

    /// What this phase reconciles on an existing robot, normalised for diffing.
    pub fn view(&self) -> Value {
        robot_view(
            self.description,
            Some(-1),
            false,
            self.permissions().as_array().map_or(&[], Vec::as_slice),
        )
    }
}

/// A robot as Harbor shows it, normalised like [`RobotAccount::view`] (access entries sorted,
/// `effect` defaulted to allow) so only real differences show.
pub fn robot_view(
    description: &str,
    duration: Option<i64>,
    disable: bool,
    permissions: &[Value],
) -> Value {
    let mut perms: Vec<Value> = permissions
        .iter()
        .map(|p| {
            let mut access: Vec<Value> = p["access"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| json!({"resource": a["resource"], "action": a["action"], "effect": a["effect"].as_str().unwrap_or("allow")}))
                .collect();
            access.sort_by_key(Value::to_string);
            json!({"kind": p["kind"], "namespace": p["namespace"], "access": access})
        })
        .collect();
    perms.sort_by_key(|p| p["namespace"].to_string());
    json!({"description": description, "duration": duration.unwrap_or(0), "disable": disable, "permissions": perms})
}

/// Group-level CI/CD variables of plan §1.3. None is a secret: everything secret comes from Vault
/// through `id_tokens`, so nothing here is masked or protected.
pub fn group_variables(s: &Settings) -> Vec<CiVariable> {
    let var = |key: &str, value: &str| CiVariable {
        key: key.to_owned(),
        value: value.to_owned(),
        protected: false,
        masked: false,
        raw: true,
        environment_scope: "*".to_owned(),
    };
    vec![
        var("HARBOR_REGISTRY", &s.harbor_registry),
        var("HARBOR_PROJECT", "platform-services"),
        var("VAULT_ADDR", &s.vault_addr),
        var("VAULT_ROLE", "gitlab-ci"),
        var("ARGOCD_SERVER", &s.argocd_server),
        var("DOMAIN", &s.domain),
        var("TRIVY_SEVERITY", &s.trivy_severity),
        var("COVERAGE_THRESHOLD", &s.coverage_threshold),
    ]
}

/// The library's version tag.
pub fn library_tag() -> String {
    format!("v{}", library::VERSION)
}

/// The library's files by path.
pub fn library_files() -> BTreeMap<&'static str, &'static str> {
    library::FILES
        .iter()
        .map(|f| (f.path, f.contents))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_have_exactly_the_plan_permissions() {
        let by_name: BTreeMap<&str, &RobotAccount> = ROBOTS.iter().map(|r| (r.name, r)).collect();
        assert_eq!(
            by_name["ci-push"].projects,
            ["platform-services", "application-services", "ci-cache"]
        );
        assert_eq!(by_name["ci-push"].actions, ["push", "pull"]);
        assert_eq!(
            by_name["trivy-scan"].projects,
            ["platform-services", "application-services"]
        );
        assert_eq!(
            by_name["argocd-pull"].projects,
            ["platform-services", "application-services", "ci-scratch"]
        );
        for name in ["argocd-pull", "trivy-scan"] {
            assert_eq!(by_name[name].actions, ["pull"]);
        }
        // The readiness report lists immutable tag rules of the release projects, nothing else.
        let readiness = by_name["cicd-readiness"];
        assert_eq!(
            readiness.projects,
            HARBOR_PROJECTS
                .iter()
                .filter(|p| p.immutable_semver)
                .map(|p| p.name)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            readiness.permissions()[0]["access"],
            json!([{"resource": "immutable-tag", "action": "list", "effect": "allow"}])
        );
        // Merge request pipelines can push to the scratch project and nowhere else.
        assert_eq!(by_name["ci-scratch-push"].projects, ["ci-scratch"]);
        assert_eq!(by_name["ci-scratch-push"].actions, ["push", "pull"]);
        let body = by_name["ci-push"].create_body();
        assert_eq!(
            body["permissions"][2]["access"][0],
            json!({"resource": "repository", "action": "push", "effect": "allow"})
        );
    }

    #[test]
    fn retention_follows_plan_3_3() {
        let platform = &HARBOR_PROJECTS[0];
        let policy = platform.retention_policy(7);
        assert_eq!(policy["rules"][0]["params"]["nDaysSinceLastPush"], 90);
        assert_eq!(policy["rules"][1]["params"]["latestPushedK"], 10);
        assert_eq!(policy["scope"]["ref"], 7);
        let cache = &HARBOR_PROJECTS[2];
        assert_eq!(
            cache.retention_rules()["rules"].as_array().unwrap().len(),
            1
        );
        assert_eq!(cache.metadata()["auto_scan"], "false");
    }

    #[test]
    fn robot_view_ignores_order_and_default_effect() {
        let robot = &ROBOTS[0];
        let mut perms: Vec<Value> = robot.permissions().as_array().unwrap().clone();
        perms.reverse();
        for p in &mut perms {
            for a in p["access"].as_array_mut().unwrap() {
                a.as_object_mut().unwrap().remove("effect");
            }
        }
        assert_eq!(
            robot_view(robot.description, Some(-1), false, &perms),
            robot_view(
                robot.description,
                Some(-1),
                false,
                robot.permissions().as_array().unwrap()
            )
        );
    }
}
