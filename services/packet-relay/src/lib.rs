//! packet-relay: the router of the `NetOps` Arcade demo (plan Phase 18).
//!
//! One binary, role from the environment: a router relays JSON packets to its next hops
//! ([`server`]), or the traffic generator sends them ([`generator`]). Both expose Prometheus
//! metrics ([`metrics`]) that the canary analysis and the `NetOps` dashboard read.

pub mod cli;
pub mod generator;
pub mod hops;
pub mod metrics;
pub mod packet;
pub mod server;

use std::process::ExitCode;

use clap::Parser as _;

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: Kubernetes stops the pod (drain first).
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() -> Signal {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        () = term => Signal::Terminate,
    }
}

/// Logs to stderr, level from `RUST_LOG` (default info).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line and runs the chosen mode.
pub async fn main() -> ExitCode {
    common::cli::install_crypto_provider();
    init_logging();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        None => run_serve(&cli.serve).await,
        Some(cli::Command::Serve(args)) => run_serve(&args).await,
        Some(cli::Command::Generate(args)) => run_generate(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_serve(args: &cli::ServeArgs) -> anyhow::Result<()> {
    server::run(args.settings()?).await
}

async fn run_generate(args: &cli::GenerateArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let counted = settings.count.is_some();
    let summary = generator::run(settings).await?;
    if counted {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}
