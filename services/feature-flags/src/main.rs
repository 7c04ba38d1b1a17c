//! `feature-flags serve --service NAME` (the sidecar) and `feature-flags audit` (the `CronJob`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use feature_flags::serve::{App, Snapshot, refresh, refresh_loop, router};
use feature_flags::vault::{FlagStore, TokenSource};
use feature_flags::{audit, valid_segment};

#[derive(Parser)]
#[command(
    name = "feature-flags",
    version,
    about = "Feature flags on Vault KV: the read API sidecar and the stale-flag auditor"
)]
struct Cli {
    /// Vault's address.
    #[arg(
        long,
        env = "VAULT_ADDR",
        global = true,
        default_value = "http://127.0.0.1:8200"
    )]
    vault_addr: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one service's flags: GET /v1/flags, /v1/flags/<name>, /metrics, /healthz, /readyz.
    Serve {
        /// The service whose flags (kv/feature-flags/<service>/) this sidecar serves.
        #[arg(long, env = "FLAGS_SERVICE")]
        service: String,
        /// Address to listen on (the pod's loopback: only the service's own containers ask).
        #[arg(long, env = "FLAGS_LISTEN", default_value = "127.0.0.1:8081")]
        listen: String,
        /// Seconds between two reads from Vault.
        #[arg(long, env = "FLAGS_REFRESH_SECONDS", default_value_t = 15)]
        refresh: u64,
    },
    /// List every flag older than the limit (and post them to `MATTERMOST_WEBHOOK` when set).
    Audit {
        /// The age past which a flag is stale.
        #[arg(long, env = "MAX_FLAG_AGE_DAYS", default_value_t = 90)]
        max_age_days: i64,
        /// Today as YYYY-MM-DD (the clock, injected in tests); default: the system clock.
        #[arg(long)]
        now: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn today(now: Option<&str>) -> anyhow::Result<i64> {
    match now {
        Some(text) => common::dates::parse(text)
            .with_context(|| format!("--now {text}: not a YYYY-MM-DD date")),
        None => Ok(common::dates::today()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let source = TokenSource::from_env(|name| std::env::var(name).ok())?;
    let store = FlagStore::new(&cli.vault_addr, source)?;
    match cli.command {
        Command::Serve {
            service,
            listen,
            refresh: every,
        } => {
            anyhow::ensure!(
                valid_segment(&service),
                "--service {service:?}: a service name is lowercase letters, digits, '-' and '_'"
            );
            let app = App {
                service,
                snapshot: Arc::new(RwLock::new(Snapshot::default())),
                today: Arc::new(common::dates::today),
            };
            refresh(&store, &app).await;
            tokio::spawn(refresh_loop(
                store,
                app.clone(),
                Duration::from_secs(every.max(1)),
            ));
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, service = %app.service, "feature-flags listening");
            common::serve::serve(
                listener,
                router(app),
                common::serve::ServerLimits::DEFAULT,
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
            )
            .await;
            Ok(())
        }
        Command::Audit {
            max_age_days,
            now,
            json,
        } => {
            let report = audit::run(&store, today(now.as_deref())?, max_age_days).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            if let Some(webhook) = std::env::var("MATTERMOST_WEBHOOK")
                .ok()
                .filter(|w| !w.trim().is_empty())
            {
                audit::notify(webhook.trim(), &report).await?;
            }
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
