//! The DORA metrics collector (plan §4.1): GitLab webhooks (pipeline, deployment, push) and Argo
//! Rollouts notifications in; the §4.1 metrics out on `/metrics`.
//!
//! - [`facts`]: what is kept of a webhook, and the de-duplication key of each fact.
//! - [`store`]: `SQLite` (embedded default) or `PostgreSQL` (replicas > 1), append-only.
//! - [`pipeline`]: group commit before the acknowledgement; the tailer that feeds the metrics.
//! - [`metrics`]: the aggregates and the Prometheus text format.
//! - [`server`]: the HTTP endpoints. [`heal`]: fills missed webhooks from GitLab's API.

pub mod facts;
pub mod harbor;
pub mod heal;
pub mod labels;
pub mod metrics;
pub mod payloads;
pub mod pipeline;
pub mod server;
pub mod store;
pub mod timefmt;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use common::env;
use secrecy::{ExposeSecret, SecretString};

/// Unix time now, in seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The largest `DORA_MAX_BODY_BYTES`: with the 16 requests `common::serve` lets run at once,
/// bodies in flight stay at 128 MiB at most, inside the collector's 256 Mi memory limit.
pub const MAX_BODY_LIMIT: u64 = 8 * 1024 * 1024;

/// The collector's settings (names and defaults in `common::env` and docs/configuration.md).
pub struct Settings {
    pub secret: SecretString,
    /// Argo Rollouts' bearer token (unset: Rollouts notifications are refused).
    pub rollouts_secret: Option<SecretString>,
    /// Harbor's bearer token (unset: Harbor webhooks are refused).
    pub harbor_secret: Option<SecretString>,
    pub caps: metrics::Caps,
    /// Time between checkpoints of the aggregates when facts arrive slowly.
    pub checkpoint_interval: Duration,
    pub store_url: SecretString,
    pub listen: SocketAddr,
    pub max_body: usize,
    pub queue: usize,
    pub change_failure_window: f64,
    pub success_rate_window: f64,
    pub heal: Option<heal::HealSettings>,
}

impl Settings {
    /// Reads the settings through `get` (the process environment in production).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            get(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a whole number"))
            })
        };
        let Some(secret) = get(env::GITLAB_WEBHOOK_SECRET).filter(|s| !s.is_empty()) else {
            bail!(
                "{} is not set: the collector refuses to accept unauthenticated webhooks (set it to the GitLab hook's secret token, Secret dora-collector-secrets key webhook-secret)",
                env::GITLAB_WEBHOOK_SECRET
            );
        };
        let listen = get(env::DORA_LISTEN_ADDR).unwrap_or_else(|| "0.0.0.0:8080".into());
        #[allow(clippy::cast_precision_loss)]
        let optional = |name: &str| get(name).filter(|s| !s.is_empty()).map(SecretString::from);
        let rollouts_secret = optional(env::DORA_ROLLOUTS_WEBHOOK_SECRET);
        let harbor_secret = optional(env::DORA_HARBOR_WEBHOOK_SECRET);
        for (name, other) in [
            (env::DORA_ROLLOUTS_WEBHOOK_SECRET, &rollouts_secret),
            (env::DORA_HARBOR_WEBHOOK_SECRET, &harbor_secret),
        ] {
            if other
                .as_ref()
                .is_some_and(|o| o.expose_secret() == secret.as_str())
            {
                bail!(
                    "{name} equals {}: each source needs its own secret, or whoever reads one can forge the other's events (phase 17 generates one per source)",
                    env::GITLAB_WEBHOOK_SECRET
                );
            }
        }
        let cap = |name: &str, default: u64| -> anyhow::Result<usize> {
            Ok(usize::try_from(number(name, default)?)?.max(1))
        };
        Ok(Self {
            rollouts_secret,
            harbor_secret,
            checkpoint_interval: Duration::from_secs(
                number(env::DORA_CHECKPOINT_INTERVAL_SECS, 60)?.max(1),
            ),
            caps: metrics::Caps {
                services: cap(env::DORA_MAX_SERVICES, 500)?,
                stages: cap(env::DORA_MAX_STAGES, 30)?,
            },
            secret: secret.into(),
            store_url: get(env::DORA_STORE_URL)
                .unwrap_or_else(|| "sqlite:///var/lib/dora-collector/dora.db".into())
                .into(),
            listen: listen.parse().with_context(|| {
                format!(
                    "{}={listen:?} is not an address like 0.0.0.0:8080",
                    env::DORA_LISTEN_ADDR
                )
            })?,
            max_body: match number(env::DORA_MAX_BODY_BYTES, 4 * 1024 * 1024)? {
                n @ 1..=MAX_BODY_LIMIT => usize::try_from(n)?,
                n => anyhow::bail!(
                    "{}={n} is out of range: 1 to {MAX_BODY_LIMIT} bytes (a GitLab pipeline event is well under 1 MiB)",
                    env::DORA_MAX_BODY_BYTES
                ),
            },
            queue: usize::try_from(number(env::DORA_QUEUE_CAPACITY, 8192)?.max(1))?,
            change_failure_window: number(env::DORA_CHANGE_FAILURE_WINDOW_SECS, 30 * 86_400)?
                as f64,
            success_rate_window: number(env::DORA_SUCCESS_RATE_WINDOW_SECS, 7 * 86_400)? as f64,
            heal: heal::HealSettings::load(&get, &number)?,
        })
    }
}

/// Starts the store threads and serves until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    serve(settings, listener).await
}

/// Serves on an already bound listener.
pub async fn serve(settings: Settings, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let aggregator = Arc::new(Mutex::new(metrics::Aggregator::with_caps(
        settings.change_failure_window,
        settings.success_rate_window,
        settings.caps,
    )));
    let health = Arc::new(pipeline::Health::default());
    let ingest = {
        let (url, queue, checkpoint_interval) = (
            settings.store_url.clone(),
            settings.queue,
            settings.checkpoint_interval,
        );
        let (aggregator, health) = (aggregator.clone(), health.clone());
        tokio::task::spawn_blocking(move || {
            pipeline::start(
                url.expose_secret(),
                queue,
                Duration::from_secs(1),
                checkpoint_interval,
                aggregator,
                health,
            )
        })
        .await?
        .context("opening the DORA store (DORA_STORE_URL)")?
    };
    let app = Arc::new(server::App::new(
        &server::SourceSecrets {
            gitlab: settings.secret.expose_secret(),
            rollouts: settings
                .rollouts_secret
                .as_ref()
                .map(ExposeSecret::expose_secret),
            harbor: settings
                .harbor_secret
                .as_ref()
                .map(ExposeSecret::expose_secret),
        },
        settings.max_body,
        ingest,
        aggregator,
        health,
    ));
    if let Some(heal) = settings.heal {
        tokio::spawn(heal::run(heal, app.clone()));
    }
    tracing::info!(addr = %listener.local_addr()?, "dora-collector listening");
    // Deadlines, a connection cap and a request concurrency limit (axum::serve sets none).
    common::serve::serve(
        listener,
        server::router(app),
        common::serve::ServerLimits::DEFAULT,
        shutdown(),
    )
    .await;
    Ok(())
}

async fn shutdown() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

/// Logs to stderr, level from `RUST_LOG` (default info).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
