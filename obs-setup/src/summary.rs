//! The phase summary: each endpoint probed live, after `plan` and `apply`. An unreachable endpoint
//! is reported as down with the reason; it never fails the phase.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::desired::COLLECTOR;
use crate::reconcile::{ObsSetup, our_hook};

/// One probed endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub url: String,
    pub up: bool,
    pub detail: String,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  {} {:<28} {} — {}",
            if self.up { "up  " } else { "DOWN" },
            self.name,
            self.url,
            self.detail
        )
    }
}

/// Per-probe timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

fn reason(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    match http.get(url).timeout(TIMEOUT).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            Ok((status, resp.text().await.unwrap_or_default()))
        }
        Err(e) => Err(reason(&e)),
    }
}

fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        format!("{}…", one_line.chars().take(117).collect::<String>())
    } else {
        one_line
    }
}

/// `GET url`: up on 2xx (also the preflight's probe of Prometheus and Grafana).
pub async fn probe_get(http: &reqwest::Client, name: &str, url: String) -> (Probe, Option<String>) {
    match get(http, &url).await {
        Ok((status, body)) if (200..300).contains(&status) => (
            Probe {
                name: name.into(),
                url,
                up: true,
                detail: format!("HTTP {status}"),
            },
            Some(body),
        ),
        Ok((status, body)) => (
            Probe {
                name: name.into(),
                url,
                up: false,
                detail: format!("HTTP {status} {}", short(&body)),
            },
            None,
        ),
        Err(e) => (
            Probe {
                name: name.into(),
                url,
                up: false,
                detail: format!("unreachable: {}", short(&e)),
            },
            None,
        ),
    }
}

fn not_configured(name: &str) -> Probe {
    Probe {
        name: name.into(),
        url: String::new(),
        up: false,
        detail: "no URL (set DOMAIN or the URL setting)".into(),
    }
}

/// Probes every endpoint (concurrently).
#[allow(clippy::many_single_char_names)] // s: settings, as in every phase
pub async fn probe(phase: &ObsSetup) -> Vec<Probe> {
    let s = phase.settings();
    let mut cfg = phase.cfg.clone();
    cfg.http_timeout = TIMEOUT;
    let http = match common::http::build_reqwest(&cfg) {
        Ok(h) => h,
        Err(e) => {
            return vec![Probe {
                name: "summary".into(),
                url: String::new(),
                up: false,
                detail: format!("no HTTP client: {e}"),
            }];
        }
    };
    let grafana = async {
        match &s.grafana_url {
            Some(base) => {
                let (mut p, body) = probe_get(&http, "Grafana", format!("{base}/api/health")).await;
                if let Some(v) = body.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
                    p.detail = format!(
                        "{}, database {}, version {}",
                        p.detail,
                        v["database"].as_str().unwrap_or("?"),
                        v["version"].as_str().unwrap_or("?")
                    );
                }
                vec![p]
            }
            None => vec![not_configured("Grafana")],
        }
    };
    let prometheus = async {
        let Some(base) = &s.prometheus_url else {
            return vec![not_configured("Prometheus")];
        };
        let (ready, _) = probe_get(&http, "Prometheus", format!("{base}/-/ready")).await;
        if !ready.up {
            return vec![ready];
        }
        let (mut rules, body) = probe_get(
            &http,
            "Prometheus rules cicd-alerts",
            format!("{base}/api/v1/rules"),
        )
        .await;
        if let Some(v) = body.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
            let groups: Vec<&Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            if let Some(group) = groups.iter().find(|g| g["name"] == "cicd-alerts") {
                rules.detail = format!(
                    "loaded, {} rules",
                    group["rules"].as_array().map_or(0, Vec::len)
                );
            } else {
                rules.up = false;
                rules.detail = format!(
                    "not loaded ({} rule groups; is the Prometheus Operator selecting the PrometheusRule's labels?)",
                    groups.len()
                );
            }
        }
        let (mut target, body) = probe_get(
            &http,
            "Prometheus target dora-collector",
            format!("{base}/api/v1/targets?state=active"),
        )
        .await;
        if let Some(v) = body.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
            let ours: Vec<&Value> = v["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["labels"]["job"] == COLLECTOR)
                .collect();
            if ours.is_empty() {
                target.up = false;
                target.detail = "no target (ServiceMonitor not picked up or no pod ready)".into();
            } else {
                let up = ours.iter().filter(|t| t["health"] == "up").count();
                target.up = up > 0;
                let errors: Vec<String> = ours
                    .iter()
                    .filter(|t| t["health"] != "up")
                    .map(|t| {
                        format!(
                            "{} {}: {}",
                            t["labels"]["instance"].as_str().unwrap_or("?"),
                            t["health"].as_str().unwrap_or("?"),
                            short(t["lastError"].as_str().unwrap_or(""))
                        )
                    })
                    .collect();
                target.detail = format!("{up}/{} up", ours.len());
                if !errors.is_empty() {
                    target.detail = format!("{}; {}", target.detail, errors.join("; "));
                }
            }
        }
        vec![ready, rules, target]
    };
    let collector = async {
        let (p, _) = probe_get(
            &http,
            "DORA collector /readyz",
            format!("{}/readyz", s.collector_url),
        )
        .await;
        vec![p]
    };
    let hook = async {
        let name = "GitLab group hook";
        let url = format!("{} (group {})", s.webhook_url, s.webhook_group);
        let found = async {
            let group = phase
                .gitlab
                .group(&s.webhook_group)
                .await?
                .ok_or_else(|| anyhow::anyhow!("group {} not found", s.webhook_group))?;
            if !phase.gitlab.tier().await?.is_paid() {
                anyhow::bail!("GitLab Free: no group hooks");
            }
            let hooks = phase.gitlab.group_hooks(group.id).await?;
            Ok::<_, anyhow::Error>(our_hook(&hooks, s).map(|h| (h.id, h.url.clone())))
        };
        vec![match found.await {
            Ok(Some((id, hook_url))) => Probe {
                name: name.into(),
                url,
                up: true,
                detail: format!("hook {id} posts to {hook_url}"),
            },
            Ok(None) => Probe {
                name: name.into(),
                url,
                up: false,
                detail: "no hook (run apply)".into(),
            },
            Err(e) => Probe {
                name: name.into(),
                url,
                up: false,
                detail: short(&format!("{e:#}")),
            },
        }]
    };
    let (g, p, c, h) = futures::join!(grafana, prometheus, collector, hook);
    [g, p, c, h].into_iter().flatten().collect()
}

/// The summary as printed on stderr.
pub fn render(probes: &[Probe]) -> String {
    let up = probes.iter().filter(|p| p.up).count();
    let mut out = format!(
        "summary (probed live): {up}/{} endpoints up\n",
        probes.len()
    );
    for probe in probes {
        out.push_str(&probe.to_string());
        out.push('\n');
    }
    common::redact::redact(&out)
}
