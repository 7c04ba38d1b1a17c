//! The two canary scenarios of the NetOps Arcade (plan Phase 18), end to end: real routers, the
//! real generator, and a real Prometheus (the sandbox's, scraping every router every second)
//! evaluating the Argo Rollouts gates exactly as `argo-delivery` declares them.
//!
//! Each scenario has its own Prometheus, so scenario 1's failures are not in scenario 2's 5m
//! window. Every series the gates read exists at 0 from the router's start and Prometheus has
//! scraped it before the first packet, so `rate()` over 5m is the exact count (no extrapolation
//! before a first sample of 0), evaluated at the latest scrape.

use argo_delivery::desired::{Gate, Verdict, gates};
use argo_delivery::settings::Thresholds;
use sandbox::{Options, Sandbox};

use sandbox::support::PrometheusApi as Prom;

use crate::support::{DeadPort, Proc, generate, sample};

const PACKETS: u64 = 200;

fn gate(name: &str) -> Gate {
    gates(&Thresholds::default())
        .into_iter()
        .find(|g| g.template == name)
        .unwrap_or_else(|| panic!("no gate {name}"))
}

async fn prometheus() -> Sandbox {
    Sandbox::start(Options::prometheus_only())
        .await
        .expect("sandbox with Prometheus starts")
}

/// Scrapes `routers` every second and waits until each was scraped once with all its counters at 0.
async fn scrape(sandbox: &Sandbox, prom: &Prom, routers: &[(&str, &Proc)]) {
    for (name, router) in routers {
        sandbox
            .add_scrape_target(name, router.addr())
            .await
            .unwrap();
    }
    for (name, _) in routers {
        prom.wait_for(
            &format!(
                "count_over_time(http_requests_total{{service=\"{name}\",status=\"200\"}}[5m])"
            ),
            1.0,
        )
        .await;
    }
}

/// Waits until Prometheus has scraped `expr` at `want`, then returns the timestamp of that
/// target's latest scrape (the gates are evaluated there).
async fn settled(prom: &Prom, expr: &str, want: u64, job: &str) -> f64 {
    prom.wait_for(expr, f64::from(u32::try_from(want).unwrap()))
        .await;
    prom.scalar(&format!("timestamp(up{{job=\"{job}\"}})"))
        .await
        .expect("router-core scraped")
}

/// Scenario 1, "bad IP": router-core's `NEXT_HOPS` points at a loopback port where nothing
/// listens. Proves: every packet is dropped on exactly that link with reason=connect and answered
/// 502 by router-core; router-core stays ready (readiness does not depend on next hops, so a
/// canary with a bad hop gets traffic); and the success-rate gate, evaluated by Prometheus on
/// router-core's metrics, is below 0.95 with the verdict Failed (the rollout is aborted). The
/// error-rate gate fails too.
#[tokio::test]
async fn bad_next_hop_fails_the_success_rate_gate() {
    let sandbox = prometheus().await;
    let prom = Prom::new(sandbox.get(common::env::PROMETHEUS_URL));
    let dead = DeadPort::new();
    let core = Proc::router("router-core", &dead.url(), &[]).await;
    let west = Proc::router("router-west", &core.hop("router-core"), &[]).await;
    assert_eq!(
        core.get_status("/readyz").await,
        200,
        "readiness ignores next hops"
    );
    assert_eq!(core.get_status("/healthz").await, 200);
    scrape(
        &sandbox,
        &prom,
        &[("router-west", &west), ("router-core", &core)],
    )
    .await;

    let target = format!("router-west={}/relay", west.url);
    let (sent, delivered, lost) = generate(&target, PACKETS, "100", &[]).await;
    assert_eq!((sent, delivered, lost), (PACKETS, 0, PACKETS));

    let n = PACKETS;
    let dead_hop = format!("127.0.0.1:{}", dead.port);
    let m = core.metrics().await;
    assert_eq!(
        sample(
            &m,
            &format!(
                "relay_link_drops_total{{from=\"router-core\",to=\"{dead_hop}\",reason=\"connect\"}}"
            )
        ),
        n
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                "relay_link_drops_total{{from=\"router-core\",to=\"{dead_hop}\",reason=\"timeout\"}}"
            )
        ),
        0
    );
    assert_eq!(
        sample(
            &m,
            &format!("relay_link_packets_total{{from=\"router-core\",to=\"{dead_hop}\"}}")
        ),
        0
    );
    assert_eq!(
        sample(
            &m,
            r#"http_requests_total{service="router-core",status="502"}"#
        ),
        n
    );
    assert_eq!(
        sample(
            &m,
            r#"http_requests_total{service="router-core",status="200"}"#
        ),
        0
    );
    // router-west's link carried every packet (router-core answered each, with a 502).
    let w = west.metrics().await;
    assert_eq!(
        sample(
            &w,
            r#"relay_link_packets_total{from="router-west",to="router-core"}"#
        ),
        n
    );
    for reason in ["connect", "timeout"] {
        assert_eq!(
            sample(
                &w,
                &format!(
                    "relay_link_drops_total{{from=\"router-west\",to=\"router-core\",reason=\"{reason}\"}}"
                )
            ),
            0
        );
    }
    assert_eq!(
        sample(
            &w,
            r#"http_requests_total{service="router-west",status="502"}"#
        ),
        n
    );
    assert_eq!(
        core.get_status("/readyz").await,
        200,
        "still ready after the drops"
    );

    let at = settled(
        &prom,
        r#"http_requests_total{service="router-core",status="502"}"#,
        n,
        "router-core",
    )
    .await;
    let success = gate("success-rate");
    let rate = prom
        .values(&success.query_for("router-core"), Some(at))
        .await;
    assert_eq!(rate.len(), 1, "one success-rate value: {rate:?}");
    assert!(rate[0] < 0.95, "success rate {rate:?}");
    assert_eq!(success.verdict(&rate), Verdict::Failed);
    let errors = gate("error-rate");
    let error_rate = prom
        .values(&errors.query_for("router-core"), Some(at))
        .await;
    assert_eq!(
        errors.verdict(&error_rate),
        Verdict::Failed,
        "{error_rate:?}"
    );
}

/// Scenario 2, "good IP": router-core's `NEXT_HOPS` is `router-north=http://127.0.0.1:NORTH`.
/// Proves: every packet is delivered by router-north and none by router-east (the default path
/// is left), zero drops on every link (as numbers), and the success-rate gate is ≥ 0.98 and
/// Successful; the p99 latency gate passes too (the histogram works with `histogram_quantile`).
#[tokio::test]
async fn good_next_hop_passes_the_gates_with_zero_drops() {
    let sandbox = prometheus().await;
    let prom = Prom::new(sandbox.get(common::env::PROMETHEUS_URL));
    let east = Proc::router("router-east", "", &[]).await;
    let north = Proc::router("router-north", "", &[]).await;
    let core = Proc::router("router-core", &north.hop("router-north"), &[]).await;
    let west = Proc::router("router-west", &core.hop("router-core"), &[]).await;
    scrape(
        &sandbox,
        &prom,
        &[
            ("router-west", &west),
            ("router-core", &core),
            ("router-east", &east),
            ("router-north", &north),
        ],
    )
    .await;

    let target = format!("router-west={}/relay", west.url);
    let (sent, delivered, lost) = generate(&target, PACKETS, "100", &[]).await;
    assert_eq!((sent, delivered, lost), (PACKETS, PACKETS, 0));

    let n = PACKETS;
    let north_m = north.metrics().await;
    assert_eq!(
        sample(
            &north_m,
            r#"relay_packets_delivered_total{service="router-north"}"#
        ),
        n
    );
    let east_m = east.metrics().await;
    assert_eq!(
        sample(
            &east_m,
            r#"relay_packets_delivered_total{service="router-east"}"#
        ),
        0
    );
    for (router, from, to) in [
        (&west, "router-west", "router-core"),
        (&core, "router-core", "router-north"),
    ] {
        let m = router.metrics().await;
        assert_eq!(
            sample(
                &m,
                &format!("relay_link_packets_total{{from=\"{from}\",to=\"{to}\"}}")
            ),
            n
        );
        for reason in ["connect", "timeout"] {
            assert_eq!(
                sample(
                    &m,
                    &format!(
                        "relay_link_drops_total{{from=\"{from}\",to=\"{to}\",reason=\"{reason}\"}}"
                    )
                ),
                0,
                "{from}→{to} {reason}"
            );
        }
        assert_eq!(
            sample(
                &m,
                &format!("http_requests_total{{service=\"{from}\",status=\"200\"}}")
            ),
            n
        );
    }

    let at = settled(
        &prom,
        r#"http_requests_total{service="router-core",status="200"}"#,
        n,
        "router-core",
    )
    .await;
    let success = gate("success-rate");
    let rate = prom
        .values(&success.query_for("router-core"), Some(at))
        .await;
    assert_eq!(rate.len(), 1, "one success-rate value: {rate:?}");
    assert!(rate[0] >= 0.98, "success rate {rate:?}");
    assert_eq!(success.verdict(&rate), Verdict::Successful);
    let latency = gate("latency-check");
    let p99 = prom
        .values(&latency.query_for("router-core"), Some(at))
        .await;
    assert_eq!(latency.verdict(&p99), Verdict::Successful, "p99 {p99:?}");
}
