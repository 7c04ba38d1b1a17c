//! The connection pool to one next hop: plain HTTP/1.1 keep-alive connections (`TCP_NODELAY`),
//! reused across packets.
//!
//! This is the relay's hot path, so it is deliberately small: the request is one preformatted
//! buffer written with one `write`, and the answer is read into the connection's own buffer and
//! parsed with `httparse`, in the task of the packet itself — no connection task, no channel, no
//! header map. (Profiling showed reqwest's per-request work, and then hyper's client dispatch,
//! costing more user CPU than the rest of the relay; see docs/benchmarks.md.)
//!
//! Answers are read as HTTP/1.1 defines them (RFC 9112 §6.3): no body for 1xx/204/304, a
//! chunked body, a `Content-Length` body, or a body delimited by the end of the connection.

use std::io::{self, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::bail;
use reqwest::Url;
use tokio::io::{AsyncRead, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::h1::{self, BodyError, MAX_HEAD, fill};
use crate::http::{ContentType, JSON};

/// Idle connections kept per next hop at most.
const MAX_IDLE: usize = 1024;
/// What an answer may carry beyond the largest packet: the hop names a delivered packet gained on
/// the way, or a router's own error object. Anything larger is not a relay answering.
pub const ANSWER_SLACK: usize = 64 * 1024;

/// Why the next hop did not answer.
#[derive(Debug)]
pub enum Failure {
    /// No connection, or it broke before the answer was complete (refused, unreachable, reset,
    /// not HTTP).
    Connect(String),
    /// The time budget ran out (connecting or waiting for the answer).
    Timeout,
}

/// What the next hop answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: ContentType,
    pub body: Vec<u8>,
}

/// A failed exchange on one connection.
#[derive(Debug)]
pub(crate) enum Broken {
    /// Writing the request failed: a kept-alive connection the next hop had closed meanwhile.
    /// The request never reached it whole, so it is safe to send again on a new connection.
    Stale,
    /// The request went out whole and the connection closed before a byte of the answer. The
    /// next hop may have relayed the packet, so it is not sent again (that could duplicate it).
    Unanswered,
    Io(io::Error),
    Protocol(String),
}

impl From<io::Error> for Broken {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stale => f.write_str("connection closed before the request was sent"),
            Self::Unanswered => f.write_str(
                "connection closed after the request and before any answer (not resent: the packet may have been relayed)",
            ),
            Self::Io(e) => write!(f, "{e}"),
            Self::Protocol(e) => f.write_str(e),
        }
    }
}

/// One kept-alive connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Whether the next hop still holds the connection open: nothing to read (not even the end
    /// of the stream). Costs no system call while tokio knows the socket is not readable.
    fn alive(&self) -> bool {
        let mut probe = [0_u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

pub struct Upstream {
    /// `host:port` to connect to (resolved at each new connection).
    addr: String,
    /// `POST <path> HTTP/1.1`, `Host` and `Content-Type`.
    head: Vec<u8>,
    idle: Mutex<Vec<Conn>>,
    /// Largest answer body read.
    max_answer: usize,
}

impl Upstream {
    /// A pool for `endpoint` (an `http://` URL; its path is where packets are posted) whose
    /// answers carry at most `max_answer` bytes of body.
    pub fn new(endpoint: &Url, max_answer: usize) -> anyhow::Result<Self> {
        if endpoint.scheme() != "http" {
            bail!(
                "next hop {endpoint}: only http:// next hops are supported (routers talk plain HTTP inside the cluster)"
            );
        }
        let host = match endpoint.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(h) => h.to_string(),
            None => bail!("next hop {endpoint} has no host"),
        };
        let port = endpoint.port_or_known_default().unwrap_or(80);
        let authority = match endpoint.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let path = match endpoint.query() {
            Some(q) => format!("{}?{q}", endpoint.path()),
            None => endpoint.path().to_owned(),
        };
        Ok(Self {
            addr: format!("{host}:{port}"),
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
            )
            .into_bytes(),
            idle: Mutex::new(Vec::new()),
            max_answer,
        })
    }

    fn checkout(&self) -> Option<Conn> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if conn.alive() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, mut conn: Conn) {
        if conn.buf.capacity() > 64 * 1024 {
            // A large answer: do not keep its buffer for every later small one.
            conn.buf = Vec::with_capacity(4096);
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| Failure::Connect(format!("connecting to {}: {e}", self.addr)))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Posts `body` (JSON) within `budget`, which also goes to the next hop in the budget header.
    pub async fn post(&self, body: &[u8], budget: Duration) -> Result<Answer, Failure> {
        let mut request = Vec::with_capacity(self.head.len() + 64 + body.len());
        request.extend_from_slice(&self.head);
        // Writing to a Vec cannot fail.
        let _ = write!(
            request,
            "Content-Length: {}\r\n{}: {}\r\n\r\n",
            body.len(),
            crate::server::BUDGET_HEADER,
            budget.as_millis()
        );
        request.extend_from_slice(body);
        tokio::time::timeout(budget, self.exchange(&request))
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn exchange(&self, request: &[u8]) -> Result<Answer, Failure> {
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            match roundtrip(&mut conn, request, self.max_answer).await {
                Ok((answer, reusable)) => {
                    if reusable {
                        self.checkin(conn);
                    }
                    return Ok(answer);
                }
                // The next hop closed a kept-alive connection as the packet went out: nothing
                // of it was answered, so it goes again on another connection.
                Err(Broken::Stale) if reused => {}
                Err(e) => {
                    return Err(Failure::Connect(format!("{}: {e}", self.addr)));
                }
            }
        }
    }
}

async fn roundtrip(
    conn: &mut Conn,
    request: &[u8],
    max_answer: usize,
) -> Result<(Answer, bool), Broken> {
    if let Err(e) = conn.stream.write_all(request).await {
        return Err(match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Broken::Stale,
            _ => Broken::Io(e),
        });
    }
    conn.buf.clear();
    match read_answer(&mut conn.stream, &mut conn.buf, max_answer).await {
        // Reset before a byte of the answer: the next hop's socket was closed with the request
        // unread (a close after reading it sends FIN, not RST), so nothing was relayed; the
        // kept-alive connection was stale, and the packet may go again on a new one.
        Err(Broken::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset && conn.buf.is_empty() => {
            Err(Broken::Stale)
        }
        answer => answer,
    }
}

fn protocol(e: impl std::fmt::Display) -> Broken {
    Broken::Protocol(format!("not an HTTP/1.1 answer: {e}"))
}

/// The head of an answer, parsed.
struct Head {
    len: usize,
    status: u16,
    content_type: ContentType,
    content_length: Option<usize>,
    chunked: bool,
    /// Transfer-Encoding without chunked last: the body runs to the end of the connection.
    until_close: bool,
    keep_alive: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, Broken> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = response.parse(buf).map_err(protocol)? else {
        return Ok(None);
    };
    let mut head = Head {
        len,
        status: response.code.unwrap_or(0),
        content_type: ContentType::None,
        content_length: None,
        chunked: false,
        until_close: false,
        // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes it.
        keep_alive: response.version == Some(1),
    };
    for h in response.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = h1::content_length(value).ok_or_else(|| protocol("bad Content-Length"))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(protocol("conflicting Content-Length"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if h1::chunked_last(value) {
                head.chunked = true;
            } else {
                head.until_close = true;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if h1::has_token(value, b"close") {
                head.keep_alive = false;
            } else if response.version == Some(0) && h1::has_token(value, b"keep-alive") {
                head.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            head.content_type = if value == b"application/json" {
                JSON
            } else {
                ContentType::Owned(value.to_vec())
            };
        }
    }
    Ok(Some(head))
}

/// Reads one answer from `stream` (which may have been read ahead into `buf`); the answer and
/// whether the connection can carry another request.
pub(crate) async fn read_answer<S: AsyncRead + Unpin + Send>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_body: usize,
) -> Result<(Answer, bool), Broken> {
    let head = loop {
        if let Some(head) = parse_head(buf)? {
            if (100..200).contains(&head.status) && head.status != 101 {
                // 100 Continue and friends: an interim answer, the real one follows.
                buf.drain(..head.len);
                continue;
            }
            break head;
        }
        if buf.len() > MAX_HEAD {
            return Err(protocol("answer head over 64 KiB"));
        }
        if fill(stream, buf).await? == 0 {
            return Err(if buf.is_empty() {
                Broken::Unanswered
            } else {
                protocol("connection closed in the answer head")
            });
        }
    };
    if !(200..1000).contains(&head.status) {
        return Err(protocol(format!("status {}", head.status)));
    }
    let status = head.status;
    let start = head.len;
    let (body, end, mut reusable) = if head.status == 101 {
        return Err(protocol("the next hop switched protocols"));
    } else if head.status == 204 || head.status == 304 {
        (Vec::new(), start, head.keep_alive)
    } else if head.chunked {
        let (len, end) = h1::read_chunked(&mut h1::Plain(stream), buf, start, max_body)
            .await
            .map_err(|e| match e {
                BodyError::Io(e) => Broken::Io(e),
                e => protocol(e),
            })?;
        (buf[start..start + len].to_vec(), end, head.keep_alive)
    } else if let (Some(n), false) = (head.content_length, head.until_close) {
        if n > max_body {
            return Err(protocol(format!("answer body over {max_body} bytes")));
        }
        while buf.len() < start + n {
            if fill(stream, buf).await? == 0 {
                return Err(protocol("connection closed in the answer body"));
            }
        }
        (buf[start..start + n].to_vec(), start + n, head.keep_alive)
    } else {
        // Delimited by the end of the connection.
        while fill(stream, buf).await? > 0 {
            if buf.len() - start > max_body {
                return Err(protocol(format!("answer body over {max_body} bytes")));
            }
        }
        (buf[start..].to_vec(), buf.len(), false)
    };
    // Bytes after the answer were never asked for: the connection is out of step.
    if buf.len() > end {
        reusable = false;
    }
    Ok((
        Answer {
            status,
            content_type: head.content_type,
            body,
        },
        reusable,
    ))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out its bytes `step` at a time (answers split anywhere, as TCP may).
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(out.remaining());
            let pos = self.pos;
            out.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn read(data: &str) -> Result<(u16, String, bool, Option<String>), String> {
        let mut last = None;
        for step in [1, 3, 7, 4096] {
            let mut s = Trickle {
                data: data.as_bytes().to_vec(),
                pos: 0,
                step,
            };
            let mut buf = Vec::new();
            let got = read_answer(&mut s, &mut buf, 1 << 20)
                .await
                .map(|(a, reusable)| {
                    (
                        a.status,
                        String::from_utf8(a.body).unwrap(),
                        reusable,
                        match a.content_type {
                            ContentType::None => None,
                            ContentType::Static(s) => Some(s.to_owned()),
                            ContentType::Owned(v) => Some(String::from_utf8(v).unwrap()),
                        },
                    )
                })
                .map_err(|e| match e {
                    Broken::Unanswered => "unanswered".to_owned(),
                    e => e.to_string(),
                });
            if let Some(prev) = &last {
                assert_eq!(prev, &got, "step {step}");
            }
            last = Some(got);
        }
        last.unwrap()
    }

    #[tokio::test]
    async fn answers_of_every_framing() {
        assert_eq!(
            read("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
                .await,
            Ok((200, "{\"a\":1}".into(), true, Some("application/json".into())))
        );
        assert_eq!(
            read("HTTP/1.1 508 Loop Detected\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer: t\r\n\r\n")
                .await,
            Ok((508, "abcdefg".into(), true, None))
        );
        assert_eq!(
            read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok")
                .await,
            Ok((201, "ok".into(), false, None))
        );
        assert_eq!(
            read("HTTP/1.0 200 OK\r\n\r\nuntil the end").await,
            Ok((200, "until the end".into(), false, None))
        );
        assert_eq!(
            read("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx").await,
            Ok((200, "x".into(), true, None))
        );
        assert_eq!(
            read("HTTP/1.1 204 No Content\r\n\r\n").await,
            Ok((204, String::new(), true, None))
        );
    }

    /// Bytes nobody asked for, read with the answer: the connection is not reused. (Bytes that
    /// arrive later make `Conn::alive` false when the connection is next taken from the pool.)
    #[tokio::test]
    async fn bytes_after_the_answer_retire_the_connection() {
        let mut s = Trickle {
            data: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1".to_vec(),
            pos: 0,
            step: 4096,
        };
        let mut buf = Vec::new();
        let (answer, reusable) = read_answer(&mut s, &mut buf, 1 << 20).await.unwrap();
        assert_eq!((answer.body.as_slice(), reusable), (&b"x"[..], false));
    }

    /// A kept-alive connection the next hop resets with the packet unread (its socket closed
    /// between the pool's liveness check and the write): the packet goes again on a new
    /// connection and is relayed once. A connection closed cleanly after the request stays
    /// unanswered (see `broken_answers_are_errors`).
    #[tokio::test]
    async fn a_reset_before_the_request_is_read_is_sent_again() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let next_hop = tokio::spawn(async move {
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            let (mut first, _) = listener.accept().await.unwrap();
            let mut buf = vec![0_u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut first, &mut buf)
                .await
                .unwrap();
            assert!(n > 0);
            first.write_all(ok).await.unwrap();
            // The second packet arrives; it is never read, and the socket is reset.
            first.readable().await.unwrap();
            #[allow(deprecated)]
            first.set_linger(Some(Duration::ZERO)).unwrap();
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            let n = tokio::io::AsyncReadExt::read(&mut second, &mut buf)
                .await
                .unwrap();
            second.write_all(ok).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let upstream = Upstream::new(
            &Url::parse(&format!("http://{addr}/relay")).unwrap(),
            1 << 20,
        )
        .unwrap();
        let first = upstream
            .post(b"{\"n\":1}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(first.status, 200);
        let again = upstream
            .post(b"{\"n\":2}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(again.status, 200);
        assert!(next_hop.await.unwrap().ends_with("{\"n\":2}"));
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        // Closed after the whole request went out: not retried (the packet may be relayed).
        assert_eq!(read("").await, Err("unanswered".into()));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nContent-Le",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            assert!(read(bad).await.is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn the_request_head_names_the_host_and_path() {
        let u = Upstream::new(
            &Url::parse("http://router-east:8080")
                .unwrap()
                .join("/relay")
                .unwrap(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(u.addr, "router-east:8080");
        assert_eq!(
            String::from_utf8(u.head.clone()).unwrap(),
            "POST /relay HTTP/1.1\r\nHost: router-east:8080\r\nContent-Type: application/json\r\n"
        );
        let u = Upstream::new(&Url::parse("http://[::1]/x/relay?a=b").unwrap(), 1 << 20).unwrap();
        assert_eq!(u.addr, "[::1]:80");
        assert!(
            String::from_utf8(u.head.clone())
                .unwrap()
                .starts_with("POST /x/relay?a=b HTTP/1.1\r\nHost: [::1]\r\n")
        );
        assert!(Upstream::new(&Url::parse("https://x/relay").unwrap(), 1 << 20).is_err());
    }
}
