//! Phase 13 `vault-cicd`: Vault/OpenBao for GitLab CI and External Secrets (plan §3.2, §5.2–5.3).
//!
//! - [`desired`]: what should exist, as data (policies are the `.hcl` files in `policies/`).
//! - [`reconcile`]: observe (reads only), pure `diff`, execute the plan.
//! - [`service_paths`]: each project's `services/<project id>` (seeded, migrated from the old
//!   `services/<name>`), and the identity groups that give Keycloak groups their policies.
//! - [`doctor`]: can ESO really log in and read its paths?

pub mod desired;
pub mod doctor;
pub mod reconcile;
pub mod service_paths;
pub mod settings;

use clap::{Parser, Subcommand};
use common::cli::{EXIT_ERROR, EXIT_OK, GlobalArgs, Mode, Output, init};
use common::phase::run_phase;

#[derive(Parser)]
#[command(
    name = "vault-cicd",
    version,
    about = "Phase 13: Vault for GitLab CI (JWT auth, policies, KV v2, Kubernetes auth for ESO, signing key, ClusterSecretStore)"
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
    /// Check that External Secrets can log in to Vault and read its paths (exit 1 on a failure).
    Doctor,
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let phase = reconcile::VaultCicd::connect(&cfg).await?;
    match cli.command.unwrap_or(Command::Reconcile(Mode::Plan)) {
        Command::Reconcile(mode) => run_phase(&phase, mode, &cli.global).await,
        Command::Doctor => {
            let checks = doctor::doctor(&phase).await?;
            let ok = checks.iter().all(|c| c.ok);
            match cli.global.output {
                Output::Json => println!(
                    "{}",
                    common::redact::redact(&serde_json::to_string_pretty(
                        &serde_json::json!({"ok": ok, "checks": checks})
                    )?)
                ),
                Output::Text => {
                    for c in &checks {
                        println!(
                            "{} {}: {}",
                            if c.ok { "ok  " } else { "FAIL" },
                            c.name,
                            common::redact::redact(&c.detail)
                        );
                    }
                }
            }
            Ok(if ok { EXIT_OK } else { EXIT_ERROR })
        }
    }
}
