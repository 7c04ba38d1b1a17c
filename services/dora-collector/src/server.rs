//! HTTP: `POST /webhooks/gitlab`, `POST /webhooks/argo-rollouts`, `POST /webhooks/harbor`,
//! `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Each source has its own secret (`GITLAB_WEBHOOK_SECRET`, `DORA_ROLLOUTS_WEBHOOK_SECRET`,
//! `DORA_HARBOR_WEBHOOK_SECRET`): whoever can read the Rollouts notification Secret in the
//! controller's namespace cannot forge GitLab events, and a source whose secret is unset is
//! refused outright.
//!
//! A webhook is checked in the order that costs an attacker the most and the collector the least:
//! the token first (constant time, before the body is read), then the declared and actual body
//! size, then the JSON. Only then is anything stored, and the 2xx goes out after the commit.
//! GitLab's side of the contract ("Webhooks": the `X-Gitlab-Token` header carries the secret
//! token; a hook must answer within its timeout, and 4xx/5xx answers are retried and, when they
//! repeat, auto-disable the hook) is why a refused delivery is 4xx only when retrying cannot help.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ring::digest;
use subtle::ConstantTimeEq as _;

use crate::facts::{self, Fact, PayloadError};
use crate::metrics::{self, Aggregator};
use crate::pipeline::{Health, Ingest};

pub const SOURCES: &[&str] = &["gitlab", "argo-rollouts", "harbor", "heal"];
pub const OUTCOMES: &[&str] = &[
    "accepted",
    "duplicate",
    "ignored",
    "rejected_token",
    "rejected_size",
    "rejected_payload",
    "unavailable",
];

/// Per source and outcome, how many deliveries the collector answered.
#[derive(Debug, Default)]
pub struct Deliveries {
    counts: [[AtomicU64; 7]; 4],
}

impl Deliveries {
    pub fn count(&self, source: &str, outcome: &str) {
        let s = SOURCES.iter().position(|x| *x == source);
        let o = OUTCOMES.iter().position(|x| *x == outcome);
        if let (Some(s), Some(o)) = (s, o) {
            self.counts[s][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, source: &str, outcome: &str) -> u64 {
        let s = SOURCES.iter().position(|x| *x == source);
        let o = OUTCOMES.iter().position(|x| *x == outcome);
        match (s, o) {
            (Some(s), Some(o)) => self.counts[s][o].load(Ordering::Relaxed),
            _ => 0,
        }
    }
}

/// The secret of each webhook source (`None`: the source is refused).
pub struct SourceSecrets<'a> {
    pub gitlab: &'a str,
    pub rollouts: Option<&'a str>,
    pub harbor: Option<&'a str>,
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

pub struct App {
    /// SHA-256 of each source's secret, in the order of [`SOURCES`] (gitlab, argo-rollouts,
    /// harbor): comparing digests keeps the comparison's time independent of both the content
    /// and the length of what a caller sends.
    secret_digests: [Option<Vec<u8>>; 3],
    max_body: usize,
    ingest: Ingest,
    pub aggregator: Arc<Mutex<Aggregator>>,
    pub health: Arc<Health>,
    pub deliveries: Arc<Deliveries>,
}

impl App {
    pub fn new(
        secrets: &SourceSecrets<'_>,
        max_body: usize,
        ingest: Ingest,
        aggregator: Arc<Mutex<Aggregator>>,
        health: Arc<Health>,
    ) -> Self {
        let digest_of = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(|s| sha256(s.as_bytes()));
        Self {
            secret_digests: [
                digest_of(Some(secrets.gitlab)),
                digest_of(secrets.rollouts),
                digest_of(secrets.harbor),
            ],
            max_body,
            ingest,
            aggregator,
            health,
            deliveries: Arc::new(Deliveries::default()),
        }
    }

    fn token_matches(&self, source: &str, presented: Option<&[u8]>) -> bool {
        let Some(Some(expected)) = SOURCES
            .iter()
            .position(|s| *s == source)
            .and_then(|i| self.secret_digests.get(i))
        else {
            return false;
        };
        let presented = presented.unwrap_or_default();
        bool::from(sha256(presented).ct_eq(expected)) && !presented.is_empty()
    }

    /// Stores facts from any source (webhooks and the healer) and counts the outcome. A
    /// webhook delivery with no fact is still recorded (it moves the source's staleness).
    pub async fn store(
        &self,
        source: &'static str,
        facts: Vec<Fact>,
    ) -> Result<(usize, usize), Response> {
        if facts.is_empty() && source == "heal" {
            self.deliveries.count(source, "ignored");
            return Ok((0, 0));
        }
        let none = facts.is_empty();
        match self.ingest.submit(source, facts).await {
            Ok(flags) => {
                let new = flags.iter().filter(|n| **n).count();
                let outcome = if none {
                    "ignored"
                } else if new > 0 {
                    "accepted"
                } else {
                    "duplicate"
                };
                self.deliveries.count(source, outcome);
                Ok((new, flags.len() - new))
            }
            // Busy, a failed commit or a stopped writer: all retryable, so 503 (GitLab retries).
            Err(e) => {
                self.deliveries.count(source, "unavailable");
                Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response())
            }
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/webhooks/gitlab", post(gitlab))
        .route("/webhooks/argo-rollouts", post(rollouts))
        .route("/webhooks/harbor", post(harbor))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

fn refuse(app: &App, source: &str, outcome: &str, status: StatusCode, message: String) -> Response {
    app.deliveries.count(source, outcome);
    (status, message).into_response()
}

/// Why a webhook body was not read.
enum BodyFailure {
    /// Over `DORA_MAX_BODY_BYTES` (declared so, or found so while reading).
    TooLarge,
    /// Not received within the server's body deadline (`common::serve`).
    Late,
    /// Broken off or malformed (chunked framing, trailers over hyper's limit).
    Broken,
}

/// Reads the body within the limit (the declared length is checked first, so an oversized
/// upload is refused without reading it).
async fn limited_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, BodyFailure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > app.max_body) {
        return Err(BodyFailure::TooLarge);
    }
    axum::body::to_bytes(body, app.max_body)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| {
            // http-body-util's LengthLimitError and tower-http's body TimeoutError, which axum
            // does not export: told by their texts.
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            while let Some(c) = cause {
                let text = c.to_string();
                if text == "length limit exceeded" {
                    return BodyFailure::TooLarge;
                }
                if text.contains("timeout") || text.contains("timed out") {
                    return BodyFailure::Late;
                }
                cause = c.source();
            }
            BodyFailure::Broken
        })
}

async fn receive(
    app: &App,
    source: &'static str,
    token: Option<&[u8]>,
    request: Request,
    parse: fn(&[u8], f64) -> Result<Vec<Fact>, PayloadError>,
) -> Response {
    if !app.token_matches(source, token) {
        return refuse(
            app,
            source,
            "rejected_token",
            StatusCode::UNAUTHORIZED,
            "missing or wrong webhook token\n".into(),
        );
    }
    let (parts, body) = request.into_parts();
    let bytes = match limited_body(app, &parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(BodyFailure::TooLarge) => {
            return refuse(
                app,
                source,
                "rejected_size",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes\n", app.max_body),
            );
        }
        Err(BodyFailure::Late) => {
            return refuse(
                app,
                source,
                "rejected_payload",
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time\n".into(),
            );
        }
        Err(BodyFailure::Broken) => {
            return refuse(
                app,
                source,
                "rejected_payload",
                StatusCode::BAD_REQUEST,
                "body broken off or malformed\n".into(),
            );
        }
    };
    let facts = match parse(&bytes, crate::now()) {
        Ok(facts) => facts,
        Err(e) => {
            return refuse(
                app,
                source,
                "rejected_payload",
                StatusCode::BAD_REQUEST,
                format!("{e}\n"),
            );
        }
    };
    match app.store(source, facts).await {
        Ok((stored, duplicates)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"stored\":{stored},\"duplicates\":{duplicates}}}\n"),
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn gitlab(State(app): State<Arc<App>>, request: Request) -> Response {
    let token = request
        .headers()
        .get("x-gitlab-token")
        .map(|v| v.as_bytes().to_vec());
    receive(
        &app,
        "gitlab",
        token.as_deref(),
        request,
        facts::from_gitlab,
    )
    .await
}

/// The token of `Authorization: Bearer <token>` (Argo Rollouts' and Harbor's deliveries).
fn bearer(request: &Request) -> Option<Vec<u8>> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec)
}

async fn rollouts(State(app): State<Arc<App>>, request: Request) -> Response {
    let token = bearer(&request);
    receive(
        &app,
        "argo-rollouts",
        token.as_deref(),
        request,
        facts::from_rollouts,
    )
    .await
}

/// Harbor sends the webhook policy's auth header verbatim as `Authorization`; phase 16
/// registers it as `Bearer <secret>`.
async fn harbor(State(app): State<Arc<App>>, request: Request) -> Response {
    let token = bearer(&request);
    receive(
        &app,
        "harbor",
        token.as_deref(),
        request,
        crate::harbor::from_harbor,
    )
    .await
}

async fn render_metrics(State(app): State<Arc<App>>) -> Response {
    // The lag is read before the aggregates are rendered: a scrape that says lag 0 then shows
    // every fact stored until that moment (the tailer applies facts before it moves
    // processed_seq), which is what tests and dashboards wait for.
    let h = &app.health;
    let lag = (h.stored_seq.load(Ordering::SeqCst) - h.processed_seq.load(Ordering::SeqCst)).max(0);
    let mut out = String::with_capacity(16 * 1024);
    if let Ok(mut agg) = app.aggregator.lock() {
        agg.render(crate::now(), &mut out);
    }
    self_metrics(&app, lag, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn self_metrics(app: &App, lag: i64, out: &mut String) {
    metrics::family(
        out,
        "dora_collector_webhooks_total",
        "counter",
        "Deliveries answered, by source and outcome.",
    );
    for source in SOURCES {
        for outcome in OUTCOMES {
            metrics::sample(
                out,
                "dora_collector_webhooks_total",
                &[("source", source), ("outcome", outcome)],
                app.deliveries.get(source, outcome),
            );
        }
    }
    metrics::family(
        out,
        "dora_collector_last_webhook_timestamp_seconds",
        "gauge",
        "Unix time of the last committed delivery per source (for gitlab: the store's creation before the first one); kept in the store, so present from start.",
    );
    for (i, source) in SOURCES.iter().enumerate().filter(|(_, s)| **s != "heal") {
        let last = app.health.last_delivery_ms[i].load(Ordering::Relaxed);
        if last > 0 {
            #[allow(clippy::cast_precision_loss)]
            metrics::sample(
                out,
                "dora_collector_last_webhook_timestamp_seconds",
                &[("source", source)],
                last as f64 / 1000.0,
            );
        }
    }
    let h = &app.health;
    metrics::family(
        out,
        "dora_collector_store_errors_total",
        "counter",
        "Store reads or writes that failed.",
    );
    metrics::sample(
        out,
        "dora_collector_store_errors_total",
        &[],
        h.store_errors.load(Ordering::Relaxed),
    );
    let processed = h.processed.load(Ordering::Relaxed);
    metrics::family(
        out,
        "dora_collector_processing_lag_events",
        "gauge",
        "Facts this replica stored that are not in the metrics yet.",
    );
    metrics::sample(out, "dora_collector_processing_lag_events", &[], lag);
    metrics::family(
        out,
        "dora_collector_facts_processed_total",
        "counter",
        "Stored facts applied to the metrics (replayed ones included).",
    );
    metrics::sample(out, "dora_collector_facts_processed_total", &[], processed);
    if let Some(rss) = resident_memory_bytes() {
        metrics::family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
        );
        metrics::sample(out, "process_resident_memory_bytes", &[], rss);
    }
}

/// Resident set size from /proc (Linux only; absent elsewhere).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Liveness: the writer thread runs and is not stuck (a restart is the remedy for neither).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.health.writer_live() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "store writer stopped or stuck\n",
        )
            .into_response()
    }
}

/// Readiness: replayed, and the store reachable from both threads.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let h = &app.health;
    if !h.writer_live() {
        (StatusCode::SERVICE_UNAVAILABLE, "store writer stopped\n").into_response()
    } else if !h.store_ok() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unreachable; reconnecting\n",
        )
            .into_response()
    } else if !h.ready.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "replaying the store\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}
