//! Real processes on loopback: `packet-relay` routers and generator (built from the workspace),
//! the dashboard binary, and waits with deadlines.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DASHBOARD: &str = env!("CARGO_BIN_EXE_netops-dashboard");

pub fn http() -> reqwest::Client {
    common::cli::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The cargo target directory (parent of `CARGO_TARGET_TMPDIR`).
pub fn target_dir() -> PathBuf {
    sandbox::support::target_dir(env!("CARGO_TARGET_TMPDIR"))
}

/// `<target>/test-artifacts/netops-dashboard/`, created.
pub fn artifact_dir() -> PathBuf {
    let dir = target_dir().join("test-artifacts").join("netops-dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds `packet-relay` once per test binary (`cargo build -p packet-relay --bin packet-relay`)
/// and returns `<target>/debug/packet-relay`.
pub fn relay_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            sandbox::support::workspace_binary("packet-relay", env!("CARGO_TARGET_TMPDIR"))
        })
        .clone()
}

pub use sandbox::support::DeadPort;

/// A free port now (for a process that must keep its port across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process with its output in a log file; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        dir: &Path,
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap: the port is free when this returns.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what` and the last
/// observation `describe` gives.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not reached in {}s; last seen: {last}",
                timeout.as_secs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `GET url` answers 2xx.
pub async fn wait_http_ok(proc: &mut Proc, url: &str) {
    let http = http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        let running = proc.running();
        assert!(
            running && Instant::now() < deadline,
            "{} not answering {url} in 30 s (running: {running}):\n{}",
            proc.name,
            proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The local arcade: real `packet-relay` routers and generator on fixed loopback ports.
pub struct Arcade {
    pub dir: tempfile::TempDir,
    relay: PathBuf,
    pub procs: Vec<Proc>,
    /// name → port.
    pub ports: Vec<(String, u16)>,
}

impl Arcade {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("netops-arcade-")
                .tempdir()
                .unwrap(),
            relay: relay_binary(),
            procs: Vec::new(),
            ports: Vec::new(),
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| panic!("{name} not started"), |(_, p)| *p)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(name))
    }

    fn port_for(&mut self, name: &str) -> u16 {
        if let Some((_, p)) = self.ports.iter().find(|(n, _)| n == name) {
            return *p;
        }
        let port = free_port();
        self.ports.push((name.to_string(), port));
        port
    }

    /// Starts (or restarts, on the same port) router `name` with `next_hops` (`NEXT_HOPS`).
    pub async fn router(&mut self, name: &str, next_hops: &str) {
        self.stop(name);
        let port = self.port_for(name);
        let mut p = Proc::spawn(
            name,
            &self.relay,
            &["serve"],
            &[
                ("ROUTER_NAME", name.to_string()),
                ("NEXT_HOPS", next_hops.to_string()),
                ("RELAY_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("RELAY_HOP_TIMEOUT_MS", "1000".to_string()),
            ],
            self.dir.path(),
        );
        wait_http_ok(&mut p, &format!("http://127.0.0.1:{port}/metrics")).await;
        self.procs.push(p);
    }

    /// Starts the traffic generator sending `rate` packets/s to router-west.
    pub async fn generator(&mut self, rate: &str) {
        let port = self.port_for("generator");
        let west = self.url("router-west");
        let mut p = Proc::spawn(
            "generator",
            &self.relay,
            &["generate"],
            &[
                ("ROUTER_NAME", "generator".to_string()),
                ("GENERATOR_TARGET", format!("router-west={west}/relay")),
                ("GENERATOR_RATE", rate.to_string()),
                ("RELAY_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("RELAY_HOP_TIMEOUT_MS", "1000".to_string()),
            ],
            self.dir.path(),
        );
        wait_http_ok(&mut p, &format!("http://127.0.0.1:{port}/metrics")).await;
        self.procs.push(p);
    }

    /// Kills `name` (SIGKILL, like a pod replaced by a rollout) if it runs.
    pub fn stop(&mut self, name: &str) {
        self.procs.retain(|p| p.name != name);
    }

    /// `DASHBOARD_ROUTERS` for everything started.
    pub fn dashboard_routers(&self) -> String {
        self.ports
            .iter()
            .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The logs of every process (for a failure message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let text = p.log_text();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let _ = writeln!(out, "--- {} ---", p.name);
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The standard four routers (core → east) and the generator.
    pub async fn standard(rate: &str) -> Self {
        let mut arcade = Arcade::new();
        arcade.router("router-east", "").await;
        arcade.router("router-north", "").await;
        let east = arcade.url("router-east");
        arcade
            .router("router-core", &format!("router-east={east}"))
            .await;
        let core = arcade.url("router-core");
        arcade
            .router("router-west", &format!("router-core={core}"))
            .await;
        arcade.generator(rate).await;
        arcade
    }
}

/// A running dashboard process.
pub struct Dashboard {
    pub proc: Proc,
    pub url: String,
}

impl Dashboard {
    /// Starts the dashboard with `env` (plus a free `DASHBOARD_LISTEN_ADDR`) and waits for
    /// `/readyz` (its first poll done).
    pub async fn start(name: &str, env: &[(&str, String)], dir: &Path) -> Self {
        let port = free_port();
        let mut all = vec![("DASHBOARD_LISTEN_ADDR", format!("127.0.0.1:{port}"))];
        all.extend(env.iter().cloned());
        let mut proc = Proc::spawn(name, Path::new(DASHBOARD), &[], &all, dir);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&mut proc, &format!("{url}/readyz")).await;
        Self { proc, url }
    }

    pub async fn topology(&self) -> Value {
        http()
            .get(format!("{}/api/topology", self.url))
            .send()
            .await
            .expect("dashboard answers")
            .json()
            .await
            .expect("topology is JSON")
    }
}

/// `link(from->to)` of a topology.
pub fn link<'a>(topology: &'a Value, from: &str, to: &str) -> Option<&'a Value> {
    topology["links"]
        .as_array()?
        .iter()
        .find(|l| l["from"] == from && l["to"] == to)
}

/// `(from->to, state)` of every link, sorted.
pub fn link_states(topology: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = topology["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                format!(
                    "{}->{}",
                    l["from"].as_str().unwrap_or(""),
                    l["to"].as_str().unwrap_or("")
                ),
                l["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `(name, kind, up)` of every node, sorted.
pub fn node_states(topology: &Value) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = topology["routers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["kind"].as_str().unwrap_or("").to_string(),
                n["up"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}
