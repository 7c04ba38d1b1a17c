//! The metrics, as plain atomics resolved at start: the hot path does one `fetch_add` per counter
//! and never allocates a label set or takes a lock. `/metrics` renders the Prometheus text format.
//!
//! Every series a scrape may need for an exact `rate()` exists at 0 from start: each link's
//! packets and both drop reasons, and the statuses this router answers itself (200, 400, 413,
//! 502, 504, 508). Prometheus does not extrapolate a counter back past a first sample of 0, so
//! `increase()` over a window that holds the router's whole life is the exact count.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::hops::Hop;

/// Upper bounds of the `http_request_duration_seconds` buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in nanoseconds (compared on the hot path).
const BUCKET_NANOS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Statuses a router answers by itself; their series exist from start.
pub const OWN_STATUSES: [u16; 6] = [200, 400, 413, 502, 504, 508];
/// Status codes counted (a next hop's answer is passed on, whatever it is).
const STATUS_SLOTS: usize = 1000;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    TtlExpired = 0,
    Loop = 1,
    TooLarge = 2,
    Malformed = 3,
}

impl Rejected {
    pub const ALL: [Self; 4] = [
        Self::TtlExpired,
        Self::Loop,
        Self::TooLarge,
        Self::Malformed,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Self::TtlExpired => "ttl_expired",
            Self::Loop => "loop",
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
        }
    }
}

/// Why a link lost a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No connection to the next hop (refused, unreachable, reset before an answer).
    Connect,
    /// No answer within the hop's time budget.
    Timeout,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
        }
    }
}

/// One link of this router (or of the generator) to a next hop.
#[derive(Debug)]
pub struct Link {
    pub hop: Hop,
    packets: AtomicU64,
    drops_connect: AtomicU64,
    drops_timeout: AtomicU64,
    /// Whether the last attempt failed: only changes are logged, not every packet.
    failing: AtomicBool,
}

impl Link {
    fn new(hop: Hop) -> Self {
        Self {
            hop,
            packets: AtomicU64::new(0),
            drops_connect: AtomicU64::new(0),
            drops_timeout: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    /// The next hop received the packet (it answered, whatever the status).
    pub fn carried(&self) {
        self.packets.fetch_add(1, Relaxed);
        if self.failing.load(Relaxed) && self.failing.swap(false, Relaxed) {
            tracing::info!(to = %self.hop.name, url = %self.hop.url, "link carries packets again");
        }
    }

    /// The link lost the packet.
    pub fn dropped(&self, reason: DropReason, error: &dyn std::fmt::Display) {
        match reason {
            DropReason::Connect => &self.drops_connect,
            DropReason::Timeout => &self.drops_timeout,
        }
        .fetch_add(1, Relaxed);
        if self.failing.swap(true, Relaxed) {
            tracing::debug!(to = %self.hop.name, reason = reason.label(), "packet dropped: {error}");
        } else {
            tracing::warn!(to = %self.hop.name, url = %self.hop.url, reason = reason.label(), "link drops packets: {error}");
        }
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Relaxed)
    }
}

/// What the process is: a router (serves `/relay`) or the traffic generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Router,
    Generator,
}

/// Every metric of one process.
#[derive(Debug)]
pub struct Metrics {
    role: Role,
    name: String,
    version: String,
    status: Box<[AtomicU64]>,
    /// Per bucket, not cumulative; the last slot is `+Inf` only.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    delivered: AtomicU64,
    rejected: [AtomicU64; 4],
    pub links: Box<[Link]>,
    /// Generator outcomes: delivered, lost.
    generated: [AtomicU64; 2],
}

impl Metrics {
    /// `name` is `ROUTER_NAME`; `hops` the next hops (the generator's one target).
    pub fn new(role: Role, name: &str, version: &str, hops: Vec<Hop>) -> Self {
        Self {
            role,
            name: name.to_owned(),
            version: version.to_owned(),
            status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            rejected: Default::default(),
            links: hops.into_iter().map(Link::new).collect(),
            generated: Default::default(),
        }
    }

    /// One answer to `POST /relay`: its status and how long it took.
    pub fn answered(&self, status: u16, took: Duration) {
        if let Some(slot) = self.status.get(usize::from(status)) {
            slot.fetch_add(1, Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS
            .iter()
            .position(|b| nanos <= *b)
            .unwrap_or(BUCKET_NANOS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, reason: Rejected) {
        self.rejected[reason as usize].fetch_add(1, Relaxed);
    }

    /// The generator's verdict on one packet.
    pub fn generated(&self, delivered: bool) {
        self.generated[usize::from(!delivered)].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let service = escape(&self.name);
        let from = &service;
        if self.role == Role::Router {
            header(
                &mut out,
                "http_requests_total",
                "counter",
                "Answers to POST /relay, by status code.",
            );
            for (code, n) in self.status.iter().enumerate() {
                let n = n.load(Relaxed);
                let own = u16::try_from(code).is_ok_and(|c| OWN_STATUSES.contains(&c));
                if n > 0 || own {
                    let _ = writeln!(
                        out,
                        "http_requests_total{{service=\"{service}\",status=\"{code}\"}} {n}"
                    );
                }
            }
            header(
                &mut out,
                "http_request_duration_seconds",
                "histogram",
                "Time to answer POST /relay (the next hops' time included).",
            );
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += self.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{service=\"{service}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += self.buckets[BUCKETS.len()].load(Relaxed);
            #[allow(clippy::cast_precision_loss)]
            let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{service=\"{service}\",le=\"+Inf\"}} {cumulative}\n\
                 http_request_duration_seconds_sum{{service=\"{service}\"}} {sum}\n\
                 http_request_duration_seconds_count{{service=\"{service}\"}} {cumulative}"
            );
        }
        header(
            &mut out,
            "relay_link_packets_total",
            "counter",
            "Packets the next hop received (it answered, whatever the status).",
        );
        for link in &self.links {
            let to = escape(&link.hop.name);
            let _ = writeln!(
                out,
                "relay_link_packets_total{{from=\"{from}\",to=\"{to}\"}} {}",
                link.packets()
            );
        }
        header(
            &mut out,
            "relay_link_drops_total",
            "counter",
            "Packets lost on the link: connect (no connection) or timeout (no answer in time).",
        );
        for link in &self.links {
            let to = escape(&link.hop.name);
            for (reason, n) in [
                ("connect", &link.drops_connect),
                ("timeout", &link.drops_timeout),
            ] {
                let _ = writeln!(
                    out,
                    "relay_link_drops_total{{from=\"{from}\",to=\"{to}\",reason=\"{reason}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        header(
            &mut out,
            "relay_next_hop_info",
            "gauge",
            "1 per configured next hop.",
        );
        for link in &self.links {
            let _ = writeln!(
                out,
                "relay_next_hop_info{{from=\"{from}\",to=\"{}\",url=\"{}\"}} 1",
                escape(&link.hop.name),
                escape(&link.hop.url)
            );
        }
        match self.role {
            Role::Router => {
                header(
                    &mut out,
                    "relay_packets_delivered_total",
                    "counter",
                    "Packets delivered here (terminal router).",
                );
                let _ = writeln!(
                    out,
                    "relay_packets_delivered_total{{service=\"{service}\"}} {}",
                    self.delivered.load(Relaxed)
                );
                header(
                    &mut out,
                    "relay_packets_rejected_total",
                    "counter",
                    "Packets refused, by reason.",
                );
                for reason in Rejected::ALL {
                    let _ = writeln!(
                        out,
                        "relay_packets_rejected_total{{service=\"{service}\",reason=\"{}\"}} {}",
                        reason.label(),
                        self.rejected[reason as usize].load(Relaxed)
                    );
                }
            }
            Role::Generator => {
                header(
                    &mut out,
                    "relay_generator_packets_total",
                    "counter",
                    "Packets sent by the generator, by outcome (delivered: a 200 from the target).",
                );
                for link in &self.links {
                    let to = escape(&link.hop.name);
                    for (outcome, n) in [
                        ("delivered", &self.generated[0]),
                        ("lost", &self.generated[1]),
                    ] {
                        let _ = writeln!(
                            out,
                            "relay_generator_packets_total{{from=\"{from}\",to=\"{to}\",outcome=\"{outcome}\"}} {}",
                            n.load(Relaxed)
                        );
                    }
                }
            }
        }
        header(
            &mut out,
            "relay_build_info",
            "gauge",
            "1, with the running version.",
        );
        let _ = writeln!(
            out,
            "relay_build_info{{service=\"{service}\",version=\"{}\"}} 1",
            escape(&self.version)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_agree() {
        for (s, n) in BUCKETS.iter().zip(BUCKET_NANOS) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let nanos = (s * 1e9).round() as u64;
            assert_eq!(nanos, n);
        }
    }

    #[test]
    fn series_exist_at_zero_and_count_exactly() {
        let hop = crate::hops::parse_next_hops("east=http://127.0.0.1:9").unwrap();
        let m = Metrics::new(Role::Router, "router-\"x\"", "1.2.3", hop);
        let text = m.render();
        for line in [
            r#"http_requests_total{service="router-\"x\"",status="200"} 0"#,
            r#"http_requests_total{service="router-\"x\"",status="502"} 0"#,
            r#"relay_link_packets_total{from="router-\"x\"",to="east"} 0"#,
            r#"relay_link_drops_total{from="router-\"x\"",to="east",reason="connect"} 0"#,
            r#"relay_link_drops_total{from="router-\"x\"",to="east",reason="timeout"} 0"#,
            r#"relay_next_hop_info{from="router-\"x\"",to="east",url="http://127.0.0.1:9"} 1"#,
            r#"relay_build_info{service="router-\"x\"",version="1.2.3"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        m.answered(200, Duration::from_micros(400));
        m.answered(200, Duration::from_millis(3));
        m.answered(599, Duration::from_secs(11));
        let text = m.render();
        for line in [
            r#"http_requests_total{service="router-\"x\"",status="200"} 2"#,
            r#"http_requests_total{service="router-\"x\"",status="599"} 1"#,
            r#"http_request_duration_seconds_bucket{service="router-\"x\"",le="0.0005"} 1"#,
            r#"http_request_duration_seconds_bucket{service="router-\"x\"",le="0.0025"} 1"#,
            r#"http_request_duration_seconds_bucket{service="router-\"x\"",le="0.005"} 2"#,
            r#"http_request_duration_seconds_bucket{service="router-\"x\"",le="10"} 2"#,
            r#"http_request_duration_seconds_bucket{service="router-\"x\"",le="+Inf"} 3"#,
            r#"http_request_duration_seconds_sum{service="router-\"x\""} 11.0034"#,
            r#"http_request_duration_seconds_count{service="router-\"x\""} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
