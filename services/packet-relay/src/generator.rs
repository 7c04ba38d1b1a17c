//! Traffic generator mode: packets at a steady rate to one target (router-west), with the same
//! link metrics as a router plus `relay_generator_packets_total{outcome}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::header;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::hops::Hop;
use crate::http::{self, Method, Path, Request, Response};
use crate::metrics::{DropReason, Metrics, Role};
use crate::packet::write_json_str;
use crate::server::{BUDGET_HEADER, error_chain};

#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub target: Hop,
    /// Packets per second.
    pub rate: f64,
    pub ttl: u64,
    pub concurrency: usize,
    pub listen: SocketAddr,
    /// How long to wait for the target's answer.
    pub timeout: Duration,
    pub shutdown_grace: Duration,
    pub version: String,
    /// Stop after this many packets (and print the summary).
    pub count: Option<u64>,
}

/// What `--count` prints on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
}

struct Generator {
    settings: Settings,
    metrics: Metrics,
    client: reqwest::Client,
    ready: AtomicBool,
    delivered: AtomicU64,
    lost: AtomicU64,
}

impl Generator {
    /// `{"id":"<name>-<n>","payload":"packet <n> from <name>","hops":[],"ttl":<ttl>}`.
    fn packet(&self, n: u64) -> Vec<u8> {
        let name = &self.settings.name;
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"{\"id\":");
        write_json_str(&mut out, &format!("{name}-{n}"));
        out.extend_from_slice(b",\"payload\":");
        write_json_str(&mut out, &format!("packet {n} from {name}"));
        out.extend_from_slice(format!(",\"hops\":[],\"ttl\":{}}}", self.settings.ttl).as_bytes());
        out
    }

    async fn send(&self, n: u64) {
        let link = &self.metrics.links[0];
        let timeout = self.settings.timeout;
        let answer = async {
            let response = self
                .client
                .post(link.hop.endpoint.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(BUDGET_HEADER, timeout.as_millis().to_string())
                .timeout(timeout)
                .body(self.packet(n))
                .send()
                .await?;
            let status = response.status();
            response.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        };
        let delivered = match answer.await {
            Ok(status) => {
                link.carried();
                if status.as_u16() != 200 {
                    tracing::debug!(packet = n, %status, "packet lost downstream");
                }
                status.as_u16() == 200
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    DropReason::Timeout
                } else {
                    DropReason::Connect
                };
                link.dropped(reason, &error_chain(&e));
                false
            }
        };
        self.metrics.generated(delivered);
        if delivered {
            self.delivered.fetch_add(1, Relaxed);
        } else {
            self.lost.fetch_add(1, Relaxed);
        }
    }
}

/// The generator's HTTP client: pooled keep-alive connections, `TCP_NODELAY`, no proxy, no
/// redirects (an answer other than 200 is a lost packet).
fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .http1_only()
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("packet-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// The generator's own endpoints: `/metrics`, `/healthz`, `/readyz`.
impl http::Handler for Generator {
    fn max_body(&self) -> usize {
        64 * 1024
    }
    fn handle<'a>(
        &'a self,
        request: Request<'a>,
    ) -> impl std::future::Future<Output = Response> + Send + 'a {
        let response = match (request.method, request.path) {
            (Method::Post | Method::Other, _) => Response::method_not_allowed("GET, HEAD"),
            (_, Path::Metrics) => Response::metrics(self.metrics.render()),
            (_, Path::Healthz) => Response::text(200, "ok\n"),
            (_, Path::Readyz) => Response::readiness(self.ready.load(Relaxed)),
            (_, Path::Relay | Path::Other) => Response::not_found(),
        };
        std::future::ready(response)
    }
}

/// Runs the generator: until SIGTERM/SIGINT, or until `count` packets are answered.
pub async fn run(settings: Settings) -> anyhow::Result<Summary> {
    if !(settings.rate.is_finite() && settings.rate > 0.0) {
        bail!(
            "{}={} must be a positive number of packets per second",
            crate::env::GENERATOR_RATE,
            settings.rate
        );
    }
    if settings.concurrency == 0 {
        bail!("{} must be at least 1", crate::env::GENERATOR_CONCURRENCY);
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let generator = Arc::new(Generator {
        metrics: Metrics::new(
            Role::Generator,
            &settings.name,
            &settings.version,
            vec![settings.target.clone()],
        ),
        client: client(settings.timeout)?,
        ready: AtomicBool::new(true),
        delivered: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        settings,
    });
    let s = &generator.settings;
    tracing::info!(
        addr = %listener.local_addr()?,
        generator = %s.name,
        target = %format!("{}={}", s.target.name, s.target.url),
        rate = s.rate,
        ttl = s.ttl,
        concurrency = s.concurrency,
        count = ?s.count,
        "packet-relay generator listening"
    );
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop = stop.clone();
        tokio::spawn(http::serve(
            listener,
            generator.clone(),
            http::Limits::DEFAULT,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    };
    let signals = {
        let generator = generator.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let signal = crate::shutdown_signal().await;
            generator.ready.store(false, Relaxed);
            tracing::info!(
                ?signal,
                "shutting down: no new packets; waiting for answers"
            );
            let _ = stop_tx.send(true);
        })
    };

    let limit = Arc::new(Semaphore::new(generator.settings.concurrency));
    let mut in_flight = JoinSet::new();
    let start = Instant::now();
    let mut sent = 0_u64;
    loop {
        if generator.settings.count.is_some_and(|n| sent >= n) {
            break;
        }
        #[allow(clippy::cast_precision_loss)]
        let due = start + Duration::from_secs_f64(sent as f64 / generator.settings.rate);
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            permit = async {
                tokio::time::sleep_until(due).await;
                limit.clone().acquire_owned().await
            } => permit?,
        };
        let g = generator.clone();
        let n = sent;
        in_flight.spawn(async move {
            g.send(n).await;
            drop(permit);
        });
        sent += 1;
        while in_flight.try_join_next().is_some() {}
    }
    // Wait for the answers; after a signal, at most the grace period.
    let answers = async { while in_flight.join_next().await.is_some() {} };
    if *stop.borrow() {
        if tokio::time::timeout(generator.settings.shutdown_grace, answers)
            .await
            .is_err()
        {
            tracing::warn!("grace period over: unanswered packets cut off");
        }
    } else {
        answers.await;
    }
    let summary = Summary {
        sent,
        delivered: generator.delivered.load(Relaxed),
        lost: generator.lost.load(Relaxed),
    };
    tracing::info!(
        sent = summary.sent,
        delivered = summary.delivered,
        lost = summary.lost,
        "generator stopped"
    );
    let _ = stop_tx.send(true);
    signals.abort();
    server.await.context("metrics server task")?;
    Ok(summary)
}
