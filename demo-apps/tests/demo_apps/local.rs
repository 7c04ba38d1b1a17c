//! `demo-apps local` end to end: the real routers, generator and dashboard on loopback, played
//! the way a person plays them — by saving routing-config.yaml — and watched through the
//! dashboard's `/api/topology` (the browser view of the same data is tested in
//! services/netops-dashboard).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

use crate::workspace_binary;

/// Kills a process group when dropped (a failed assertion must not leave routers running).
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// Six consecutive free loopback ports.
fn free_port_base() -> u16 {
    for attempt in 0..200u16 {
        let base =
            21000 + (u16::try_from(std::process::id() % 1000).unwrap() * 37 + attempt * 7) % 40000;
        if (base..base + 6).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no six consecutive free ports");
}

async fn topology(http: &reqwest::Client, base: u16) -> Option<Value> {
    http.get(format!("http://127.0.0.1:{base}/api/topology"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

fn link_state(topology: &Value, from: &str, to: &str) -> Option<String> {
    topology["links"]
        .as_array()?
        .iter()
        .find(|l| l["from"] == from && l["to"] == to)
        .and_then(|l| l["state"].as_str().map(str::to_owned))
}

/// Waits until the link `from → to` has `state` (polling the dashboard, 30 s at most).
async fn wait_for_link(
    http: &reqwest::Client,
    base: u16,
    from: &str,
    to: &str,
    state: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(t) = topology(http, base).await {
            if link_state(&t, from, to).as_deref() == Some(state) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{from} → {to} never became {state}; last topology: {last}");
}

fn set_next_hops(routing: &Path, value: &str) {
    let text = std::fs::read_to_string(routing).unwrap();
    let current = demo_apps::local::next_hops_of(&text).unwrap();
    std::fs::write(
        routing,
        text.replace(&format!("value: {current}"), &format!("value: {value}")),
    )
    .unwrap();
}

async fn metric(http: &reqwest::Client, port: u16, series: &str) -> f64 {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in router metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_arcade_reroutes_router_core_when_the_routing_config_is_saved() {
    common::cli::install_crypto_provider();
    let relay = workspace_binary("packet-relay");
    workspace_binary("netops-dashboard");
    let bin_dir = relay.parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_base();
    let mut arcade = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-apps"))
        .args([
            "local",
            "--rate",
            "40",
            "--port-base",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, which the routers and dashboard inherit: if this test fails
        // before the SIGTERM below, the guard kills the whole group, not only the arcade.
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = GroupGuard(arcade.id().unwrap());
    let mut stdout = tokio::io::BufReader::new(arcade.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        let mut text = String::new();
        while let Some(line) = stdout.next_line().await.unwrap() {
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Ctrl-C stops") {
                return text;
            }
        }
        panic!("the arcade exited before it started: {text}");
    })
    .await
    .expect("the arcade starts within 60 s");
    assert!(
        started.contains(&format!("dashboard:      http://127.0.0.1:{base}")),
        "{started}"
    );
    assert!(dir.path().join("arcade.pid").is_file());
    let http = reqwest::Client::new();
    let core_port = base + 2;

    // Normal flow: generator → west → core → east, every link green.
    let t = wait_for_link(&http, base, "router-core", "router-east", "up").await;
    assert_eq!(
        link_state(&t, "router-west", "router-core").as_deref(),
        Some("up")
    );
    assert_eq!(
        link_state(&t, "generator", "router-west").as_deref(),
        Some("up")
    );

    // Scenario 1 locally: a loopback port where nothing listens (reserved for the whole test).
    let dead = sandbox::support::DeadPort::new();
    let routing = dir.path().join("routing-config.yaml");
    set_next_hops(&routing, &dead.url());
    let bad = format!("127.0.0.1:{}", dead.port);
    wait_for_link(&http, base, "router-core", &bad, "down").await;
    let drops = metric(
        &http,
        core_port,
        &format!("relay_link_drops_total{{from=\"router-core\",to=\"{bad}\",reason=\"connect\"}}"),
    )
    .await;
    assert!(drops > 0.0, "drops counted on the bad link");

    // The "rollback": back to router-east, green again.
    set_next_hops(&routing, "http://router-east:8080");
    wait_for_link(&http, base, "router-core", "router-east", "up").await;

    // Scenario 2: router-north by its cluster name, mapped to its local port; zero drops.
    set_next_hops(&routing, "http://router-north:8080");
    let t = wait_for_link(&http, base, "router-core", "router-north", "up").await;
    assert_ne!(
        link_state(&t, "router-core", "router-east").as_deref(),
        Some("down")
    );
    let north_drops = metric(
        &http,
        core_port,
        "relay_link_drops_total{from=\"router-core\",to=\"router-north\",reason=\"connect\"}",
    )
    .await;
    assert!(
        north_drops.abs() < f64::EPSILON,
        "scenario 2: zero drops, got {north_drops}"
    );

    // A broken file keeps the current route and says why.
    std::fs::write(&routing, "spec: [unclosed").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        arcade.try_wait().unwrap().is_none(),
        "the arcade keeps running"
    );
    wait_for_link(&http, base, "router-core", "router-north", "up").await;

    // SIGTERM: every process stops, every port is free again, the pid file is gone.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &arcade.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), arcade.wait())
        .await
        .expect("the arcade stops within 30 s")
        .unwrap();
    assert!(exit.success(), "{exit}");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut arcade.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("routing-config.yaml") && stderr.contains("keeps NEXT_HOPS"),
        "{stderr}"
    );
    for port in base..base + 6 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still in use"
        );
    }
    assert!(!dir.path().join("arcade.pid").exists());
}
