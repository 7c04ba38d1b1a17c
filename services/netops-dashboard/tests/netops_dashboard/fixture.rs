//! The dashboard process against static router fixtures (`testdata/*.prom`, the contract's
//! shape) served on loopback, and one router that is not there: every endpoint, no relay needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::routing::get;

use crate::support::{Dashboard, DeadPort, http, link, node_states, wait_for};

const CORE: &str = include_str!("../../testdata/router-core.prom");
const GENERATOR: &str = include_str!("../../testdata/generator.prom");

/// Serves `render(n)` at `/metrics`, `n` counting the scrapes; returns the base URL.
async fn serve(render: impl Fn(u64) -> String + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let scrapes = Arc::new(AtomicU64::new(0));
    let render = Arc::new(render);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let n = scrapes.fetch_add(1, Ordering::Relaxed);
            let render = render.clone();
            async move { render(n) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Proves the whole server on known input: counters scraped over HTTP become rates and states
/// (core→east carries packets: up; core→10.0.0.99:8080 only drops: down; the generator's static
/// counters: idle), the unknown target is an "unknown" node, an unreachable router is `up: false`
/// with its error, the version and colour come from `APP_VERSION`/`APP_COLOR`, the page and its
/// assets are served with their types, and `/metrics` counts the dashboard's own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_against_static_router_fixtures() {
    // router-core's counters move at each scrape: +10 packets to east, +1 connect drop to the
    // unknown hop.
    let core = serve(|n| {
        CORE.replace(
            "to=\"router-east\"} 1234",
            &format!("to=\"router-east\"}} {}", 1234 + 10 * n),
        )
        .replace(
            "to=\"10.0.0.99:8080\",reason=\"connect\"} 17",
            &format!("to=\"10.0.0.99:8080\",reason=\"connect\"}} {}", 17 + n),
        )
    })
    .await;
    let generator = serve(|_| GENERATOR.to_string()).await;
    let east = DeadPort::new();
    let dir = tempfile::tempdir().unwrap();
    let dash = Dashboard::start(
        "dashboard-fixtures",
        &[
            (
                "DASHBOARD_ROUTERS",
                format!(
                    "generator={generator},router-core={core},router-east=http://127.0.0.1:{}",
                    east.port
                ),
            ),
            ("DASHBOARD_POLL_MS", "200".into()),
            ("APP_VERSION", "2.0.0".into()),
            ("APP_COLOR", "green".into()),
        ],
        dir.path(),
    )
    .await;

    let t = wait_for(
        "core→east up and core→10.0.0.99:8080 down",
        Duration::from_secs(20),
        || async {
            let t = dash.topology().await;
            let state = |to: &str| link(&t, "router-core", to).map(|l| l["state"].clone());
            if state("router-east") == Some("up".into())
                && state("10.0.0.99:8080") == Some("down".into())
            {
                Ok(t)
            } else {
                Err(t.to_string())
            }
        },
    )
    .await;
    assert_eq!(t["version"], "2.0.0");
    assert_eq!(t["color"], "green");
    assert_eq!(t["mode"], "direct");
    assert!(t["updated_at"].as_str().unwrap().ends_with('Z'));
    let east_link = link(&t, "router-core", "router-east").unwrap();
    assert!(east_link["packets_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(east_link["drops_per_sec"], 0.0);
    assert_eq!(east_link["active"], true);
    let gen_link = link(&t, "generator", "router-west").unwrap();
    assert_eq!(gen_link["state"], "idle", "configured, counters still");
    assert_eq!(
        t["delivery_ratio"],
        serde_json::Value::Null,
        "no traffic in the window"
    );
    assert_eq!(
        node_states(&t),
        [
            ("10.0.0.99:8080".to_string(), "unknown".to_string(), false),
            ("generator".to_string(), "generator".to_string(), true),
            ("router-core".to_string(), "router".to_string(), true),
            ("router-east".to_string(), "router".to_string(), false),
            // Named by west's link only (router-west itself is not listed): down.
            ("router-west".to_string(), "router".to_string(), false),
        ]
    );
    let routers = t["routers"].as_array().unwrap();
    let core_node = routers.iter().find(|r| r["name"] == "router-core").unwrap();
    assert_eq!(core_node["versions"], serde_json::json!(["0.1.0"]));
    let east_node = routers.iter().find(|r| r["name"] == "router-east").unwrap();
    // /api/topology is public: the kind of failure, never the URL or the library's text.
    assert_eq!(east_node["error"], "not reachable", "{east_node}");

    let http = http();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", dash.url);
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ctype, r.text().await.unwrap())
        }
    };
    let (status, ctype, page) = get("/").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains("v2.0.0") && page.contains("data-color=\"green\""));
    let (status, ctype, js) = get("/app.js").await;
    assert_eq!((status, ctype.starts_with("text/javascript")), (200, true));
    assert!(js.contains("data-link"));
    let (status, ctype, _) = get("/style.css").await;
    assert_eq!((status, ctype.starts_with("text/css")), (200, true));
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    assert_eq!(get("/no-such-page").await.0, 404);
    let (status, ctype, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let count = |series: &str| {
        metrics.lines().find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().ok())?
        })
    };
    assert!(
        count(r#"http_requests_total{service="netops-dashboard",status="200"}"#).unwrap() >= 6.0,
        "{metrics}"
    );
    assert_eq!(
        count(r#"http_requests_total{service="netops-dashboard",status="404"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        count(r#"http_request_duration_seconds_count{service="netops-dashboard"}"#).unwrap() >= 7.0
    );
}
