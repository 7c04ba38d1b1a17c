//! Settings: command-line flags, each also read from the environment variable named in
//! [`crate::env`] (the names the manifests and the local arcade set). Every value is validated
//! here, before anything starts, and a bad one is one line naming the variable and the fix.

use std::net::SocketAddr;
use std::time::Duration;

use crate::env;
use anyhow::{Context as _, bail};
use clap::Parser;
use serde::Serialize;
use url::Url;

/// The raw arguments (strings, validated by [`Settings::from_args`] for one-line errors).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netops-dashboard",
    version,
    about = "NetOps Arcade dashboard: the router topology, link state and packet rates, live in a browser."
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = env::DASHBOARD_LISTEN_ADDR, default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Routers scraped directly at `<url>/metrics`: `name=http://host:port,…` (local arcade;
    /// include `generator=…` for the end-to-end delivery ratio).
    #[arg(long, env = env::DASHBOARD_ROUTERS)]
    pub routers: Option<String>,
    /// Prometheus to query in a cluster (used when the routers are not given).
    #[arg(long, env = env::DASHBOARD_PROMETHEUS_URL)]
    pub prometheus_url: Option<String>,
    /// Milliseconds between two polls of the routers (or Prometheus).
    #[arg(long, env = env::DASHBOARD_POLL_MS, default_value = "1000")]
    pub poll_ms: String,
    /// Version shown in the header (default: the crate version; the image tag in a cluster).
    #[arg(long, env = env::APP_VERSION)]
    pub app_version: Option<String>,
    /// Colour of this release in a blue-green switch: blue or green.
    #[arg(long, env = env::APP_COLOR, default_value = "blue")]
    pub color: String,
}

/// The release colour of a blue-green switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}

/// One router scraped directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterTarget {
    pub name: String,
    /// `<base>/metrics`.
    pub metrics_url: Url,
}

/// Where the numbers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Scrape each router's `/metrics` (`DASHBOARD_ROUTERS`).
    Direct(Vec<RouterTarget>),
    /// Query Prometheus (`DASHBOARD_PROMETHEUS_URL`).
    Prometheus(Url),
}

impl Source {
    pub fn mode(&self) -> &'static str {
        match self {
            Source::Direct(_) => "direct",
            Source::Prometheus(_) => "prometheus",
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub source: Source,
    pub poll: Duration,
    pub version: String,
    pub color: Color,
}

/// Shortest poll interval accepted (a faster one only loads the routers).
pub const MIN_POLL_MS: u64 = 100;
/// Longest poll interval accepted (a slower one is no longer "live").
pub const MAX_POLL_MS: u64 = 60_000;

impl Settings {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let listen = args.listen.trim().parse().with_context(|| {
            format!(
                "{}={:?} is not an address like 0.0.0.0:8080",
                env::DASHBOARD_LISTEN_ADDR,
                args.listen
            )
        })?;
        let color = match args.color.trim() {
            "blue" => Color::Blue,
            "green" => Color::Green,
            other => bail!(
                "{}={other:?} is not a release colour: use blue or green",
                env::APP_COLOR
            ),
        };
        let poll_ms: u64 = args
            .poll_ms
            .trim()
            .parse()
            .ok()
            .filter(|ms| (MIN_POLL_MS..=MAX_POLL_MS).contains(ms))
            .with_context(|| {
                format!(
                    "{}={:?} is not a number of milliseconds between {MIN_POLL_MS} and {MAX_POLL_MS}",
                    env::DASHBOARD_POLL_MS,
                    args.poll_ms
                )
            })?;
        let routers = args.routers.filter(|r| !r.trim().is_empty());
        let prometheus = args.prometheus_url.filter(|p| !p.trim().is_empty());
        let source = match (routers, prometheus) {
            (Some(routers), _) => Source::Direct(parse_routers(&routers)?),
            (None, Some(url)) => Source::Prometheus(parse_prometheus_url(&url)?),
            (None, None) => bail!(
                "nothing to show: set {} (name=http://host:port,… scraped directly) or {} (a Prometheus that scrapes the routers)",
                env::DASHBOARD_ROUTERS,
                env::DASHBOARD_PROMETHEUS_URL
            ),
        };
        let version = args
            .app_version
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        Ok(Self {
            listen,
            source,
            poll: Duration::from_millis(poll_ms),
            version,
            color,
        })
    }
}

/// A router, generator or hop name: what the routers put in their `from`/`to`/`service` labels.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `DASHBOARD_ROUTERS`: `name=http://host:port,…` (base URLs; `/metrics` is appended).
pub fn parse_routers(text: &str) -> anyhow::Result<Vec<RouterTarget>> {
    let var = env::DASHBOARD_ROUTERS;
    let mut routers: Vec<RouterTarget> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, base)) = entry.split_once('=') else {
            bail!(
                "{var}: {entry:?} has no name: write name=http://host:port (e.g. router-west=http://127.0.0.1:8081)"
            );
        };
        let (name, base) = (name.trim(), base.trim());
        if !valid_name(name) {
            bail!(
                "{var}: {name:?} is not a router name (letters, digits, '-', '_', '.'; e.g. router-west)"
            );
        }
        let url = Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .with_context(|| {
                format!("{var}: {name}={base:?} is not an http(s) URL like http://127.0.0.1:8081")
            })?;
        if routers.iter().any(|r| r.name == name) {
            bail!("{var}: {name} is listed twice");
        }
        let mut metrics_url = url;
        if !metrics_url.path().ends_with('/') {
            let path = format!("{}/", metrics_url.path());
            metrics_url.set_path(&path);
        }
        let metrics_url = metrics_url
            .join("metrics")
            .with_context(|| format!("{var}: {name}={base:?}"))?;
        routers.push(RouterTarget {
            name: name.to_string(),
            metrics_url,
        });
    }
    if routers.is_empty() {
        bail!("{var} lists no router: write name=http://host:port,…");
    }
    Ok(routers)
}

/// Parses `DASHBOARD_PROMETHEUS_URL` (the base, without `/api/v1`).
pub fn parse_prometheus_url(text: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .with_context(|| {
            format!(
                "{}={text:?} is not an http(s) URL like http://prometheus-server.monitoring.svc:9090",
                env::DASHBOARD_PROMETHEUS_URL
            )
        })?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn args(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut argv = vec!["netops-dashboard".to_string()];
        for (flag, value) in pairs {
            argv.push(format!("--{flag}={value}"));
        }
        Settings::from_args(Args::try_parse_from(argv)?)
    }

    #[test]
    fn env_names_are_the_documented_constants() {
        let command = Args::command();
        let env_of = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        for (id, name) in [
            ("listen", env::DASHBOARD_LISTEN_ADDR),
            ("routers", env::DASHBOARD_ROUTERS),
            ("prometheus_url", env::DASHBOARD_PROMETHEUS_URL),
            ("poll_ms", env::DASHBOARD_POLL_MS),
            ("app_version", env::APP_VERSION),
            ("color", env::APP_COLOR),
        ] {
            assert_eq!(env_of(id).as_deref(), Some(name), "{id}");
            assert!(env::ALL.contains(&name), "{name} is in env::ALL");
        }
        assert_eq!(env::DASHBOARD_LISTEN_ADDR, "DASHBOARD_LISTEN_ADDR");
        assert_eq!(env::DASHBOARD_ROUTERS, "DASHBOARD_ROUTERS");
        assert_eq!(env::DASHBOARD_PROMETHEUS_URL, "DASHBOARD_PROMETHEUS_URL");
        assert_eq!(env::DASHBOARD_POLL_MS, "DASHBOARD_POLL_MS");
        assert_eq!(env::APP_VERSION, "APP_VERSION");
        assert_eq!(env::APP_COLOR, "APP_COLOR");
    }

    #[test]
    fn defaults() {
        let s = args(&[("routers", "router-west=http://127.0.0.1:1")]).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.poll, Duration::from_secs(1));
        assert_eq!(s.color, Color::Blue);
        assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(s.source.mode(), "direct");
    }

    #[test]
    fn routers_list_is_parsed_into_metrics_urls() {
        let r = parse_routers(
            " generator=http://127.0.0.1:9000 , router-west=http://10.1.2.3:8080/, router-core=https://core.example/base ,",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = r
            .iter()
            .map(|t| (t.name.as_str(), t.metrics_url.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("generator", "http://127.0.0.1:9000/metrics"),
                ("router-west", "http://10.1.2.3:8080/metrics"),
                ("router-core", "https://core.example/base/metrics"),
            ]
        );
    }

    #[test]
    fn malformed_routers_are_refused_with_the_variable_named() {
        for bad in [
            "router-west",
            "=http://127.0.0.1:1",
            "router west=http://127.0.0.1:1",
            "router-west=127.0.0.1:8080",
            "router-west=ftp://x",
            "a=http://127.0.0.1:1,a=http://127.0.0.1:2",
            " , ",
        ] {
            let e = parse_routers(bad).unwrap_err().to_string();
            assert!(e.starts_with("DASHBOARD_ROUTERS"), "{bad}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn colour_poll_and_source_are_validated() {
        let e = args(&[("routers", "a=http://h:1"), ("color", "purple")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "APP_COLOR=\"purple\" is not a release colour: use blue or green"
        );
        let s = args(&[("routers", "a=http://h:1"), ("color", "green")]).unwrap();
        assert_eq!(s.color, Color::Green);
        for poll in ["abc", "0", "99", "60001", "-5"] {
            let e = args(&[("routers", "a=http://h:1"), ("poll-ms", poll)]).unwrap_err();
            assert!(e.to_string().starts_with("DASHBOARD_POLL_MS="), "{e}");
        }
        let e = format!("{:#}", args(&[]).unwrap_err());
        assert!(e.contains("DASHBOARD_ROUTERS") && e.contains("DASHBOARD_PROMETHEUS_URL"));
        let s = args(&[("prometheus-url", "http://prom:9090/sub")]).unwrap();
        assert_eq!(
            s.source,
            Source::Prometheus(Url::parse("http://prom:9090/sub/").unwrap())
        );
        // The routers win over Prometheus (local arcade with a Prometheus around).
        let s = args(&[
            ("prometheus-url", "http://prom:9090"),
            ("routers", "a=http://h:1"),
        ])
        .unwrap();
        assert_eq!(s.source.mode(), "direct");
        assert!(args(&[("prometheus-url", "prom:9090")]).is_err());
        assert!(args(&[("routers", "a=http://h:1"), ("listen", "8080")]).is_err());
        let s = args(&[("routers", "a=http://h:1"), ("app-version", "2.0.0")]).unwrap();
        assert_eq!(s.version, "2.0.0");
    }
}
