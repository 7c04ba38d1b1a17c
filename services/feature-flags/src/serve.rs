//! The read API sidecar: one service's flags, refreshed from Vault in the background and answered
//! from memory behind `common::serve`'s limits (deadlines, connection and request caps).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::vault::FlagStore;
use crate::{Flag, metrics_text, valid_segment};

/// What the sidecar knows.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub flags: Vec<Flag>,
    /// A read has succeeded at least once.
    pub loaded: bool,
    /// The last read succeeded.
    pub read_ok: bool,
}

#[derive(Clone)]
pub struct App {
    pub service: String,
    pub snapshot: Arc<RwLock<Snapshot>>,
    /// Today, days since the epoch (a function, so tests can inject a clock).
    pub today: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl App {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the service's flags once into the snapshot; keeps the old ones when Vault fails.
pub async fn refresh(store: &FlagStore, app: &App) {
    match store.flags(&app.service).await {
        Ok(flags) => {
            let mut s = app
                .snapshot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.flags = flags;
            s.loaded = true;
            s.read_ok = true;
        }
        Err(e) => {
            tracing::warn!(service = %app.service, "reading the flags from Vault failed (the last values stay): {e:#}");
            app.snapshot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .read_ok = false;
        }
    }
}

/// Refreshes every `every` forever.
pub async fn refresh_loop(store: FlagStore, app: App, every: Duration) {
    loop {
        refresh(&store, &app).await;
        tokio::time::sleep(every).await;
    }
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/v1/flags", get(all))
        .route("/v1/flags/{name}", get(one))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(app)
}

async fn all(State(app): State<App>) -> Response {
    let s = app.read();
    let flags: Vec<_> = s
        .flags
        .iter()
        .map(|f| json!({"name": f.name, "enabled": f.enabled}))
        .collect();
    axum::Json(json!({"service": app.service, "flags": flags})).into_response()
}

async fn one(State(app): State<App>, Path(name): Path<String>) -> Response {
    if !valid_segment(&name) {
        return (
            StatusCode::BAD_REQUEST,
            "a flag name is lowercase letters, digits, '-' and '_'",
        )
            .into_response();
    }
    let s = app.read();
    match s.flags.iter().find(|f| f.name == name) {
        Some(f) => axum::Json(json!({"name": f.name, "enabled": f.enabled})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"name": name, "enabled": false})),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let s = app.read();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_text(&s.flags, (app.today)(), s.read_ok),
    )
        .into_response()
}

async fn ready(State(app): State<App>) -> Response {
    if app.read().loaded {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no flags read from Vault yet",
        )
            .into_response()
    }
}
