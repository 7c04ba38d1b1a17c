//! `demo-apps local`: the NetOps Arcade on this machine, for a first look without a cluster.
//!
//! Starts router-east, router-north, router-core, router-west, the traffic generator and the
//! dashboard on consecutive loopback ports, and watches a local copy of the project's
//! `routing-config.yaml`: saving a new `NEXT_HOPS` there restarts router-core with it, as a
//! rollout does in the cluster. Router names in the file (`http://router-north:8080`) are mapped
//! to the local ports, so the same edit works in both places. Scenarios 1 and 2 play here; the
//! others need GitLab and Argo CD.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::projects::PACKET_RELAY;

/// The routers in start order (terminals first, so every next hop is up before its sender).
pub const ROUTERS: [&str; 4] = ["router-east", "router-north", "router-core", "router-west"];
/// Process id of a running arcade, in its directory.
pub const PID_FILE: &str = "arcade.pid";
const ROUTING_CONFIG: &str = "deploy/overlays/rke2-prod/routing-config.yaml";

#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// First of six consecutive loopback ports: dashboard, west, core, east, north, generator.
    #[arg(long, default_value_t = 18080)]
    pub port_base: u16,
    /// Packets per second from the traffic generator.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Where the routing config, logs and state go (default `$CICD_SANDBOX_DIR/arcade`, else `.sandbox/arcade`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Directory holding the `packet-relay` and `netops-dashboard` binaries (default: next to this one).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Loopback ports of the arcade.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub dashboard: u16,
    pub generator: u16,
    base: u16,
}

impl Ports {
    pub fn new(base: u16) -> anyhow::Result<Self> {
        if base.checked_add(5).is_none() || base < 1024 {
            bail!("--port-base {base}: needs six consecutive ports between 1024 and 65535");
        }
        Ok(Self {
            dashboard: base,
            generator: base + 5,
            base,
        })
    }
    pub fn router(&self, name: &str) -> u16 {
        let offset = match name {
            "router-west" => 1,
            "router-core" => 2,
            "router-east" => 3,
            _ => 4,
        };
        self.base + offset
    }
    fn all(self) -> Vec<(String, u16)> {
        let mut out = vec![("dashboard".to_owned(), self.dashboard)];
        out.extend(ROUTERS.iter().map(|r| ((*r).to_owned(), self.router(r))));
        out.push(("generator".into(), self.generator));
        out
    }
}

/// The `NEXT_HOPS` value of router-core in a routing-config.yaml (a strategic merge patch).
pub fn next_hops_of(routing_config: &str) -> anyhow::Result<String> {
    let doc: Value = serde_saphyr::from_str(routing_config)
        .map_err(|e| anyhow::anyhow!("routing-config.yaml is not valid YAML: {e}"))?;
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == "NEXT_HOPS")
        .and_then(|e| e["value"].as_str().map(str::to_owned))
        .context(
            "routing-config.yaml has no NEXT_HOPS value under spec.template.spec.containers[].env",
        )
}

/// Maps the cluster's router names to their local ports (`http://router-north:8080` →
/// `router-north=http://127.0.0.1:<port>`); any other hop is kept as written.
pub fn localize_hops(next_hops: &str, ports: &Ports) -> String {
    next_hops
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|hop| {
            let host = url::Url::parse(hop)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned));
            match host {
                Some(h) if ROUTERS.contains(&h.as_str()) && !hop.contains('=') => {
                    format!("{h}=http://127.0.0.1:{}", ports.router(&h))
                }
                _ => hop.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The seeded local routing config: the project's file, with a note on local addresses.
fn seed_routing_config() -> String {
    let original = PACKET_RELAY.source_file(ROUTING_CONFIG).unwrap_or_default();
    format!(
        "# Local arcade (`demo-apps local`): save this file to re-route router-core, as a merge does in\n# the cluster. Router names map to the local ports. For scenario 1 locally use an address where\n# nothing listens, e.g. http://127.0.0.1:9, not a real private address.\n{original}"
    )
}

struct Arcade {
    dir: PathBuf,
    bin_dir: PathBuf,
    ports: Ports,
    rate: f64,
    children: BTreeMap<String, Child>,
}

impl Arcade {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn spawn(
        &mut self,
        name: &str,
        binary: &str,
        env: &[(&str, String)],
        args: &[&str],
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log(name))
            .with_context(|| format!("creating {}", self.log(name).display()))?;
        let mut command = Command::new(self.bin_dir.join(binary));
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| {
            format!("starting {name} ({})", self.bin_dir.join(binary).display())
        })?;
        self.children.insert(name.to_owned(), child);
        Ok(())
    }

    async fn spawn_router(&mut self, name: &str, next_hops: &str) -> anyhow::Result<()> {
        let env = [
            ("ROUTER_NAME", name.to_owned()),
            ("NEXT_HOPS", next_hops.to_owned()),
            (
                "RELAY_LISTEN_ADDR",
                format!("127.0.0.1:{}", self.ports.router(name)),
            ),
            ("RELAY_HOP_TIMEOUT_MS", "1000".to_owned()),
        ];
        self.spawn(name, "packet-relay", &env, &["serve"])?;
        wait_ready(
            &format!("http://127.0.0.1:{}/readyz", self.ports.router(name)),
            name,
            &self.log(name),
        )
        .await
    }

    async fn stop(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            terminate(&mut child).await;
        }
    }

    /// Stops every process at once (each drains on SIGTERM, about a second when idle).
    async fn stop_all(&mut self) {
        let children = std::mem::take(&mut self.children);
        futures::future::join_all(children.into_values().map(|mut child| async move {
            terminate(&mut child).await;
        }))
        .await;
    }

    /// The first child that exited on its own, with its status.
    fn exited(&mut self) -> Option<(String, String)> {
        self.children.iter_mut().find_map(|(name, child)| {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| (name.clone(), status.to_string()))
        })
    }
}

/// SIGTERM (graceful shutdown), then SIGKILL after 5 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

async fn wait_ready(url: &str, name: &str, log: &Path) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{name} did not become ready at {url} within 15 s: see {}",
        log.display()
    )
}

fn default_dir() -> PathBuf {
    std::env::var_os(common::env::CICD_SANDBOX_DIR)
        .map_or_else(|| PathBuf::from(".sandbox"), PathBuf::from)
        .join("arcade")
}

/// Runs the arcade until SIGINT or SIGTERM.
pub async fn run(args: LocalArgs) -> anyhow::Result<u8> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!(
            "--rate {} must be a positive number of packets per second",
            args.rate
        );
    }
    let ports = Ports::new(args.port_base)?;
    for (name, port) in ports.all() {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("port {port} for {name} is in use: stop what listens there or choose another --port-base")
        })?;
    }
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("locating this binary")?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf(),
    };
    for binary in ["packet-relay", "netops-dashboard"] {
        if !bin_dir.join(binary).is_file() {
            bail!(
                "{binary} is not in {}: build it with `cargo build --release -p packet-relay -p netops-dashboard` (or pass --bin-dir)",
                bin_dir.display()
            );
        }
    }
    let dir = args.dir.unwrap_or_else(default_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let routing_path = dir.join("routing-config.yaml");
    if !routing_path.is_file() {
        std::fs::write(&routing_path, seed_routing_config())
            .with_context(|| format!("writing {}", routing_path.display()))?;
    }
    let mut routing_text = std::fs::read_to_string(&routing_path)?;
    let mut core_hops = localize_hops(&next_hops_of(&routing_text)?, &ports);

    let mut arcade = Arcade {
        dir: dir.clone(),
        bin_dir,
        ports,
        rate: args.rate,
        children: BTreeMap::new(),
    };
    let started = start_all(&mut arcade, &core_hops).await;
    if let Err(e) = started {
        arcade.stop_all().await;
        return Err(e);
    }
    // `sandbox down` stops a detached arcade through this file.
    let pid_file = dir.join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())
        .with_context(|| format!("writing {}", pid_file.display()))?;
    println!(
        "NetOps Arcade on localhost\n  dashboard:      http://127.0.0.1:{}\n  routing config: {}\n  logs:           {}\n\n  Scenario 1 (bad next hop): set NEXT_HOPS to http://127.0.0.1:9 and save; the core link turns red.\n  Back to normal:            http://router-east:8080\n  Scenario 2 (re-route):     http://router-north:8080; the east link fades, north turns green.\n\nCtrl-C stops the arcade.",
        ports.dashboard,
        routing_path.display(),
        dir.display()
    );
    let result = watch(
        &mut arcade,
        &routing_path,
        &mut routing_text,
        &mut core_hops,
    )
    .await;
    arcade.stop_all().await;
    let _ = std::fs::remove_file(&pid_file);
    result.map(|()| common::cli::EXIT_OK)
}

async fn start_all(arcade: &mut Arcade, core_hops: &str) -> anyhow::Result<()> {
    let ports = arcade.ports;
    arcade.spawn_router("router-east", "").await?;
    arcade.spawn_router("router-north", "").await?;
    arcade.spawn_router("router-core", core_hops).await?;
    arcade
        .spawn_router(
            "router-west",
            &format!(
                "router-core=http://127.0.0.1:{}",
                ports.router("router-core")
            ),
        )
        .await?;
    let generator_env = [
        ("ROUTER_NAME", "generator".to_owned()),
        (
            "GENERATOR_TARGET",
            format!(
                "router-west=http://127.0.0.1:{}/relay",
                ports.router("router-west")
            ),
        ),
        ("GENERATOR_RATE", arcade.rate.to_string()),
        (
            "RELAY_LISTEN_ADDR",
            format!("127.0.0.1:{}", ports.generator),
        ),
    ];
    arcade.spawn("generator", "packet-relay", &generator_env, &["generate"])?;
    let mut routers: Vec<String> = ROUTERS
        .iter()
        .map(|r| format!("{r}=http://127.0.0.1:{}", ports.router(r)))
        .collect();
    routers.push(format!("generator=http://127.0.0.1:{}", ports.generator));
    let dashboard_env = [
        (
            "DASHBOARD_LISTEN_ADDR",
            format!("127.0.0.1:{}", ports.dashboard),
        ),
        ("DASHBOARD_ROUTERS", routers.join(",")),
        ("DASHBOARD_POLL_MS", "500".to_owned()),
        ("APP_VERSION", "local".to_owned()),
    ];
    arcade.spawn("dashboard", "netops-dashboard", &dashboard_env, &[])?;
    wait_ready(
        &format!("http://127.0.0.1:{}/readyz", ports.dashboard),
        "the dashboard",
        &arcade.log("dashboard"),
    )
    .await
}

async fn watch(
    arcade: &mut Arcade,
    routing_path: &Path,
    routing_text: &mut String,
    core_hops: &mut String,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Some((name, status)) = arcade.exited() {
            bail!(
                "{name} exited ({status}): see {}",
                arcade.log(&name).display()
            );
        }
        let Ok(text) = std::fs::read_to_string(routing_path) else {
            continue;
        };
        if text == *routing_text {
            continue;
        }
        *routing_text = text;
        match next_hops_of(routing_text) {
            Ok(hops) => {
                let local = localize_hops(&hops, &arcade.ports);
                if local != *core_hops {
                    println!("re-routing router-core: NEXT_HOPS={hops} (locally {local})");
                    arcade.stop("router-core").await;
                    arcade.spawn_router("router-core", &local).await?;
                    *core_hops = local;
                }
            }
            Err(e) => eprintln!(
                "{}: {e:#}; router-core keeps NEXT_HOPS={core_hops}",
                routing_path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_names_map_to_local_ports_and_other_hops_stay() {
        let ports = Ports::new(20000).unwrap();
        assert_eq!(
            localize_hops("http://router-north:8080", &ports),
            "router-north=http://127.0.0.1:20004"
        );
        assert_eq!(
            localize_hops("http://127.0.0.1:9, http://router-east:8080", &ports),
            "http://127.0.0.1:9,router-east=http://127.0.0.1:20003"
        );
    }

    #[test]
    fn the_projects_routing_config_names_router_east() {
        let seeded = seed_routing_config();
        assert_eq!(next_hops_of(&seeded).unwrap(), "http://router-east:8080");
        assert!(next_hops_of("spec: {}").is_err());
    }
}
