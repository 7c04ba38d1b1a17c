//! Phase 17 `obs-setup`: observability of the CI/CD platform (plan §4).
//!
//! - [`settings`]: namespace, webhook group and URL, store, labels, probe URLs, release tag.
//! - [`desired`]: the DORA dashboard (§4.2), the alert rules (§4.4 + the collector's health), the
//!   collector's workload (§4.1), the runner-log Alloy config (§4.3), the hook, as data.
//! - [`project`]: the collector's GitLab project as pushed (its sources made standalone, and the
//!   `deploy/` tree Argo CD deploys).
//! - [`reconcile`]: observe Vault, GitLab and the cluster; plan; execute.
//! - [`summary`]: every endpoint probed live after `plan` and `apply` (stderr).

pub mod cnpg;
pub mod desired;
#[cfg(test)]
mod diff_tests;
pub mod flags;
pub mod project;
pub mod readiness;
pub mod readiness_access;
pub mod reconcile;
pub mod rollouts_notifications;
pub mod settings;
pub mod summary;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use common::cli::{GlobalArgs, Mode, Output, init};
use common::phase::run_phase;

/// The DORA dashboard JSON (`dashboards/dora.json`).
pub fn dashboard() -> serde_json::Value {
    desired::dashboard()
}

/// The `PrometheusRule`'s `.spec` (rule groups) with the default settings.
pub fn alert_rule_groups() -> serde_json::Value {
    desired::rule_groups(&settings::Settings::example())
}

#[derive(Parser)]
#[command(
    name = "obs-setup",
    version,
    about = "Phase 17: DORA dashboard, CI/CD alerts, the DORA collector's GitLab project, its webhook and a live summary"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Show what would change; writes nothing (the default).
    Plan,
    /// Make the changes of the plan, in order, and nothing else.
    Apply,
    /// Exit 2 when anything would change (drift detection for CI or cron); writes nothing.
    Check,
    /// Write the collector's project as phase 17 pushes it with these settings (contacts nothing).
    Render {
        /// Directory to write `dora-collector/` and `feature-flags/` into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs the CLI; returns the exit code. After `plan` and `apply` the live summary goes to stderr.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let mode = match cli.command.unwrap_or(Command::Plan) {
        Command::Plan => Mode::Plan,
        Command::Apply => Mode::Apply,
        Command::Check => Mode::Check,
        Command::Render { out } => {
            let cfg = init(&cli.global)?;
            render(&settings::Settings::load(&cfg)?, &out)?;
            return Ok(common::cli::EXIT_OK);
        }
    };
    let cfg = init(&cli.global)?;
    let phase = reconcile::ObsSetup::connect(&cfg).await?;
    let code = run_phase(&phase, mode, &cli.global).await?;
    if mode != Mode::Check && !cli.global.quiet {
        let probes = summary::probe(&phase).await;
        match cli.global.output {
            Output::Text => eprint!("{}", common::redact::redact(&summary::render(&probes))),
            Output::Json => eprintln!(
                "{}",
                common::redact::redact(&serde_json::json!({"summary": probes}).to_string())
            ),
        }
    }
    Ok(code)
}

/// `obs-setup render`: the collector's project as pushed, into `<out>/dora-collector/` (for review
/// and for refreshing its lock file: scripts/demo-lockfiles.sh).
pub fn render(s: &settings::Settings, out: &Path) -> anyhow::Result<()> {
    let projects = [
        (desired::COLLECTOR, project::files(s)?),
        (flags::SOURCE.name, flags::files(s)?),
    ];
    for (name, files) in projects {
        write_tree(&out.join(name), files)?;
    }
    Ok(())
}

fn write_tree(
    root: &Path,
    files: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (path, contents) in files {
        let target = root.join(&path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "creating {}: check --out and its permissions",
                    dir.display()
                )
            })?;
        }
        std::fs::write(&target, contents).with_context(|| {
            format!(
                "writing {}: check --out and its permissions",
                target.display()
            )
        })?;
    }
    Ok(())
}
