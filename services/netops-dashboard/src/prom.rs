//! Prometheus mode (in a cluster): the routers' series read through Prometheus's HTTP API
//! (`GET /api/v1/query`, instant vectors), which sums the pods of a router (a canary and its
//! stable set) and already computes the rates. Rates become increments over the poll interval,
//! so the window and the states are computed exactly as in direct mode.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use url::Url;

use crate::topology::{Flow, Poll, RouterStatus};
use crate::upstream_http;

/// Largest Prometheus answer read (a query over a few dozen routers is kilobytes).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Range of the `rate()` queries: at least two scrapes at the cluster's usual 15 s interval.
pub const RATE_RANGE: &str = "30s";

/// The queries, in the order [`Prometheus::poll`] sends them.
pub fn queries() -> [String; 5] {
    [
        format!("sum by (from, to) (rate(relay_link_packets_total[{RATE_RANGE}]))"),
        format!("sum by (from, to) (rate(relay_link_drops_total[{RATE_RANGE}]))"),
        "max by (from, to) (relay_next_hop_info)".to_string(),
        "max by (service, version) (relay_build_info)".to_string(),
        format!("sum by (outcome) (rate(relay_generator_packets_total[{RATE_RANGE}]))"),
    ]
}

pub struct Prometheus {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
    nominal_interval: f64,
    last_at: Option<f64>,
    /// Every service seen so far: one missing from `relay_build_info` now is down.
    seen: Vec<String>,
}

/// One element of an instant vector: labels and value.
pub type Element = (BTreeMap<String, String>, f64);

impl Prometheus {
    pub fn new(base: Url, http: reqwest::Client, timeout: Duration, poll: Duration) -> Self {
        Self {
            base,
            http,
            timeout,
            nominal_interval: poll.as_secs_f64(),
            last_at: None,
            seen: Vec::new(),
        }
    }

    /// Runs the queries; `Err` when Prometheus does not answer them (the page says so and keeps
    /// the last picture).
    pub async fn poll(&mut self, at: f64) -> anyhow::Result<Poll> {
        let qs = queries();
        let answers = futures::future::try_join_all(qs.iter().map(|q| self.query(q))).await?;
        let interval = self
            .last_at
            .map_or(self.nominal_interval, |last| (at - last).max(0.0));
        self.last_at = Some(at);
        let [packets, drops, hops, builds, outcomes]: [Vec<Element>; 5] = answers
            .try_into()
            .map_err(|_| anyhow::anyhow!("five answers expected"))?;
        Ok(to_poll(
            at,
            interval,
            &Answers {
                packets,
                drops,
                hops,
                builds,
                outcomes,
            },
            &mut self.seen,
        ))
    }

    async fn query(&self, query: &str) -> anyhow::Result<Vec<Element>> {
        let url = self.base.join("api/v1/query")?;
        let what = format!("Prometheus {} query {query:?}", upstream_http::shown(&url));
        let response = self
            .http
            .get(url.clone())
            .query(&[("query", query)])
            .timeout(self.timeout)
            .send()
            .await
            .map_err(reqwest::Error::without_url)
            .with_context(|| what.clone())?;
        let status = response.status();
        let bytes = upstream_http::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        let body: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{what}: {status}, not JSON"))?;
        if !status.is_success() || body["status"] != "success" {
            bail!(
                "{what}: {status}: {}",
                body["error"].as_str().unwrap_or("no error message")
            );
        }
        parse_vector(&body).with_context(|| what.clone())
    }
}

/// The elements of an instant-vector answer (`data.resultType == "vector"`).
pub fn parse_vector(body: &Value) -> anyhow::Result<Vec<Element>> {
    let data = &body["data"];
    if data["resultType"] != "vector" {
        bail!("expected a vector, got {}", data["resultType"]);
    }
    let mut out = Vec::new();
    for element in data["result"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = element["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let Some(value) = element["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        if value.is_finite() {
            out.push((labels, value));
        }
    }
    Ok(out)
}

/// The answers of [`queries`].
#[derive(Debug, Default)]
pub struct Answers {
    pub packets: Vec<Element>,
    pub drops: Vec<Element>,
    pub hops: Vec<Element>,
    pub builds: Vec<Element>,
    pub outcomes: Vec<Element>,
}

fn label<'a>(labels: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

/// Rates × interval → one [`Poll`]. `seen` keeps every service ever reported (to show a router
/// whose pods all vanished as down rather than forget it).
pub fn to_poll(at: f64, interval: f64, a: &Answers, seen: &mut Vec<String>) -> Poll {
    let mut poll = Poll {
        at,
        interval,
        ..Poll::default()
    };
    let link = |labels: &BTreeMap<String, String>| {
        let (from, to) = (label(labels, "from"), label(labels, "to"));
        (!from.is_empty() && !to.is_empty()).then(|| (from.to_string(), to.to_string()))
    };
    for (labels, rate) in &a.packets {
        if let Some((from, to)) = link(labels) {
            poll.add_flow(
                &from,
                &to,
                Flow {
                    packets: rate * interval,
                    drops: 0.0,
                },
            );
        }
    }
    for (labels, rate) in &a.drops {
        if let Some((from, to)) = link(labels) {
            poll.add_flow(
                &from,
                &to,
                Flow {
                    packets: 0.0,
                    drops: rate * interval,
                },
            );
        }
    }
    for (labels, value) in &a.hops {
        if let Some(key) = link(labels).filter(|_| *value > 0.0) {
            poll.active.insert(key);
        }
    }
    // service → versions (a canary runs two at once: both are shown).
    let mut versions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (labels, value) in &a.builds {
        let service = label(labels, "service");
        if service.is_empty() || *value <= 0.0 {
            continue;
        }
        let list = versions.entry(service).or_default();
        let version = label(labels, "version");
        if !version.is_empty() && !list.iter().any(|v| v == version) {
            list.push(version.to_string());
        }
    }
    for service in versions.keys() {
        if !seen.iter().any(|s| s == service) {
            seen.push((*service).to_string());
        }
    }
    for service in seen.iter() {
        let now = versions.get(service.as_str());
        poll.routers.push(RouterStatus {
            name: service.clone(),
            up: now.is_some(),
            versions: now.cloned().unwrap_or_default(),
            error: now
                .is_none()
                .then(|| "no relay_build_info in Prometheus: no pod scraped".to_string()),
        });
    }
    for (labels, rate) in &a.outcomes {
        match label(labels, "outcome") {
            "delivered" => poll.delivered += rate * interval,
            "lost" => poll.lost += rate * interval,
            _ => {}
        }
    }
    poll
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{LinkState, NodeKind, Tracker};
    use serde_json::json;

    fn vector(elements: &[(Value, &str)]) -> Value {
        json!({"status": "success", "data": {"resultType": "vector", "result":
            elements.iter().map(|(m, v)| json!({"metric": m, "value": [1_700_000_000.0, v]})).collect::<Vec<_>>()}})
    }

    #[test]
    fn parses_instant_vectors() {
        let v = parse_vector(&vector(&[
            (json!({"from": "a", "to": "b"}), "2.5"),
            (json!({"from": "a", "to": "c"}), "NaN"),
        ]))
        .unwrap();
        assert_eq!(v.len(), 1, "NaN is skipped");
        assert_eq!(v[0].0["to"], "b");
        assert!((v[0].1 - 2.5).abs() < f64::EPSILON);
        assert!(
            parse_vector(
                &json!({"status": "success", "data": {"resultType": "matrix", "result": []}})
            )
            .is_err()
        );
    }

    #[test]
    fn canary_with_a_bad_hop_shows_both_versions_and_both_links() {
        let el = |pairs: &[(&str, &str)], value: f64| {
            (
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect::<BTreeMap<_, _>>(),
                value,
            )
        };
        let answers = Answers {
            packets: vec![
                el(&[("from", "router-core"), ("to", "router-east")], 38.0),
                el(&[("from", "router-core"), ("to", "10.0.0.99:8080")], 0.0),
            ],
            drops: vec![
                el(&[("from", "router-core"), ("to", "router-east")], 0.0),
                el(&[("from", "router-core"), ("to", "10.0.0.99:8080")], 2.0),
            ],
            hops: vec![
                el(&[("from", "router-core"), ("to", "router-east")], 1.0),
                el(&[("from", "router-core"), ("to", "10.0.0.99:8080")], 1.0),
            ],
            builds: vec![
                el(&[("service", "router-core"), ("version", "0.1.0")], 1.0),
                el(&[("service", "router-core"), ("version", "0.2.0")], 1.0),
                el(&[("service", "router-east"), ("version", "0.1.0")], 1.0),
            ],
            outcomes: vec![
                el(&[("outcome", "delivered")], 38.0),
                el(&[("outcome", "lost")], 2.0),
            ],
        };
        let mut seen = Vec::new();
        let poll = to_poll(10.0, 2.0, &answers, &mut seen);
        assert!((poll.delivered - 76.0).abs() < 1e-9);
        let mut t = Tracker::default();
        t.push(poll);
        let c = t.compute();
        let core = c.routers.iter().find(|r| r.name == "router-core").unwrap();
        assert_eq!(core.versions, ["0.1.0", "0.2.0"]);
        let state = |to: &str| c.links.iter().find(|l| l.to == to).unwrap().state;
        assert_eq!(state("router-east"), LinkState::Up);
        assert_eq!(state("10.0.0.99:8080"), LinkState::Down);
        let east = c.links.iter().find(|l| l.to == "router-east").unwrap();
        assert!((east.packets_per_sec - 38.0).abs() < 1e-9);
        assert_eq!(c.delivery_ratio, Some(0.95));
        let unknown = c
            .routers
            .iter()
            .find(|r| r.name == "10.0.0.99:8080")
            .unwrap();
        assert_eq!(unknown.kind, NodeKind::Unknown);
        // router-east's pods vanish: it stays listed, down.
        let poll = to_poll(11.0, 1.0, &Answers::default(), &mut seen);
        let east = poll
            .routers
            .iter()
            .find(|r| r.name == "router-east")
            .unwrap();
        assert!(!east.up && east.error.is_some());
    }

    #[test]
    fn queries_are_the_documented_ones() {
        let q = queries();
        assert_eq!(
            q[0],
            "sum by (from, to) (rate(relay_link_packets_total[30s]))"
        );
        assert_eq!(q[2], "max by (from, to) (relay_next_hop_info)");
    }
}
