//! Phase 18 `demo-apps`: the NetOps Arcade (plan "Phase 18").
//!
//! - [`projects`]: the content of the GitLab projects `packet-relay` and `netops-dashboard` (the
//!   workspace's `services/`, made standalone).
//! - [`settings`]: namespace, group, registry project, release tag, generator rate.
//! - [`desired`]: namespace, Argo CD Applications, traffic generator, Harbor project, scenarios.
//! - [`reconcile`]: observe GitLab, Harbor and the cluster; plan; execute.
//! - [`local`]: the arcade on localhost (`demo-apps local`): four routers, the generator and the
//!   dashboard, re-routed by editing routing-config.yaml as in the real demo.

pub mod desired;
#[cfg(test)]
mod diff_tests;
pub mod local;
pub mod projects;
pub mod reconcile;
pub mod settings;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use common::cli::{GlobalArgs, Mode, Output, init};
use common::phase::run_phase;

#[derive(Parser)]
#[command(
    name = "demo-apps",
    version,
    about = "Phase 18: NetOps Arcade — demo projects, namespace, Harbor project, Argo CD Applications, traffic generator, scenarios; `local` runs the arcade on this machine"
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
    Plan(PhaseArgs),
    /// Make the changes of the plan, in order, and nothing else.
    Apply(PhaseArgs),
    /// Exit 2 when anything would change; writes nothing.
    Check(PhaseArgs),
    /// Run the arcade on localhost: routers, traffic generator, dashboard.
    Local(local::LocalArgs),
    /// Write both projects' files as they would be pushed (with the example settings).
    Render {
        /// Directory to write `packet-relay/` and `netops-dashboard/` into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct PhaseArgs {
    /// Put files changed in GitLab back to the demo's version and remove scenario 3's files
    /// (a rerun without it never undoes a demo).
    #[arg(long)]
    pub reset: bool,
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let (mode, args) = match cli.command.unwrap_or(Command::Plan(PhaseArgs::default())) {
        Command::Plan(a) => (Mode::Plan, a),
        Command::Apply(a) => (Mode::Apply, a),
        Command::Check(a) => (Mode::Check, a),
        Command::Local(a) => {
            common::cli::install_crypto_provider();
            return local::run(a).await;
        }
        Command::Render { out } => {
            render(&out)?;
            return Ok(common::cli::EXIT_OK);
        }
    };
    let cfg = init(&cli.global)?;
    let phase = reconcile::DemoApps::connect(&cfg, args.reset).await?;
    let code = run_phase(&phase, mode, &cli.global).await?;
    if mode != Mode::Check && !cli.global.quiet {
        let s = phase.settings();
        match cli.global.output {
            Output::Text => print!("{}", desired::render_scenarios(s)),
            Output::Json => eprintln!(
                "{}",
                serde_json::json!({"scenarios": desired::scenarios(s)})
            ),
        }
    }
    Ok(code)
}

/// `demo-apps render`: both projects as pushed, for review and for refreshing their lock files.
pub fn render(out: &std::path::Path) -> anyhow::Result<()> {
    let s = settings::Settings::example();
    for project in &projects::PROJECTS {
        for (path, contents) in project.files(&s)? {
            let target = out.join(project.name).join(&path);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&target, contents)
                .with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}
