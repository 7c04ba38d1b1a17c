//! packet-relay: the router of the `NetOps` Arcade demo (plan Phase 18).
//!
//! One binary, role from the environment: a router relays JSON packets to its next hops
//! ([`server`]), or the traffic generator sends them ([`generator`]). Both expose Prometheus
//! metrics ([`metrics`]) that the canary analysis and the `NetOps` dashboard read.

pub mod cli;
pub mod env;
pub mod generator;
pub mod h1;
pub mod hops;
pub mod http;
pub mod metrics;
pub mod packet;
#[cfg(test)]
mod proptests;
pub mod server;
pub mod upstream;

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

/// The tokio runtime: one worker (`TOKIO_WORKER_THREADS=1`, or one CPU available) runs on the
/// current-thread scheduler, which spends less per packet than a one-worker multi-thread
/// scheduler; more workers get the multi-thread scheduler.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build()
}

/// Parses the command line and runs the chosen mode.
pub async fn main() -> ExitCode {
    // One TLS provider (ring) for the generator's reqwest, built without one (as in the workspace).
    let _ = rustls::crypto::ring::default_provider().install_default();
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
