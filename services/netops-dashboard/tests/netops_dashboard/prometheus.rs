//! Cluster mode against a REAL Prometheus (the sandbox's, Debian 2.42) scraping real routers.

use std::time::Duration;

use crate::support::{Arcade, Dashboard, DeadPort, link_states, node_states, wait_for};

/// Proves that Prometheus mode (`DASHBOARD_PROMETHEUS_URL`: `rate()`/`max by` queries) reports
/// the same links, link states and routers as direct mode on the same routers: up links,
/// a `down` link to an unknown hop (router-core shares packets round-robin between router-east
/// and a port where nothing listens) and the routers' versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_mode_agrees_with_direct_mode() {
    let started = std::time::Instant::now();
    let sandbox = sandbox::Sandbox::start(sandbox::Options::prometheus_only())
        .await
        .expect("the sandbox's Prometheus starts (./scripts/setup-test-env.sh installs it)");
    let prometheus = sandbox.get(common::env::PROMETHEUS_URL).to_string();

    let dead = DeadPort::new();
    let bad = format!("127.0.0.1:{}", dead.port);
    let mut arcade = Arcade::new();
    arcade.router("router-east", "").await;
    let east = arcade.url("router-east");
    arcade
        .router("router-core", &format!("router-east={east},http://{bad}"))
        .await;
    let core = arcade.url("router-core");
    arcade
        .router("router-west", &format!("router-core={core}"))
        .await;
    arcade.generator("10").await;
    for (name, port) in &arcade.ports {
        sandbox
            .add_scrape_target(name, &format!("127.0.0.1:{port}"))
            .await
            .unwrap();
    }

    println!(
        "Prometheus and the arcade up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let direct = Dashboard::start(
        "dashboard-direct",
        &[
            ("DASHBOARD_ROUTERS", arcade.dashboard_routers()),
            ("DASHBOARD_POLL_MS", "500".into()),
        ],
        arcade.dir.path(),
    )
    .await;
    let prom = Dashboard::start(
        "dashboard-prometheus",
        &[
            ("DASHBOARD_PROMETHEUS_URL", prometheus.clone()),
            ("DASHBOARD_POLL_MS", "500".into()),
        ],
        arcade.dir.path(),
    )
    .await;

    let expected_links = vec![
        ("generator->router-west".to_string(), "up".to_string()),
        (format!("router-core->{bad}"), "down".to_string()),
        ("router-core->router-east".to_string(), "up".to_string()),
        ("router-west->router-core".to_string(), "up".to_string()),
    ];
    let expected_nodes = vec![
        (bad.clone(), "unknown".to_string(), false),
        ("generator".to_string(), "generator".to_string(), true),
        ("router-core".to_string(), "router".to_string(), true),
        ("router-east".to_string(), "router".to_string(), true),
        ("router-west".to_string(), "router".to_string(), true),
    ];
    for (mode, dash) in [("direct", &direct), ("prometheus", &prom)] {
        let t = wait_for(
            &format!("{mode} mode shows the expected links and routers"),
            Duration::from_secs(60),
            || async {
                let t = dash.topology().await;
                if link_states(&t) == expected_links && node_states(&t) == expected_nodes {
                    Ok(t)
                } else {
                    Err(format!(
                        "links {:?} nodes {:?} error {}",
                        link_states(&t),
                        node_states(&t),
                        t["error"]
                    ))
                }
            },
        )
        .await;
        println!(
            "{mode} mode agrees after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(t["mode"], mode);
        let core_node = t["routers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "router-core")
            .unwrap()
            .clone();
        assert_eq!(
            core_node["versions"],
            serde_json::json!([env!("CARGO_PKG_VERSION")]),
            "{mode}"
        );
        assert!(t["delivery_ratio"].as_f64().is_some(), "{mode}: {t}");
    }
}
