//! Wall time of a sample service's MR and main pipelines under gitlab-ci-local (shell executor,
//! 2 vCPU), by stage, and which jobs ran side by side. Only the jobs that run here are timed; the
//! main pipeline's container, Vault and Argo CD jobs are listed as not run.
//!
//! `cargo bench -p ci-templates --bench pipelines` (results in docs/benchmarks.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use ci_templates::REMOTE_ONLY_JOBS;
use ci_templates::local_run::LocalRepo;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const STAGE_ORDER: &[&str] = common::contract::LIBRARY_STAGES;

fn main() {
    for fixture in ["go-service", "python-service"] {
        for merge_request in [true, false] {
            let repo = LocalRepo::prepare(&Path::new(FIXTURES).join(fixture)).expect("repository");
            let stages = repo.job_stages(merge_request).expect("job list");
            let (local, remote): (Vec<&String>, Vec<&String>) = stages
                .keys()
                .partition(|j| !REMOTE_ONLY_JOBS.contains(&j.as_str()));
            let names: Vec<&str> = local.iter().map(|s| s.as_str()).collect();
            let started = Instant::now();
            let run = repo.run(&names, merge_request).expect("gitlab-ci-local");
            let wall = started.elapsed().as_secs_f64();
            let kind = if merge_request { "MR" } else { "main" };
            println!(
                "\n### {fixture}, {kind} pipeline: {wall:.1} s wall, {} jobs run here{}",
                names.len(),
                if run.ok { "" } else { " (a job failed)" }
            );
            println!(
                "\n| stage | jobs (seconds) | longest job (s) | sum of jobs (s) |\n|---|---|---|---|"
            );
            let mut by_stage: BTreeMap<usize, Vec<(String, f64)>> = BTreeMap::new();
            for outcome in &run.jobs {
                let stage = stages.get(&outcome.job).map_or("?", String::as_str);
                let order = STAGE_ORDER.iter().position(|s| *s == stage).unwrap_or(99);
                by_stage
                    .entry(order)
                    .or_default()
                    .push((outcome.job.clone(), outcome.seconds.unwrap_or(0.0)));
            }
            for (order, jobs) in &by_stage {
                let stage = STAGE_ORDER.get(*order).copied().unwrap_or("?");
                let list: Vec<String> = jobs.iter().map(|(j, s)| format!("{j} ({s:.1})")).collect();
                let longest = jobs.iter().map(|(_, s)| *s).fold(0.0, f64::max);
                let sum: f64 = jobs.iter().map(|(_, s)| *s).sum();
                println!(
                    "| {stage} | {} | {longest:.1} | {sum:.1} |",
                    list.join(", ")
                );
            }
            let total: f64 = run.jobs.iter().filter_map(|j| j.seconds).sum();
            println!(
                "\nSum of job times {total:.1} s vs {wall:.1} s wall: {:.1}x from running jobs side by side.",
                total / wall
            );
            let mut parallel: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (a, b) in run.overlapping() {
                parallel.entry(a.clone()).or_default().push(b.clone());
                parallel.entry(b).or_default().push(a);
            }
            let lines: Vec<String> = parallel
                .iter()
                .map(|(j, with)| format!("{j} ∥ {}", with.join(", ")))
                .collect();
            println!("Ran side by side: {}", lines.join("; "));
            if !remote.is_empty() {
                println!(
                    "Not run here (container engine, registry, Vault, Argo CD or vulnerability DB): {}",
                    remote
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
}
