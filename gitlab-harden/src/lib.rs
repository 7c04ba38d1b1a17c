//! Phase 12 `gitlab-harden`: GitLab as the gate to `main` (plan §2.6).
//!
//! - [`settings`]: the phase's settings and defaults.
//! - [`desired`]: what should be, as data (project settings, protection of `main` and of `v*`
//!   tags, approval rules, Keycloak → GitLab memberships, the Traefik SSH route, the registry Helm
//!   values).
//! - [`reconcile`]: observe (reads only), pure `diff`, execute the plan.
//! - [`wiki`]: phase 12b `sop-wiki` (its own binary), the engineering docs as a GitLab wiki.

pub mod desired;
pub mod reconcile;
pub mod settings;
pub mod wiki;

use clap::Parser;
use common::cli::{GlobalArgs, Mode, init};
use common::phase::run_phase;

#[derive(Parser)]
#[command(
    name = "gitlab-harden",
    version,
    about = "Phase 12: protected main and v* tags, MR approval gates, merge settings, registry off, SSH route, Keycloak groups → GitLab"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Also remove group access and lower roles that no mapped Keycloak group grants (never the
    /// token's own user, bots or service accounts). Without it the sync only adds and raises.
    #[arg(long, global = true)]
    pub prune: bool,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let phase = reconcile::GitLabHarden::connect(&cfg, cli.prune).await?;
    run_phase(&phase, cli.mode.unwrap_or(Mode::Plan), &cli.global).await
}
