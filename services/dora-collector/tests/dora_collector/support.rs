//! A real collector process (the built binary) and a private `PostgreSQL` 15 cluster on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "whsec-known-7f3a9c1e";
/// Argo Rollouts' and Harbor's own secrets: a source's secret is no other source's.
pub const ROLLOUTS_SECRET: &str = "rollouts-known-2b8d4f60";
pub const HARBOR_SECRET: &str = "harbor-known-9c1e5a37";
pub use sandbox::postgres::{PASSWORD as PG_PASSWORD, Postgres};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Collector {
    child: Child,
    pub url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Collector {
    /// Starts `dora-collector` on a free port and waits for `/readyz`.
    pub async fn start(store_url: &str, log_dir: &Path, extra: &[(&str, &str)]) -> Self {
        common::cli::install_crypto_provider();
        let port = free_port();
        let log = log_dir.join(format!("collector-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dora-collector"));
        cmd.env_clear()
            .env("GITLAB_WEBHOOK_SECRET", SECRET)
            .env("DORA_ROLLOUTS_WEBHOOK_SECRET", ROLLOUTS_SECRET)
            .env("DORA_HARBOR_WEBHOOK_SECRET", HARBOR_SECRET)
            .env("DORA_STORE_URL", store_url)
            .env("DORA_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DORA_MAX_BODY_BYTES", "65536")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("dora-collector starts");
        let mut collector = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = collector
                .http
                .get(format!("{}/readyz", collector.url))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline && collector.is_running(),
                "collector not ready in 30 s:\n{}",
                collector.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        collector
    }

    /// SIGKILL: no graceful shutdown, no flush — the harshest restart.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub async fn post(&self, event: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}/webhooks/gitlab", self.url))
            .header("X-Gitlab-Event", event)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.header("X-Gitlab-Token", t);
        }
        let r = req.send().await.expect("collector answers");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn send(&self, event: &str, body: &Value) -> (u16, String) {
        self.post(event, Some(SECRET), body.to_string().into_bytes())
            .await
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the tailer applied everything stored (lag 0) and returns `/metrics`.
    pub async fn settled_metrics(&self) -> String {
        for _ in 0..200 {
            let text = self.metrics().await;
            if value(&text, "dora_collector_processing_lag_events") == Some(0.0) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("processing lag did not reach 0")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of one sample (`name{labels}` exactly as rendered), if present.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, v) = line.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}
