//! Phase 16 `security-setup`: the four runner pools of plan §3.1 (shared, build, security, test;
//! one GitLab group runner each with its token in Vault, deployed by Argo CD), the runner egress
//! policy (§3.5), Harbor scanning, severity gate, CVE allowlist and Mattermost alerts (§3.3), and
//! the image-signing public key with the verify-images policy (§5.2).
//!
//! - [`settings`]: names in `common::env`, the plan's defaults.
//! - [`desired`]: the pools ([`desired::POOLS`], [`desired::pool_serving`]: which pool takes a job
//!   with given tags), their values (`runners/`), Harbor bodies and the Kubernetes objects
//!   (`policies/verify-images.yaml`), as data.
//! - [`reconcile`]: observe, diff, execute.
//! - [`helm_leftover`]: the bash phase's Helm release `gitlab-runner-security`, removed as
//!   `helm uninstall` would (without helm).

pub mod desired;
#[cfg(test)]
mod diff_tests;
pub mod helm_leftover;
#[cfg(test)]
mod helm_leftover_tests;
pub mod reconcile;
pub mod runner_leftovers;
pub mod settings;

use clap::Parser;
use common::cli::{GlobalArgs, Mode, init};
use common::phase::run_phase;

#[derive(Parser)]
#[command(
    name = "security-setup",
    version,
    about = "Phase 16: security runners, Harbor scanning and alerts, image-signing key and policy"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let phase = reconcile::SecuritySetup::connect(&cfg).await?;
    run_phase(&phase, cli.mode.unwrap_or(Mode::Plan), &cli.global).await
}
