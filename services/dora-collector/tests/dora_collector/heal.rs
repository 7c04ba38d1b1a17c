//! Healing from GitLab's API (the GitLab stand-in's CI history, `sandbox/src/standins/gitlab/ci.rs`,
//! built from doc/api deployments.md, pipelines.md, jobs.md, commits.md): missed webhooks are
//! filled, what webhooks already delivered is not counted twice, child and running pipelines are
//! not runs, and a deployment waiting for its commit's time gets it.

use std::time::Duration;

use dora_collector::payloads::{self, DEPLOYMENT_HOOK};
use dora_collector::timefmt::format_gitlab;
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

use crate::support::{Collector, value};

fn iso(unix: i64) -> String {
    let t = format_gitlab(unix);
    format!("{}T{}.000Z", &t[..10], &t[11..19])
}

fn api_deployment(id: u64, sha: &str, committed: i64, deployed: i64) -> Value {
    json!({"id": id, "iid": id, "ref": "main", "sha": sha, "status": "success",
           "created_at": iso(deployed - 60), "updated_at": iso(deployed), "finished_at": iso(deployed),
           "environment": {"id": 1, "name": "production"},
           "deployable": {"id": id + 1000, "status": "success", "stage": "deploy",
                          "commit": {"id": sha, "short_id": &sha[..6], "created_at": iso(committed)}}})
}

#[tokio::test]
async fn missed_webhooks_are_healed_once() {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        kube: false,
        vault: false,
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("sandbox starts");
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let relay = "platform_services/packet-relay";
    {
        let mut data = sandbox.gitlab.as_ref().unwrap().lock();
        let pid = data.project_by_path(relay).unwrap().id;
        let deployments: Vec<Value> = (0..5_u64)
            .map(|k| {
                let deployed = now - 3600 * (5 - i64::try_from(k).unwrap());
                api_deployment(700 + k, &format!("feed{k:04}"), deployed - 1800, deployed)
            })
            .collect();
        data.ci.deployments.insert(pid, deployments);
        let pipeline = |id: u64, status: &str, source: &str| {
            json!({"id": id, "iid": id, "project_id": pid, "sha": "feed0000", "ref": "main", "status": status,
                   "source": source, "created_at": iso(now - 900), "updated_at": iso(now - 300),
                   "finished_at": iso(now - 300), "duration": 600, "queued_duration": 4})
        };
        data.ci.pipelines.insert(
            pid,
            vec![
                pipeline(900, "success", "push"),
                pipeline(901, "failed", "push"),
                pipeline(902, "success", "parent_pipeline"),
                pipeline(903, "running", "push"),
            ],
        );
        for id in [900_u64, 901] {
            data.ci.jobs.insert(id, vec![json!({"id": id * 10, "stage": "build", "status": "success",
                "started_at": iso(now - 880), "finished_at": iso(now - 700), "queued_duration": 12.5,
                "tag_list": ["security", "trivy"], "runner": {"id": 3, "runner_type": "group_type"}})]);
        }
        // A commit the netops-dashboard deployment below waits for.
        let netops = data
            .project_by_path("platform_services/netops-dashboard")
            .unwrap()
            .id;
        data.ci.commits.insert(
            (netops, "abcdef12".into()),
            json!({"id": "abcdef12", "committed_date": iso(now - 7000)}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        &format!("sqlite://{}/dora.db", dir.path().display()),
        dir.path(),
        &[
            ("DORA_GITLAB_URL", sandbox.get("GITLAB_URL")),
            ("DORA_GITLAB_TOKEN", sandbox.get("GITLAB_API_TOKEN")),
            ("DORA_HEAL_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    // Two of the five deployments did arrive by webhook (same ids); one netops deployment has no
    // commit time anywhere but the commits API.
    for k in [0_u64, 1] {
        let deployed = now - 3600 * (5 - i64::try_from(k).unwrap());
        let body = payloads::deployment(
            relay,
            700 + k,
            "production",
            "success",
            &format!("feed{k:04}"),
            deployed,
        );
        assert_eq!(c.send(DEPLOYMENT_HOOK, &body).await.0, 200);
    }
    let body = payloads::deployment(
        "platform_services/netops-dashboard",
        42,
        "production",
        "success",
        "abcdef12",
        now - 100,
    );
    assert_eq!(c.send(DEPLOYMENT_HOOK, &body).await.0, 200);

    let series =
        |svc: &str, name: &str| format!("{name}{{service=\"{svc}\",environment=\"production\"}}");
    let mut m = String::new();
    for _ in 0..100 {
        m = c.settled_metrics().await;
        if value(
            &m,
            &series("netops-dashboard", "cicd_lead_time_seconds_count"),
        ) == Some(1.0)
            && value(
                &m,
                &series("packet-relay", "cicd_deployment_frequency_total"),
            ) == Some(5.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let at least two more passes run: nothing may be counted twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m2 = c.settled_metrics().await;
    for text in [&m, &m2] {
        assert_eq!(
            value(
                text,
                &series("packet-relay", "cicd_deployment_frequency_total")
            ),
            Some(5.0),
            "{text}\n{}",
            c.log()
        );
        assert_eq!(
            value(
                text,
                &series("packet-relay", "cicd_lead_time_seconds_count")
            ),
            Some(5.0)
        );
        assert_eq!(
            value(text, &series("packet-relay", "cicd_lead_time_seconds_sum")),
            Some(5.0 * 1800.0)
        );
        assert_eq!(
            value(
                text,
                &series("netops-dashboard", "cicd_lead_time_seconds_sum")
            ),
            Some(6900.0)
        );
        assert_eq!(
            value(
                text,
                "cicd_pipeline_runs_total{service=\"packet-relay\",status=\"success\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                text,
                "cicd_pipeline_runs_total{service=\"packet-relay\",status=\"failed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                text,
                "cicd_pipeline_queue_time_seconds_sum{service=\"packet-relay\",runner_type=\"security\"}"
            ),
            Some(25.0)
        );
        assert_eq!(
            value(
                text,
                "cicd_pipeline_duration_seconds_sum{service=\"packet-relay\",stage=\"build\",status=\"failed\"}"
            ),
            Some(180.0)
        );
    }
    // Deployments 700 and 701 came by webhook and from the API: counted once (5, not 7) above.
    assert!(
        value(
            &m2,
            "dora_collector_webhooks_total{source=\"heal\",outcome=\"accepted\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m2}"
    );
    assert!(
        !c.log().contains(sandbox.get("GITLAB_API_TOKEN")),
        "the GitLab token was logged"
    );
}
