//! The must-show: the demo scenarios played on REAL processes (four `packet-relay` routers, the
//! generator at 40 packets/s and the dashboard scraping them every 250 ms), watched in headless
//! Chromium through playwright-core. router-core is restarted with a new `NEXT_HOPS` at each
//! step, as the local arcade and a rollout do.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::{Arcade, Dashboard, DeadPort, artifact_dir, link, wait_for};

const GREEN: &str = "rgb(34, 197, 94)";
const RED: &str = "rgb(239, 68, 68)";
const BLUE: &str = "rgb(37, 99, 235)";

fn playwright_core() -> PathBuf {
    let tools = std::env::var("CICD_TOOLS_DIR").map_or_else(
        |_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/cicd-buildout/tools")
        },
        PathBuf::from,
    );
    let path = tools.join("npm/node_modules/playwright-core");
    assert!(
        path.join("package.json").is_file(),
        "playwright-core not found at {} (run ./scripts/setup-test-env.sh; never `npx playwright install`)",
        path.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium missing (Debian package chromium; ./scripts/setup-test-env.sh installs it)"
    );
    path
}

/// The node driver (tests/browser/dashboard.cjs): one JSON command in, one JSON answer out.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    log: PathBuf,
    started: std::time::Instant,
}

impl Browser {
    async fn open(url: &str, log_dir: &std::path::Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.cjs");
        let log = log_dir.join("browser.log");
        let mut child = Command::new("node")
            .arg(script)
            .env("PLAYWRIGHT_CORE", playwright_core())
            .env("DASHBOARD_URL", url)
            .env("ARTIFACT_DIR", artifact_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (Debian nodejs)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut browser = Self {
            child,
            stdin,
            stdout,
            log,
            started: std::time::Instant::now(),
        };
        let opened = browser.answer().await;
        assert_eq!(opened["ok"], true, "the browser opens the page: {opened}");
        println!(
            "browser opened the page in {:.1} s",
            browser.started.elapsed().as_secs_f64()
        );
        browser
    }

    async fn answer(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.stdout.next_line())
            .await
            .expect("the browser driver answers within 90 s")
            .expect("reading the driver's answer");
        let Some(line) = line else {
            panic!(
                "the browser driver exited:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver answer {line:?}: {e}"))
    }

    /// Waits (in the page, with a deadline) until `expect` holds, then screenshots the step.
    async fn step(
        &mut self,
        step: &str,
        expect: Value,
        arcade: &Arcade,
        dash: &Dashboard,
    ) -> Value {
        let mut cmd = expect;
        cmd["step"] = json!(step);
        cmd["timeout_ms"] = json!(30_000);
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        let answer = self.answer().await;
        println!(
            "screenshot {step} (after {:.1} s): {}",
            self.started.elapsed().as_secs_f64(),
            answer["screenshot"].as_str().unwrap_or("?")
        );
        assert!(
            answer["ok"] == true,
            "step {step}: {}\nthe page shows: {}\n/api/topology: {}\nprocesses:\n{}\ndashboard log:\n{}",
            answer["error"],
            answer["seen"],
            dash.topology().await,
            arcade.logs(),
            dash.proc.log_text()
        );
        assert_eq!(
            answer["foreign_requests"],
            json!([]),
            "the page fetches nothing but the dashboard (no CDN, no fonts)"
        );
        assert_eq!(answer["console_errors"], json!([]), "no errors in the page");
        answer
    }

    async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

fn stroke<'a>(answer: &'a Value, key: &str) -> &'a str {
    answer["links"][key]["stroke"]
        .as_str()
        .unwrap_or("(no link)")
}

/// Proves, in a real browser on real routers: the default path is green; a bad next hop turns
/// its link red (an "unknown hop" node appears); the rollback turns core→east green again and
/// the bad link stops being red; the re-route to router-north turns core→north green with zero
/// drops while core→east is no longer up. Colours are the computed strokes a person sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_in_the_browser() {
    let started = std::time::Instant::now();
    let mut arcade = Arcade::standard("40").await;
    println!(
        "arcade (relay build + 5 processes) up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dash = Dashboard::start(
        "dashboard",
        &[
            ("DASHBOARD_ROUTERS", arcade.dashboard_routers()),
            ("DASHBOARD_POLL_MS", "250".into()),
        ],
        arcade.dir.path(),
    )
    .await;
    let mut browser = Browser::open(&format!("{}/", dash.url), arcade.dir.path()).await;

    // Default: generator → west → core → east, all green; north on standby.
    let a = browser
        .step(
            "01-default-core-to-east",
            json!({
                "links": {
                    "generator->router-west": {"state": "up"},
                    "router-west->router-core": {"state": "up"},
                    "router-core->router-east": {"state": "up"},
                },
                "nodes": {
                    "generator": {"up": true}, "router-west": {"up": true}, "router-core": {"up": true},
                    "router-east": {"up": true}, "router-north": {"up": true},
                },
            }),
            &arcade,
            &dash,
        )
        .await;
    for key in [
        "generator->router-west",
        "router-west->router-core",
        "router-core->router-east",
    ] {
        assert_eq!(stroke(&a, key), GREEN, "{key} is drawn green");
    }
    assert_eq!(a["badge"]["color"], "blue");
    assert_eq!(a["badge"]["background"], BLUE, "the version badge is blue");
    assert_eq!(
        a["badge"]["text"],
        format!("v{} blue", env!("CARGO_PKG_VERSION"))
    );

    // Scenario 1: a next hop where nothing listens. Packets drop, the link goes red.
    let dead = DeadPort::new();
    let bad = format!("127.0.0.1:{}", dead.port);
    arcade.router("router-core", &format!("http://{bad}")).await;
    let bad_link = format!("router-core->{bad}");
    let a = browser
        .step(
            "02-bad-next-hop-red",
            json!({
                "links": {bad_link.clone(): {"state": "down"}},
                "nodes": {bad.clone(): {"up": false}},
            }),
            &arcade,
            &dash,
        )
        .await;
    assert_eq!(stroke(&a, &bad_link), RED, "the bad link is drawn red");
    assert_eq!(a["nodes"][&bad]["kind"], "unknown", "an unknown-hop node");
    let t = dash.topology().await;
    let l = link(&t, "router-core", &bad).unwrap();
    assert!(l["drops_per_sec"].as_f64().unwrap() > 0.0, "{l}");
    assert_eq!(l["active"], true);

    // Rollback: core → east again. Green again; the bad link is no longer red.
    let east = arcade.url("router-east");
    arcade
        .router("router-core", &format!("router-east={east}"))
        .await;
    let a = browser
        .step(
            "03-rollback-green-again",
            json!({
                "links": {
                    "router-core->router-east": {"state": "up"},
                    bad_link.clone(): {"not_state": "down"},
                },
            }),
            &arcade,
            &dash,
        )
        .await;
    assert_eq!(stroke(&a, "router-core->router-east"), GREEN);
    assert_ne!(stroke(&a, &bad_link), RED);

    // Scenario 2: re-route to router-north. North green, east no longer up.
    let north = arcade.url("router-north");
    arcade
        .router("router-core", &format!("router-north={north}"))
        .await;
    let a = browser
        .step(
            "04-reroute-north-green",
            json!({
                "links": {
                    "router-core->router-north": {"state": "up"},
                    "router-core->router-east": {"not_state": "up"},
                },
            }),
            &arcade,
            &dash,
        )
        .await;
    assert_eq!(stroke(&a, "router-core->router-north"), GREEN);
    assert_ne!(stroke(&a, "router-core->router-east"), GREEN);
    // Zero drops on the new path, per the API too.
    let t = wait_for(
        "core→north carrying packets without drops over a whole window",
        Duration::from_secs(20),
        || async {
            let t = dash.topology().await;
            match link(&t, "router-core", "router-north") {
                Some(l)
                    if l["state"] == "up"
                        && l["drops_per_sec"].as_f64() == Some(0.0)
                        && l["packets_per_sec"].as_f64().unwrap_or(0.0) > 0.0 =>
                {
                    Ok(t)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(
        link(&t, "router-core", "router-east").map(|l| l["active"].clone()),
        Some(json!(false)),
        "core→east is no longer configured"
    );
    browser.close().await;
}
