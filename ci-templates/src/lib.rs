//! Phase 14 `ci-templates`: the GitLab CI template library of plan §1.1 — embedded, committed to
//! GitLab and tagged — plus the Harbor projects, policies and robot accounts of §3.3 (secrets to
//! Vault) and the group CI/CD variables of §1.3.
//!
//! - [`library`]: every file of `library/templates/` (base, stages, 14 jobs, languages, 5 patterns
//!   and their CI/CD components), embedded at build time.
//! - [`settings`], [`desired`] (pure data), [`reconcile`] (observe, diff, execute, rotate).

pub mod desired;
pub mod library;
pub mod reconcile;
pub mod settings;

use std::path::Path;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use common::cli::{GlobalArgs, Mode, init, run_phase};

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
}

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
        Command::Reconcile(mode) => {
            let cfg = init(&cli.global)?;
            let phase = reconcile::CiTemplates::connect(&cfg)?;
            run_phase(&phase, mode, cli.global.output).await
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
