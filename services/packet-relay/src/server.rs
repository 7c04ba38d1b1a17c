//! The router: `POST /relay`, `/metrics`, `/healthz`, `/readyz`, and graceful shutdown.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;

use crate::hops::Hop;
use crate::metrics::{DropReason, Link, Metrics, Rejected, Role};
use crate::packet::{Packet, write_json_str};

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
    pub shutdown_grace: Duration,
    pub version: String,
}

/// State shared by the handlers.
pub struct App {
    name: String,
    /// `"name"` as a JSON string, for answers.
    name_json: String,
    pub metrics: Metrics,
    client: reqwest::Client,
    next: AtomicUsize,
    hop_timeout: Duration,
    max_body: usize,
    ready: AtomicBool,
}

/// The HTTP client for next hops: pooled keep-alive connections, `TCP_NODELAY`, no proxy
/// (routers talk to each other directly), no redirects (a next hop's answer is passed on).
pub fn client(hop_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .http1_only()
        .connect_timeout(hop_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("packet-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// The time this hop may wait for its next hop: its own timeout, shortened to what the sender
/// still waits (less 5%, at least 5 ms and at most 100 ms for the way back).
pub fn budget(headers: &HeaderMap, hop_timeout: Duration) -> Duration {
    let Some(ms) = headers
        .get(BUDGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return hop_timeout;
    };
    let margin = (ms / 20).clamp(5, 100);
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
            client: client(settings.hop_timeout)?,
            next: AtomicUsize::new(0),
            hop_timeout: settings.hop_timeout,
            max_body: settings.max_body,
            ready: AtomicBool::new(true),
        })
    }

    /// An answer of this router itself: `{"error": reason, "router": name, ...}`.
    fn refuse(&self, status: u16, reason: &str, detail: &str) -> Response {
        let mut body = format!(r#"{{"error":"{reason}","router":{}"#, self.name_json);
        if !detail.is_empty() {
            body.push_str(",\"detail\":");
            let mut d = Vec::new();
            write_json_str(&mut d, detail);
            body.push_str(&String::from_utf8_lossy(&d));
        }
        body.push('}');
        json(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body.into())
    }

    fn reject(&self, reason: Rejected, status: u16, detail: &str) -> Response {
        self.metrics.rejected(reason);
        self.refuse(status, reason.label(), detail)
    }

    /// Everything of `POST /relay` but the metrics of the answer.
    async fn relay(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return self.reject(Rejected::TooLarge, 413, "declared Content-Length over the limit");
        }
        let body = match read_body(body, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return self.reject(Rejected::TooLarge, 413, "body over the limit");
            }
            Err(BodyError::Read(e)) => {
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
            return json(StatusCode::OK, out.into());
        }
        let link = &links[self.next.fetch_add(1, Relaxed) % links.len()];
        self.forward(link, out, budget(&parts.headers, self.hop_timeout))
            .await
    }

    /// Posts the packet to the next hop and passes its answer back.
    async fn forward(&self, link: &Link, packet: Vec<u8>, budget: Duration) -> Response {
        let answer = async {
            let response = self
                .client
                .post(link.hop.endpoint.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(BUDGET_HEADER, budget.as_millis().to_string())
                .timeout(budget)
                .body(packet)
                .send()
                .await?;
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, content_type, body))
        };
        match answer.await {
            Ok((status, content_type, body)) => {
                link.carried();
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = StatusCode::from_u16(status.as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                if let Some(ct) = content_type {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                response
            }
            Err(e) => {
                let (reason, status) = if e.is_timeout() {
                    (DropReason::Timeout, 504)
                } else {
                    (DropReason::Connect, 502)
                };
                let error = error_chain(&e);
                link.dropped(reason, &error);
                let mut body = format!(
                    r#"{{"error":"{}","router":{},"next_hop":"#,
                    reason.label(),
                    self.name_json
                );
                let mut hop = Vec::new();
                write_json_str(&mut hop, &link.hop.name);
                body.push_str(&String::from_utf8_lossy(&hop));
                body.push('}');
                json(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body.into())
            }
        }
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

fn json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads the body, stopping as soon as it passes `max` bytes (a chunked body declares no size).
async fn read_body(body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        match &first {
            None => {
                if chunk.len() > max {
                    return Err(BodyError::TooLarge);
                }
                first = Some(chunk);
            }
            Some(f) => {
                if rest.is_empty() {
                    rest.extend_from_slice(f);
                }
                if rest.len() + chunk.len() > max {
                    return Err(BodyError::TooLarge);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    Ok(if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.into()
    })
}

async fn relay(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = Instant::now();
    let response = app.relay(request).await;
    app.metrics
        .answered(response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics` of any process (router or generator).
pub async fn metrics_text(metrics: &Metrics) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `/readyz`: 200 while serving, 503 once shutting down. Next hops play no part: a canary with a
/// wrong `NEXT_HOPS` must receive traffic so that its analysis can fail it.
pub fn readiness(ready: bool) -> Response {
    if ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/relay", post(relay))
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move { metrics_text(&app.metrics).await }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(app): State<Arc<App>>| async move { readiness(app.ready.load(Relaxed)) }),
        )
        .with_state(app)
}

/// Binds `settings.listen` and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    serve(settings, listener).await
}

/// Serves on a bound listener. On SIGTERM `/readyz` turns 503 and the router keeps relaying for
/// a drain period (half the grace, at most 5 s) so that Kubernetes can take it out of its
/// Service first; then it stops accepting and lets in-flight packets finish. SIGINT (Ctrl-C) skips
/// the drain. Whatever is still in flight when the grace period ends is cut off.
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
        let drain = if signal == crate::Signal::Terminate {
            (grace / 2).min(Duration::from_secs(5))
        } else {
            Duration::ZERO
        };
        tracing::info!(?signal, ?drain, ?grace, "shutting down: not ready; draining, then finishing in-flight packets");
        tokio::time::sleep(drain).await;
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router(app)).with_graceful_shutdown(stop);
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    let deadline = async {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = &mut server => result.context("serving HTTP")?,
        () = deadline => tracing::warn!(?grace, "grace period over: in-flight packets cut off"),
    }
    tracing::info!("packet-relay stopped");
    Ok(())
}
