//! HTTP: the page (`GET /`, `/app.js`, `/style.css`, embedded), `GET /api/topology`, `/healthz`,
//! `/readyz` and `/metrics` (the dashboard's own `http_requests_total` and
//! `http_request_duration_seconds`, the shape Argo Rollouts analysis queries for the routers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::config::Color;
use crate::topology::{Computed, LinkView, NodeView};

pub const SERVICE: &str = "netops-dashboard";

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Bounds of `http_request_duration_seconds`, the routers' own (one histogram shape for all).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What does not change while the dashboard runs.
#[derive(Debug, Clone)]
pub struct Meta {
    pub version: String,
    pub color: Color,
    pub mode: &'static str,
    pub poll_ms: u64,
}

/// What `GET /api/topology` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub version: String,
    pub color: Color,
    /// `direct` (routers scraped) or `prometheus`.
    pub mode: &'static str,
    pub poll_ms: u64,
    pub routers: Vec<NodeView>,
    pub links: Vec<LinkView>,
    /// Generator: delivered / (delivered + lost) over the window; `null` without traffic.
    pub delivery_ratio: Option<f64>,
    pub delivered_per_sec: f64,
    pub lost_per_sec: f64,
    /// RFC 3339 time of the last poll; `null` before the first.
    pub updated_at: Option<String>,
    /// Why the last poll failed (Prometheus unreachable), when it did.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct HttpMetrics {
    requests: BTreeMap<u16, u64>,
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

pub struct App {
    meta: Meta,
    index: String,
    latest: RwLock<(Option<Computed>, Option<String>)>,
    http: Mutex<HttpMetrics>,
    polls: Mutex<(u64, u64)>,
}

impl App {
    pub fn new(meta: Meta) -> Self {
        let index = INDEX_HTML
            .replace("__VERSION__", &html_escape(&version_label(&meta.version)))
            .replace("__COLOR__", meta.color.as_str());
        Self {
            meta,
            index,
            latest: RwLock::new((None, None)),
            http: Mutex::new(HttpMetrics {
                requests: BTreeMap::from([(200, 0)]),
                buckets: vec![0; DURATION_BUCKETS.len()],
                ..HttpMetrics::default()
            }),
            polls: Mutex::new((0, 0)),
        }
    }

    /// Records a poll's outcome: the new picture, or the error (the last picture is kept).
    pub fn update(&self, result: Result<Computed, String>) {
        let mut latest = self.latest.write().expect("lock");
        let mut polls = self.polls.lock().expect("lock");
        match result {
            Ok(computed) => {
                *latest = (Some(computed), None);
                polls.0 += 1;
            }
            Err(e) => {
                latest.1 = Some(e);
                polls.1 += 1;
            }
        }
    }

    pub fn ready(&self) -> bool {
        self.latest.read().expect("lock").0.is_some()
    }

    pub fn topology(&self) -> Topology {
        let (computed, error) = self.latest.read().expect("lock").clone();
        let computed = computed.unwrap_or(Computed {
            routers: Vec::new(),
            links: Vec::new(),
            delivery_ratio: None,
            delivered_per_sec: 0.0,
            lost_per_sec: 0.0,
            at: None,
        });
        Topology {
            version: self.meta.version.clone(),
            color: self.meta.color,
            mode: self.meta.mode,
            poll_ms: self.meta.poll_ms,
            routers: computed.routers,
            links: computed.links,
            delivery_ratio: computed.delivery_ratio,
            delivered_per_sec: computed.delivered_per_sec,
            lost_per_sec: computed.lost_per_sec,
            updated_at: computed.at.map(crate::rfc3339),
            error,
        }
    }

    fn observe(&self, status: u16, seconds: f64) {
        let mut m = self.http.lock().expect("lock");
        *m.requests.entry(status).or_default() += 1;
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            m.buckets[i] += 1;
        }
        m.sum += seconds;
        m.count += 1;
    }

    /// The Prometheus text of `/metrics`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let m = self.http.lock().expect("lock");
        let svc = SERVICE;
        out.push_str("# HELP http_requests_total HTTP requests answered, by status code.\n# TYPE http_requests_total counter\n");
        for (status, n) in &m.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{svc}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP http_request_duration_seconds Time to answer an HTTP request.\n# TYPE http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(&m.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{service=\"{svc}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{service=\"{svc}\",le=\"+Inf\"}} {}\nhttp_request_duration_seconds_sum{{service=\"{svc}\"}} {}\nhttp_request_duration_seconds_count{{service=\"{svc}\"}} {}",
            m.count, m.sum, m.count
        );
        drop(m);
        let (ok, failed) = *self.polls.lock().expect("lock");
        let _ = writeln!(
            out,
            "# HELP netops_dashboard_polls_total Polls of the routers (or Prometheus), by outcome.\n# TYPE netops_dashboard_polls_total counter\nnetops_dashboard_polls_total{{outcome=\"ok\"}} {ok}\nnetops_dashboard_polls_total{{outcome=\"failed\"}} {failed}"
        );
        let _ = writeln!(
            out,
            "# HELP netops_dashboard_build_info Version and blue-green colour of this dashboard.\n# TYPE netops_dashboard_build_info gauge\nnetops_dashboard_build_info{{service=\"{svc}\",version=\"{}\",color=\"{}\"}} 1",
            label_escape(&self.meta.version),
            self.meta.color.as_str()
        );
        out
    }
}

/// How a version reads on the page: `0.1.0` → `v0.1.0`; `v1` or `local` stay as they are.
pub fn version_label(version: &str) -> String {
    if version.starts_with(|c: char| c.is_ascii_digit()) {
        format!("v{version}")
    } else {
        version.to_string()
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn label_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/api/topology", get(topology))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// Counts every answer (404s included) and its duration.
async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    app.observe(response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

/// Assets are `no-cache`: after a blue-green switch the browser must fetch the new release.
fn asset(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(app): State<Arc<App>>) -> Response {
    asset("text/html; charset=utf-8", app.index.clone())
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS.to_string())
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS.to_string())
}

async fn topology(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(app.topology()),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.render_metrics(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the first poll is done (routers reachable or not: the page then shows them red).
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "first poll not done yet\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::new(Meta {
            version: "2.0.0<b>".into(),
            color: Color::Green,
            mode: "direct",
            poll_ms: 1000,
        })
    }

    #[test]
    fn page_is_self_contained() {
        // The cluster has no internet: nothing may be fetched from elsewhere.
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            for needle in [
                "src=\"http",
                "href=\"http",
                "src=\"//",
                "href=\"//",
                "@import",
                "url(http",
                "url(//",
                "fonts.googleapis",
                "cdn",
            ] {
                assert!(!text.contains(needle), "{name} contains {needle:?}");
            }
        }
        for hook in ["data-link", "data-state", "data-router", "data-up"] {
            assert!(APP_JS.contains(hook), "test hook {hook}");
        }
    }

    #[test]
    fn index_carries_version_and_colour_escaped() {
        let a = app();
        assert!(a.index.contains("v2.0.0&lt;b&gt;"));
        assert_eq!(version_label("v1"), "v1");
        assert_eq!(version_label("0.1.0"), "v0.1.0");
        assert_eq!(version_label("local"), "local");
        assert!(a.index.contains("data-color=\"green\""));
        assert!(!a.index.contains("__VERSION__") && !a.index.contains("__COLOR__"));
    }

    #[test]
    fn metrics_have_the_routers_shape() {
        let a = app();
        a.observe(200, 0.003);
        a.observe(200, 0.2);
        a.observe(503, 20.0);
        let text = a.render_metrics();
        let samples = crate::scrape::parse(&text);
        let value = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && labels.len() == s.labels.len()
                        && labels.iter().all(|(k, v)| s.label(k) == *v)
                })
                .map(|s| s.value)
        };
        let svc = ("service", SERVICE);
        assert_eq!(
            value("http_requests_total", &[svc, ("status", "200")]),
            Some(2.0)
        );
        assert_eq!(
            value("http_requests_total", &[svc, ("status", "503")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                "http_request_duration_seconds_bucket",
                &[svc, ("le", "0.005")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                "http_request_duration_seconds_bucket",
                &[svc, ("le", "0.25")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                "http_request_duration_seconds_bucket",
                &[svc, ("le", "+Inf")]
            ),
            Some(3.0)
        );
        assert_eq!(
            value("http_request_duration_seconds_count", &[svc]),
            Some(3.0)
        );
        assert_eq!(
            value(
                "netops_dashboard_build_info",
                &[svc, ("version", "2.0.0<b>"), ("color", "green")]
            ),
            Some(1.0)
        );
        // Every non-comment line parses.
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples.len(), lines);
    }

    #[test]
    fn not_ready_until_the_first_poll() {
        let a = app();
        assert!(!a.ready());
        let t = a.topology();
        assert!(t.routers.is_empty() && t.updated_at.is_none());
        a.update(Err("Prometheus down".into()));
        assert!(!a.ready());
        a.update(Ok(crate::topology::Tracker::default().compute()));
        assert!(a.ready());
        assert_eq!(a.topology().error, None);
        a.update(Err("Prometheus down".into()));
        assert!(a.ready(), "the last picture stays");
        assert_eq!(a.topology().error.as_deref(), Some("Prometheus down"));
    }
}
