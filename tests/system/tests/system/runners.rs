//! Every job of the five patterns runs on a runner pool phase 16 deploys: the job's effective tags
//! (its own, or the library's `default: tags`) are a subset of one pool's tags (GitLab's rule).

use std::collections::{BTreeMap, BTreeSet};

use ci_templates::local_run::{LocalRepo, PipelineKind};
use serde_json::Value;

use crate::world::World;

/// The five patterns of plan §1.1 with a language each.
const PATTERNS: [(&str, &str); 5] = [
    ("microservice", "go"),
    ("library", "shell"),
    ("infrastructure", "terraform"),
    ("static-site", "node"),
    ("operator", "go"),
];

fn default_tags() -> Vec<String> {
    let base: Value = serde_saphyr::from_str(
        ci_templates::library::get("templates/base.yml")
            .expect("base.yml")
            .contents,
    )
    .expect("base.yml is YAML");
    base["default"]["tags"]
        .as_array()
        .expect("the library names a default pool")
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

pub fn every_job_maps_to_a_deployed_pool(world: &World) {
    let default = default_tags();
    let mut table = Vec::new();
    for (pattern, language) in PATTERNS {
        let dir = world.dir(&format!("pattern-{pattern}"));
        std::fs::write(
            dir.join(".gitlab-ci.yml"),
            format!(
                "include:\n  - project: 'platform_services/gitlab-ci-templates'\n    ref: v{}\n    file:\n      - 'templates/stages.yml'\n      - 'templates/languages/{language}.yml'\n      - 'templates/patterns/{pattern}.yml'\n\nvariables:\n  SERVICE_NAME: sample-{pattern}\n  PUBLISH_COMMAND: \"true\"\n",
                ci_templates::library::VERSION
            ),
        )
        .expect("write");
        let repo = LocalRepo::prepare(&dir).expect("a scratch repository");
        let mut jobs = BTreeSet::new();
        for kind in [
            PipelineKind::Main,
            PipelineKind::MergeRequest,
            PipelineKind::ReleaseTag("v1.0.0".into()),
        ] {
            jobs.extend(
                repo.jobs_of(&kind, &[])
                    .expect("gitlab-ci-local --list-csv"),
            );
        }
        let merged: BTreeMap<String, Value> =
            serde_json::from_value(repo.merged_config().expect("gitlab-ci-local --preview"))
                .expect("the merged pipeline");
        assert!(!jobs.is_empty(), "{pattern}: no jobs");
        for job in &jobs {
            let own: Option<Vec<String>> = merged[job]["tags"].as_array().map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            });
            let tags = own.unwrap_or_else(|| default.clone());
            assert!(!tags.is_empty(), "{pattern}/{job} has no tags");
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            let pool = security_setup::desired::pool_serving(&refs).unwrap_or_else(|| {
                panic!("{pattern}/{job} (tags {tags:?}) matches no runner pool phase 16 deploys")
            });
            table.push(format!(
                "{pattern:<15} {job:<19} {:<22} {}",
                tags.join(","),
                pool.name
            ));
        }
    }
    eprintln!("    {:<15} {:<19} {:<22} pool", "pattern", "job", "tags");
    for row in &table {
        eprintln!("    {row}");
    }
    // The pools the jobs need are the ones phase 16 registered: one runner each, with those tags.
    let gl = world.sandbox.gitlab.as_ref().expect("GitLab").lock();
    for pool in security_setup::desired::POOLS {
        let registered = gl.runners.runners.values().any(|r| {
            let tags: BTreeSet<&str> = r.tag_list.iter().map(String::as_str).collect();
            tags == pool.tags.iter().copied().collect() && r.run_untagged == pool.run_untagged
        });
        assert!(
            registered,
            "phase 16 registered no runner for pool {}",
            pool.name
        );
    }
}
