//! Phase 15 `argo-delivery`: progressive delivery with Argo CD and Argo Rollouts (plan §2).
//!
//! - [`settings`]: namespace, Prometheus, analysis thresholds.
//! - [`desired`]: `argocd-rbac-cm` (`rbac/policy.csv`), the `AppProjects`, the `ClusterAnalysisTemplates`
//!   and their gates (pass / fail / inconclusive), as data.
//! - [`reconcile`]: the phase: its objects planned by server-side dry run and applied by server-side
//!   apply, then CI's Argo CD token (a pure diff of what Vault and Argo CD hold).
//! - [`generator_token`]: the pull-request generator's `read_api` group access token.
//! - [`leftovers`]: what the platform's bash phase 15 left (old cleaner, `ApplicationSet`, literal
//!   token Secret, kubectl-applied `AppProjects`), recognised by exact identity and converged.

pub mod desired;
#[cfg(test)]
mod diff_tests;
pub mod generator_token;
#[cfg(test)]
mod leftover_tests;
pub mod leftovers;
pub mod reconcile;
pub mod settings;

use clap::Parser;
use common::cli::{GlobalArgs, Mode, init};
use common::phase::run_phase;

#[derive(Parser)]
#[command(
    name = "argo-delivery",
    version,
    about = "Phase 15: Argo CD RBAC, AppProjects and Argo Rollouts analysis templates"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Rotate the pull-request generator's GitLab token now: GitLab revokes the old one, Vault
    /// gets the new one (External Secrets refreshes the Secret within 5 minutes).
    #[arg(long, global = true)]
    pub rotate: bool,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let phase = reconcile::ArgoDelivery::connect(&cfg, cli.rotate).await?;
    run_phase(&phase, cli.mode.unwrap_or(Mode::Plan), &cli.global).await
}
