//! The collector survives its store and its restarts (issue 17): a real `PostgreSQL` stopped and
//! started under load, the stale-webhook alert evaluated live by a real Prometheus, restarts with
//! no new deliveries, 200 first starts on fresh `SQLite` files, and 10,000 distinct label values.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dora_collector::payloads::{self, PUSH_HOOK};
use sandbox::support::PrometheusApi;
use sandbox::{Options, Sandbox};
use serde_json::Value;

use crate::support::{Collector, Postgres, SECRET, value};

const RELAY: &str = "platform_services/packet-relay";

async fn status(url: &str) -> u16 {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Polls `check` until it holds, for at most `within` (generous: the machine may be busy).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stale-webhook alert as phase 17 renders it with `OBS_WEBHOOK_STALE_AFTER` = 3 s.
fn stale_alert_expr() -> String {
    let mut s = obs_setup::settings::Settings::example();
    s.stale_after_seconds = 3;
    let groups = obs_setup::desired::rule_groups(&s);
    groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "DoraWebhooksStale")
        .and_then(|r| r["expr"].as_str())
        .unwrap()
        .to_owned()
}

fn gitlab_staleness(metrics: &str) -> Option<f64> {
    value(
        metrics,
        "dora_collector_last_webhook_timestamp_seconds{source=\"gitlab\"}",
    )
}

/// Pushes with unique commits from `tasks` senders until `stop`; the acknowledged SHAs (200)
/// and the refused deliveries (any other answer) are counted.
fn load(
    url: &str,
    tasks: usize,
    stop: &Arc<AtomicBool>,
    acked: &Arc<std::sync::Mutex<Vec<String>>>,
    refused: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|task| {
            let (url, stop, acked, refused) =
                (url.to_owned(), stop.clone(), acked.clone(), refused.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut n = 0_u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let sha = format!("{task:02x}{n:038x}");
                    let body = payloads::push(RELAY, &[(&sha, 1_700_000_000)]);
                    let answer = http
                        .post(format!("{url}/webhooks/gitlab"))
                        .header("X-Gitlab-Event", PUSH_HOOK)
                        .header("X-Gitlab-Token", SECRET)
                        .timeout(Duration::from_secs(10))
                        .body(body.to_string())
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().push(sha),
                        _ => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn postgres_restarted_under_load_loses_nothing_and_staleness_tells() {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        kube: false,
        vault: false,
        prometheus: true,
        ..Options::default()
    })
    .await
    .expect("sandbox with Prometheus starts");
    let prom = PrometheusApi::new(sandbox.get("PROMETHEUS_URL"));
    let stale = stale_alert_expr();
    let pg = Arc::new(tokio::task::spawn_blocking(Postgres::start).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(&pg.url, dir.path(), &[]).await;
    sandbox
        .add_scrape_target("dora-collector", c.url.trim_start_matches("http://"))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let senders = load(&c.url, 8, &stop, &acked, &refused);
    eventually("deliveries acknowledged", Duration::from_secs(30), || {
        let n = acked.lock().unwrap().len();
        async move { n >= 50 }
    })
    .await;
    // Deliveries flow: the gauge follows them and the alert (3 s) stays quiet.
    eventually(
        "Prometheus scrapes the collector",
        Duration::from_secs(60),
        || {
            let prom = &prom;
            async move { prom.scalar("up{job=\"dora-collector\"}").await == Some(1.0) }
        },
    )
    .await;
    assert!(
        prom.query(&stale, None).await.is_empty(),
        "{stale} fired while deliveries flow"
    );

    // PostgreSQL goes away under load.
    let pg2 = pg.clone();
    tokio::task::spawn_blocking(move || pg2.stop())
        .await
        .unwrap();
    let readyz = format!("{}/readyz", c.url);
    eventually(
        "/readyz 503 while PostgreSQL is down",
        Duration::from_secs(30),
        || {
            let readyz = readyz.clone();
            async move { status(&readyz).await == 503 }
        },
    )
    .await;
    assert_eq!(
        status(&format!("{}/healthz", c.url)).await,
        200,
        "alive, only not ready"
    );
    let frozen = gitlab_staleness(&c.metrics().await).expect("the gauge exists");
    let refused_before = refused.load(Ordering::SeqCst);
    // Deliveries keep coming and are refused (503, GitLab retries); none counts as delivered.
    eventually(
        "the alert fires while the store is down",
        Duration::from_secs(60),
        || {
            let (prom, stale) = (&prom, &stale);
            async move { !prom.query(stale, None).await.is_empty() }
        },
    )
    .await;
    assert!(
        refused.load(Ordering::SeqCst) > refused_before,
        "deliveries were refused"
    );
    assert_eq!(
        gitlab_staleness(&c.metrics().await),
        Some(frozen),
        "a refused delivery does not move the gauge"
    );

    // PostgreSQL is back: the collector reconnects by itself and is ready again.
    let started = Instant::now();
    let pg2 = pg.clone();
    tokio::task::spawn_blocking(move || pg2.restart())
        .await
        .unwrap();
    eventually(
        "/readyz 200 after PostgreSQL is back",
        Duration::from_secs(90),
        || {
            let readyz = readyz.clone();
            async move { status(&readyz).await == 200 }
        },
    )
    .await;
    eprintln!(
        "ready again {:?} after PostgreSQL restarted",
        started.elapsed()
    );
    let acked_before = acked.lock().unwrap().len();
    eventually(
        "deliveries acknowledged again",
        Duration::from_secs(30),
        || {
            let n = acked.lock().unwrap().len();
            async move { n > acked_before + 20 }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.unwrap();
    }
    let m = c.settled_metrics().await;
    assert!(
        gitlab_staleness(&m).unwrap() > frozen,
        "deliveries move it again"
    );

    // Every acknowledged delivery is in the store.
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let keys: Vec<String> = acked
        .iter()
        .map(|sha| format!("commit:{RELAY}:{sha}"))
        .collect();
    let url = pg.url.clone();
    let stored: i64 = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query_one(
                "SELECT count(*) FROM dora_facts WHERE dedupe_key = ANY($1)",
                &[&keys],
            )
            .unwrap()
            .get(0)
    })
    .await
    .unwrap();
    assert_eq!(
        usize::try_from(stored).unwrap(),
        acked.len(),
        "acknowledged deliveries lost across the PostgreSQL restart"
    );
    eprintln!(
        "{} deliveries acknowledged, {} refused during the outage",
        acked.len(),
        refused.load(Ordering::SeqCst)
    );

    // A restart with no new deliveries: the gauge is there from the first scrape, read from the
    // store, and the alert fires once the threshold passes.
    let last = gitlab_staleness(&m).unwrap();
    c.kill();
    let c = Collector::start(&pg.url, dir.path(), &[]).await;
    let after_restart = gitlab_staleness(&c.metrics().await);
    assert!(
        after_restart.is_some_and(|t| (t - last).abs() < 1.0),
        "restarted gauge {after_restart:?}, last committed delivery {last}"
    );
    sandbox
        .add_scrape_target(
            "dora-collector-restarted",
            c.url.trim_start_matches("http://"),
        )
        .await
        .unwrap();
    eventually(
        "the alert fires after a quiet restart",
        Duration::from_secs(60),
        || {
            let (prom, stale) = (&prom, &stale);
            async move {
                prom.scalar("up{job=\"dora-collector-restarted\"}").await == Some(1.0)
                    && !prom.query(stale, None).await.is_empty()
            }
        },
    )
    .await;
    let log = c.log();
    assert!(!log.contains(crate::support::PG_PASSWORD), "{log}");
}

/// Two store threads set up a new `SQLite` file at the same moment on every first start.
#[tokio::test]
async fn two_hundred_first_starts_on_fresh_sqlite_files_are_all_ready() {
    let dir = tempfile::tempdir().unwrap();
    let mut ready = 0;
    for batch in 0..50 {
        let starts = (0..4).map(|i| {
            let path = dir.path().join(format!("fresh-{batch}-{i}.db"));
            let log_dir = dir.path().to_owned();
            async move {
                let mut c =
                    Collector::start(&format!("sqlite://{}", path.display()), &log_dir, &[]).await;
                let log = c.log();
                assert!(!log.contains("database is locked"), "{log}");
                c.kill();
            }
        });
        for start in starts {
            start.await;
            ready += 1;
        }
    }
    assert_eq!(ready, 200);
}

fn resident(metrics: &str) -> f64 {
    value(metrics, "process_resident_memory_bytes").expect("the collector reports its RSS")
}

/// 10,000 distinct environment and stage names make at most the capped series, and memory
/// stays where it was.
#[tokio::test]
async fn ten_thousand_label_values_stay_within_the_caps() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        &format!("sqlite://{}/dora.db", dir.path().display()),
        dir.path(),
        &[("DORA_MAX_STAGES", "30")],
    )
    .await;
    let c = Arc::new(c);
    let send_all = |distinct: bool, first: u64| {
        let c = c.clone();
        async move {
            let mut bodies: Vec<Value> = Vec::new();
            for i in first..first + 10_000 {
                let (env, stage) = if distinct {
                    (format!("review/feature-{i}"), format!("stage-{i}"))
                } else {
                    ("review/feature".to_owned(), "build".to_owned())
                };
                bodies.push(payloads::deployment(
                    RELAY,
                    i,
                    &env,
                    "success",
                    "",
                    1_700_000_000,
                ));
                let times = payloads::Times {
                    committed: 1_700_000_000,
                    created: 1_700_000_000,
                    finished: 1_700_000_060,
                };
                let build = [payloads::Build {
                    stage: &stage,
                    started: 1_700_000_000,
                    finished: 1_700_000_030,
                    queued: 1.0,
                    runner_tags: &["build"],
                }];
                bodies.push(payloads::pipeline(
                    RELAY, i, "success", "abc", times, &build,
                ));
            }
            let mut pending = Vec::new();
            for chunk in bodies.chunks(bodies.len() / 16) {
                let (c, chunk) = (c.clone(), chunk.to_vec());
                pending.push(tokio::spawn(async move {
                    for body in chunk {
                        let event = if body["object_kind"] == "deployment" {
                            payloads::DEPLOYMENT_HOOK
                        } else {
                            payloads::PIPELINE_HOOK
                        };
                        assert_eq!(c.send(event, &body).await.0, 200);
                    }
                }));
            }
            for p in pending {
                p.await.unwrap();
            }
        }
    };
    // Warm-up: the same volume with two fixed names, so the allocator has seen this traffic.
    send_all(false, 0).await;
    let before = c.settled_metrics().await;
    send_all(true, 100_000).await;
    let after = c.settled_metrics().await;
    let labels = |text: &str, family: &str, label: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with(family))
            .filter_map(|l| {
                let start = l.find(&format!("{label}=\""))? + label.len() + 2;
                let end = l[start..].find('"')? + start;
                Some(l[start..end].to_owned())
            })
            .collect()
    };
    let environments = labels(&after, "cicd_deployment_frequency_total{", "environment");
    assert!(
        environments
            .iter()
            .all(|e| dora_collector::labels::TIERS.contains(&e.as_str())),
        "{environments:?}"
    );
    let stages = labels(&after, "cicd_pipeline_duration_seconds_count{", "stage");
    // The library's stages seen (build, pipeline), 30 admitted names, and `other`.
    assert!(stages.len() <= 2 + 30 + 1, "{} stage values", stages.len());
    assert!(stages.contains("other"));
    let (rss_before, rss_after) = (resident(&before), resident(&after));
    eprintln!("resident memory: {rss_before} B before, {rss_after} B after 10,000 distinct names");
    assert!(
        rss_after <= rss_before * 1.10,
        "resident memory grew from {rss_before} to {rss_after} bytes"
    );
}

fn cicd_lines(metrics: &str) -> Vec<&str> {
    metrics.lines().filter(|l| l.starts_with("cicd_")).collect()
}

/// A restart reads the checkpoint of the aggregates plus the facts stored after it, and shows
/// the same metrics as before it.
#[tokio::test]
async fn a_restart_reads_the_checkpoint_and_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/dora.db", dir.path().display());
    let extra = [("DORA_CHECKPOINT_INTERVAL_SECS", "1")];
    let mut c = Collector::start(&url, dir.path(), &extra).await;
    #[allow(clippy::cast_possible_truncation)]
    let now = dora_collector::now() as i64;
    let deploy = |id: u64, sha: &str| {
        payloads::deployment(
            RELAY,
            id,
            "production",
            "success",
            sha,
            now - 3600 + i64::try_from(id).unwrap(),
        )
    };
    for id in 0..40_u64 {
        let sha = format!("{id:040x}");
        let push = payloads::push(RELAY, &[(&sha, now - 7200)]);
        assert_eq!(c.send(PUSH_HOOK, &push).await.0, 200);
        assert_eq!(
            c.send(payloads::DEPLOYMENT_HOOK, &deploy(id, &sha)).await.0,
            200
        );
    }
    c.settled_metrics().await;
    eventually("a checkpoint is saved", Duration::from_secs(30), || {
        let log = c.log();
        async move { log.contains("saved a checkpoint of the aggregates") }
    })
    .await;
    // Facts after the checkpoint: the tail a restart reads.
    for id in 40..50_u64 {
        assert_eq!(
            c.send(payloads::DEPLOYMENT_HOOK, &deploy(id, "")).await.0,
            200
        );
    }
    let before = c.settled_metrics().await;
    assert_eq!(
        value(
            &before,
            "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"}"
        ),
        Some(50.0)
    );
    c.kill();
    let c = Collector::start(&url, dir.path(), &[]).await;
    let after = c.settled_metrics().await;
    assert!(
        c.log().contains("loaded the checkpoint of the aggregates"),
        "{}",
        c.log()
    );
    assert_eq!(cicd_lines(&after), cicd_lines(&before));
}
