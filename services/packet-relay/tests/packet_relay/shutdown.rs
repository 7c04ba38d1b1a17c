//! Signals: SIGTERM drains (keeps relaying while packets come) and finishes in-flight packets
//! within the grace period; SIGINT stops at once (no drain); the grace period bounds everything.

use std::time::{Duration, Instant};

use crate::support::{Proc, Recorder, http};

/// Proves graceful shutdown on SIGTERM (grace 8 s, so at most 4 s of drain): `/readyz` turns 503
/// at once while `/healthz` stays 200; packets sent during the drain are still relayed
/// (Kubernetes may route to the pod until it sees it unready); then the router stops accepting
/// connections while a slow in-flight packet (its next hop answers after 5 s) is still running,
/// and that packet completes with a 200 before the process exits 0.
#[tokio::test]
async fn sigterm_finishes_in_flight_packets() {
    let sink = Recorder::start(Duration::ZERO).await;
    let mut core = Proc::router(
        "router-core",
        &format!("sink={}", sink.url),
        &[
            ("RELAY_SHUTDOWN_GRACE_SECS", "8"),
            ("RELAY_HOP_TIMEOUT_MS", "20000"),
        ],
    )
    .await;
    let url = format!("{}/relay", core.url);
    let slow = tokio::spawn({
        let url = url.clone();
        async move {
            let r = http()
                .post(url)
                .body(r#"{"id":"slow","payload":"slow:5000","hops":[],"ttl":8}"#)
                .send()
                .await
                .expect("the in-flight packet is answered");
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    // The packet is at the next hop: it is in flight.
    tokio::time::timeout(Duration::from_secs(5), sink.arrived.notified())
        .await
        .expect("the slow packet reaches the sink");
    core.signal("TERM");
    let signalled = Instant::now();

    let mut ready = 200;
    while ready != 503 && signalled.elapsed() < Duration::from_secs(2) {
        ready = core.get_status("/readyz").await;
    }
    assert_eq!(ready, 503, "/readyz after SIGTERM");
    assert_eq!(core.get_status("/healthz").await, 200);
    let r = http()
        .post(&url)
        .body(r#"{"id":"late","payload":"x","hops":[],"ttl":8}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "a packet during the drain is relayed"
    );

    // After the drain the listener closes; the slow packet is still in flight then.
    let addr = core.addr().to_owned();
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(7),
            "the listener never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !slow.is_finished(),
        "the listener closed while the slow packet is in flight"
    );

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""hops":["router-core"]"#), "{body}");
    assert_eq!(
        core.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        core.log()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "exited within the grace period"
    );
}

/// Proves an idle router stops promptly: SIGINT (Ctrl-C, the local arcade) skips the drain and
/// exits 0 at once; SIGTERM waits for one quiet second without packets (not the whole drain
/// period of 5 s) and exits 0.
#[tokio::test]
async fn idle_routers_stop_promptly() {
    let mut r = Proc::router("router-east", "", &[]).await;
    r.signal("INT");
    assert_eq!(
        r.wait_exit(Duration::from_secs(1)).await,
        Some(0),
        "{}",
        r.log()
    );

    let mut r = Proc::router("router-east", "", &[]).await;
    r.signal("TERM");
    let signalled = Instant::now();
    assert_eq!(
        r.wait_exit(Duration::from_secs(4)).await,
        Some(0),
        "{}",
        r.log()
    );
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "SIGTERM on an idle router: exited after {took:?}, expected a quiet second"
    );
}

/// Proves the grace period bounds shutdown: with `RELAY_SHUTDOWN_GRACE_SECS=2` a packet whose
/// next hop answers after 30 s is cut off and the process exits 0 about 2 s after SIGTERM.
#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let sink = Recorder::start(Duration::ZERO).await;
    let mut core = Proc::router(
        "router-core",
        &sink.url,
        &[
            ("RELAY_SHUTDOWN_GRACE_SECS", "2"),
            ("RELAY_HOP_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    let url = format!("{}/relay", core.url);
    let stuck = tokio::spawn(async move {
        http()
            .post(url)
            .body(r#"{"id":"stuck","payload":"slow:30000","hops":[],"ttl":8}"#)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::timeout(Duration::from_secs(5), sink.arrived.notified())
        .await
        .expect("the packet reaches the sink");
    core.signal("TERM");
    let signalled = Instant::now();
    assert_eq!(
        core.wait_exit(Duration::from_secs(6)).await,
        Some(0),
        "{}",
        core.log()
    );
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM, expected about 2 s"
    );
    assert!(
        stuck.await.unwrap().is_err(),
        "the cut-off packet gets no answer"
    );
    assert!(core.log().contains("grace period over"), "{}", core.log());
}
