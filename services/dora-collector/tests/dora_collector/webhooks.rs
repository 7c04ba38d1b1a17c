//! Recorded streams in, exact numbers out; abuse; restarts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dora_collector::payloads::{self, Build, DEPLOYMENT_HOOK, PIPELINE_HOOK, PUSH_HOOK, Times};
use serde_json::json;

use crate::support::{
    Collector, HARBOR_SECRET, PG_PASSWORD, Postgres, ROLLOUTS_SECRET, SECRET, value,
};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A store URL for the backend (and the `PostgreSQL` server that must outlive the test).
fn store(backend: Backend, dir: &std::path::Path) -> (String, Option<Postgres>) {
    match backend {
        Backend::Sqlite => (format!("sqlite://{}/dora.db", dir.display()), None),
        Backend::Postgres => {
            let pg = Postgres::start();
            (pg.url.clone(), Some(pg))
        }
    }
}

const RELAY: &str = "platform_services/packet-relay";

fn now() -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let t = dora_collector::now() as i64;
    t
}

async fn recorded_stream_gives_exact_numbers(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = store(backend, dir.path());
    let c = Collector::start(&url, dir.path(), &[]).await;
    let t0 = now() - 20 * 3600;
    // 12 production deployments in the last 24 h; lead times 2000 + 500 k seconds.
    for k in 0..12_i64 {
        let sha = format!("c0ffee{k:02}");
        let deployed = t0 + k * 3600;
        let (s, _) = c
            .send(
                PUSH_HOOK,
                &payloads::push(RELAY, &[(&sha, deployed - 2000 - 500 * k)]),
            )
            .await;
        assert_eq!(s, 200);
        let body = payloads::deployment(
            RELAY,
            100 + u64::try_from(k).unwrap(),
            "production",
            "success",
            &sha,
            deployed,
        );
        let (s, first) = c.send(DEPLOYMENT_HOOK, &body).await;
        assert_eq!((s, first.trim()), (200, r#"{"stored":1,"duplicates":0}"#));
        // GitLab retries a delivery it did not see answered: the retry is a duplicate.
        let (s, retry) = c.send(DEPLOYMENT_HOOK, &body).await;
        assert_eq!((s, retry.trim()), (200, r#"{"stored":0,"duplicates":1}"#));
    }
    for k in 0..2_u64 {
        let body = payloads::deployment(RELAY, 200 + k, "staging", "success", "staged", t0);
        assert_eq!(c.send(DEPLOYMENT_HOOK, &body).await.0, 200);
    }
    // A running deployment is not a deployment yet.
    let running = payloads::deployment(RELAY, 300, "production", "running", "x", t0);
    assert_eq!(c.send(DEPLOYMENT_HOOK, &running).await.0, 200);
    // 10 pipelines: 9 succeed, 1 fails; plus a child pipeline and a running event.
    let build = [Build {
        stage: "build",
        started: t0 + 10,
        finished: t0 + 70,
        queued: 3.0,
        runner_tags: &["build", "kaniko"],
    }];
    for id in 0..10_u64 {
        let status = if id == 3 { "failed" } else { "success" };
        let body = payloads::pipeline(
            RELAY,
            500 + id,
            status,
            "abc",
            Times {
                committed: t0 - 100,
                created: t0,
                finished: t0 + 120,
            },
            &build,
        );
        assert_eq!(c.send(PIPELINE_HOOK, &body).await.0, 200);
    }
    let times = Times {
        committed: t0 - 100,
        created: t0,
        finished: t0 + 30,
    };
    let mut child = payloads::pipeline(RELAY, 600, "success", "abc", times, &build);
    child["object_attributes"]["source"] = json!("parent_pipeline");
    assert_eq!(c.send(PIPELINE_HOOK, &child).await.0, 200);
    let running = payloads::pipeline(RELAY, 601, "running", "abc", times, &build);
    assert_eq!(c.send(PIPELINE_HOOK, &running).await.0, 200);

    let m = c.settled_metrics().await;
    let relay = |name: &str, labels: &str| {
        value(&m, &format!("{name}{{service=\"packet-relay\",{labels}}}"))
    };
    assert_eq!(
        relay(
            "cicd_deployment_frequency_total",
            "environment=\"production\""
        ),
        Some(12.0),
        "{m}"
    );
    assert_eq!(
        relay("cicd_deployment_frequency_total", "environment=\"staging\""),
        Some(2.0)
    );
    assert_eq!(
        relay("cicd_lead_time_seconds_count", "environment=\"production\""),
        Some(12.0)
    );
    // Lead times 2000..7500: four ≤ 3600 (2000, 2500, 3000, 3500), all twelve ≤ 7200 except 7500.
    assert_eq!(
        relay(
            "cicd_lead_time_seconds_bucket",
            "environment=\"production\",le=\"3600\""
        ),
        Some(4.0)
    );
    assert_eq!(
        relay(
            "cicd_lead_time_seconds_bucket",
            "environment=\"production\",le=\"7200\""
        ),
        Some(11.0)
    );
    assert_eq!(
        relay("cicd_lead_time_seconds_sum", "environment=\"production\""),
        Some(12.0 * 2000.0 + 500.0 * 66.0)
    );
    assert_eq!(
        relay("cicd_change_failure_rate", "environment=\"production\""),
        Some(0.0)
    );
    assert_eq!(
        relay("cicd_pipeline_runs_total", "status=\"success\""),
        Some(9.0)
    );
    assert_eq!(
        relay("cicd_pipeline_runs_total", "status=\"failed\""),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "cicd_pipeline_success_rate{service=\"packet-relay\"}"),
        Some(0.9)
    );
    assert_eq!(
        relay(
            "cicd_pipeline_duration_seconds_count",
            "stage=\"pipeline\",status=\"success\""
        ),
        Some(9.0)
    );
    assert_eq!(
        relay(
            "cicd_pipeline_duration_seconds_bucket",
            "stage=\"build\",status=\"success\",le=\"60\""
        ),
        Some(9.0)
    );
    assert_eq!(
        relay(
            "cicd_pipeline_queue_time_seconds_count",
            "runner_type=\"build\""
        ),
        Some(10.0)
    );
    // 12 retried deliveries, plus the child and the running pipeline whose only fact (the commit)
    // was already known.
    assert_eq!(
        value(
            &m,
            "dora_collector_webhooks_total{source=\"gitlab\",outcome=\"duplicate\"}"
        ),
        Some(14.0)
    );
    drop(c);
}

#[tokio::test]
async fn recorded_stream_gives_exact_numbers_sqlite() {
    recorded_stream_gives_exact_numbers(Backend::Sqlite).await;
}

#[tokio::test]
async fn recorded_stream_gives_exact_numbers_postgres() {
    recorded_stream_gives_exact_numbers(Backend::Postgres).await;
}

async fn abuse_never_counts_and_never_crashes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = store(backend, dir.path());
    let mut c = Collector::start(&url, dir.path(), &[]).await;
    let good = payloads::deployment(RELAY, 1, "production", "success", "abc", now()).to_string();
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        ("no token", None, good.clone().into_bytes(), 401),
        ("wrong token", Some("whsec-known-7f3a9c1f"), good.clone().into_bytes(), 401),
        ("token prefix", Some("whsec"), good.clone().into_bytes(), 401),
        ("empty token", Some(""), good.clone().into_bytes(), 401),
        ("malformed JSON", Some(SECRET), b"{\"object_kind\": \"deployment\",".to_vec(), 400),
        ("not an object", Some(SECRET), b"[1, 2, 3]".to_vec(), 400),
        ("binary", Some(SECRET), vec![0xff, 0xfe, 0x00, 0x01], 400),
        ("deployment without id", Some(SECRET), br#"{"object_kind":"deployment","status":"success","environment":"production","project":{"path_with_namespace":"a/b"}}"#.to_vec(), 400),
        ("oversized (64 KiB limit)", Some(SECRET), vec![b' '; 70_000], 413),
    ];
    for (what, token, body, expected) in cases {
        let (status, _) = c.post(DEPLOYMENT_HOOK, token, body).await;
        assert_eq!(status, expected, "{what}");
    }
    // Wrong token and a declared 5 MB body: refused for the token before the body is read (the
    // client sends only the first 16 KiB and still gets its answer).
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(c.url.trim_start_matches("http://"))
            .await
            .unwrap();
        let head = "POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: nope\r\nContent-Length: 5000000\r\n\r\n";
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&[b' '; 16_384]).await.unwrap();
        let mut answer = [0_u8; 12];
        tcp.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 401");
    }
    // Chunked upload without Content-Length, larger than the limit (raw HTTP/1.1).
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(c.url.trim_start_matches("http://"))
            .await
            .unwrap();
        let mut req = format!(
            "POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: {SECRET}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..20 {
            req.extend_from_slice(b"2000\r\n");
            req.extend(std::iter::repeat_n(b'{', 0x2000));
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let _ = tcp.write_all(&req).await;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // Argo Rollouts notifications need the bearer token too.
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/argo-rollouts", c.url))
        .header("Authorization", "Bearer wrong")
        .body(r#"{"event":"rollout-aborted","service":"packet-relay","environment":"production","revision":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Each source has its own secret (issue 17): a GitLab event signed with the Rollouts or the
    // Harbor secret is forged, and so is a Harbor scan signed with GitLab's.
    for other in [ROLLOUTS_SECRET, HARBOR_SECRET] {
        assert_eq!(
            c.post(DEPLOYMENT_HOOK, Some(other), good.clone().into_bytes())
                .await
                .0,
            401,
            "a GitLab event with another source's secret"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/harbor", c.url))
        .header("Authorization", format!("Bearer {SECRET}"))
        .body(include_str!(
            "../../fixtures/harbor/scanning-completed.json"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "a Harbor scan with GitLab's secret"
    );

    assert!(c.is_running(), "the collector crashed:\n{}", c.log());
    let m = c.settled_metrics().await;
    assert!(
        !m.contains("cicd_deployment_frequency_total{"),
        "abuse was counted:\n{m}"
    );
    let outcome = |o: &str| {
        value(
            &m,
            &format!("dora_collector_webhooks_total{{source=\"gitlab\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("rejected_token"), Some(7.0));
    assert_eq!(outcome("rejected_payload"), Some(4.0));
    assert_eq!(outcome("rejected_size"), Some(2.0));
    assert_eq!(outcome("accepted"), Some(0.0));
    assert_eq!(
        value(
            &m,
            "dora_collector_webhooks_total{source=\"argo-rollouts\",outcome=\"rejected_token\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "dora_collector_webhooks_total{source=\"harbor\",outcome=\"rejected_token\"}"
        ),
        Some(1.0)
    );
    assert!(
        !m.contains("cicd_vulnerability_count{service"),
        "a refused scan is not counted:\n{m}"
    );
    // Still serving, and a good delivery after all that counts once.
    assert_eq!(
        c.post(DEPLOYMENT_HOOK, Some(SECRET), good.into_bytes())
            .await
            .0,
        200
    );
    let m = c.settled_metrics().await;
    assert_eq!(
        value(
            &m,
            "cicd_deployment_frequency_total{service=\"b\",environment=\"production\"}"
        ),
        None
    );
    assert_eq!(
        value(
            &m,
            "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"}"
        ),
        Some(1.0)
    );
    // Secrets stay out of the logs.
    let log = c.log();
    assert!(!log.contains(SECRET) && !log.contains(PG_PASSWORD), "{log}");
}

#[tokio::test]
async fn abuse_never_counts_and_never_crashes_sqlite() {
    abuse_never_counts_and_never_crashes(Backend::Sqlite).await;
}

#[tokio::test]
async fn abuse_never_counts_and_never_crashes_postgres() {
    abuse_never_counts_and_never_crashes(Backend::Postgres).await;
}

/// SIGKILL while 400 deliveries are in flight; every acknowledged one survives the restart.
async fn a_restart_loses_no_acknowledged_event(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = store(backend, dir.path());
    let mut c = Collector::start(&url, dir.path(), &[]).await;
    let base = now() - 3600;
    let bodies: Vec<String> = (0..400_u64)
        .map(|i| {
            payloads::deployment(RELAY, 10_000 + i, "production", "success", "abc", base)
                .to_string()
        })
        .collect();
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let (http, url, body, acked, acks) = (
            http.clone(),
            c.url.clone(),
            body.clone(),
            acked.clone(),
            acks.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Spread over 400 ms, so the kill (after 120 acknowledgements) lands mid-stream even
            // when the store acknowledges all 400 within a few milliseconds.
            tokio::time::sleep(std::time::Duration::from_millis(i as u64)).await;
            let r = http
                .post(format!("{url}/webhooks/gitlab"))
                .header("X-Gitlab-Token", SECRET)
                .body(body)
                .send()
                .await;
            if let Ok(r) = r {
                if r.status().as_u16() == 200 && r.text().await.is_ok() {
                    acked.lock().unwrap().insert(i);
                    acks.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    while acks.load(Ordering::SeqCst) < 120 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    c.kill();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 120 && acked.len() < 400,
        "killed mid-stream: {} acked",
        acked.len()
    );

    let c = Collector::start(&url, dir.path(), &[]).await;
    let m = c.settled_metrics().await;
    let stored = value(
        &m,
        "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"}",
    )
    .unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let lower = acked.len() as f64;
    assert!(stored >= lower, "{stored} replayed < {lower} acknowledged");
    // GitLab re-delivers everything: each acknowledged delivery is now a duplicate, none is lost.
    for (i, body) in bodies.iter().enumerate() {
        let (status, answer) = c
            .post(DEPLOYMENT_HOOK, Some(SECRET), body.clone().into_bytes())
            .await;
        assert_eq!(status, 200);
        if acked.contains(&i) {
            assert_eq!(
                answer.trim(),
                r#"{"stored":0,"duplicates":1}"#,
                "delivery {i} was acknowledged but lost"
            );
        }
    }
    // Exactly 400. The processing lag only covers this process's own writes: a row another
    // writer committed (or one that became visible late, re-read by the tailer's gap check) is
    // applied at the next poll, so the final value is awaited (10 s at most) rather than read once.
    let series =
        "cicd_deployment_frequency_total{service=\"packet-relay\",environment=\"production\"}";
    let mut last = None;
    for _ in 0..100 {
        last = value(&c.settled_metrics().await, series);
        if last == Some(400.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last, Some(400.0));
}

#[tokio::test]
async fn a_restart_loses_no_acknowledged_event_sqlite() {
    a_restart_loses_no_acknowledged_event(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_restart_loses_no_acknowledged_event_postgres() {
    a_restart_loses_no_acknowledged_event(Backend::Postgres).await;
}

#[tokio::test]
async fn a_missing_secret_or_bad_store_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dora-collector"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GITLAB_WEBHOOK_SECRET is not set"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dora-collector"))
        .env_clear()
        .env("GITLAB_WEBHOOK_SECRET", SECRET)
        .env(
            "DORA_STORE_URL",
            format!("postgres://dora:{PG_PASSWORD}@127.0.0.1:1/x"),
        )
        .env("DORA_LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("opening the DORA store") && err.contains("(sensitive)"),
        "{err}"
    );
    assert!(!err.contains(PG_PASSWORD), "{err}");
}
