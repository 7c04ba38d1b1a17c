//! Phase 17 `obs-setup`: observability of the CI/CD platform (plan §4).
//!
//! - [`settings`]: namespace, webhook group and URL, store, labels, probe URLs.
//! - [`desired`]: the DORA dashboard (§4.2), the alert rules (§4.4 + the collector's health), the
//!   collector's Kubernetes objects (§4.1), the runner-log Alloy config (§4.3), the hook, as data.
//! - [`reconcile`]: observe Vault, GitLab and the cluster; plan; execute.
//! - [`summary`]: every endpoint probed live after `plan` and `apply` (stderr).

pub mod desired;
pub mod reconcile;
pub mod settings;
pub mod summary;

use clap::Parser;
use common::cli::{GlobalArgs, Mode, Output, init, run_phase};

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
    about = "Phase 17: DORA dashboard, CI/CD alerts, the DORA collector, its GitLab webhook and a live summary"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// Runs the CLI; returns the exit code. After `plan` and `apply` the live summary goes to stderr.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let phase = reconcile::ObsSetup::connect(&cfg).await?;
    let mode = cli.mode.unwrap_or(Mode::Plan);
    let code = run_phase(&phase, mode, cli.global.output).await?;
    if mode != Mode::Check && !cli.global.quiet {
        let probes = summary::probe(&phase).await;
        match cli.global.output {
            Output::Text => eprint!("{}", summary::render(&probes)),
            Output::Json => eprintln!(
                "{}",
                common::redact::redact(&serde_json::json!({"summary": probes}).to_string())
            ),
        }
    }
    Ok(code)
}
