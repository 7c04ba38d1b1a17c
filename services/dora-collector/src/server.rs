//! HTTP: `POST /webhooks/gitlab`, `POST /webhooks/argo-rollouts`, `GET /metrics`, `/healthz`,
//! `/readyz`.
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

pub const SOURCES: &[&str] = &["gitlab", "argo-rollouts", "heal"];
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
    counts: [[AtomicU64; 7]; 3],
    /// Unix time of the last authenticated, well-formed GitLab delivery (milliseconds).
    pub last_gitlab_ms: AtomicU64,
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

pub struct App {
    /// SHA-256 of the secret: comparing digests keeps the comparison's time independent of
    /// both the content and the length of what a caller sends.
    secret_digest: Vec<u8>,
    max_body: usize,
    ingest: Ingest,
    pub aggregator: Arc<Mutex<Aggregator>>,
    pub health: Arc<Health>,
    pub deliveries: Arc<Deliveries>,
}

impl App {
    pub fn new(
        secret: &str,
        max_body: usize,
        ingest: Ingest,
        aggregator: Arc<Mutex<Aggregator>>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            secret_digest: digest::digest(&digest::SHA256, secret.as_bytes())
                .as_ref()
                .to_vec(),
            max_body,
            ingest,
            aggregator,
            health,
            deliveries: Arc::new(Deliveries::default()),
        }
    }

    fn token_matches(&self, presented: Option<&[u8]>) -> bool {
        let presented = presented.unwrap_or_default();
        let d = digest::digest(&digest::SHA256, presented);
        bool::from(d.as_ref().ct_eq(&self.secret_digest)) && !presented.is_empty()
    }

    /// Stores facts from any source (webhooks and the healer) and counts the outcome.
    pub async fn store(&self, source: &str, facts: Vec<Fact>) -> Result<(usize, usize), Response> {
        if facts.is_empty() {
            self.deliveries.count(source, "ignored");
            return Ok((0, 0));
        }
        match self.ingest.submit(facts).await {
            Ok(flags) => {
                let new = flags.iter().filter(|n| **n).count();
                let outcome = if new > 0 { "accepted" } else { "duplicate" };
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
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

fn refuse(app: &App, source: &str, outcome: &str, status: StatusCode, message: String) -> Response {
    app.deliveries.count(source, outcome);
    (status, message).into_response()
}

/// Reads the body within the limit (the declared length is checked first, so an oversized
/// upload is refused without reading it).
async fn limited_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ()> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > app.max_body) {
        return Err(());
    }
    axum::body::to_bytes(body, app.max_body)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| ())
}

async fn receive(
    app: &App,
    source: &'static str,
    token: Option<&[u8]>,
    request: Request,
    parse: fn(&[u8], f64) -> Result<Vec<Fact>, PayloadError>,
) -> Response {
    if !app.token_matches(token) {
        return refuse(
            app,
            source,
            "rejected_token",
            StatusCode::UNAUTHORIZED,
            "missing or wrong webhook token\n".into(),
        );
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = limited_body(app, &parts.headers, body).await else {
        return refuse(
            app,
            source,
            "rejected_size",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes\n", app.max_body),
        );
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
    if source == "gitlab" {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = (crate::now() * 1000.0) as u64;
        app.deliveries.last_gitlab_ms.store(ms, Ordering::Relaxed);
    }
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

async fn rollouts(State(app): State<Arc<App>>, request: Request) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec);
    receive(
        &app,
        "argo-rollouts",
        token.as_deref(),
        request,
        facts::from_rollouts,
    )
    .await
}

async fn render_metrics(State(app): State<Arc<App>>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    if let Ok(mut agg) = app.aggregator.lock() {
        agg.render(crate::now(), &mut out);
    }
    self_metrics(&app, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn self_metrics(app: &App, out: &mut String) {
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
    let last = app.deliveries.last_gitlab_ms.load(Ordering::Relaxed);
    if last > 0 {
        metrics::family(
            out,
            "dora_collector_last_webhook_timestamp_seconds",
            "gauge",
            "Unix time of the last authenticated, well-formed GitLab delivery.",
        );
        #[allow(clippy::cast_precision_loss)]
        metrics::sample(
            out,
            "dora_collector_last_webhook_timestamp_seconds",
            &[],
            last as f64 / 1000.0,
        );
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
    let lag = (h.stored_seq.load(Ordering::SeqCst) - h.processed_seq.load(Ordering::SeqCst)).max(0);
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

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.health.writer_alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store writer stopped\n").into_response()
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.health.ready.load(Ordering::SeqCst) && app.health.writer_alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "replaying the store\n").into_response()
    }
}
