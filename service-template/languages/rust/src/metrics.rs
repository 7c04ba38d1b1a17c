//! The service's HTTP requests in the form the platform's canary analysis reads (phase 15's
//! `ClusterAnalysisTemplates`): `http_requests_total{service,status}` and the histogram
//! `http_request_duration_seconds{service}`. Probes and `/metrics` are not counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Buckets of the latency histogram, in seconds.
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Paths that are not counted.
pub fn counted(path: &str) -> bool {
    !matches!(path, "/healthz" | "/readyz" | "/metrics")
}

#[derive(Default)]
struct Counts {
    requests: BTreeMap<u16, u64>,
    buckets: [u64; 10],
    sum: f64,
    count: u64,
}

/// The counters of one service.
pub struct Registry {
    service: &'static str,
    counts: Mutex<Counts>,
}

impl Registry {
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Records one answered request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let mut c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *c.requests.entry(status).or_default() += 1;
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                c.buckets[i] += 1;
            }
        }
        c.sum += seconds;
        c.count += 1;
    }

    /// The Prometheus text format.
    pub fn text(&self) -> String {
        let c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = format!("service=\"{}\"", self.service);
        let mut out = String::from("# TYPE http_requests_total counter\n");
        for (status, n) in &c.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{{label},status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (le, n) in BUCKETS.iter().zip(c.buckets) {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{label},le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{label},le=\"+Inf\"}} {}",
            c.count
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{{label}}} {}",
            c.sum
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{{label}}} {}",
            c.count
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let r = Registry::new("s");
        r.observe(200, 0.02);
        r.observe(500, 7.0);
        let text = r.text();
        assert!(text.contains("http_requests_total{service=\"s\",status=\"200\"} 1\n"));
        assert!(text.contains("http_requests_total{service=\"s\",status=\"500\"} 1\n"));
        assert!(text.contains("le=\"0.01\"} 0\n") && text.contains("le=\"0.025\"} 1\n"));
        assert!(text.contains("le=\"+Inf\"} 2\n"));
        assert!(!counted("/healthz") && counted("/hello"));
    }
}
