//! Phase 14 `ci-templates`: the GitLab CI template library of plan §1.1 — embedded, committed to
//! GitLab and tagged — plus the Harbor projects, policies and robot accounts of §3.3 (secrets to
//! Vault) and the group CI/CD variables of §1.3.
//!
//! - [`library`]: every file of `library/templates/` (base, stages, 14 jobs, languages, 5 patterns
//!   and their CI/CD components), embedded at build time.
//! - [`settings`], [`desired`] (pure data), [`reconcile`] (observe, diff, execute, rotate).
//! - [`bash_leftovers`]: the robots and the secret the platform's bash phase 14 left, by identity.
//! - [`local_run`]: a service's pipeline against the embedded library, under gitlab-ci-local.

pub mod bash_leftovers;
pub mod corpus;
pub mod desired;
#[cfg(test)]
mod diff_tests;
pub mod kube_schemas;
pub mod library;
pub mod local_run;
pub mod reconcile;
pub mod rules;
pub mod settings;

use std::path::Path;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use common::cli::{GlobalArgs, Mode, init};
use common::phase::run_phase;

#[derive(Parser)]
#[command(
    name = "ci-templates",
    version,
    about = "Phase 14: the GitLab CI template library, Harbor projects and robots, group CI/CD variables"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    #[command(flatten)]
    Reconcile(Mode),
    /// Issue a new secret for a Harbor robot (ci-push, argocd-pull, trivy-scan) and store it in
    /// Vault; the secret is never printed.
    RotateRobot {
        /// The robot's name without Harbor's prefix.
        name: String,
    },
    /// Write the embedded library into DIR (to review it, or run a pipeline with gitlab-ci-local).
    Render {
        /// Target folder; `templates/` and README.md are written into it.
        dir: std::path::PathBuf,
    },
    /// List the embedded library files.
    List,
    /// Run a service's pipeline against the embedded library on this machine (gitlab-ci-local,
    /// shell executor): the service's `include: project:` of the library is made local.
    LocalRun {
        /// The service's folder (with its .gitlab-ci.yml).
        service: std::path::PathBuf,
        /// Jobs to run (default: every job of the pipeline that needs no container engine).
        jobs: Vec<String>,
        /// Run it as a merge request pipeline.
        #[arg(long)]
        merge_request: bool,
    },
}

/// Jobs of the library that need a container engine, a registry, Vault or Argo CD.
pub const REMOTE_ONLY_JOBS: &[&str] = &[
    "build-image",
    "image-scan",
    "image-sbom",
    "sign-image",
    "release-tag",
    "deploy-ephemeral",
    "acceptance-test",
    "k6-performance",
    "cleanup-ephemeral",
    "promote-artifact",
    "dependency-scan",
    "terraform-plan",
    "terraform-apply",
    "publish-package",
];

/// Writes every library file under `dir`.
pub fn render(dir: &Path) -> anyhow::Result<usize> {
    for file in library::FILES {
        let target = dir.join(file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, file.contents)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(library::FILES.len())
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command.unwrap_or(Command::Reconcile(Mode::Plan)) {
        Command::Render { dir } => {
            let n = render(&dir)?;
            println!(
                "wrote {n} files of gitlab-ci-templates v{} to {}",
                library::VERSION,
                dir.display()
            );
            Ok(common::cli::EXIT_OK)
        }
        Command::List => {
            for file in library::FILES {
                println!("{}", file.path);
            }
            Ok(common::cli::EXIT_OK)
        }
        Command::LocalRun {
            service,
            jobs,
            merge_request,
        } => {
            let repo = local_run::LocalRepo::prepare(&service)?;
            let jobs: Vec<String> = if jobs.is_empty() {
                repo.jobs(merge_request)?
                    .into_iter()
                    .filter(|j| !REMOTE_ONLY_JOBS.contains(&j.as_str()))
                    .collect()
            } else {
                jobs
            };
            let names: Vec<&str> = jobs.iter().map(String::as_str).collect();
            let run = repo.run(&names, merge_request)?;
            print!("{}", run.output);
            Ok(if run.ok {
                common::cli::EXIT_OK
            } else {
                common::cli::EXIT_ERROR
            })
        }
        Command::Reconcile(mode) => {
            let cfg = init(&cli.global)?;
            let phase = reconcile::CiTemplates::connect(&cfg)?;
            run_phase(&phase, mode, &cli.global).await
        }
        Command::RotateRobot { name } => {
            let cfg = init(&cli.global)?;
            let phase = reconcile::CiTemplates::connect(&cfg)?;
            let path = phase
                .rotate(&name)
                .await
                .with_context(|| format!("rotating robot {name}"))?;
            println!("rotated the secret of Harbor robot {name}; stored at {path} (not shown)");
            Ok(common::cli::EXIT_OK)
        }
    }
}
