//! The HTTP server of the workspace's axum services (dora-collector, netops-dashboard), with the
//! limits `axum::serve` does not set (issue 18). `axum::serve` gives hyper no timer, so hyper's
//! 30 s header deadline never applies, and it bounds neither connections nor requests in flight.
//! Here:
//! - a request head (and an idle keep-alive connection waiting for one) gets
//!   [`ServerLimits::header_timeout`] (hyper's `header_read_timeout`, which hyper starts as soon
//!   as it waits for a head);
//! - a request body gets [`ServerLimits::body_timeout`] between its frames (tower-http), and the
//!   whole request, body and handler, [`ServerLimits::request_timeout`] (503 when over);
//! - at most [`ServerLimits::max_in_flight`] requests run at once (tower's global concurrency
//!   limit: the rest wait, within their request timeout);
//! - at most [`ServerLimits::max_connections`] connections are open; past it nothing is
//!   accepted, so new connections wait in the kernel's backlog, and connections older than
//!   250 ms are asked to finish (idle ones close at once, busy ones after their answer);
//! - a head is at most [`ServerLimits::max_head`] (64 KiB by default) and 64 headers (hyper's
//!   defaults: about 400 KiB and 100).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceBuilder;

/// The limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time a request head gets, counted from when the connection starts waiting for it (so an
    /// idle keep-alive connection is closed after it too).
    pub header_timeout: Duration,
    /// Longest pause between two frames of a request body.
    pub body_timeout: Duration,
    /// Time from a head to the answer's head: body and handler (503 when over).
    pub request_timeout: Duration,
    /// Requests handled at once.
    pub max_in_flight: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head, in bytes (hyper's floor is 8 KiB): with `max_connections`, what
    /// stalled heads can hold at most.
    pub max_head: usize,
    /// Time in-flight requests get after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    /// For a service with a 256 Mi memory limit whose requests are small (webhooks, scrapes, a
    /// dashboard): 10 s for a head, 10 s between body frames, 30 s a request, 16 in flight (16
    /// bodies of the collector's largest allowed 8 MiB are 128 MiB), 1,024 connections.
    pub const DEFAULT: Self = Self {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        max_in_flight: 16,
        max_connections: 1024,
        max_head: 64 * 1024,
        shutdown_grace: Duration::from_secs(10),
    };
}

/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// At the connection cap, connections at least this old are asked to finish (hyper closes an
/// idle one at once, a busy one after its answer): a client that just connected has not had
/// time to send.
const RECLAIM_AFTER: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, closes idle connections and gives in-flight requests `limits.shutdown_grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let service = ServiceBuilder::new()
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .service(router);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head.max(8192))
        .max_headers(MAX_HEADERS);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let pressure = Arc::new(Notify::new());
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap nothing is accepted (the kernel's backlog holds new
        // connections: backpressure), and older connections are asked to make room.
        let slot = if let Ok(slot) = slots.clone().try_acquire_owned() {
            slot
        } else {
            pressure.notify_waiters();
            tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = tokio::time::sleep(RECLAIM_AFTER) => continue,
                () = &mut shutdown => break,
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = http1.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let (pressure, mut stopping) = (pressure.clone(), stopping.clone());
        connections.spawn(async move {
            let opened = Instant::now();
            tokio::pin!(connection);
            let mut finishing = false;
            loop {
                tokio::select! {
                    // A client that breaks the protocol or a deadline is simply disconnected.
                    _ = connection.as_mut() => break,
                    _ = stopping.changed(), if !finishing => {
                        connection.as_mut().graceful_shutdown();
                        finishing = true;
                    }
                    () = pressure.notified(), if !finishing => {
                        if opened.elapsed() >= RECLAIM_AFTER {
                            connection.as_mut().graceful_shutdown();
                            finishing = true;
                        }
                    }
                }
            }
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, "shutdown grace over: in-flight requests cut off");
    }
}
