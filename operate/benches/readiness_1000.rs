//! `cicd-readiness` over a 1,000-project instance like the phase 12 benchmark's: the GitLab
//! stand-in with 1,000 projects of `platform_services` in nested subgroups, hardened first by
//! `gitlab-harden apply`, 20 ms added to every GitLab, Keycloak and Harbor request; the real
//! kube-apiserver, OpenBao and Prometheus of the sandbox. Side by side: the report, and phase 12's
//! own `check` on the same instance (the report's largest part is phase 12's observation).
//!
//! `cargo bench -p operate --bench readiness_1000` (results in docs/benchmarks.md).
//! Optional: `BENCH_PROJECTS` (default 1000), `BENCH_LATENCY_MS` (default 20).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sandbox::standins::Fault;
use sandbox::{Options, Sandbox};

const STANDINS: [&str; 4] = ["gitlab", "harbor", "keycloak", "argocd"];

fn reset(sandbox: &Sandbox) {
    for name in STANDINS {
        let c = &sandbox.standin(name).control.counters;
        c.reads.store(0, Ordering::Relaxed);
        c.writes.store(0, Ordering::Relaxed);
        c.by_route
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// (reads, writes other than sign-ins) per stand-in since the last reset.
fn counts(sandbox: &Sandbox) -> BTreeMap<&'static str, (u64, u64)> {
    let writes = sandbox.standin_writes();
    STANDINS
        .iter()
        .map(|name| {
            let reads = sandbox
                .standin(name)
                .control
                .counters
                .reads
                .load(Ordering::Relaxed);
            (*name, (reads, writes.get(name).copied().unwrap_or(0)))
        })
        .collect()
}

async fn run(sandbox: &Sandbox, exe: &str, args: &[&str]) -> (f64, std::process::Output) {
    let started = Instant::now();
    let out = tokio::process::Command::new(exe)
        .args(args)
        .arg("--env-file")
        .arg(sandbox.env_file())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITLAB_SSH_ROUTE", "false")
        .output()
        .await
        .expect("the binary runs");
    (started.elapsed().as_secs_f64(), out)
}

fn bin(name: &str) -> String {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| format!("{}/../target", env!("CARGO_MANIFEST_DIR")));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = format!("{target}/{profile}/{name}");
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} missing: cargo build {}-p gitlab-harden -p operate",
        if cfg!(debug_assertions) {
            ""
        } else {
            "--release "
        }
    );
    path
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
    let sandbox = Sandbox::start(Options::default()).await.expect("sandbox");
    {
        let mut data = sandbox.gitlab.as_ref().unwrap().lock();
        let existing = data.projects.len();
        data.seed_nested_projects("platform_services", projects.saturating_sub(existing));
    }
    let harden = bin("gitlab-harden");
    let readiness = bin("cicd-readiness");
    let (s, out) = run(&sandbox, &harden, &["--quiet", "apply"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("hardened {projects} projects in {s:.1} s");
    for name in ["gitlab", "keycloak", "harbor"] {
        sandbox.standin(name).control.add_fault(Fault {
            path_prefix: "/".into(),
            latency_ms: latency,
            ..Fault::default()
        });
    }
    println!(
        "| run | wall (s) | GitLab reads | Harbor reads | Keycloak reads | stand-in writes (sign-ins aside) | Vault writes | GitLab reads/project |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut walls = BTreeMap::new();
    for (label, exe, args) in [
        (
            "phase 12 check (gitlab-harden)",
            harden.as_str(),
            &["--quiet", "check"][..],
        ),
        (
            "cicd-readiness (22 rows)",
            readiness.as_str(),
            &["--quiet", "--output", "json"][..],
        ),
    ] {
        reset(&sandbox);
        let vault_before = sandbox.vault_writes();
        let (wall, out) = run(&sandbox, exe, args).await;
        assert!(
            out.status.code().is_some_and(|c| c == 0),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = counts(&sandbox);
        let writes: u64 = c.values().map(|(_, w)| w).sum();
        let vault_writes = sandbox.vault_writes() - vault_before;
        println!(
            "| {label} | {wall:.1} | {} | {} | {} | {writes} | {vault_writes} | {:.2} |",
            c["gitlab"].0,
            c["harbor"].0,
            c["keycloak"].0,
            c["gitlab"].0 as f64 / projects as f64
        );
        walls.insert(label, wall);
    }
    println!(
        "\n{projects} projects, {latency} ms per stand-in request: the whole report takes {:.2}x phase 12's check",
        walls["cicd-readiness (22 rows)"] / walls["phase 12 check (gitlab-harden)"]
    );
}
