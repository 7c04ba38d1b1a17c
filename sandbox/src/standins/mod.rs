//! Stand-ins for the servers that cannot run here (GitLab, Harbor, Keycloak, Argo CD's API). Each serves only
//! the endpoints the phases call, with behaviour taken from the official docs/specs (the handler
//! comments name the section). Every stand-in counts reads and writes (so tests assert idempotency
//! and dry runs as numbers) and injects faults on request. Control endpoints live under
//! `/__sandbox/`: `GET counters`, `POST counters/reset`, `POST faults` (a [`Fault`]), `DELETE faults`.

pub mod argocd;
pub mod gitlab;
pub mod harbor;
pub mod keycloak;
pub mod swagger;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A fault to inject into matching requests.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Fault {
    /// Only this method (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Requests whose path starts with this.
    #[serde(default)]
    pub path_prefix: String,
    /// Answer with this status instead of serving (0: serve normally, after `latency_ms`).
    #[serde(default)]
    pub status: u16,
    /// `Retry-After` seconds to send with the status.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Delay before answering.
    #[serde(default)]
    pub latency_ms: u64,
    /// How many requests to affect (all when absent).
    #[serde(default)]
    pub times: Option<u32>,
    /// `Location` to send with a 3xx `status`: a redirect, possibly to another origin (a hostile
    /// or misconfigured proxy in front of the server).
    #[serde(default)]
    pub location: Option<String>,
    /// A `Link` header replacing the served answer's (with `status` 0): a next-page link to
    /// another origin, as a proxy rewriting links would send.
    #[serde(default)]
    pub link: Option<String>,
}

/// Request counters of one stand-in.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub by_route: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn snapshot(&self) -> serde_json::Value {
        json!({
            "reads": self.reads.load(Ordering::Relaxed),
            "writes": self.writes.load(Ordering::Relaxed),
            "by_route": *self.by_route.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        })
    }
}

/// Shared state of the framework around one stand-in.
#[derive(Clone, Default)]
pub struct Control {
    pub counters: Arc<Counters>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl Control {
    pub fn add_fault(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(fault);
    }
    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn take_fault(&self, method: &Method, path: &str) -> Option<Fault> {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = faults.iter().position(|f| {
            path.starts_with(&f.path_prefix)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
        })?;
        let fault = faults[index].clone();
        if let Some(times) = faults[index].times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                faults.remove(index);
            }
        }
        Some(fault)
    }
}

async fn count_and_inject(
    State(control): State<Control>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if path.starts_with("/__sandbox/") {
        return next.run(request).await;
    }
    let fault = control.take_fault(&method, &path);
    let link = fault.as_ref().and_then(|f| f.link.clone());
    if let Some(fault) = fault {
        if fault.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
        }
        if fault.status != 0 {
            let status =
                StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (
                status,
                Json(json!({"message": format!("{} (injected by the sandbox)", status)})),
            )
                .into_response();
            if let Some(secs) = fault.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            if let Some(location) = fault
                .location
                .as_deref()
                .and_then(|l| HeaderValue::from_str(l).ok())
            {
                response.headers_mut().insert("location", location);
            }
            return response;
        }
    }
    let mut response = next.run(request).await;
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert("link", link);
    }
    // Count what the server actually served (a write is any non-GET that reached a handler).
    let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if write {
        control.counters.writes.fetch_add(1, Ordering::Relaxed);
    } else {
        control.counters.reads.fetch_add(1, Ordering::Relaxed);
    }
    *control
        .counters
        .by_route
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(format!("{method} {path}"))
        .or_default() += 1;
    response
}

/// Wraps a stand-in's routes with counting, fault injection and the `/__sandbox/` control API.
pub fn with_framework(routes: Router, control: Control) -> Router {
    let admin = Router::new()
        .route(
            "/__sandbox/counters",
            get(|State(c): State<Control>| async move { Json(c.counters.snapshot()) }),
        )
        .route(
            "/__sandbox/counters/reset",
            post(|State(c): State<Control>| async move {
                c.counters.reads.store(0, Ordering::Relaxed);
                c.counters.writes.store(0, Ordering::Relaxed);
                c.counters
                    .by_route
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/__sandbox/faults",
            post(
                |State(c): State<Control>, Json(f): Json<Fault>| async move {
                    c.add_fault(f);
                    StatusCode::NO_CONTENT
                },
            )
            .delete(|State(c): State<Control>| async move {
                c.clear_faults();
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(control.clone());
    routes
        .merge(admin)
        .layer(axum::middleware::from_fn_with_state(
            control,
            count_and_inject,
        ))
}

/// A running stand-in.
pub struct Running {
    pub name: &'static str,
    pub url: String,
    pub control: Control,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves `routes` on a free loopback port.
pub async fn serve(name: &'static str, routes: Router) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    serve_on(name, routes, listener)
}

/// Serves `routes` on an already-bound listener.
pub fn serve_on(
    name: &'static str,
    routes: Router,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Running> {
    let url = format!("http://{}", listener.local_addr()?);
    let control = Control::default();
    let app = with_framework(routes, control.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("{name} stand-in stopped: {e}");
        }
    });
    Ok(Running {
        name,
        url,
        control,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_writes_and_injects_faults_with_retry_after() {
        common::cli::install_crypto_provider();
        let routes = Router::new().route("/thing", get(|| async { "ok" }).put(|| async { "put" }));
        let running = serve("test", routes).await.unwrap();
        let http = reqwest::Client::new();
        let url = format!("{}/thing", running.url);
        assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
        assert_eq!(http.put(&url).send().await.unwrap().status(), 200);
        running.control.add_fault(Fault {
            path_prefix: "/thing".into(),
            status: 429,
            retry_after: Some(3),
            times: Some(1),
            ..Fault::default()
        });
        let limited = http.get(&url).send().await.unwrap();
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "3");
        assert_eq!(
            http.get(&url).send().await.unwrap().status(),
            200,
            "the fault applied once only"
        );
        let counters: serde_json::Value = http
            .get(format!("{}/__sandbox/counters", running.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(counters["writes"], 1);
        assert_eq!(
            counters["reads"], 2,
            "injected faults are not counted as served"
        );
    }
}
