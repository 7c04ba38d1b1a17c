//! Direct mode (the local arcade): every router's `/metrics` scraped at each poll, side by side,
//! and its counters turned into one [`Poll`] of increments.

use std::time::Duration;

use anyhow::Context as _;

use crate::config::RouterTarget;
use crate::scrape::{LinkCounter, RouterMetrics, parse};
use crate::topology::{Counters, Flow, Poll, RouterStatus};
use crate::upstream_http;

pub struct Direct {
    targets: Vec<RouterTarget>,
    http: reqwest::Client,
    timeout: Duration,
    counters: Counters,
    last_at: Option<f64>,
}

/// Largest `/metrics` answer read from a router (a relay's is a few kilobytes).
const MAX_METRICS_BYTES: usize = 4 * 1024 * 1024;

impl Direct {
    /// `timeout` bounds each scrape (connect plus answer).
    pub fn new(targets: Vec<RouterTarget>, http: reqwest::Client, timeout: Duration) -> Self {
        Self {
            targets,
            http,
            timeout,
            counters: Counters::default(),
            last_at: None,
        }
    }

    /// Scrapes every router and returns the poll taken at `at` (unix seconds).
    pub async fn poll(&mut self, at: f64) -> Poll {
        let scrapes = futures::future::join_all(
            self.targets
                .iter()
                .map(|t| scrape(&self.http, t, self.timeout)),
        )
        .await;
        let mut poll = Poll {
            at,
            interval: self.last_at.map_or(0.0, |last| (at - last).max(0.0)),
            ..Poll::default()
        };
        self.last_at = Some(at);
        for (target, result) in self.targets.iter().zip(scrapes) {
            match result {
                Ok(metrics) => {
                    add(&mut self.counters, &target.name, &metrics, &mut poll);
                    poll.routers.push(RouterStatus {
                        name: target.name.clone(),
                        up: true,
                        versions: metrics.versions,
                        error: None,
                    });
                }
                Err(e) => {
                    // Messages name the URL without user info; the public topology shows only
                    // the kind of failure.
                    tracing::debug!(router = %target.name, "scrape failed: {e:#}");
                    poll.routers.push(RouterStatus {
                        name: target.name.clone(),
                        up: false,
                        versions: Vec::new(),
                        error: Some(upstream_http::public_reason(&e)),
                    });
                }
            }
        }
        poll
    }
}

/// Adds one router's counters (as increments) and configured next hops to the poll.
fn add(counters: &mut Counters, router: &str, m: &RouterMetrics, poll: &mut Poll) {
    enum Kind {
        Packets,
        Drops,
        Delivered,
        Lost,
    }
    let groups: [(Kind, &str, &[LinkCounter]); 4] = [
        (Kind::Packets, "packets", &m.packets),
        (Kind::Drops, "drops", &m.drops),
        (Kind::Delivered, "delivered", &m.generator_delivered),
        (Kind::Lost, "lost", &m.generator_lost),
    ];
    let mut series = Vec::new();
    let mut meaning = Vec::new();
    for (kind, prefix, counters) in &groups {
        for c in *counters {
            series.push((
                format!("{prefix}|{}|{}|{}", c.from, c.to, c.series),
                c.value,
            ));
            meaning.push((kind, c));
        }
    }
    let increments = counters.increments(router, &series);
    for ((kind, c), inc) in meaning.into_iter().zip(increments) {
        match kind {
            Kind::Packets => poll.add_flow(
                &c.from,
                &c.to,
                Flow {
                    packets: inc,
                    drops: 0.0,
                },
            ),
            Kind::Drops => poll.add_flow(
                &c.from,
                &c.to,
                Flow {
                    packets: 0.0,
                    drops: inc,
                },
            ),
            Kind::Delivered => poll.delivered += inc,
            Kind::Lost => poll.lost += inc,
        }
    }
    poll.active.extend(m.next_hops.iter().cloned());
}

async fn scrape(
    http: &reqwest::Client,
    target: &RouterTarget,
    timeout: Duration,
) -> anyhow::Result<RouterMetrics> {
    let url = upstream_http::shown(&target.metrics_url);
    let response = http
        .get(target.metrics_url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "GET {url}: {status}");
    let body = upstream_http::read_capped(response, MAX_METRICS_BYTES)
        .await
        .with_context(|| format!("GET {url}: reading the answer"))?;
    let text = String::from_utf8_lossy(&body);
    Ok(RouterMetrics::from_samples(&target.name, &parse(&text)))
}
