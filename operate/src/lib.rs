//! Operating the CI/CD layer (issue 21):
//! - [`preflight`]: `cicd-preflight`, every prerequisite of the phases about to run, checked
//!   before the driver starts the first of them (`scripts/deploy-cluster.sh`);
//! - `cicd-readiness` (next): the plan's success criteria (MinimumCD checklist, DORA
//!   targets, operational readiness) evaluated live against the platform.

pub mod preflight;

use clap::Parser;
use common::cli::{EXIT_ERROR, EXIT_OK, GlobalArgs, Output, init};

#[derive(Parser)]
#[command(
    name = "cicd-preflight",
    version,
    about = "Checks every prerequisite of phases 12–18 (GitLab, Vault, Harbor, Keycloak, CRDs, monitoring) and prints one table; writes nothing, exit 1 when one is missing"
)]
pub struct PreflightCli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Check what phases N…18 need (the driver's --from).
    #[arg(long, value_name = "N", conflicts_with = "only")]
    pub from: Option<String>,
    /// Check what phase N alone needs (the driver's --only).
    #[arg(long, value_name = "N", conflicts_with = "phases")]
    pub only: Option<String>,
    /// Check what exactly these phases need (comma-separated; the driver passes the phases it
    /// is about to run, without those its switches skip).
    #[arg(
        long,
        value_name = "N,…",
        value_delimiter = ',',
        conflicts_with = "from"
    )]
    pub phases: Vec<String>,
}

/// Runs the preflight; exit 0 when nothing is missing, 1 otherwise.
pub async fn run_preflight(cli: PreflightCli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let selected = if cli.phases.is_empty() {
        preflight::select(cli.from.as_deref(), cli.only.as_deref())?
    } else {
        preflight::listed(&cli.phases)?
    };
    let sandbox = cfg.environment().get(common::env::CICD_SANDBOX) == Some("true");
    let rows = preflight::probe_all(&cfg, &selected, sandbox).await;
    let failed = preflight::failed(&rows);
    match cli.global.output {
        Output::Json => println!(
            "{}",
            common::redact::redact(&serde_json::to_string_pretty(&serde_json::json!({
                "phases": selected,
                "ok": !failed,
                "rows": rows,
            }))?)
        ),
        Output::Text => print!(
            "{}",
            common::redact::redact(&preflight::render_text(&rows, &selected))
        ),
    }
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
}
