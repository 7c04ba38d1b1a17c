//! The router: `POST /relay`, `/metrics`, `/healthz`, `/readyz`, and graceful shutdown.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::hops::Hop;
use crate::http::{self, BodyProblem, Method, Path, Request, Response};
use crate::metrics::{DropReason, Link, Metrics, Rejected, Role};
use crate::packet::{Packet, write_json_str};
use crate::upstream::{ANSWER_SLACK, Failure, Upstream};

/// Header carrying the time the sender still waits for this hop's answer, in milliseconds. A
/// router never waits longer for its own next hop than its sender waits for it (less a margin),
/// so a timeout is counted on the link that stalled, not on every link before it.
pub const BUDGET_HEADER: &str = "x-relay-budget-ms";

/// The 508 of RFC 5842 (Loop Detected): TTL expired or the packet came back.
const LOOP_DETECTED: u16 = 508;

/// A router's settings (from the command line or the environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub next_hops: Vec<Hop>,
    pub listen: SocketAddr,
    pub hop_timeout: Duration,
    pub max_body: usize,
    pub limits: http::Limits,
    pub shutdown_grace: Duration,
    pub version: String,
}

/// State shared by the handlers.
pub struct App {
    name: String,
    /// `"name"` as a JSON string, for answers.
    name_json: String,
    pub metrics: Metrics,
    /// One connection pool per next hop, in the order of `metrics.links`.
    upstreams: Box<[Upstream]>,
    next: AtomicUsize,
    hop_timeout: Duration,
    max_body: usize,
    ready: AtomicBool,
    /// `POST /relay` requests started, and those not answered yet (for the shutdown drain).
    started: AtomicU64,
    in_flight: AtomicUsize,
}

/// Counts a request in flight until dropped (answered, or abandoned by its client).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The time this hop may wait for its next hop: its own timeout, shortened to what the sender
/// still waits (`x-relay-budget-ms`, less 10%, at least 10 ms and at most 200 ms, for the way
/// back).
pub fn budget(sender_ms: Option<u64>, hop_timeout: Duration) -> Duration {
    let Some(ms) = sender_ms else {
        return hop_timeout;
    };
    let margin = (ms / 10).clamp(10, 200);
    hop_timeout.min(Duration::from_millis(ms.saturating_sub(margin).max(1)))
}

impl App {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut name_json = Vec::new();
        write_json_str(&mut name_json, &settings.name);
        Ok(Self {
            name: settings.name.clone(),
            name_json: String::from_utf8(name_json)?,
            metrics: Metrics::new(
                Role::Router,
                &settings.name,
                &settings.version,
                settings.next_hops.clone(),
            ),
            upstreams: settings
                .next_hops
                .iter()
                .map(|h| Upstream::new(&h.endpoint, settings.max_body + ANSWER_SLACK))
                .collect::<anyhow::Result<_>>()?,
            next: AtomicUsize::new(0),
            hop_timeout: settings.hop_timeout,
            max_body: settings.max_body,
            ready: AtomicBool::new(true),
            started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Every request of the router.
    async fn route(&self, request: Request<'_>) -> Response {
        match (request.method, request.path) {
            (Method::Post, Path::Relay) => {
                self.started.fetch_add(1, Relaxed);
                self.in_flight.fetch_add(1, Relaxed);
                let _in_flight = InFlight(&self.in_flight);
                let started = Instant::now();
                let response = self.relay(request).await;
                self.metrics.answered(response.status, started.elapsed());
                response
            }
            (_, Path::Relay) => Response::method_not_allowed("POST"),
            (Method::Post | Method::Other, _) => Response::method_not_allowed("GET, HEAD"),
            (_, Path::Metrics) => Response::metrics(self.metrics.render()),
            (_, Path::Healthz) => Response::text(200, "ok\n"),
            // Readiness ignores next hops: a canary with a wrong NEXT_HOPS must receive traffic
            // so that its analysis can fail it.
            (_, Path::Readyz) => Response::readiness(self.ready.load(Relaxed)),
            (_, Path::Other) => Response::not_found(),
        }
    }

    /// An answer of this router itself: `{"error": reason, "router": name[, "detail": …]}`.
    fn refuse(&self, status: u16, reason: &str, detail: &str) -> Response {
        let mut body = Vec::with_capacity(64 + detail.len());
        body.extend_from_slice(b"{\"error\":\"");
        body.extend_from_slice(reason.as_bytes());
        body.extend_from_slice(b"\",\"router\":");
        body.extend_from_slice(self.name_json.as_bytes());
        if !detail.is_empty() {
            body.extend_from_slice(b",\"detail\":");
            write_json_str(&mut body, detail);
        }
        body.push(b'}');
        Response::json(status, body)
    }

    fn reject(&self, reason: Rejected, status: u16, detail: &str) -> Response {
        self.metrics.rejected(reason);
        self.refuse(status, reason.label(), detail)
    }

    /// `POST /relay`, but for the metrics of the answer.
    async fn relay(&self, request: Request<'_>) -> Response {
        let body = match request.body {
            Ok(b) => b,
            Err(BodyProblem::TooLarge { declared }) => {
                let detail = if declared {
                    "declared Content-Length over the limit"
                } else {
                    "body over the limit"
                };
                return self.reject(Rejected::TooLarge, 413, detail);
            }
            Err(BodyProblem::Broken(e)) => {
                return self.reject(Rejected::Malformed, 400, &format!("reading the body: {e}"));
            }
        };
        let mut packet = match Packet::parse(&body) {
            Ok(p) => p,
            Err(e) => return self.reject(Rejected::Malformed, 400, &e.0),
        };
        if packet.ttl == 0 {
            return self.reject(Rejected::TtlExpired, LOOP_DETECTED, "");
        }
        if packet.visited(&self.name) {
            return self.reject(Rejected::Loop, LOOP_DETECTED, "");
        }
        packet.hops.push(Cow::Borrowed(&self.name));
        packet.ttl -= 1;
        let mut out = Vec::with_capacity(body.len() + self.name.len() + 8);
        packet.write_json(&mut out);

        let links = &self.metrics.links;
        if links.is_empty() {
            self.metrics.delivered();
            return Response::json(200, out);
        }
        let i = self.next.fetch_add(1, Relaxed) % links.len();
        let budget = budget(request.budget_ms, self.hop_timeout);
        self.forward(&links[i], &self.upstreams[i], &out, budget)
            .await
    }

    /// Posts the packet to the next hop and passes its answer back.
    async fn forward(
        &self,
        link: &Link,
        upstream: &Upstream,
        packet: &[u8],
        budget: Duration,
    ) -> Response {
        match upstream.post(packet, budget).await {
            Ok(answer) => {
                link.carried();
                Response::new(answer.status, answer.content_type, answer.body)
            }
            Err(failure) => {
                let (reason, status, error) = match failure {
                    Failure::Timeout => (
                        DropReason::Timeout,
                        504,
                        format!("no answer within {budget:?}"),
                    ),
                    Failure::Connect(e) => (DropReason::Connect, 502, e),
                };
                link.dropped(reason, &error);
                let mut body = Vec::with_capacity(96);
                body.extend_from_slice(b"{\"error\":\"");
                body.extend_from_slice(reason.label().as_bytes());
                body.extend_from_slice(b"\",\"router\":");
                body.extend_from_slice(self.name_json.as_bytes());
                body.extend_from_slice(b",\"next_hop\":");
                write_json_str(&mut body, &link.hop.name);
                body.push(b'}');
                Response::new(status, http::JSON, body)
            }
        }
    }
}

impl http::Handler for App {
    fn max_body(&self) -> usize {
        self.max_body
    }
    fn handle<'a>(
        &'a self,
        request: Request<'a>,
    ) -> impl std::future::Future<Output = Response> + Send + 'a {
        self.route(request)
    }
}

/// An error with its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Binds `settings.listen` and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    serve(settings, listener).await
}

/// After SIGTERM: keeps relaying while packets keep coming (Kubernetes may still route some here
/// until it sees the pod unready), and ends after a quiet second without a packet in flight or
/// starting — or after `max`.
async fn drain(app: &App, max: Duration) {
    let quiet = Duration::from_secs(1).min(max);
    let begun = Instant::now();
    let mut seen = app.started.load(Relaxed);
    let mut quiet_since = Instant::now();
    while begun.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(50).min(max)).await;
        let now = app.started.load(Relaxed);
        if now != seen || app.in_flight.load(Relaxed) > 0 {
            seen = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= quiet {
            tracing::info!(took = ?begun.elapsed(), "drained: no packet for a second");
            return;
        }
    }
    tracing::info!(took = ?begun.elapsed(), "drain period over");
}

/// Serves on a bound listener. On SIGTERM `/readyz` turns 503 and the router keeps relaying
/// while packets keep arriving (until a quiet second, at most half the grace period and 5 s), so
/// that Kubernetes can take it out of its Service first; then it stops accepting and lets
/// in-flight packets finish. SIGINT (Ctrl-C) skips the drain. Whatever is still in flight when
/// the grace period ends is cut off.
pub async fn serve(settings: Settings, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let app = Arc::new(App::new(&settings)?);
    let addr = listener.local_addr()?;
    let hops: Vec<String> = settings
        .next_hops
        .iter()
        .map(|h| format!("{}={}", h.name, h.url))
        .collect();
    tracing::info!(
        %addr,
        router = %settings.name,
        next_hops = %if hops.is_empty() { "(terminal: delivers)".to_owned() } else { hops.join(",") },
        version = %settings.version,
        "packet-relay listening"
    );
    let grace = settings.shutdown_grace;
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let signal_app = app.clone();
    let stop = async move {
        let signal = crate::shutdown_signal().await;
        signal_app.ready.store(false, Relaxed);
        let _ = stopping_tx.send(true);
        tracing::info!(?signal, ?grace, "shutting down: /readyz answers 503");
        if signal == crate::Signal::Terminate {
            drain(&signal_app, (grace / 2).min(Duration::from_secs(5))).await;
        }
        tracing::info!("no longer accepting connections; finishing in-flight packets");
    };
    let server = http::serve(listener, app, settings.limits, stop);
    let deadline = async {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {},
        () = deadline => tracing::warn!(?grace, "grace period over: in-flight packets cut off"),
    }
    tracing::info!("packet-relay stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_shrinks_along_the_chain() {
        let own = Duration::from_secs(2);
        assert_eq!(budget(None, own), own);
        // The sender waits 2000 ms: this hop waits 1800 (200 ms margin, the maximum).
        assert_eq!(budget(Some(2000), own), Duration::from_millis(1800));
        assert_eq!(budget(Some(1000), own), Duration::from_millis(900));
        // At least 10 ms of margin, at least 1 ms left; never more than the own timeout.
        assert_eq!(budget(Some(50), own), Duration::from_millis(40));
        assert_eq!(budget(Some(5), own), Duration::from_millis(1));
        assert_eq!(budget(Some(60_000), own), own);
    }
}
