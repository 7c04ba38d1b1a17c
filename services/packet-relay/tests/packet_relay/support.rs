//! Real `packet-relay` processes on loopback, stand-in next hops (a port where nothing listens,
//! a server that accepts and never answers, a recording server) and a Prometheus query helper.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_packet-relay");

pub fn http() -> reqwest::Client {
    common::cli::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub use sandbox::support::DeadPort;

/// A free port (for the few tests that need to know a port before the process starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `packet-relay` process (router or generator) with its log in a file.
pub struct Proc {
    child: Child,
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `packet-relay args…` with exactly `env` (plus `RUST_LOG`) and waits until it logs
    /// the address it listens on (`RELAY_LISTEN_ADDR` defaults to `127.0.0.1:0` here).
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay.log");
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("stdout")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("packet-relay starts");
        let mut p = Self {
            child,
            url: String::new(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = listening_addr(&p.log()) {
                p.url = format!("http://{addr}");
                return p;
            }
            assert!(
                Instant::now() < deadline && p.is_running(),
                "packet-relay did not start:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A router named `name` with `NEXT_HOPS=next_hops` and extra settings.
    pub async fn router(name: &str, next_hops: &str, extra: &[(&str, &str)]) -> Self {
        let mut env = vec![("ROUTER_NAME", name), ("NEXT_HOPS", next_hops)];
        env.extend_from_slice(extra);
        Self::start(&[], &env).await
    }

    /// `host:port` (a Prometheus scrape target).
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// `name=<url>` for another router's `NEXT_HOPS`.
    pub fn hop(&self, name: &str) -> String {
        format!("{name}={}", self.url)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {}", self.pid());
    }

    /// Waits for the process to exit (polling, at most `limit`), returning its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub async fn metrics(&self) -> String {
        http()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Posts a body to `/relay`: (status, body).
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = http()
            .post(format!("{}/relay", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the router answers");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn get_status(&self, path: &str) -> u16 {
        http()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("listening"))?;
    let rest = &line[line.find(" addr=")? + 6..];
    Some(rest.split_whitespace().next()?.to_owned())
}

/// Runs `packet-relay generate --count N` to completion; returns (sent, delivered, lost).
pub async fn generate(
    target: &str,
    count: u64,
    rate: &str,
    extra: &[(&str, &str)],
) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["generate", "--count", &count.to_string()])
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("GENERATOR_TARGET", target)
        .env("GENERATOR_RATE", rate)
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("log")).unwrap(),
        ));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("the generator runs");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(out.status.success(), "generator failed: {log}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {stdout:?}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    (n("sent"), n("delivered"), n("lost"))
}

/// A counter or gauge sample that must be present, as the whole number it is written as.
#[track_caller]
pub fn sample(text: &str, series: &str) -> u64 {
    count(text, series).unwrap_or_else(|| panic!("no whole-number {series} in\n{text}"))
}

/// A sample written as a whole number, if present.
pub fn count(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, v) = line.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}

/// Polls `/metrics` until `series` reaches `want` (counters settle after the answer is sent).
pub async fn wait_sample(p: &Proc, series: &str, want: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = p.metrics().await;
        if count(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server that accepts connections and never answers.
pub async fn hanging_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

/// What a [`Recorder`] saw: arrival times and the most concurrent requests at once.
#[derive(Default)]
pub struct Seen {
    pub arrivals: Vec<Instant>,
    pub ids: Vec<String>,
    pub in_flight: usize,
    pub max_in_flight: usize,
}

/// A terminal next hop written for the tests: records each packet and answers 200 after
/// `delay` (or after the delay given in the payload as `"slow:<ms>"`).
pub struct Recorder {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
    /// Signalled on each arrival.
    pub arrived: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(delay: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = (seen.clone(), arrived.clone());
        let app = axum::Router::new()
            .route(
                "/relay",
                axum::routing::post(
                    move |axum::extract::State((seen, arrived)): axum::extract::State<(
                        Arc<Mutex<Seen>>,
                        Arc<tokio::sync::Notify>,
                    )>,
                          body: String| async move {
                        let packet: Value = serde_json::from_str(&body).unwrap();
                        let wait = packet["payload"]
                            .as_str()
                            .and_then(|p| p.strip_prefix("slow:"))
                            .map_or(delay, |ms| Duration::from_millis(ms.parse().unwrap()));
                        {
                            let mut s = seen.lock().unwrap();
                            s.arrivals.push(Instant::now());
                            s.ids.push(packet["id"].to_string());
                            s.in_flight += 1;
                            s.max_in_flight = s.max_in_flight.max(s.in_flight);
                        }
                        arrived.notify_one();
                        tokio::time::sleep(wait).await;
                        seen.lock().unwrap().in_flight -= 1;
                        ([("content-type", "application/json")], body)
                    },
                ),
            )
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            seen,
            arrived,
            task,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `promtool check metrics` on a text; (success, output).
pub fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
