//! Generator mode (`packet-relay generate`): rate, concurrency, TTL and what counts as delivered.

use std::time::Duration;

use crate::support::{Proc, Recorder, generate, sample};

/// The time from the first to the last arrival at the sink.
fn span(sink: &Recorder) -> Duration {
    let seen = sink.seen.lock().unwrap();
    *seen.arrivals.last().unwrap() - *seen.arrivals.first().unwrap()
}

/// Proves the rate is honoured, fractions included: 30 packets at 20/s arrive over about 1.45 s
/// (29 intervals of 50 ms) and 2 packets at 0.5/s 2 s apart — bounded on both sides with room for
/// a loaded machine, never a tight timing check. Every packet is answered 200 → delivered.
#[tokio::test]
async fn the_rate_is_honoured_fractions_included() {
    let sink = Recorder::start(Duration::ZERO).await;
    let target = format!("{}/relay", sink.url);
    assert_eq!(generate(&target, 30, "20", &[]).await, (30, 30, 0));
    let took = span(&sink);
    assert!(
        took >= Duration::from_millis(1300) && took <= Duration::from_millis(3500),
        "30 packets at 20/s spread over {took:?}, expected about 1.45 s"
    );

    let sink = Recorder::start(Duration::ZERO).await;
    let target = format!("{}/relay", sink.url);
    assert_eq!(generate(&target, 2, "0.5", &[]).await, (2, 2, 0));
    let took = span(&sink);
    assert!(
        took >= Duration::from_millis(1800) && took <= Duration::from_secs(4),
        "2 packets at 0.5/s {took:?} apart, expected about 2 s"
    );
    // The packets are well-formed with the generator's name in the id.
    let ids = sink.seen.lock().unwrap().ids.clone();
    assert_eq!(ids, [r#""generator-0""#, r#""generator-1""#]);
}

/// Proves `GENERATOR_CONCURRENCY` bounds the packets in flight: 6 packets at 100/s to a next hop
/// that answers after 300 ms, at most 2 at a time — the sink sees exactly 2 at once, never 3.
#[tokio::test]
async fn concurrency_bounds_packets_in_flight() {
    let sink = Recorder::start(Duration::from_millis(300)).await;
    let target = format!("{}/relay", sink.url);
    let counts = generate(&target, 6, "100", &[("GENERATOR_CONCURRENCY", "2")]).await;
    assert_eq!(counts, (6, 6, 0));
    assert_eq!(sink.seen.lock().unwrap().max_in_flight, 2);
}

/// Proves only a 200 counts as delivered and that `GENERATOR_TTL` is what the packets carry:
/// with TTL 0 every packet reaches the router (the link carried it) and is answered 508 → lost.
#[tokio::test]
async fn a_non_200_answer_is_lost() {
    let east = Proc::router("router-east", "", &[]).await;
    let target = format!("{}/relay", east.url);
    assert_eq!(
        generate(&target, 5, "50", &[("GENERATOR_TTL", "0")]).await,
        (5, 0, 5)
    );
    let m = east.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"relay_packets_rejected_total{service="router-east",reason="ttl_expired"}"#
        ),
        5
    );
}
