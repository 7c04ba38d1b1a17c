//! The security runners the platform's bash phase 16 left (docs/research/upstream-bash-phases.md
//! section 3.5): on every run it registered a new instance runner with
//! `{"runner_type":"instance_type","description":"security-scanner-runner","tag_list":"security,trivy,semgrep,gitleaks","run_untagged":false}`
//! and never looked for the earlier ones, which stay registered and idle.
//!
//! A runner is the bash phase's when it is an instance runner, described exactly
//! `security-scanner-runner`, with exactly those four tags, not running untagged jobs, and it is not
//! the runner whose id our Vault path for the security pool records. Our pools' runners are group
//! runners (`group_type`) with their id in Vault, so the rule cannot match one of ours, even when
//! `SECURITY_RUNNER_DESCRIPTION` is set to the bash description. Each one is deleted
//! (`DELETE /runners/:id`); the plan lists it first with the reason "left by the bash phase".

use std::collections::BTreeSet;

use common::gitlab::{GitLabClient, Runner};
use common::plan::{Change, Plan};
use common::vault::VaultClient;
use serde_json::json;

use crate::desired::{KV_MOUNT, RUNNER_ID_METADATA, pool};
use crate::reconcile::Op;

/// The description the bash phase gave its runner.
pub const BASH_DESCRIPTION: &str = "security-scanner-runner";
/// Its tags (`tag_list` "security,trivy,semgrep,gitleaks").
pub const BASH_TAGS: &[&str] = &["security", "trivy", "semgrep", "gitleaks"];
/// The runner type it registered.
const BASH_RUNNER_TYPE: &str = "instance_type";

/// What the observation found; [`diff`] decides by identity. The default: listed, nothing found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Details of the instance runners described [`BASH_DESCRIPTION`].
    pub runners: Vec<Runner>,
    /// The runner id our Vault path for the security pool records, if any.
    pub ours: Option<u64>,
    /// `false` when the token may not list the instance's runners (not an administrator).
    pub listed: bool,
}

impl Default for Found {
    fn default() -> Self {
        Self {
            runners: Vec::new(),
            ours: None,
            listed: true,
        }
    }
}

/// Whether `runner` is one the bash phase registered (and not the runner our Vault records).
pub fn is_bash_runner(runner: &Runner, ours: Option<u64>) -> bool {
    let tags: BTreeSet<&str> = runner.tag_list.iter().map(String::as_str).collect();
    runner.runner_type == BASH_RUNNER_TYPE
        && runner.description == BASH_DESCRIPTION
        && tags == BASH_TAGS.iter().copied().collect()
        && runner.tag_list.len() == BASH_TAGS.len()
        && !runner.run_untagged
        && ours != Some(runner.id)
}

/// The bash runners' candidates: the instance runners with the bash description (their details),
/// and the runner id recorded at the security pool's Vault path.
pub async fn observe(gitlab: &GitLabClient, vault: &VaultClient) -> anyhow::Result<Found> {
    let ours = match pool("security") {
        Some(security) => vault
            .kv2_metadata(KV_MOUNT, &security.token_path())
            .await?
            .and_then(|m| m.custom_metadata.get(RUNNER_ID_METADATA)?.parse().ok()),
        None => None,
    };
    let listed = match gitlab.all_runners(BASH_RUNNER_TYPE).await {
        Ok(listed) => listed,
        // Only administrators may list the instance's runners (runners.md "List all runners").
        Err(e) if e.status() == Some(403) => {
            return Ok(Found {
                runners: Vec::new(),
                ours,
                listed: false,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut runners = Vec::new();
    for candidate in listed.iter().filter(|r| r.description == BASH_DESCRIPTION) {
        runners.push(gitlab.runner(candidate.id).await?);
    }
    Ok(Found {
        runners,
        ours,
        listed: true,
    })
}

/// Plans the deletion of every bash runner.
pub fn diff(plan: &mut Plan<Op>, found: &Found) {
    if !found.listed {
        plan.warn(format!(
            "the GitLab token may not list the instance's runners (GET /runners/all needs an administrator): runners the bash phase registered (`{BASH_DESCRIPTION}`) are not looked for; use an administrator's token to remove them"
        ));
        return;
    }
    for runner in found
        .runners
        .iter()
        .filter(|r| is_bash_runner(r, found.ours))
    {
        let mut tags = runner.tag_list.clone();
        tags.sort();
        plan.push(
            Change::delete(
                "gitlab runner",
                &format!("{} (id {})", runner.description, runner.id),
                json!({"runner_type": runner.runner_type, "tag_list": tags, "run_untagged": runner.run_untagged, "paused": runner.paused}),
                &[],
                Op::DeleteRunner { id: runner.id },
            )
            .left_by_bash(&format!(
                "instance runner {} described `{BASH_DESCRIPTION}` with exactly the tags {} and no untagged jobs, registered by the bash phase's POST /user/runners (not the runner our Vault records)",
                runner.id,
                BASH_TAGS.join(",")
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::POOLS;
    use crate::settings::Settings;

    fn bash_runner(id: u64) -> Runner {
        Runner {
            id,
            description: BASH_DESCRIPTION.into(),
            runner_type: BASH_RUNNER_TYPE.into(),
            paused: false,
            tag_list: BASH_TAGS.iter().map(|t| (*t).to_owned()).collect(),
            run_untagged: false,
            locked: false,
            access_level: "not_protected".into(),
        }
    }

    /// Our pools' runners as phase 16 creates them (`runner_create_body`), read back.
    fn ours(s: &Settings) -> Vec<Runner> {
        POOLS
            .iter()
            .enumerate()
            .map(|(i, pool)| {
                let body = crate::desired::runner_create_body(s, pool, 7);
                Runner {
                    id: 100 + i as u64,
                    description: body["description"].as_str().unwrap().to_owned(),
                    runner_type: body["runner_type"].as_str().unwrap().to_owned(),
                    paused: false,
                    tag_list: serde_json::from_value(body["tag_list"].clone()).unwrap(),
                    run_untagged: body["run_untagged"].as_bool().unwrap(),
                    locked: true,
                    access_level: "not_protected".into(),
                }
            })
            .collect()
    }

    fn settings(description: Option<&str>) -> Settings {
        let vars: Vec<(&str, &str)> = description
            .map(|d| vec![("SECURITY_RUNNER_DESCRIPTION", d)])
            .unwrap_or_default();
        Settings::load(&common::config::PlatformConfig::example(&vars).unwrap()).unwrap()
    }

    #[test]
    fn the_bash_identity_never_matches_a_runner_of_ours() {
        // Also when the security pool keeps the bash description (SECURITY_RUNNER_DESCRIPTION).
        for s in [settings(None), settings(Some(BASH_DESCRIPTION))] {
            for runner in ours(&s) {
                assert!(!is_bash_runner(&runner, None), "{runner:?}");
            }
        }
        // The runner our Vault records is never the bash phase's, whatever its shape.
        assert!(!is_bash_runner(&bash_runner(5), Some(5)));
        assert!(is_bash_runner(&bash_runner(5), Some(6)));
    }

    #[test]
    fn every_field_of_the_identity_matters() {
        assert!(is_bash_runner(&bash_runner(1), None));
        let variants: [fn(&mut Runner); 5] = [
            |r| r.runner_type = "group_type".into(),
            |r| r.description = "security-scanner-runner-2".into(),
            |r| r.tag_list.pop().map_or((), drop),
            |r| r.tag_list.push("docker".into()),
            |r| r.run_untagged = true,
        ];
        for change in variants {
            let mut runner = bash_runner(1);
            change(&mut runner);
            assert!(!is_bash_runner(&runner, None), "{runner:?}");
        }
    }

    #[test]
    fn each_bash_runner_is_deleted_with_its_reason_and_a_token_that_may_not_list_warns() {
        let mut other = bash_runner(12);
        other.description = "team-runner".into();
        let found = Found {
            runners: vec![bash_runner(10), bash_runner(11), other, bash_runner(13)],
            ours: Some(13),
            listed: true,
        };
        let mut plan = Plan::new("16 security-setup");
        diff(&mut plan, &found);
        let deleted: Vec<u64> = plan
            .changes
            .iter()
            .map(|c| match c.op {
                Op::DeleteRunner { id } => id,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(deleted, [10, 11]);
        assert!(plan.changes.iter().all(Change::is_bash_leftover));
        insta::assert_snapshot!(plan.to_string());

        let mut plan = Plan::new("16 security-setup");
        diff(
            &mut plan,
            &Found {
                listed: false,
                ..Found::default()
            },
        );
        assert!(plan.is_empty());
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    }
}
