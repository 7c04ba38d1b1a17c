//! The router's own HTTP/1.1 server, spoken to over raw TCP: the framing clients may use.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Proc, sample, wait_sample};

const PACKET: &str = r#"{"id":"h","payload":"x","hops":[],"ttl":8}"#;

/// Splits a byte stream of HTTP/1.1 answers (each with a Content-Length) into (status, headers,
/// body) triples.
fn answers(mut bytes: &[u8]) -> Vec<(u16, String, String)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let body = String::from_utf8(bytes[end + 4..end + 4 + len].to_vec()).unwrap();
        out.push((status, head, body));
        bytes = &bytes[end + 4 + len..];
    }
    out
}

async fn exchange(r: &Proc, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the router closes the connection")
        .unwrap();
    got
}

fn post(extra: &str) -> String {
    format!(
        "POST /relay HTTP/1.1\r\nHost: r\r\nContent-Length: {}\r\n{extra}\r\n{PACKET}",
        PACKET.len()
    )
}

/// Proves keep-alive and pipelining: three requests written at once on one connection (a POST,
/// a GET, a POST asking to close) get three answers in order, each framed by Content-Length
/// and dated, and the connection closes after the last one.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let r = Proc::router("router-east", "", &[]).await;
    let request = format!(
        "{}GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n{}",
        post(""),
        post("Connection: close\r\n")
    );
    let got = answers(&exchange(&r, request.as_bytes()).await);
    let statuses: Vec<u16> = got.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 200]);
    assert!(
        got[0].2.contains(r#""hops":["router-east"]"#),
        "{:?}",
        got[0]
    );
    assert_eq!(got[1].2, "ok\n");
    assert!(got.iter().all(|a| a.1.contains("\r\ndate: ")), "{got:?}");
    assert!(got[2].1.contains("\r\nconnection: close"), "{:?}", got[2]);
    wait_sample(
        &r,
        r#"relay_packets_delivered_total{service="router-east"}"#,
        2,
    )
    .await;
}

/// Proves `Expect: 100-continue` (what curl sends for larger bodies): the router sends the
/// interim 100 before the body, then the real answer.
#[tokio::test]
async fn expect_100_continue_is_honoured() {
    let r = Proc::router("router-east", "", &[]).await;
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(
        format!(
            "POST /relay HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            PACKET.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut interim = [0_u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("the interim answer comes before the body")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(PACKET.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(answers(&got)[0].0, 200);
}

/// Proves HTTP/1.0 closes after the answer unless asked to keep alive; HEAD gets the headers
/// without the body; methods and paths the router does not serve get 405 (with `Allow`) and 404.
#[tokio::test]
async fn http_1_0_head_405_and_404() {
    let r = Proc::router("router-east", "", &[]).await;
    let got = answers(&exchange(&r, b"GET /readyz HTTP/1.0\r\n\r\n").await);
    assert_eq!(
        (got.len(), got[0].0, got[0].2.as_str()),
        (1, 200, "ready\n")
    );

    let raw = exchange(
        &r,
        b"HEAD /metrics HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(
        !text.contains("# TYPE"),
        "a HEAD answer has no body: {text}"
    );

    let got = answers(
        &exchange(
            &r,
            b"GET /relay HTTP/1.1\r\nHost: r\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!((got[0].0, got[1].0), (405, 404));
    assert!(got[0].1.contains("\r\nallow: POST"), "{:?}", got[0]);
    // None of these was an answer to POST /relay.
    let m = r.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"http_request_duration_seconds_count{service="router-east"}"#
        ),
        0
    );
}

/// Proves broken requests are refused and the connection closed: a malformed head gets 400 and a
/// head over 64 KiB gets 431; a packet whose body cannot be framed — a Transfer-Encoding other
/// than chunked, or a bad chunk size — gets 400 counted as `malformed`.
#[tokio::test]
async fn broken_requests_are_refused() {
    let r = Proc::router("router-east", "", &[]).await;
    let got = answers(&exchange(&r, b"\x16\x03\x01 not http\r\n\r\n").await);
    assert_eq!(got[0].0, 400);
    let got = answers(
        &exchange(
            &r,
            b"POST /relay HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
        )
        .await,
    );
    assert_eq!(got[0].0, 400);
    assert!(got[0].2.contains(r#""error":"malformed""#), "{:?}", got[0]);
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: r\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(answers(&exchange(&r, huge.as_bytes()).await)[0].0, 431);
    let got = answers(
        &exchange(
            &r,
            b"POST /relay HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        .await,
    );
    assert_eq!(got[0].0, 400);
    assert!(got[0].2.contains(r#""error":"malformed""#), "{:?}", got[0]);
    wait_sample(
        &r,
        r#"relay_packets_rejected_total{service="router-east",reason="malformed"}"#,
        2,
    )
    .await;
}
