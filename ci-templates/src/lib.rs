//! Phase 14 `ci-templates`: the GitLab CI template library of plan §1.1 as embedded data.
//!
//! - [`library`]: every file of `library/templates/` (base, stages, 14 jobs, languages, 5 patterns
//!   and their CI/CD components), embedded at build time.

pub mod library;

use std::path::Path;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ci-templates",
    version,
    about = "Phase 14: the GitLab CI template library"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Write the embedded library into DIR (e.g. to review it or run it with gitlab-ci-local).
    Render {
        /// Target folder; `templates/` is created in it.
        dir: std::path::PathBuf,
    },
    /// List the embedded files.
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
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Render { dir } => {
            let n = render(&dir)?;
            println!(
                "wrote {n} files of gitlab-ci-templates v{} to {}",
                library::VERSION,
                dir.display()
            );
        }
        Command::List => {
            for file in library::FILES {
                println!("{}", file.path);
            }
        }
    }
    Ok(common::cli::EXIT_OK)
}
