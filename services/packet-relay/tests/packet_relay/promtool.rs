//! The `/metrics` text of a router and of the generator: accepted by `promtool check metrics`
//! (Debian's prometheus package), with every family of the contract under its exact name and type.

use std::time::Duration;

use crate::support::{DeadPort, Proc, Recorder, count, promtool_check, sample, wait_sample};

/// The `# TYPE` lines a text declares.
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Proves a busy router's metrics (200, 400, 413, 502 and 508 answers; a carrying and a dropping
/// link) pass `promtool check metrics` without a single lint remark, and declare exactly the
/// contract's families with their types.
#[tokio::test]
async fn router_metrics_pass_promtool() {
    let sink = Recorder::start(Duration::ZERO).await;
    let dead = DeadPort::new();
    let r = Proc::router(
        "router-core",
        &format!("good={},bad={}", sink.url, dead.url()),
        &[("RELAY_MAX_BODY_BYTES", "256"), ("APP_VERSION", "1.2.3")],
    )
    .await;
    for i in 0..4 {
        r.post(format!(r#"{{"id":{i},"payload":"x","hops":[],"ttl":8}}"#))
            .await;
    }
    r.post("nope").await;
    r.post(format!(
        r#"{{"id":"big","payload":"{}","hops":[],"ttl":8}}"#,
        "x".repeat(300)
    ))
    .await;
    r.post(r#"{"id":"old","payload":"x","hops":[],"ttl":0}"#)
        .await;
    let m = wait_sample(
        &r,
        r#"http_request_duration_seconds_count{service="router-core"}"#,
        7,
    )
    .await;
    assert_eq!(
        sample(
            &m,
            r#"http_requests_total{service="router-core",status="200"}"#
        ),
        2
    );
    assert_eq!(
        sample(
            &m,
            r#"http_requests_total{service="router-core",status="502"}"#
        ),
        2
    );
    assert_eq!(
        sample(
            &m,
            r#"relay_build_info{service="router-core",version="1.2.3"}"#
        ),
        1
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                r#"relay_next_hop_info{{from="router-core",to="bad",url="{}"}}"#,
                dead.url()
            )
        ),
        1
    );
    let (ok, out) = promtool_check(&m);
    assert!(ok && out.trim().is_empty(), "promtool: {out}\n{m}");
    assert_eq!(
        types(&m),
        pairs(&[
            ("http_requests_total", "counter"),
            ("http_request_duration_seconds", "histogram"),
            ("relay_link_packets_total", "counter"),
            ("relay_link_drops_total", "counter"),
            ("relay_next_hop_info", "gauge"),
            ("relay_packets_delivered_total", "counter"),
            ("relay_packets_rejected_total", "counter"),
            ("relay_build_info", "gauge"),
        ])
    );
}

/// Proves the generator's metrics (running without `--count`, its target refusing connections)
/// pass `promtool check metrics`, count lost packets and connect drops on its link as they
/// happen, carry no router-only family, and that SIGTERM stops it with exit code 0.
#[tokio::test]
async fn generator_metrics_pass_promtool() {
    let dead = DeadPort::new();
    let mut g = Proc::start(
        &["generate"],
        &[
            (
                "GENERATOR_TARGET",
                &format!("router-west={}/relay", dead.url()),
            ),
            ("GENERATOR_RATE", "20"),
        ],
    )
    .await;
    let mut m = String::new();
    for _ in 0..200 {
        m = g.metrics().await;
        if count(
            &m,
            r#"relay_generator_packets_total{from="generator",to="router-west",outcome="lost"}"#,
        )
        .is_some_and(|v| v >= 3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = sample(
        &m,
        r#"relay_generator_packets_total{from="generator",to="router-west",outcome="lost"}"#,
    );
    assert!(lost >= 3, "{m}");
    assert_eq!(
        sample(
            &m,
            r#"relay_link_drops_total{from="generator",to="router-west",reason="connect"}"#
        ),
        lost
    );
    assert_eq!(
        sample(
            &m,
            r#"relay_link_packets_total{from="generator",to="router-west"}"#
        ),
        0
    );
    assert_eq!(
        sample(
            &m,
            r#"relay_generator_packets_total{from="generator",to="router-west",outcome="delivered"}"#
        ),
        0
    );
    let (ok, out) = promtool_check(&m);
    assert!(ok && out.trim().is_empty(), "promtool: {out}\n{m}");
    assert_eq!(
        types(&m),
        pairs(&[
            ("relay_link_packets_total", "counter"),
            ("relay_link_drops_total", "counter"),
            ("relay_next_hop_info", "gauge"),
            ("relay_generator_packets_total", "counter"),
            ("relay_build_info", "gauge"),
        ])
    );
    assert_eq!(g.get_status("/readyz").await, 200);
    g.signal("TERM");
    assert_eq!(
        g.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        g.log()
    );
}
