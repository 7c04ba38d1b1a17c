//! What every phase binary shares: arguments, tracing to stderr (redacted), the TLS crypto
//! provider, exit codes and the plan → apply → check runner.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::config::{Environment, PlatformConfig};
use crate::plan::Plan;
use crate::redact::{self, RedactingWriter};

/// Exit codes shared by every binary.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
/// `check` found changes pending (drift).
pub const EXIT_DRIFT: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
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

/// Where a change runs during `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Before everything else, one at a time in plan order (things others depend on).
    Serial,
    /// After the serial changes; changes of one lane run in plan order, lanes run side by side
    /// (up to [`Phase::concurrency`]).
    Parallel(String),
}

/// One phase of the reconcile model. `plan` only reads; `execute` performs one planned change.
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait Phase {
    type Op;
    /// e.g. `13 vault-cicd`.
    fn name(&self) -> &str;
    async fn plan(&self) -> anyhow::Result<Plan<Self::Op>>;
    /// Performs one change. `Ok(Some(warning))` when the server refused something we can only
    /// report (the change is then counted as skipped, not applied).
    async fn execute(&self, op: &Self::Op) -> anyhow::Result<Option<String>>;
    /// The lane of a change; everything is serial unless a phase says otherwise.
    fn lane(&self, _op: &Self::Op) -> Lane {
        Lane::Serial
    }
    /// How many parallel lanes run at once.
    fn concurrency(&self) -> usize {
        1
    }
}

/// What `apply` did.
#[derive(Default)]
struct Applied {
    count: usize,
    skipped: Vec<String>,
    /// The first failure (index in the plan, error).
    failure: Option<(usize, anyhow::Error)>,
}

/// Executes the plan's changes: serial ones first, then the parallel lanes. After a failure no
/// new change starts; the ones already running finish.
async fn apply_changes<P: Phase>(phase: &P, plan: &Plan<P::Op>) -> Applied {
    use futures::StreamExt as _;
    let total = plan.changes.len();
    let mut serial = Vec::new();
    let mut lanes: Vec<(String, Vec<usize>)> = Vec::new();
    let mut lane_index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, change) in plan.changes.iter().enumerate() {
        match phase.lane(&change.op) {
            Lane::Serial => serial.push(index),
            Lane::Parallel(key) => {
                let slot = *lane_index.entry(key.clone()).or_insert_with(|| {
                    lanes.push((key, Vec::new()));
                    lanes.len() - 1
                });
                lanes[slot].1.push(index);
            }
        }
    }
    let state = std::sync::Mutex::new(Applied::default());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let run_one = |index: usize| {
        let state = &state;
        let failed = &failed;
        async move {
            if failed.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            let change = &plan.changes[index];
            tracing::info!(
                "applying {}/{total}: {} {}",
                index + 1,
                change.action_word(),
                change.title()
            );
            let outcome = phase.execute(&change.op).await;
            let mut s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match outcome {
                Ok(None) => s.count += 1,
                Ok(Some(warning)) => s.skipped.push(format!("{}: {warning}", change.title())),
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    if s.failure.as_ref().is_none_or(|(i, _)| index < *i) {
                        s.failure = Some((index, e));
                    }
                    return false;
                }
            }
            true
        }
    };
    for index in serial {
        if !run_one(index).await {
            break;
        }
    }
    if !failed.load(std::sync::atomic::Ordering::SeqCst) {
        futures::stream::iter(lanes)
            .map(|(_, indices)| async move {
                for index in indices {
                    if !run_one(index).await {
                        break;
                    }
                }
            })
            .buffer_unordered(phase.concurrency().max(1))
            .collect::<Vec<()>>()
            .await;
    }
    state
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `plan`, `apply` or `check` and prints the result; returns the exit code.
pub async fn run_phase<P: Phase>(phase: &P, mode: Mode, output: Output) -> anyhow::Result<u8> {
    let mut plan = phase.plan().await?;
    let mut applied = 0usize;
    let mut skipped: Vec<String> = Vec::new();
    if mode == Mode::Apply {
        if output == Output::Text {
            print!("{plan}");
        }
        let total = plan.changes.len();
        let done = apply_changes(phase, &plan).await;
        applied = done.count;
        skipped = done.skipped;
        if let Some((index, e)) = done.failure {
            let change = &plan.changes[index];
            return Err(e.context(format!(
                "applying change {}/{total} ({} {}) after {applied} applied; fix the cause and rerun apply to finish",
                index + 1,
                change.action_word(),
                change.title()
            )));
        }
        plan.warnings.extend(skipped.iter().cloned());
    }
    match output {
        Output::Json => {
            let mut doc = plan.to_json();
            doc["mode"] = json!(match mode {
                Mode::Plan => "plan",
                Mode::Apply => "apply",
                Mode::Check => "check",
            });
            if mode == Mode::Apply {
                doc["applied"] = json!(applied);
                doc["skipped"] = json!(skipped.len());
            }
            println!("{}", redact::redact(&serde_json::to_string_pretty(&doc)?));
        }
        Output::Text => match mode {
            Mode::Apply => {
                for warning in &skipped {
                    println!("  ! not applied: {warning}");
                }
                println!(
                    "{}: applied {applied} change(s), {} not applied",
                    plan.phase,
                    skipped.len()
                );
            }
            Mode::Plan | Mode::Check => print!("{plan}"),
        },
    }
    Ok(if mode == Mode::Check && !plan.is_empty() {
        EXIT_DRIFT
    } else {
        EXIT_OK
    })
}

impl<A> crate::plan::Change<A> {
    fn action_word(&self) -> &'static str {
        match self.action {
            crate::plan::Action::Create => "create",
            crate::plan::Action::Update => "update",
            crate::plan::Action::Delete => "delete",
        }
    }
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
