//! `POST /relay` of real router processes: delivery, TTL, loops, body limits, malformed packets,
//! the per-hop timeout and round-robin.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Proc, Recorder, free_port, hanging_server, sample, wait_sample};

/// Proves a packet crosses west → core → east with each router appended to `hops`, the TTL
/// decremented per hop, `id` (a big number), `payload` and an unknown field passed byte for byte,
/// and the delivering router's 200 passed back along the chain; delivery is counted at east only.
#[tokio::test]
async fn a_packet_is_delivered_along_the_chain_as_sent() {
    let east = Proc::router("router-east", "", &[]).await;
    let core = Proc::router("router-core", &east.hop("router-east"), &[]).await;
    // One worker: the current-thread runtime (the benchmark's setting) is exercised too.
    let west = Proc::router(
        "router-west",
        &core.hop("router-core"),
        &[("TOKIO_WORKER_THREADS", "1")],
    )
    .await;
    let (status, body) = west
        .post(r#"{"id": 123456789012345678901234567890, "payload": "h\u00e9llo", "hops": [], "ttl": 8, "colour": {"r": 255}}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"id":123456789012345678901234567890,"payload":"h\u00e9llo","hops":["router-west","router-core","router-east"],"ttl":5,"colour":{"r": 255}}"#
    );
    let (status, body) = west
        .post(r#"{"id":"p-2","payload":"x","hops":[],"ttl":8}"#)
        .await;
    assert_eq!(
        (status, body.contains(r#""id":"p-2""#)),
        (200, true),
        "{body}"
    );
    assert_eq!(
        sample(
            &east.metrics().await,
            r#"relay_packets_delivered_total{service="router-east"}"#
        ),
        2
    );
    assert_eq!(
        sample(
            &core.metrics().await,
            r#"relay_packets_delivered_total{service="router-core"}"#
        ),
        0
    );
    let w = wait_sample(
        &west,
        r#"http_requests_total{service="router-west",status="200"}"#,
        2,
    )
    .await;
    assert_eq!(
        sample(
            &w,
            r#"relay_link_packets_total{from="router-west",to="router-core"}"#
        ),
        2
    );
    assert_eq!(
        sample(
            &w,
            r#"http_request_duration_seconds_count{service="router-west"}"#
        ),
        2
    );
}

/// Proves TTL expiry and loop detection answer 508 and are counted by reason: a packet arriving
/// with ttl 0; one that expires in transit (ttl 1 at west reaches core with 0, and west passes
/// core's 508 back); one that already carries the router's name; and a real loop
/// (west → core → west) caught when it comes back.
#[tokio::test]
async fn ttl_expiry_and_loops_answer_508_by_reason() {
    let core_port = free_port();
    let core_url = format!("http://127.0.0.1:{core_port}");
    let west_port = free_port();
    let west_url = format!("http://127.0.0.1:{west_port}");
    let core_listen = format!("127.0.0.1:{core_port}");
    let west_listen = format!("127.0.0.1:{west_port}");
    // A terminal core first (TTL cases), then the looping pair.
    let core = Proc::router("router-core", "", &[("RELAY_LISTEN_ADDR", &core_listen)]).await;
    let west = Proc::router(
        "router-west",
        &format!("router-core={core_url}"),
        &[("RELAY_LISTEN_ADDR", &west_listen)],
    )
    .await;

    let (status, body) = core
        .post(r#"{"id":"t0","payload":"x","hops":[],"ttl":0}"#)
        .await;
    assert_eq!(status, 508, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["error"].as_str(), v["router"].as_str()),
        (Some("ttl_expired"), Some("router-core"))
    );

    let (status, body) = west
        .post(r#"{"id":"t1","payload":"x","hops":[],"ttl":1}"#)
        .await;
    assert_eq!(status, 508, "{body}");
    assert!(
        body.contains(r#""error":"ttl_expired","router":"router-core""#),
        "{body}"
    );

    let (status, body) = core
        .post(r#"{"id":"l0","payload":"x","hops":["router-west","router-core"],"ttl":5}"#)
        .await;
    assert_eq!(status, 508, "{body}");
    assert!(body.contains(r#""error":"loop""#), "{body}");

    let m = wait_sample(
        &core,
        r#"http_requests_total{service="router-core",status="508"}"#,
        3,
    )
    .await;
    assert_eq!(
        sample(
            &m,
            r#"relay_packets_rejected_total{service="router-core",reason="ttl_expired"}"#
        ),
        2
    );
    assert_eq!(
        sample(
            &m,
            r#"relay_packets_rejected_total{service="router-core",reason="loop"}"#
        ),
        1
    );
    assert_eq!(
        sample(
            &m,
            r#"relay_packets_delivered_total{service="router-core"}"#
        ),
        0
    );
    drop(core);

    // The loop: core now sends back to west.
    let core = Proc::router(
        "router-core",
        &format!("router-west={west_url}"),
        &[("RELAY_LISTEN_ADDR", &core_listen)],
    )
    .await;
    let (status, body) = west
        .post(r#"{"id":"loop","payload":"x","hops":[],"ttl":8}"#)
        .await;
    assert_eq!(status, 508, "{body}");
    assert!(
        body.contains(r#""error":"loop","router":"router-west""#),
        "{body}"
    );
    let w = wait_sample(
        &west,
        r#"relay_packets_rejected_total{service="router-west",reason="loop"}"#,
        1,
    )
    .await;
    // West's 508s: t1 passed back, the loop caught, and that answer passed back to the sender.
    assert_eq!(
        sample(
            &w,
            r#"http_requests_total{service="router-west",status="508"}"#
        ),
        3
    );
    let c = core.metrics().await;
    assert_eq!(
        sample(
            &c,
            r#"relay_link_packets_total{from="router-core",to="router-west"}"#
        ),
        1
    );
}

/// Raw HTTP/1.1 on a TCP socket (for chunked bodies and a Content-Length without a body);
/// returns the status code.
async fn raw(url: &str, head: &str, body: &[&[u8]]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body {
        // The router may answer and close early; later writes may fail.
        if s.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0_u8; 4096];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .parse()
        .unwrap_or(0)
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    c
}

/// Proves the body limit (`RELAY_MAX_BODY_BYTES`=1024): a declared Content-Length over it is
/// refused with 413 before any body byte is sent; a chunked body (no declared size) is refused
/// with 413 once the bytes read pass it; a chunked body under the limit is relayed. Counted as
/// `too_large`.
#[tokio::test]
async fn oversized_bodies_get_413_declared_or_chunked() {
    let r = Proc::router("router-east", "", &[("RELAY_MAX_BODY_BYTES", "1024")]).await;
    let big = format!(
        r#"{{"id":"big","payload":"{}","hops":[],"ttl":8}}"#,
        "x".repeat(2000)
    );
    assert_eq!(r.post(big.clone()).await.0, 413);
    // Declared 10 MB, nothing sent: the answer cannot have waited for the body.
    let head = "POST /relay HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n";
    assert_eq!(raw(&r.url, head, &[]).await, 413);
    // Chunked, 2000+ bytes in 500-byte chunks.
    let head = "POST /relay HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunks: Vec<Vec<u8>> = big
        .as_bytes()
        .chunks(500)
        .map(chunk)
        .chain([b"0\r\n\r\n".to_vec()])
        .collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    assert_eq!(raw(&r.url, head, &refs).await, 413);
    // Chunked and small: read across chunks and relayed.
    let small = r#"{"id":"small","payload":"a chunked packet","hops":[],"ttl":8}"#;
    let chunks: Vec<Vec<u8>> = small
        .as_bytes()
        .chunks(10)
        .map(chunk)
        .chain([b"0\r\n\r\n".to_vec()])
        .collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    assert_eq!(raw(&r.url, head, &refs).await, 200);
    let m = wait_sample(
        &r,
        r#"relay_packets_rejected_total{service="router-east",reason="too_large"}"#,
        3,
    )
    .await;
    assert_eq!(
        sample(
            &m,
            r#"http_requests_total{service="router-east",status="413"}"#
        ),
        3
    );
    assert_eq!(
        sample(
            &m,
            r#"relay_packets_delivered_total{service="router-east"}"#
        ),
        1
    );
}

/// Proves malformed JSON and packets missing a field or with a wrong type get 400, counted as
/// `malformed`, and are never relayed (the next hop sees nothing).
#[tokio::test]
async fn malformed_packets_get_400() {
    let sink = Recorder::start(Duration::ZERO).await;
    let r = Proc::router("router-core", &sink.url, &[]).await;
    let bad = [
        "",
        "{",
        "[1,2]",
        r#"{"payload":"x","hops":[],"ttl":8}"#,
        r#"{"id":"1","payload":"x","hops":[],"ttl":"8"}"#,
        r#"{"id":"1","payload":"x","hops":"router-west","ttl":8}"#,
        r#"{"id":true,"payload":"x","hops":[],"ttl":8}"#,
    ];
    for body in bad {
        let (status, answer) = r.post(body).await;
        assert_eq!(status, 400, "{body:?} → {answer}");
        assert!(answer.contains(r#""error":"malformed""#), "{answer}");
    }
    let n = u64::try_from(bad.len()).unwrap();
    let m = wait_sample(
        &r,
        r#"relay_packets_rejected_total{service="router-core",reason="malformed"}"#,
        n,
    )
    .await;
    assert_eq!(
        sample(
            &m,
            r#"http_requests_total{service="router-core",status="400"}"#
        ),
        n
    );
    assert!(sink.seen.lock().unwrap().arrivals.is_empty());
}

/// Proves the per-hop timeout: a next hop that accepts the connection and never answers gets
/// router-core a 504 once `RELAY_HOP_TIMEOUT_MS` (1000 ms) is spent — not before, and not much
/// after — counted as a `timeout` drop on that link (not `connect`). With router-west in front
/// (same 1000 ms), the time budget it sends makes core give up first, so west's own link shows
/// the packet carried (core answered 504) and no drop: the stalled link is the one blamed.
#[tokio::test]
async fn a_next_hop_that_never_answers_gets_504_within_the_timeout() {
    let (hang, _task) = hanging_server().await;
    let timeout = [("RELAY_HOP_TIMEOUT_MS", "1000")];
    let core = Proc::router("router-core", &format!("stuck={hang}"), &timeout).await;
    let west = Proc::router("router-west", &core.hop("router-core"), &timeout).await;

    let started = Instant::now();
    let (status, body) = core
        .post(r#"{"id":"t","payload":"x","hops":[],"ttl":8}"#)
        .await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains(r#""error":"timeout""#) && body.contains(r#""next_hop":"stuck""#),
        "{body}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "answered before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "answered long after the timeout: {took:?}"
    );

    let (status, body) = west
        .post(r#"{"id":"w","payload":"x","hops":[],"ttl":8}"#)
        .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains(r#""router":"router-core""#),
        "core's answer passed back: {body}"
    );

    let c = wait_sample(
        &core,
        r#"relay_link_drops_total{from="router-core",to="stuck",reason="timeout"}"#,
        2,
    )
    .await;
    assert_eq!(
        sample(
            &c,
            r#"relay_link_drops_total{from="router-core",to="stuck",reason="connect"}"#
        ),
        0
    );
    assert_eq!(
        sample(
            &c,
            r#"relay_link_packets_total{from="router-core",to="stuck"}"#
        ),
        0
    );
    assert_eq!(
        sample(
            &c,
            r#"http_requests_total{service="router-core",status="504"}"#
        ),
        2
    );
    let w = wait_sample(
        &west,
        r#"relay_link_packets_total{from="router-west",to="router-core"}"#,
        1,
    )
    .await;
    assert_eq!(
        sample(
            &w,
            r#"relay_link_drops_total{from="router-west",to="router-core",reason="timeout"}"#
        ),
        0
    );
}

/// Proves round-robin over two next hops: 100 packets (10 at a time) split exactly 50/50, seen
/// both in the link counters and in what each terminal router delivered.
#[tokio::test]
async fn two_next_hops_share_packets_round_robin() {
    let east = Proc::router("router-east", "", &[]).await;
    let north = Proc::router("router-north", "", &[]).await;
    let core = Proc::router(
        "router-core",
        &format!("{},{}", east.hop("router-east"), north.hop("router-north")),
        &[],
    )
    .await;
    let http = crate::support::http();
    let url = format!("{}/relay", core.url);
    let statuses: Vec<u16> = futures::stream::iter(0..100)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.post(url)
                    .body(format!(r#"{{"id":{i},"payload":"rr","hops":[],"ttl":8}}"#))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let c = wait_sample(
        &core,
        r#"http_requests_total{service="router-core",status="200"}"#,
        100,
    )
    .await;
    assert_eq!(
        sample(
            &c,
            r#"relay_link_packets_total{from="router-core",to="router-east"}"#
        ),
        50
    );
    assert_eq!(
        sample(
            &c,
            r#"relay_link_packets_total{from="router-core",to="router-north"}"#
        ),
        50
    );
    assert_eq!(
        sample(
            &east.metrics().await,
            r#"relay_packets_delivered_total{service="router-east"}"#
        ),
        50
    );
    assert_eq!(
        sample(
            &north.metrics().await,
            r#"relay_packets_delivered_total{service="router-north"}"#
        ),
        50
    );
}

/// Proves a kept-alive connection to a next hop that restarted costs no packet: router-east is
/// killed and started again on the same port between two packets; router-core notices the
/// closed pooled connection and uses a new one — both packets delivered, no drop counted.
#[tokio::test]
async fn a_restarted_next_hop_costs_no_packet() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let east = Proc::router("router-east", "", &[("RELAY_LISTEN_ADDR", &listen)]).await;
    let core = Proc::router("router-core", &format!("router-east=http://{listen}"), &[]).await;
    assert_eq!(
        core.post(r#"{"id":1,"payload":"x","hops":[],"ttl":8}"#)
            .await
            .0,
        200
    );
    drop(east);
    let east = Proc::router("router-east", "", &[("RELAY_LISTEN_ADDR", &listen)]).await;
    let (status, body) = core
        .post(r#"{"id":2,"payload":"x","hops":[],"ttl":8}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let c = wait_sample(
        &core,
        r#"relay_link_packets_total{from="router-core",to="router-east"}"#,
        2,
    )
    .await;
    assert_eq!(
        sample(
            &c,
            r#"relay_link_drops_total{from="router-core",to="router-east",reason="connect"}"#
        ),
        0
    );
    assert_eq!(
        sample(
            &east.metrics().await,
            r#"relay_packets_delivered_total{service="router-east"}"#
        ),
        1
    );
}
