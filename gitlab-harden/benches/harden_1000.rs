//! Phase 12 over 1,000 GitLab projects with 20 ms injected per API call (GitLab and Keycloak
//! stand-ins), at the default concurrency and at concurrency 1 (what a sequential script does):
//! wall time and requests per project for the first apply and the no-op rerun.
//!
//! `cargo bench -p gitlab-harden --bench harden_1000` (results in docs/benchmarks.md).
//! Optional: `BENCH_PROJECTS` (default 1000), `BENCH_LATENCY_MS` (default 20).

use std::sync::atomic::Ordering;
use std::time::Instant;

use sandbox::standins::Fault;
use sandbox::{Options, Sandbox};

struct Sample {
    wall_s: f64,
    reads: u64,
    writes: u64,
    /// Reads of per-project endpoints (`GET /api/v4/projects/…`).
    project_reads: u64,
}

async fn apply(sandbox: &Sandbox, concurrency: usize) -> Sample {
    let gl = sandbox.standin("gitlab");
    gl.control.counters.reads.store(0, Ordering::Relaxed);
    gl.control.counters.writes.store(0, Ordering::Relaxed);
    gl.control
        .counters
        .by_route
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitlab-harden"))
        .args(["--quiet", "apply", "--env-file"])
        .arg(sandbox.env_file())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITLAB_SSH_ROUTE", "false")
        .env("GITLAB_CONCURRENCY", concurrency.to_string())
        .output()
        .await
        .expect("gitlab-harden runs");
    let wall_s = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Sample {
        wall_s,
        reads: gl.control.counters.reads.load(Ordering::Relaxed),
        writes: gl.control.counters.writes.load(Ordering::Relaxed),
        project_reads: gl
            .control
            .counters
            .by_route
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(route, _)| route.starts_with("GET /api/v4/projects/"))
            .map(|(_, n)| *n)
            .sum(),
    }
}

#[tokio::main]
async fn main() {
    common::cli::install_crypto_provider();
    let projects: usize = std::env::var("BENCH_PROJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let latency: u64 = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!(
        "| concurrency | run | wall (s) | GitLab reads | GitLab writes | project-endpoint reads/project | all reads/project | writes/project |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut first_runs = Vec::new();
    for concurrency in [8, 1] {
        let sandbox = Sandbox::start(Options {
            kube: false,
            vault: false,
            prometheus: false,
            ..Options::default()
        })
        .await
        .expect("sandbox");
        let paths = {
            let mut data = sandbox.gitlab.as_ref().unwrap().lock();
            let existing = data.projects.len();
            data.seed_nested_projects("platform_services", projects - existing)
        };
        sandbox::seed_linked_developers(
            sandbox.gitlab.as_ref().unwrap(),
            sandbox.keycloak.as_ref().unwrap(),
            150,
        );
        for name in ["gitlab", "keycloak"] {
            sandbox.standin(name).control.add_fault(Fault {
                path_prefix: "/".into(),
                latency_ms: latency,
                ..Fault::default()
            });
        }
        let n = paths.len() as f64;
        for run in ["first apply", "no-op rerun"] {
            let s = apply(&sandbox, concurrency).await;
            if run == "first apply" {
                first_runs.push(s.wall_s);
            }
            println!(
                "| {concurrency} | {run} | {:.1} | {} | {} | {:.2} | {:.2} | {:.2} |",
                s.wall_s,
                s.reads,
                s.writes,
                s.project_reads as f64 / n,
                s.reads as f64 / n,
                s.writes as f64 / n
            );
        }
    }
    println!(
        "\n{projects} projects, {latency} ms per API call: first apply at concurrency 8 is {:.1}x faster than at 1",
        first_runs[1] / first_runs[0]
    );
}
