//! The HTTP/1.1 server of routers and of the generator (RFC 9112), written for this service's
//! few endpoints so that a packet costs as little as possible: the head is parsed with
//! `httparse` in the connection's own buffer, a `Content-Length` body is handed to the handler
//! in place, and the answer goes out in one `write`.
//!
//! It speaks what clients send here: keep-alive and `Connection: close`, HTTP/1.0, pipelined
//! requests (answered in order), `Content-Length` and chunked bodies, `Expect: 100-continue`,
//! `HEAD`. A head over 64 KiB gets 431, a malformed one 400, both closing the connection; a body
//! whose end cannot be known (a Transfer-Encoding without chunked last) is the handler's 400.

use std::borrow::Cow;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
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
struct Head {
    len: usize,
    method: Method,
    path: Path,
    budget_ms: Option<u64>,
    content_length: Option<usize>,
    chunked: bool,
    /// A `Transfer-Encoding` without `chunked` last: the length cannot be known (400).
    unknown_length: bool,
    expect_continue: bool,
    keep_alive: bool,
}

/// The head of a request, once complete; an error says why it is malformed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
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

/// Answers a broken request and ends the connection.
async fn refuse(stream: &mut TcpStream, out: &mut Vec<u8>, status: u16, body: &'static str) {
    encode(out, &Response::text(status, body), false, true);
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
}

/// Serves one connection until the client closes it, a request asks to close, or the server
/// stops (an idle connection closes at once; a busy one after its answer).
async fn connection<H: Handler>(
    mut stream: TcpStream,
    handler: Arc<H>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse_head(&buf) {
                    Ok(Some(head)) if head.len <= h1::MAX_HEAD => break head,
                    Ok(Some(_)) => {
                        return refuse(&mut stream, &mut out, 431, "request head over 64 KiB\n")
                            .await;
                    }
                    Ok(None) => {}
                    Err(_) => {
                        return refuse(&mut stream, &mut out, 400, "malformed request\n").await;
                    }
                }
                if buf.len() > h1::MAX_HEAD {
                    return refuse(&mut stream, &mut out, 431, "request head over 64 KiB\n").await;
                }
            }
            let read = if buf.is_empty() {
                // Between requests: a stopping server closes the connection here.
                if *stopping.borrow() {
                    return;
                }
                tokio::select! {
                    biased;
                    read = h1::fill(&mut stream, &mut buf) => read,
                    _ = stopping.changed() => return,
                }
            } else {
                h1::fill(&mut stream, &mut buf).await
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let max = handler.max_body();
        let mut keep_alive = head.keep_alive;
        let mut end = head.len;
        let body: Result<Cow<[u8]>, BodyProblem> = if head.unknown_length {
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
                if head.expect_continue && buf.len() < head.len + n {
                    let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                let mut complete = true;
                while buf.len() < head.len + n {
                    match h1::fill(&mut stream, &mut buf).await {
                        Ok(0) | Err(_) => {
                            complete = false;
                            break;
                        }
                        Ok(_) => {}
                    }
                }
                if !complete {
                    return; // the client went away mid-body
                }
                end = head.len + n;
                Ok(Cow::Borrowed(&buf[head.len..end]))
            }
        } else if head.chunked {
            if head.expect_continue && buf.len() == head.len {
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            match h1::read_chunked(&mut stream, &mut buf, head.len, max).await {
                Ok((body, after)) => {
                    end = after;
                    Ok(Cow::Owned(body))
                }
                Err(BodyError::TooLarge) => {
                    keep_alive = false;
                    Err(BodyProblem::TooLarge { declared: false })
                }
                Err(BodyError::Io(_)) => return,
                Err(e @ BodyError::Protocol(_)) => {
                    keep_alive = false;
                    Err(BodyProblem::Broken(e.to_string()))
                }
            }
        } else {
            Ok(Cow::Borrowed(&[][..]))
        };
        let head_only = head.method == Method::Head;
        let response = handler
            .handle(Request {
                method: head.method,
                path: head.path,
                budget_ms: head.budget_ms,
                body,
            })
            .await;
        let close = !keep_alive || *stopping.borrow();
        encode(&mut out, &response, head_only, close);
        if stream.write_all(&out).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
        if end >= buf.len() {
            buf.clear();
        } else {
            buf.drain(..end); // a pipelined request follows
        }
        if buf.capacity() > 256 * 1024 {
            buf.shrink_to(4096);
        }
    }
}

/// Serves `handler` on every connection accepted until `stop` completes; then stops accepting,
/// closes idle connections and waits for busy ones to send their answer.
pub async fn serve<H: Handler>(
    listener: tokio::net::TcpListener,
    handler: Arc<H>,
    stop: impl Future<Output = ()>,
) {
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
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
        connections.spawn(connection(stream, handler.clone(), stopping.clone()));
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
