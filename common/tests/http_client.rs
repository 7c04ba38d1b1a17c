//! The one HTTP client against a local server: retries, Retry-After, idempotency, pagination, errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::config::Credential;
use common::error::Error;
use common::http::{ApiClient, Fixes, Retry};
use reqwest::Method;

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

async fn flaky(State(hits): State<Hits>) -> impl IntoResponse {
    match hits.0.fetch_add(1, Ordering::SeqCst) {
        0 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        1 => (StatusCode::BAD_GATEWAY, "bad gateway").into_response(),
        _ => (StatusCode::OK, "{\"ok\":true}").into_response(),
    }
}

async fn pages(
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let host = headers.get("host").unwrap().to_str().unwrap().to_owned();
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let items: Vec<usize> = ((page - 1) * 2..page * 2).collect();
    let mut response = axum::Json(items).into_response();
    if page < 3 {
        let link = format!(
            "<http://{host}/items?page={}>; rel=\"next\", <http://{host}/items?page=3>; rel=\"last\"",
            page + 1
        );
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

async fn serve() -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/flaky", get(flaky).post(flaky))
        .route("/items", get(pages))
        .route(
            "/secret",
            get(|| async {
                (
                    StatusCode::UNAUTHORIZED,
                    "{\"message\":\"401 Unauthorized\"}",
                )
            }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

fn client(url: &str) -> ApiClient {
    common::cli::install_crypto_provider();
    ApiClient::new("Test", url, reqwest::Client::new(), 4)
        .with_backoff(Duration::from_millis(10))
        .with_auth(
            "private-token",
            "",
            Credential {
                value: "glpat-test-secret-1".to_owned().into(),
                source: "GITLAB_API_TOKEN".into(),
            },
        )
        .with_fixes(Fixes {
            unauthorized: "renew GITLAB_API_TOKEN".into(),
            ..Fixes::default()
        })
}

#[tokio::test]
async fn idempotent_requests_retry_429_with_retry_after_and_5xx() {
    let (url, hits) = serve().await;
    let api = client(&url);
    let started = Instant::now();
    let resp = api
        .call("reading flaky", Method::GET, "/flaky", None, Retry::Safe)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(hits.0.load(Ordering::SeqCst), 3, "429, then 502, then 200");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(api.stats().retries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried() {
    let (url, hits) = serve().await;
    let err = client(&url)
        .call("creating thing", Method::POST, "/flaky", None, Retry::Never)
        .await
        .unwrap_err();
    assert_eq!(hits.0.load(Ordering::SeqCst), 1);
    assert_eq!(err.status(), Some(429));
}

#[tokio::test]
async fn pagination_follows_link_headers_to_the_end() {
    let (url, _) = serve().await;
    let items = client(&url)
        .get_all_pages("listing items", "/items")
        .await
        .unwrap();
    assert_eq!(
        items,
        (0..6).map(serde_json::Value::from).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn errors_are_one_line_with_status_operation_url_and_fix() {
    let (url, _) = serve().await;
    let err = client(&url)
        .call(
            "reading the user",
            Method::GET,
            "/secret",
            None,
            Retry::Safe,
        )
        .await
        .unwrap_err();
    let line = err.one_line();
    assert!(
        line.starts_with("401 from Test reading the user (GET http://"),
        "{line}"
    );
    assert!(
        line.contains("401 Unauthorized") && line.ends_with("— renew GITLAB_API_TOKEN"),
        "{line}"
    );
    assert!(!line.contains("glpat-test-secret-1"));
    let unreachable = client("http://127.0.0.1:1")
        .with_backoff(Duration::from_millis(1))
        .call("pinging", Method::GET, "/", None, Retry::Safe)
        .await
        .unwrap_err();
    assert!(
        matches!(unreachable, Error::Unreachable { .. }),
        "{unreachable}"
    );
}

/// What reached the other origin: any request, and whether it carried the token.
#[derive(Clone, Default)]
struct Elsewhere {
    requests: Arc<AtomicUsize>,
    with_token: Arc<AtomicUsize>,
}

async fn other_origin() -> (String, Elsewhere) {
    let seen = Elsewhere::default();
    let app = Router::new()
        .fallback(
            |State(seen): State<Elsewhere>, headers: HeaderMap| async move {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                if headers.contains_key("private-token") {
                    seen.with_token.fetch_add(1, Ordering::SeqCst);
                }
                axum::Json(vec![99])
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A server that sends a cross-origin `Link`, a redirect to another port, and Harbor's relative
/// links (Harbor's API answers `Link: </api/v2.0/projects?page=2&page_size=10>; rel="next"`).
async fn hostile(elsewhere: String) -> String {
    let app = Router::new()
        .route(
            "/cross-link",
            get({
                let elsewhere = elsewhere.clone();
                move || async move {
                    (
                        [("link", format!("<{elsewhere}/items?page=2>; rel=\"next\""))],
                        axum::Json(vec![1]),
                    )
                }
            }),
        )
        .route(
            "/redirect",
            get(move || async move {
                (
                    StatusCode::FOUND,
                    [("location", format!("{elsewhere}/steal"))],
                    "",
                )
            }),
        )
        .route(
            "/api/v2.0/projects",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    let mut response = axum::Json(vec![page]).into_response();
                    if page < 3 {
                        let link = format!(
                            "</api/v2.0/projects?page={}&page_size=1>; rel=\"next\"",
                            page + 1
                        );
                        response.headers_mut().insert("link", link.parse().unwrap());
                    }
                    response
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn hardened_client(url: &str) -> ApiClient {
    common::cli::install_crypto_provider();
    let http = common::http::client_builder(Duration::from_secs(10))
        .build()
        .unwrap();
    ApiClient::new("Test", url, http, 0).with_auth(
        "private-token",
        "",
        Credential {
            value: "glpat-test-secret-1".to_owned().into(),
            source: "GITLAB_API_TOKEN".into(),
        },
    )
}

#[tokio::test]
async fn the_token_never_follows_a_link_or_a_redirect_to_another_origin() {
    let (elsewhere, seen) = other_origin().await;
    let url = hostile(elsewhere.clone()).await;
    let api = hardened_client(&url);
    let err = api
        .get_all_pages("listing items", "/cross-link")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not at") && err.contains(&url), "{err}");
    let answer = api
        .send("reading", Method::GET, "/redirect", None, Retry::Never)
        .await
        .unwrap();
    assert_eq!(answer.status, 302, "a redirect is an answer, not a hop");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        0,
        "nothing reached {elsewhere}"
    );
    assert_eq!(seen.with_token.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn harbor_relative_links_page_through_every_page() {
    let url = hostile("http://127.0.0.1:9".into()).await;
    let items = hardened_client(&url)
        .get_all_pages("listing projects", "/api/v2.0/projects?page=1&page_size=1")
        .await
        .unwrap();
    assert_eq!(
        items,
        (1..=3).map(serde_json::Value::from).collect::<Vec<_>>(),
        "3 pages, each link resolved against Harbor's host, not /api/v2.0/api/v2.0/…"
    );
}
