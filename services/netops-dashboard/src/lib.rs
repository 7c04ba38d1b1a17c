//! The NetOps Arcade dashboard (plan Phase 18): the router topology live in a browser — link
//! state green/red, packet rates and drops, the versions running, and this release's blue/green
//! colour — for a person reading a projector at a glance.
//!
//! - [`config`]: settings from flags and the [`env`] variables, validated up front.
//! - [`scrape`]: the Prometheus text format and the relay series of the contract.
//! - [`direct`]: direct mode (local arcade), every router's `/metrics` scraped.
//! - [`prom`]: Prometheus mode (cluster), rates queried from Prometheus.
//! - [`topology`]: pure rates, resets, windows and link/node states.
//! - [`server`]: the HTTP endpoints and the embedded page (`src/page/`).

pub mod config;
pub mod direct;
pub mod env;
pub mod prom;
pub mod scrape;
pub mod server;
pub mod topology;
pub mod upstream_http;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser as _;

use crate::config::{Args, Settings, Source};
use crate::topology::{LinkState, Tracker};

/// The binary: parse, validate, serve. A bad setting is one line on stderr and exit 1.
pub fn cli_main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("error: {}", line.trim_start_matches("error: "));
            return ExitCode::FAILURE;
        }
    };
    let settings = match Settings::from_args(args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The dashboard's server limits, for its 64 Mi memory limit: browsers' heads fit 16 KiB, and 512
/// connections stalled inside one hold about 10 MiB (1,000 heads at 64 KiB measured 88 MiB).
pub const HTTP_LIMITS: common::serve::ServerLimits = common::serve::ServerLimits {
    max_connections: 512,
    max_head: 16 * 1024,
    ..common::serve::ServerLimits::DEFAULT
};

/// Binds the listener, starts polling and serves until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} ({})",
                settings.listen,
                env::DASHBOARD_LISTEN_ADDR
            )
        })?;
    serve(settings, listener).await
}

/// Serves on a bound listener.
pub async fn serve(settings: Settings, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let poll_ms = u64::try_from(settings.poll.as_millis()).unwrap_or(u64::MAX);
    let app = Arc::new(server::App::new(server::Meta {
        version: settings.version.clone(),
        color: settings.color,
        mode: settings.source.mode(),
        poll_ms,
    }));
    let poller = tokio::spawn(poll_loop(settings.clone(), app.clone()));
    tracing::info!(
        addr = %listener.local_addr()?,
        mode = settings.source.mode(),
        version = %settings.version,
        color = settings.color.as_str(),
        "netops-dashboard listening"
    );
    // Deadlines, a connection cap and a request concurrency limit (axum::serve sets none).
    common::serve::serve(listener, server::router(app), HTTP_LIMITS, shutdown()).await;
    poller.abort();
    Ok(())
}

/// Each answer is awaited at most this long: one poll interval, within [0.5 s, 5 s].
fn scrape_timeout(poll: Duration) -> Duration {
    poll.clamp(Duration::from_millis(500), Duration::from_secs(5))
}

enum Poller {
    Direct(direct::Direct),
    Prometheus(prom::Prometheus),
}

async fn poll_loop(settings: Settings, app: Arc<server::App>) {
    let http = match reqwest::Client::builder()
        .connect_timeout(scrape_timeout(settings.poll))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("building the HTTP client: {e}");
            return;
        }
    };
    let timeout = scrape_timeout(settings.poll);
    let mut poller = match settings.source {
        Source::Direct(targets) => Poller::Direct(direct::Direct::new(targets, http, timeout)),
        Source::Prometheus(url) => {
            Poller::Prometheus(prom::Prometheus::new(url, http, timeout, settings.poll))
        }
    };
    let mut tracker = Tracker::default();
    let mut states: BTreeMap<(String, String), LinkState> = BTreeMap::new();
    let mut ups: BTreeMap<String, bool> = BTreeMap::new();
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(settings.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let at = now();
        let poll = match &mut poller {
            Poller::Direct(d) => Ok(d.poll(at).await),
            // The log gets the whole chain (URLs without user info); the public topology only
            // the kind of failure.
            Poller::Prometheus(p) => p.poll(at).await.map_err(|e| {
                (
                    format!("{e:#}"),
                    format!("Prometheus: {}", upstream_http::public_reason(&e)),
                )
            }),
        };
        match poll {
            Ok(poll) => {
                if last_error.take().is_some() {
                    tracing::info!("Prometheus answers again");
                }
                tracker.push(poll);
                let computed = tracker.compute();
                log_changes(&computed, &mut states, &mut ups);
                app.update(Ok(computed));
            }
            Err((logged, public)) => {
                if last_error.as_deref() != Some(logged.as_str()) {
                    tracing::warn!("poll failed: {logged}");
                }
                last_error = Some(logged);
                app.update(Err(public));
            }
        }
    }
}

/// Logs each link state change and each router going down or up (the demo's story in the logs).
fn log_changes(
    computed: &topology::Computed,
    states: &mut BTreeMap<(String, String), LinkState>,
    ups: &mut BTreeMap<String, bool>,
) {
    let mut now_states = BTreeMap::new();
    for l in &computed.links {
        let key = (l.from.clone(), l.to.clone());
        if states.get(&key) != Some(&l.state) {
            tracing::info!(
                link = %format!("{}->{}", l.from, l.to),
                state = ?l.state,
                packets_per_sec = l.packets_per_sec,
                drops_per_sec = l.drops_per_sec,
                "link state"
            );
        }
        now_states.insert(key, l.state);
    }
    *states = now_states;
    for r in &computed.routers {
        if ups.insert(r.name.clone(), r.up) != Some(r.up) {
            tracing::info!(router = %r.name, up = r.up, error = r.error.as_deref().unwrap_or(""), "router");
        }
    }
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Unix time now, in seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix seconds → `2024-01-31T12:34:56.789Z`.
pub fn rfc3339(unix: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let millis = (unix * 1000.0).round() as i64;
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(rfc3339(1_700_000_000.123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn scrape_timeout_is_bounded() {
        assert_eq!(
            scrape_timeout(Duration::from_millis(100)),
            Duration::from_millis(500)
        );
        assert_eq!(
            scrape_timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            scrape_timeout(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
    }
}
