//! The HTTP/1.1 server of routers and of the generator (RFC 9112), written for this service's
//! few endpoints so that a packet costs as little as possible: the head is parsed with
//! `httparse` in the connection's own buffer, a `Content-Length` body is handed to the handler
//! in place, and the answer goes out in one `write`.
//!
//! It speaks what clients send here: keep-alive and `Connection: close`, HTTP/1.0, pipelined
//! requests (answered in order), `Content-Length` and chunked bodies, `Expect: 100-continue`,
//! `HEAD`. A head over 64 KiB gets 431, a malformed one 400, both closing the connection; a body
//! whose end cannot be known (a Transfer-Encoding without chunked last) is the handler's 400.
//!
//! It defends itself as hyper does or better ([`Limits`]): a head and a body each get a read
//! deadline (408), an idle connection is closed, connections are capped with backpressure, and the
//! bytes all connections buffer come out of one budget, so a flood of slow or oversized requests
//! cannot grow memory past the pod's limit.

use std::borrow::Cow;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::h1::{self, BodyError};

/// The endpoints this service has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Relay,
    Metrics,
    Healthz,
    Readyz,
    Other,
}

impl Path {
    fn of(target: &str) -> Self {
        // Absolute form (`http://host/relay`) names the path after the authority.
        let target = match target.find("://") {
            Some(i) => target[i + 3..]
                .find('/')
                .map_or("/", |j| &target[i + 3 + j..]),
            None => target,
        };
        match target.split(['?', '#']).next().unwrap_or_default() {
            "/relay" => Self::Relay,
            "/metrics" => Self::Metrics,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            _ => Self::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// Why a request body is not there.
#[derive(Debug)]
pub enum BodyProblem {
    /// Over the limit: declared so (nothing read) or found so while reading a chunked body.
    TooLarge { declared: bool },
    /// The client's framing was broken.
    Broken(String),
}

/// One request, as the handler sees it.
pub struct Request<'a> {
    pub method: Method,
    pub path: Path,
    /// The `x-relay-budget-ms` header, when present and a number.
    pub budget_ms: Option<u64>,
    pub body: Result<Cow<'a, [u8]>, BodyProblem>,
}

/// The `Content-Type` of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    None,
    Static(&'static str),
    /// Passed on from a next hop.
    Owned(Vec<u8>),
}

pub const JSON: ContentType = ContentType::Static("application/json");
const TEXT: ContentType = ContentType::Static("text/plain; charset=utf-8");

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: ContentType,
    pub body: Vec<u8>,
    /// `Allow` (with 405).
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn new(status: u16, content_type: ContentType, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            allow: None,
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, JSON, body)
    }

    pub fn text(status: u16, body: &'static str) -> Self {
        Self::new(status, TEXT, body)
    }

    /// `GET /metrics`.
    pub fn metrics(text: String) -> Self {
        Self::new(
            200,
            ContentType::Static("text/plain; version=0.0.4; charset=utf-8"),
            text,
        )
    }

    /// `/readyz`: 200 while serving, 503 once shutting down.
    pub fn readiness(ready: bool) -> Self {
        if ready {
            Self::text(200, "ready\n")
        } else {
            Self::text(503, "shutting down\n")
        }
    }

    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut r = Self::text(405, "method not allowed\n");
        r.allow = Some(allow);
        r
    }
}

/// What serves the requests of a server.
pub trait Handler: Send + Sync + 'static {
    /// Largest request body read.
    fn max_body(&self) -> usize;
    fn handle<'a>(&'a self, request: Request<'a>) -> impl Future<Output = Response> + Send + 'a;
}

/// The parsed head of a request (each flag is an independent fact of the head).
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Head {
    pub(crate) len: usize,
    pub(crate) method: Method,
    pub(crate) path: Path,
    pub(crate) budget_ms: Option<u64>,
    pub(crate) content_length: Option<usize>,
    pub(crate) chunked: bool,
    /// A `Transfer-Encoding` without `chunked` last: the length cannot be known (400).
    pub(crate) unknown_length: bool,
    pub(crate) expect_continue: bool,
    pub(crate) keep_alive: bool,
}

/// The head of a request, once complete; an error says why it is malformed.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(buf).map_err(|e| e.to_string())?;
    let httparse::Status::Complete(len) = status else {
        return Ok(None);
    };
    let method = match request.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let http10 = request.version == Some(0);
    let mut head = Head {
        len,
        method,
        path: Path::of(request.path.unwrap_or_default()),
        budget_ms: None,
        content_length: None,
        chunked: false,
        unknown_length: false,
        expect_continue: false,
        keep_alive: !http10,
    };
    let mut saw_transfer_encoding = false;
    for h in request.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = h1::content_length(h.value).ok_or("bad Content-Length")?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length".into());
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            saw_transfer_encoding = true;
            if h1::chunked_last(h.value) {
                head.chunked = true;
            } else {
                head.unknown_length = true;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if h1::has_token(h.value, b"close") {
                head.keep_alive = false;
            } else if http10 && h1::has_token(h.value, b"keep-alive") {
                head.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue = h1::has_token(h.value, b"100-continue");
        } else if name.eq_ignore_ascii_case(crate::server::BUDGET_HEADER.as_bytes()) {
            head.budget_ms = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
    }
    // RFC 9112 §6.1: Transfer-Encoding is HTTP/1.1's; with Content-Length beside it the request
    // is a smuggling attempt or a broken intermediary. Both are refused (400, and `refuse` closes
    // the connection), so no byte after them is read as another request.
    if saw_transfer_encoding && http10 {
        return Err("Transfer-Encoding in an HTTP/1.0 request".into());
    }
    if saw_transfer_encoding && head.content_length.is_some() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    Ok(Some(head))
}

/// Writes the answer (head and body in one buffer, one write).
fn encode(out: &mut Vec<u8>, response: &Response, head_only: bool, close: bool) {
    out.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ndate: ",
        response.status,
        h1::reason(response.status)
    );
    out.extend_from_slice(&h1::now_date());
    let _ = write!(out, "\r\ncontent-length: {}\r\n", response.body.len());
    match &response.content_type {
        ContentType::None => {}
        ContentType::Static(ct) => {
            let _ = write!(out, "content-type: {ct}\r\n");
        }
        ContentType::Owned(ct) => {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(ct);
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(allow) = response.allow {
        let _ = write!(out, "allow: {allow}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&response.body);
    }
}

/// The server's limits. Each is bounded where it is read (`cli.rs`), and each is at least as
/// strict as hyper's server defaults (hyper: 30 s for a head, no idle limit, no connection cap).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; past it the server stops accepting (new ones wait in the
    /// kernel's backlog) and asks idle keep-alive connections to close.
    pub max_connections: usize,
    /// Time a head gets from its first byte, a body from the end of its head, and an answer to be
    /// written: each 408 (or a close) when over.
    pub read_timeout: Duration,
    /// Time a connection may wait for its next request (or its first).
    pub idle_timeout: Duration,
    /// Bytes of request buffers all connections may hold beyond [`FREE_BUFFER`] each; a
    /// connection that needs more waits (within its deadline) until others give some back.
    pub buffer_budget: usize,
}

impl Limits {
    /// The defaults of `packet-relay serve`: with 1,024 connections of at most [`FREE_BUFFER`]
    /// each and this budget, request buffers stay under 40 MiB, inside the routers' 64 Mi limit.
    pub const DEFAULT: Self = Self {
        max_connections: 1024,
        read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        buffer_budget: 24 * 1024 * 1024,
    };
}

/// Buffer capacity every connection may hold without drawing on the shared budget: a head and a
/// packet of the usual size.
pub const FREE_BUFFER: usize = 8 * 1024;
/// How long a connection must have been idle before the server, at its connection cap, closes it
/// for a new one (a client that just connected has not had time to send).
const RECLAIM_IDLE_AFTER: Duration = Duration::from_millis(250);

/// What the connections of one server share.
struct Shared {
    limits: Limits,
    /// The buffer budget, in KiB.
    budget: Arc<Semaphore>,
    /// Woken when the server is at its connection cap: idle connections close.
    pressure: Notify,
}

/// The budget a connection holds beyond [`FREE_BUFFER`], in KiB; given back on drop.
struct Charge {
    budget: Arc<Semaphore>,
    held_kib: u32,
}

impl Charge {
    /// Holds enough of the budget for a buffer of `capacity` bytes, waiting for it if need be.
    async fn cover(&mut self, capacity: usize) {
        let need =
            u32::try_from(capacity.saturating_sub(FREE_BUFFER).div_ceil(1024)).unwrap_or(u32::MAX);
        if need > self.held_kib {
            // The semaphore is never closed; `cli.rs` keeps one request within the budget.
            if let Ok(permit) = self.budget.acquire_many(need - self.held_kib).await {
                permit.forget();
                self.held_kib = need;
            }
        }
    }

    /// Gives back what a buffer of `capacity` bytes no longer needs.
    fn settle(&mut self, capacity: usize) {
        let need =
            u32::try_from(capacity.saturating_sub(FREE_BUFFER).div_ceil(1024)).unwrap_or(u32::MAX);
        if need < self.held_kib {
            self.budget.add_permits((self.held_kib - need) as usize);
            self.held_kib = need;
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.settle(0);
    }
}

/// The server's reads: each growth of the buffer is charged to the budget first, and grows it by
/// a bounded step (not by doubling), so a buffer holds about what it was sent.
struct Budgeted<'a> {
    stream: &'a mut TcpStream,
    charge: &'a mut Charge,
}

impl h1::Source for Budgeted<'_> {
    async fn fill(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if buf.capacity() - buf.len() < 1024 {
            let step = (buf.len() / 2).clamp(4096, 64 * 1024);
            self.charge.cover(buf.len() + step).await;
            buf.reserve_exact(step);
        }
        self.stream.read_buf(buf).await
    }
}

/// Ends a connection after its last answer: FIN first, then what the client still sends is read
/// and dropped for a moment (at most 256 KiB, 500 ms). Closing a socket with unread bytes sends a
/// reset, which can destroy the answer before the client reads it (a lingering close, as
/// nginx's `lingering_close`).
async fn close(stream: &mut TcpStream) {
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0_u8; 4096];
        let mut dropped = 0;
        while dropped < 256 * 1024 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// Answers a broken request and ends the connection (within a short deadline: a client that does
/// not read is not waited for).
async fn refuse(stream: &mut TcpStream, out: &mut Vec<u8>, status: u16, body: &'static str) {
    encode(out, &Response::text(status, body), false, true);
    if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), stream.write_all(out)).await {
        close(stream).await;
    }
}

/// How waiting for a connection's next request ended.
enum Wait {
    Read(std::io::Result<usize>),
    /// Stopping, idle for too long, or reclaimed by a server at its cap: close quietly.
    Close,
}

/// Waits for the first bytes of the next request, and closes the connection when the server
/// stops, the idle time is over, or the server needs the connection for a new one.
async fn next_request(
    source: &mut Budgeted<'_>,
    buf: &mut Vec<u8>,
    shared: &Shared,
    stopping: &mut watch::Receiver<bool>,
) -> Wait {
    if *stopping.borrow() {
        return Wait::Close;
    }
    let idle_since = Instant::now();
    let idle_over = tokio::time::sleep(shared.limits.idle_timeout);
    tokio::pin!(idle_over);
    loop {
        tokio::select! {
            biased;
            read = h1::Source::fill(source, buf) => return Wait::Read(read),
            _ = stopping.changed() => return Wait::Close,
            () = &mut idle_over => return Wait::Close,
            () = shared.pressure.notified() => {
                if idle_since.elapsed() >= RECLAIM_IDLE_AFTER {
                    return Wait::Close;
                }
            }
        }
    }
}

/// Serves one connection until the client closes it, a request asks to close, a deadline passes,
/// or the server stops (an idle connection closes at once; a busy one after its answer).
#[allow(clippy::too_many_lines)] // one request's life, in order; split it and the order is lost
async fn connection<H: Handler>(
    mut stream: TcpStream,
    handler: Arc<H>,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    let mut charge = Charge {
        budget: shared.budget.clone(),
        held_kib: 0,
    };
    // Allocated at the first byte: an idle connection holds no buffer.
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut source = Budgeted {
            stream: &mut stream,
            charge: &mut charge,
        };
        if buf.is_empty() {
            match next_request(&mut source, &mut buf, &shared, &mut stopping).await {
                Wait::Read(Ok(n)) if n > 0 => {}
                Wait::Read(_) | Wait::Close => return,
            }
        }
        // The head, within the read deadline from its first byte.
        let head_deadline = Instant::now() + limits.read_timeout;
        let head = tokio::time::timeout_at(head_deadline.into(), async {
            // Parsed again only once a line has ended since the last parse: a head trickled a
            // byte at a time costs its lines times its length, not its length squared.
            let mut parsed_to = 0;
            loop {
                if parsed_to == 0 || buf[parsed_to..].contains(&b'\n') {
                    match parse_head(&buf) {
                        Ok(Some(head)) if head.len <= h1::MAX_HEAD => return Ok(head),
                        Ok(Some(_)) => return Err((431, "request head over 64 KiB\n")),
                        Ok(None) => {}
                        Err(_) => return Err((400, "malformed request\n")),
                    }
                    parsed_to = buf.len();
                }
                if buf.len() > h1::MAX_HEAD {
                    return Err((431, "request head over 64 KiB\n"));
                }
                match h1::Source::fill(&mut source, &mut buf).await {
                    Ok(0) | Err(_) => return Err((0, "")),
                    Ok(_) => {}
                }
            }
        })
        .await;
        let head = match head {
            Ok(Ok(head)) => head,
            Ok(Err((0, _))) => return, // the client went away
            Ok(Err((status, why))) => return refuse(&mut stream, &mut out, status, why).await,
            Err(_) => {
                return refuse(
                    &mut stream,
                    &mut out,
                    408,
                    "request head not complete in time\n",
                )
                .await;
            }
        };
        let max = handler.max_body();
        let mut keep_alive = head.keep_alive;
        let mut end = head.len;
        let body_deadline = Instant::now() + limits.read_timeout;
        // The body: `Ok(len)` when it is `buf[head.len..head.len + len]`.
        let body: Result<usize, BodyProblem> = if head.unknown_length {
            // The body's end cannot be known (RFC 9112 §6.3): 400, and the connection closes.
            keep_alive = false;
            Err(BodyProblem::Broken(
                "Transfer-Encoding without chunked last".into(),
            ))
        } else if let Some(n) = head.content_length {
            if n > max {
                keep_alive = false; // the body is not read
                Err(BodyProblem::TooLarge { declared: true })
            } else {
                let read = tokio::time::timeout_at(body_deadline.into(), async {
                    if head.expect_continue && buf.len() < head.len + n {
                        source
                            .stream
                            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                            .await?;
                    }
                    // Read as it arrives, each growth charged then: a head that declares
                    // 64 KiB and sends nothing holds no budget (charging the declared length
                    // up front let about 380 such heads pin the whole budget).
                    while buf.len() < head.len + n {
                        if h1::Source::fill(&mut source, &mut buf).await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Ok::<_, std::io::Error>(())
                })
                .await;
                match read {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return, // the client went away mid-body
                    Err(_) => {
                        return refuse(
                            &mut stream,
                            &mut out,
                            408,
                            "request body not complete in time\n",
                        )
                        .await;
                    }
                }
                end = head.len + n;
                Ok(n)
            }
        } else if head.chunked {
            let read = tokio::time::timeout_at(body_deadline.into(), async {
                if head.expect_continue && buf.len() == head.len {
                    let _ = source
                        .stream
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await;
                }
                h1::read_chunked(&mut source, &mut buf, head.len, max).await
            })
            .await;
            match read {
                Ok(Ok((len, after))) => {
                    end = after;
                    Ok(len)
                }
                Ok(Err(BodyError::TooLarge)) => {
                    keep_alive = false;
                    Err(BodyProblem::TooLarge { declared: false })
                }
                Ok(Err(BodyError::Io(_))) => return,
                Ok(Err(e @ BodyError::Protocol(_))) => {
                    keep_alive = false;
                    Err(BodyProblem::Broken(e.to_string()))
                }
                Err(_) => {
                    return refuse(
                        &mut stream,
                        &mut out,
                        408,
                        "request body not complete in time\n",
                    )
                    .await;
                }
            }
        } else {
            Ok(0)
        };
        let head_only = head.method == Method::Head;
        let response = handler
            .handle(Request {
                method: head.method,
                path: head.path,
                budget_ms: head.budget_ms,
                body: body.map(|len| Cow::Borrowed(&buf[head.len..head.len + len])),
            })
            .await;
        let closing = !keep_alive || *stopping.borrow();
        encode(&mut out, &response, head_only, closing);
        drop(response);
        // A client that does not read its answers is not waited for.
        let written = tokio::time::timeout(limits.read_timeout, stream.write_all(&out)).await;
        match written {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) => return close(&mut stream).await,
            _ => return, // the client does not read, or is gone
        }
        if end >= buf.len() {
            buf.clear();
        } else {
            buf.drain(..end); // a pipelined request follows
        }
        // Give back what a large request took.
        if buf.capacity() > FREE_BUFFER {
            buf.shrink_to(FREE_BUFFER.max(buf.len()));
        }
        if out.capacity() > FREE_BUFFER {
            out = Vec::new();
        }
        charge.settle(buf.capacity());
    }
}

/// Serves `handler` on every connection accepted until `stop` completes, within `limits`; then
/// stops accepting, closes idle connections and waits for busy ones to send their answer.
pub async fn serve<H: Handler>(
    listener: tokio::net::TcpListener,
    handler: Arc<H>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        limits,
        budget: Arc::new(Semaphore::new(
            u32::try_from(limits.buffer_budget / 1024).unwrap_or(u32::MAX) as usize,
        )),
        pressure: Notify::new(),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        // A slot first: at the cap nothing is accepted (the kernel's backlog holds new
        // connections: backpressure), and idle connections are asked to make room.
        let slot = if let Ok(slot) = slots.clone().try_acquire_owned() {
            slot
        } else {
            shared.pressure.notify_waiters();
            tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = tokio::time::sleep(RECLAIM_IDLE_AFTER) => continue,
                () = &mut stop => break,
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
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let (handler, shared, stopping) = (handler.clone(), shared.clone(), stopping.clone());
        connections.spawn(async move {
            connection(stream, handler, shared, stopping).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_heads() {
        assert_eq!(Path::of("/relay"), Path::Relay);
        assert_eq!(Path::of("/metrics?x=1"), Path::Metrics);
        assert_eq!(Path::of("http://router-core:8080/relay"), Path::Relay);
        assert_eq!(Path::of("/relay/"), Path::Other);
        let Ok(Some(h)) = parse_head(
            b"POST /relay HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Relay-Budget-Ms: 1900\r\nExpect: 100-continue\r\n\r\n",
        ) else {
            panic!("not parsed")
        };
        assert_eq!(
            (
                h.method,
                h.path,
                h.budget_ms,
                h.content_length,
                h.chunked,
                h.expect_continue,
                h.keep_alive
            ),
            (
                Method::Post,
                Path::Relay,
                Some(1900),
                None,
                true,
                true,
                true
            )
        );
        let Ok(Some(h)) = parse_head(b"GET /healthz HTTP/1.0\r\n\r\n") else {
            panic!("not parsed")
        };
        assert!(!h.keep_alive);
        let Ok(Some(h)) = parse_head(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        else {
            panic!("not parsed")
        };
        assert!(h.keep_alive);
        assert!(matches!(
            parse_head(b"POST /relay HTTP/1.1\r\nHost"),
            Ok(None)
        ));
        assert!(parse_head(b"POST /relay HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"\x00\x01 nonsense\r\n\r\n").is_err());
    }

    /// RFC 9112 §6.1 framing: the request-smuggling shapes are refused (400; `refuse` closes).
    #[test]
    fn smuggling_shapes_are_refused() {
        for (head, why) in [
            (
                &b"POST /relay HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                    [..],
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"POST /relay HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"POST /relay HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding in an HTTP/1.0 request",
            ),
        ] {
            assert_eq!(parse_head(head).err().as_deref(), Some(why));
        }
    }

    #[test]
    fn answers_are_one_buffer() {
        let mut out = Vec::new();
        encode(&mut out, &Response::json(508, "{}"), false, true);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 508 Loop Detected\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with("\r\ncontent-length: 2\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{}"), "{text}");
        encode(&mut out, &Response::method_not_allowed("POST"), true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\r\nallow: POST\r\n") && text.ends_with("\r\n\r\n"),
            "{text}"
        );
        assert!(text.contains("content-length: 19\r\n"), "{text}");
    }
}
