//! The HTTP server of the workspace's axum services (dora-collector, netops-dashboard), with the
//! limits `axum::serve` does not set (issue 18). `axum::serve` gives hyper no timer, so hyper's
//! 30 s header deadline never applies, and it bounds neither connections nor requests in flight.
//! Here:
//! - a request head (and an idle keep-alive connection waiting for one) gets
//!   [`ServerLimits::header_timeout`] (hyper's `header_read_timeout`, which hyper starts as soon
//!   as it waits for a head);
//! - a request body gets [`ServerLimits::body_timeout`] between its frames (tower-http), and the
//!   whole request, body and handler, [`ServerLimits::request_timeout`] (503 when over);
//! - at most [`ServerLimits::max_in_flight`] requests run at once; the rest wait for a place
//!   inside their request timeout (so a queue that does not move ends in 503), and the health
//!   routes ([`ServerLimits::unmetered_paths`]) never wait, so a busy server is not restarted by
//!   its own probes;
//! - an answer that cannot be written for [`ServerLimits::write_timeout`] (a client that stops
//!   reading) ends its connection: hyper has no write deadline of its own;
//! - at most [`ServerLimits::max_connections`] connections are open; past it nothing is
//!   accepted, so new connections wait in the kernel's backlog, and connections older than
//!   250 ms are asked to finish (idle ones close at once, busy ones after their answer, and are
//!   cut after [`ServerLimits::request_timeout`] more);
//! - a head is at most [`ServerLimits::max_head`] (64 KiB by default) and 64 headers (hyper's
//!   defaults: about 400 KiB and 100).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// Longest a write of an answer may make no progress (the client does not read).
    pub write_timeout: Duration,
    /// Paths that do not count against `max_in_flight` (cheap health probes).
    pub unmetered_paths: &'static [&'static str],
    /// Time in-flight requests get after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    /// For a service with a 256 Mi memory limit whose requests are small (webhooks, scrapes, a
    /// dashboard): 10 s for a head, 10 s between body frames, 30 s a request, 10 s of a stalled
    /// write, 16 in flight (16 bodies of the collector's largest allowed 8 MiB are 128 MiB) not
    /// counting `/healthz` and `/readyz`, 1,024 connections.
    pub const DEFAULT: Self = Self {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        max_in_flight: 16,
        max_connections: 1024,
        max_head: 64 * 1024,
        write_timeout: Duration::from_secs(10),
        unmetered_paths: &["/healthz", "/readyz"],
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
    // The in-flight limit is taken inside the request (a middleware), not in `poll_ready` (tower's
    // concurrency layer): the request timeout starts at `call`, so only then does it cover the
    // wait for a place.
    let in_flight = InFlight {
        places: Arc::new(Semaphore::new(limits.max_in_flight)),
        unmetered: limits.unmetered_paths,
    };
    let router = router.layer(axum::middleware::from_fn_with_state(
        in_flight,
        limit_in_flight,
    ));
    let service = ServiceBuilder::new()
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
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
            TokioIo::new(WriteDeadline::new(stream, limits.write_timeout)),
            TowerToHyperService::new(service.clone()),
        );
        let (pressure, mut stopping) = (pressure.clone(), stopping.clone());
        connections.spawn(async move {
            let opened = Instant::now();
            tokio::pin!(connection);
            let mut finishing = false;
            // Set when the connection is asked to finish: an answer still running gets one
            // request timeout more, then the connection is dropped.
            let cut_off = tokio::time::sleep(Duration::MAX);
            tokio::pin!(cut_off);
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
                            cut_off.as_mut().reset(tokio::time::Instant::now() + limits.request_timeout);
                        }
                    }
                    () = cut_off.as_mut(), if finishing => break,
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

/// The in-flight limit's state: places, and the paths that need none.
#[derive(Clone)]
struct InFlight {
    places: Arc<Semaphore>,
    unmetered: &'static [&'static str],
}

async fn limit_in_flight(
    axum::extract::State(limit): axum::extract::State<InFlight>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if limit.unmetered.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    // The semaphore is never closed.
    let _place = limit.places.acquire().await;
    next.run(request).await
}

/// A connection whose writes fail with `TimedOut` once one has made no progress for `limit`
/// (hyper waits on a client that stops reading forever, and so would its graceful shutdown).
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Started when a write first returns `Pending`, cleared when one makes progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write returned `Pending`: `Ready(error)` once the stall is over the limit.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let stall = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing of the answer for {limit:?}"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(done) => {
                self.stalled = None;
                Poll::Ready(done)
            }
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: the write fails after the limit instead of waiting forever.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_times_out() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut conn = WriteDeadline::new(near, Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let err = conn.write_all(&vec![0; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    /// A slow reader that keeps making progress is never cut: each write that moves restarts the clock.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0; 1024];
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                match tokio::io::AsyncReadExt::read(&mut far, &mut buf)
                    .await
                    .unwrap()
                {
                    0 => break got,
                    n => got += n,
                }
            }
        });
        let mut conn = WriteDeadline::new(near, Duration::from_secs(10));
        conn.write_all(&[0; 8 * 1024]).await.unwrap();
        conn.shutdown().await.unwrap();
        drop(conn);
        assert_eq!(reader.await.unwrap(), 8 * 1024);
    }

    /// With every place taken by a handler that never ends: another request gets 503 at its
    /// request timeout (the wait for a place counts), and `/healthz` is answered at once.
    #[tokio::test]
    async fn a_full_server_sheds_load_and_still_answers_its_probes() {
        use axum::routing::get;
        let router = axum::Router::new()
            .route("/slow", get(std::future::pending::<&'static str>))
            .route("/healthz", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServerLimits {
            request_timeout: Duration::from_secs(2),
            max_in_flight: 2,
            ..ServerLimits::DEFAULT
        };
        tokio::spawn(serve(listener, router, limits, std::future::pending()));
        let status = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut answer = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer)
                .await
                .unwrap();
            answer
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        };
        // Two slow requests hold both places until their timeout; a third waits for a place
        // and gets its 503 from the same timeout; the probe does not wait.
        let (a, b, c, probe) = tokio::join!(
            status("/slow"),
            status("/slow"),
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                status("/slow").await
            },
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let begun = Instant::now();
                (status("/healthz").await, begun.elapsed())
            }
        );
        assert_eq!([a.as_str(), b.as_str(), c.as_str()], ["503", "503", "503"]);
        assert_eq!(probe.0, "200");
        assert!(
            probe.1 < Duration::from_secs(1),
            "the probe waited {:?} for a place",
            probe.1
        );
    }
}
