//! What every phase binary shares: arguments, tracing to stderr (redacted), the TLS crypto
//! provider and exit codes. The reconcile runner is [`crate::phase`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Environment, PlatformConfig};
use crate::redact::{self, RedactingWriter};

/// Exit codes shared by every binary.
pub const EXIT_OK: u8 = 0;
/// A failed run: the cause and its fix went to stderr as one line (see [`exit_with`]).
pub const EXIT_ERROR: u8 = 1;
/// `check` found changes pending (drift).
pub const EXIT_DRIFT: u8 = 2;

/// What a binary prints on stdout (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The plan as text for people (the default).
    Text,
    /// One JSON document: the plan (`Plan::to_json`) with `mode`, plus `applied` and `skipped`
    /// after `apply`.
    Json,
}

/// Arguments every phase binary accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// How to print the plan and the result on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// More logs on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The platform's settings file (default scripts/.env; also `CICD_ENV_FILE`).
    #[arg(long, global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// List only the leftovers of the platform's bash phases that `apply` would remove or adopt
    /// (text, or JSON with `--output json`); writes nothing.
    #[arg(long, global = true)]
    pub adopt_report: bool,
}

/// The reconcile verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Mode {
    /// Show what would change; writes nothing (the default).
    Plan,
    /// Make the changes of the plan, in order, and nothing else.
    Apply,
    /// Exit 2 when anything would change (drift detection for CI or cron); writes nothing.
    Check,
}

/// Installs the one TLS crypto provider of the workspace (ring) before any client is built:
/// kube and reqwest must not each pick their own (see docs/adr).
pub fn install_crypto_provider() {
    crate::install_crypto_provider();
}

/// Crypto provider, tracing to stderr through the redactor, and the settings.
pub fn init(args: &GlobalArgs) -> anyhow::Result<PlatformConfig> {
    install_crypto_provider();
    redact::install_panic_hook();
    let default = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CICD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{default},hyper=warn,rustls=warn,kube=warn,reqwest=warn,rustify=off,vaultrs=off"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .try_init();
    let env = Environment::load(args.env_file.as_deref())?;
    if let Some(file) = env.env_file() {
        tracing::debug!("settings from {} and the environment", file.display());
    }
    Ok(PlatformConfig::from_env(&env)?)
}

/// Turns a binary's result into its exit code, printing errors as one redacted line on stderr.
pub fn exit_with(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let line = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {}", redact::redact(&line));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
