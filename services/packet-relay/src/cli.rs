//! Command line: `packet-relay [serve]` and `packet-relay generate`; every flag also reads the
//! environment variable named in [`crate::env`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::http::Limits;
use crate::{env, generator, hops, server};

/// The `NetOps` Arcade router: relays JSON packets along `NEXT_HOPS`, with Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "packet-relay", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `packet-relay` alone serves, like `packet-relay serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Relay packets (the default).
    Serve(ServeArgs),
    /// Send packets at a steady rate to `GENERATOR_TARGET`.
    Generate(GenerateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This router's name: the hop it appends and the `service` label of its metrics.
    #[arg(long, env = env::ROUTER_NAME, default_value = "packet-relay")]
    pub router_name: String,
    /// Next hops, comma-separated `http://host:port` or `name=http://host:port` (round-robin);
    /// empty for a terminal router, which delivers.
    #[arg(long, env = env::NEXT_HOPS, default_value = "")]
    pub next_hops: String,
    /// Address to listen on.
    #[arg(long, env = env::RELAY_LISTEN_ADDR, default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Per-hop timeout in milliseconds (connect plus answer of the next hop).
    #[arg(long, env = env::RELAY_HOP_TIMEOUT_MS, default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub hop_timeout_ms: u64,
    /// Largest packet body accepted, in bytes (at most 8 MiB: one request must fit the buffer
    /// budget); larger ones get 413.
    #[arg(long, env = env::RELAY_MAX_BODY_BYTES, default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(1..=MAX_BODY_LIMIT))]
    pub max_body_bytes: u64,
    /// Connections served at once (at most 2,048); past it new ones wait in the kernel's
    /// backlog and idle keep-alive connections are closed to make room.
    // Each connection may keep 8 KiB of request and 8 KiB of answer buffer outside the shared
    // budget: 2,048 x 16 KiB + the 24 MiB budget is 56 MiB, inside the routers' 64 Mi.
    #[arg(long, env = env::RELAY_MAX_CONNECTIONS, default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub max_connections: u64,
    /// Time in milliseconds a request head gets from its first byte, a body from the end of its
    /// head, and an answer to be written (408 when over).
    #[arg(long, env = env::RELAY_READ_TIMEOUT_MS, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub read_timeout_ms: u64,
    /// Time in milliseconds a connection may wait for its next request.
    #[arg(long, env = env::RELAY_IDLE_TIMEOUT_MS, default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub idle_timeout_ms: u64,
    /// Seconds in-flight packets get to finish after SIGTERM.
    #[arg(long, env = env::RELAY_SHUTDOWN_GRACE_SECS, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,
    /// Version shown in `relay_build_info`.
    #[arg(long, env = env::APP_VERSION, default_value = env!("CARGO_PKG_VERSION"))]
    pub app_version: String,
}

/// The largest `RELAY_MAX_BODY_BYTES`: a request of that size, with its head, fits the buffer
/// budget three times over.
pub const MAX_BODY_LIMIT: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Where packets go: `http://host:port/relay` or `name=http://host:port/relay`.
    #[arg(long, env = env::GENERATOR_TARGET, default_value = "http://router-west:8080/relay")]
    pub target: String,
    /// Packets per second (fractions allowed: 0.5 is one every 2 s).
    #[arg(long, env = env::GENERATOR_RATE, default_value_t = 10.0)]
    pub rate: f64,
    /// TTL of each packet.
    #[arg(long, env = env::GENERATOR_TTL, default_value_t = 8)]
    pub ttl: u64,
    /// Packets in flight at most.
    #[arg(long, env = env::GENERATOR_CONCURRENCY, default_value_t = 64)]
    pub concurrency: usize,
    /// The generator's name (the `from` of its link).
    #[arg(long, env = env::ROUTER_NAME, default_value = "generator")]
    pub router_name: String,
    /// Address of the generator's /metrics, /healthz and /readyz.
    #[arg(long, env = env::RELAY_LISTEN_ADDR, default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// How long to wait for the target's answer, in milliseconds.
    #[arg(long, env = env::RELAY_HOP_TIMEOUT_MS, default_value_t = 2000)]
    pub hop_timeout_ms: u64,
    /// Seconds unanswered packets get after SIGTERM.
    #[arg(long, env = env::RELAY_SHUTDOWN_GRACE_SECS, default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Version shown in `relay_build_info`.
    #[arg(long, env = env::APP_VERSION, default_value = env!("CARGO_PKG_VERSION"))]
    pub app_version: String,
    /// Stop after N packets, wait for their answers and print {"sent","delivered","lost"}.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<server::Settings> {
        Ok(server::Settings {
            name: self.router_name.clone(),
            next_hops: hops::parse_next_hops(&self.next_hops)?,
            listen: self.listen_addr,
            hop_timeout: Duration::from_millis(self.hop_timeout_ms),
            // Both bounded by their parsers (8 MiB and 2,048), so they fit any usize here.
            max_body: usize::try_from(self.max_body_bytes)?,
            limits: Limits {
                max_connections: usize::try_from(self.max_connections)?,
                read_timeout: Duration::from_millis(self.read_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                ..Limits::DEFAULT
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            version: self.app_version.clone(),
        })
    }
}

impl GenerateArgs {
    pub fn settings(&self) -> anyhow::Result<generator::Settings> {
        Ok(generator::Settings {
            name: self.router_name.clone(),
            target: hops::parse_target(&self.target)?,
            rate: self.rate,
            ttl: self.ttl,
            concurrency: self.concurrency,
            listen: self.listen_addr,
            timeout: Duration::from_millis(self.hop_timeout_ms.max(1)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            version: self.app_version.clone(),
            count: self.count,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Every flag reads the environment variable [`crate::env`] names for it, and nothing else.
    #[test]
    fn every_flag_reads_its_env_name() {
        let cmd = Cli::command();
        let envs = |c: &clap::Command| -> Vec<(String, String)> {
            c.get_arguments()
                .filter(|a| a.get_id() != "help" && a.get_id() != "version")
                .map(|a| {
                    (
                        a.get_id().to_string(),
                        a.get_env()
                            .map(|e| e.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let serve = pairs(&[
            ("router_name", env::ROUTER_NAME),
            ("next_hops", env::NEXT_HOPS),
            ("listen_addr", env::RELAY_LISTEN_ADDR),
            ("hop_timeout_ms", env::RELAY_HOP_TIMEOUT_MS),
            ("max_body_bytes", env::RELAY_MAX_BODY_BYTES),
            ("max_connections", env::RELAY_MAX_CONNECTIONS),
            ("read_timeout_ms", env::RELAY_READ_TIMEOUT_MS),
            ("idle_timeout_ms", env::RELAY_IDLE_TIMEOUT_MS),
            ("shutdown_grace_secs", env::RELAY_SHUTDOWN_GRACE_SECS),
            ("app_version", env::APP_VERSION),
        ]);
        assert_eq!(envs(&cmd), serve);
        assert_eq!(envs(cmd.find_subcommand("serve").unwrap()), serve);
        assert_eq!(
            envs(cmd.find_subcommand("generate").unwrap()),
            pairs(&[
                ("target", env::GENERATOR_TARGET),
                ("rate", env::GENERATOR_RATE),
                ("ttl", env::GENERATOR_TTL),
                ("concurrency", env::GENERATOR_CONCURRENCY),
                ("router_name", env::ROUTER_NAME),
                ("listen_addr", env::RELAY_LISTEN_ADDR),
                ("hop_timeout_ms", env::RELAY_HOP_TIMEOUT_MS),
                ("shutdown_grace_secs", env::RELAY_SHUTDOWN_GRACE_SECS),
                ("app_version", env::APP_VERSION),
                ("count", ""),
            ])
        );
        // The literal names of the contract, in case a constant were ever renamed.
        for name in [
            "ROUTER_NAME",
            "NEXT_HOPS",
            "RELAY_LISTEN_ADDR",
            "RELAY_HOP_TIMEOUT_MS",
            "RELAY_MAX_BODY_BYTES",
            "RELAY_MAX_CONNECTIONS",
            "RELAY_READ_TIMEOUT_MS",
            "RELAY_IDLE_TIMEOUT_MS",
            "RELAY_SHUTDOWN_GRACE_SECS",
            "APP_VERSION",
            "GENERATOR_TARGET",
            "GENERATOR_RATE",
            "GENERATOR_TTL",
            "GENERATOR_CONCURRENCY",
        ] {
            assert!(env::ALL.contains(&name), "{name} is not in env::ALL");
        }
        cmd.debug_assert();
    }

    #[test]
    fn defaults_and_modes() {
        let cli = Cli::try_parse_from(["packet-relay"]).unwrap();
        assert!(cli.command.is_none());
        let s = cli.serve.settings().unwrap();
        assert_eq!(s.name, "packet-relay");
        assert!(s.next_hops.is_empty());
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.hop_timeout, Duration::from_secs(2));
        assert_eq!(s.max_body, 65536);
        assert_eq!(s.limits.max_connections, 1024);
        assert_eq!(s.limits.read_timeout, Duration::from_secs(10));
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.version, env!("CARGO_PKG_VERSION"));

        let cli =
            Cli::try_parse_from(["packet-relay", "generate", "--count", "5", "--rate", "0.5"])
                .unwrap();
        let Some(Command::Generate(g)) = cli.command else {
            panic!("not generate")
        };
        let g = g.settings().unwrap();
        assert_eq!(g.name, "generator");
        assert_eq!(g.target.name, "router-west");
        assert_eq!(g.target.endpoint.as_str(), "http://router-west:8080/relay");
        assert!((g.rate - 0.5).abs() < f64::EPSILON);
        assert_eq!((g.ttl, g.concurrency, g.count), (8, 64, Some(5)));
    }

    /// Settings are bounded: a value whose arithmetic could overflow, or that would let one
    /// request outgrow the buffer budget, is refused with the flag's allowed range.
    #[test]
    fn settings_are_bounded() {
        for (flag, bad) in [
            ("--max-body-bytes", "18446744073709551615"),
            ("--max-body-bytes", "8388609"),
            ("--max-body-bytes", "0"),
            ("--max-connections", "0"),
            ("--max-connections", "2049"),
            ("--read-timeout-ms", "0"),
            ("--idle-timeout-ms", "99"),
            ("--hop-timeout-ms", "0"),
            ("--shutdown-grace-secs", "86400"),
        ] {
            let e = Cli::try_parse_from(["packet-relay", flag, bad]).unwrap_err();
            assert!(e.to_string().contains("not in"), "{flag} {bad}: {e}");
        }
        let max = Cli::try_parse_from(["packet-relay", "--max-body-bytes", "8388608"]).unwrap();
        let s = max.serve.settings().unwrap();
        // The largest request (head, body and a read step) fits the budget.
        assert!(s.max_body + crate::h1::MAX_HEAD + 64 * 1024 <= s.limits.buffer_budget / 2);
        // The most connections, each with its free request and answer buffers, and the whole
        // budget stay inside the routers' 64 Mi.
        let most = Cli::try_parse_from(["packet-relay", "--max-connections", "2048"]).unwrap();
        let s = most.serve.settings().unwrap();
        let buffers =
            s.limits.max_connections * 2 * crate::http::FREE_BUFFER + s.limits.buffer_budget;
        assert!(buffers < 60 * 1024 * 1024, "{buffers} bytes of buffers");
    }
}
