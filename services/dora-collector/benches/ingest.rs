//! DORA collector benchmark (`cargo bench -p dora-collector --bench ingest`).
//!
//! The collector (release build) runs pinned to CPU 0 with `taskset`, so its runtime has one
//! worker; this load generator pins itself to CPU 1. Measured side by side in one run:
//! 1. ingest: distinct deployment webhooks, 64 concurrent keep-alive connections, on `SQLite` and
//!    on `PostgreSQL` — events/s and acknowledgement latency (p50/p99/max; an acknowledgement is a
//!    200 after the commit);
//! 2. `/metrics` render time and resident memory with 1,000 and with 1,000,000 stored facts
//!    (deployments, pipelines with 3 stages and 3 jobs, commits over 20 services), and the
//!    replay time after a restart.
//!
//! Sizes can be lowered for a quick look: `DORA_BENCH_EVENTS`, `DORA_BENCH_FACTS`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dora_collector::facts::{Fact, QueuedJob, StageRun};
use dora_collector::payloads;
use dora_collector::store::{Sqlite, Store as _};
use futures::StreamExt as _;

const SECRET: &str = "bench-secret";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The release binary next to this bench (cargo bench builds it).
fn collector_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("dora-collector");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release -p dora-collector` first",
        bin.display()
    );
    bin
}

struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(store: &str) -> (Running, Duration) {
    let port = free_port();
    let started = Instant::now();
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(collector_binary())
        .env("GITLAB_WEBHOOK_SECRET", SECRET)
        .env("DORA_STORE_URL", store)
        .env("DORA_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        // A checkpoint one second after the replay, so the restart row reads it.
        .env("DORA_CHECKPOINT_INTERVAL_SECS", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset and the collector start");
    let running = Running {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", running.url)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (running, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `events` distinct deployment webhooks, `concurrency` at a time; (events/s, latencies).
async fn ingest(
    url: &str,
    events: usize,
    first_id: u64,
    connections: usize,
) -> (f64, Vec<Duration>) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..events)
            .map(|i| {
                payloads::deployment(
                    &format!("platform_services/svc-{}", i % 20),
                    first_id + i as u64,
                    "production",
                    "success",
                    "0123456789abcdef",
                    1_800_000_000,
                )
                .to_string()
            })
            .collect(),
    );
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..events)
        .map(|i| {
            let (http, bodies, url) = (http.clone(), bodies.clone(), url.to_owned());
            async move {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/webhooks/gitlab"))
                    .header("X-Gitlab-Token", SECRET)
                    .header("X-Gitlab-Event", payloads::DEPLOYMENT_HOOK)
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .expect("collector answers");
                assert_eq!(r.status().as_u16(), 200);
                let _ = r.bytes().await;
                t.elapsed()
            }
        })
        .buffer_unordered(connections)
        .collect()
        .await;
    let wall = started.elapsed();
    latencies.sort();
    #[allow(clippy::cast_precision_loss)]
    (events as f64 / wall.as_secs_f64(), latencies)
}

/// Writes `n` facts straight into a `SQLite` store (not through HTTP: this measures reading).
fn fill(path: &Path, n: usize) {
    let mut store = Sqlite::open(path.to_str().unwrap()).unwrap();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let project = format!("platform_services/svc-{}", i % 20);
        #[allow(clippy::cast_precision_loss)]
        let at = 1_800_000_000.0 + i as f64;
        let fact = match i % 5 {
            0 | 1 => Fact::Deployment {
                project,
                id: i as u64,
                environment: ["production", "staging", "ephemeral"][i % 3].into(),
                status: if i % 17 == 0 { "failed" } else { "success" }.into(),
                sha: Some(format!("sha{}", i / 5)),
                at,
                tier: None,
            },
            2 | 3 => Fact::Pipeline {
                project,
                id: i as u64,
                status: if i % 11 == 0 { "failed" } else { "success" }.into(),
                finished_at: at,
                duration: 300.0,
                stages: ["build", "test", "scan"]
                    .iter()
                    .map(|s| StageRun {
                        name: (*s).into(),
                        seconds: 90.0,
                    })
                    .collect(),
                jobs: ["build", "test", "security"]
                    .iter()
                    .map(|r| QueuedJob {
                        runner_type: (*r).into(),
                        seconds: 4.0,
                    })
                    .collect(),
            },
            _ => Fact::Commit {
                project,
                sha: format!("sha{}", i / 5),
                at: at - 1800.0,
            },
        };
        batch.push(fact);
        if batch.len() == 10_000 {
            store.append(&batch, 0.0, &[]).unwrap();
            batch.clear();
        }
    }
    store.append(&batch, 0.0, &[]).unwrap();
}

async fn scrape(url: &str) -> (Duration, Duration, usize, f64) {
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    let mut size = 0;
    let mut rss = 0.0;
    for _ in 0..30 {
        let t = Instant::now();
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        times.push(t.elapsed());
        size = text.len();
        rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 1.0), size, rss)
}

#[tokio::main]
async fn main() {
    common::cli::install_crypto_provider();
    let _ = Command::new("taskset")
        .args(["-cp", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let events = env_or("DORA_BENCH_EVENTS", 50_000);
    let facts = env_or("DORA_BENCH_FACTS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();

    println!(
        "## dora-collector: ingest ({events} distinct deployment webhooks per row, collector on 1 core)\n"
    );
    println!(
        "| store | concurrent deliveries | events/s | ack p50 | ack p99 | ack max |\n|---|---|---|---|---|---|"
    );
    let pg = sandbox::postgres::Postgres::start();
    let sqlite_url = format!("sqlite://{}/ingest.db", dir.path().display());
    let mut rates = Vec::new();
    let mut next_id = 0;
    for (name, url) in [
        ("SQLite (WAL, synchronous=FULL)", sqlite_url.as_str()),
        ("PostgreSQL 15", pg.url.as_str()),
    ] {
        let (c, _) = start(url).await;
        // Warm-up (connections, page cache), not measured.
        let _ = ingest(&c.url, 2_000, 10_000_000 + next_id, 64).await;
        for connections in [8, 64] {
            let (rate, lat) = ingest(&c.url, events, next_id, connections).await;
            next_id += events as u64;
            if connections == 64 {
                rates.push(rate);
            }
            println!(
                "| {name} | {connections} | {rate:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(percentile(&lat, 1.0))
            );
        }
    }
    println!(
        "\nSQLite / PostgreSQL throughput at 64 deliveries: {:.2}×\n",
        rates[0] / rates[1]
    );

    println!("## dora-collector: `/metrics` with stored facts (collector on 1 core)\n");
    println!(
        "| stored facts | first start: replay to ready | restart: checkpoint + tail to ready | render p50 | render max | body | resident memory |\n|---|---|---|---|---|---|---|"
    );
    let mut renders = Vec::new();
    for n in [1_000, facts] {
        let path = dir.path().join(format!("facts-{n}.db"));
        fill(&path, n);
        let (c, replay) = start(&format!("sqlite://{}", path.display())).await;
        // The first start checkpoints the aggregates (every 100,000 facts, and 1 s after the
        // last); a restart then reads the checkpoint and the tail after it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(c);
        let (c, restart) = start(&format!("sqlite://{}", path.display())).await;
        let (p50, max, size, rss) = scrape(&c.url).await;
        renders.push(p50);
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.2} ms | {:.2} ms | {} KiB | {:.0} MiB |",
            replay.as_secs_f64(),
            restart.as_secs_f64(),
            ms(p50),
            ms(max),
            size / 1024,
            rss / 1_048_576.0
        );
    }
    println!(
        "\nrender time, {facts} vs 1,000 stored facts: {:.2}×",
        renders[1].as_secs_f64() / renders[0].as_secs_f64()
    );
}
