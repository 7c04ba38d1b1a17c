//! `sandbox up|env|down`: the local platform for first runs and tests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sandbox",
    version,
    about = "Local platform on 127.0.0.1: kube-apiserver, OpenBao, Prometheus and GitLab/Harbor/Keycloak stand-ins"
)]
struct Cli {
    /// State directory (also `CICD_SANDBOX_DIR`).
    #[arg(
        long,
        global = true,
        env = "CICD_SANDBOX_DIR",
        default_value = ".sandbox"
    )]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything (idempotent: reports the running sandbox if there is one).
    Up {
        #[arg(long)]
        no_kube: bool,
        #[arg(long)]
        no_vault: bool,
        #[arg(long)]
        no_prometheus: bool,
    },
    /// Print the env file to use (`eval "$(sandbox env)"`); secrets stay in the 0600 file.
    Env,
    /// Stop everything and remove the state directory.
    Down,
    /// Serve the stand-ins (started by `up`).
    #[command(hide = true)]
    ServeStandins {
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::cli::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(sandbox_cli::run(cli.command_into(), &cli.dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                common::redact::redact(&format!("{e:#}").replace('\n', " | "))
            );
            ExitCode::from(1)
        }
    }
}

impl Cli {
    fn command_into(&self) -> sandbox_cli::Action {
        match &self.command {
            Command::Up {
                no_kube,
                no_vault,
                no_prometheus,
            } => sandbox_cli::Action::Up {
                kube: !no_kube,
                vault: !no_vault,
                prometheus: !no_prometheus,
            },
            Command::Env => sandbox_cli::Action::Env,
            Command::Down => sandbox_cli::Action::Down,
            Command::ServeStandins { ports } => sandbox_cli::Action::ServeStandins(ports.clone()),
        }
    }
}

mod sandbox_cli {
    use std::path::Path;

    use anyhow::{Context, bail};
    use common::env;
    use sandbox::{ENV_FILE, Options, Sandbox, keys, standins};

    pub enum Action {
        Up {
            kube: bool,
            vault: bool,
            prometheus: bool,
        },
        Env,
        Down,
        ServeStandins(Vec<u16>),
    }

    /// Keys printed by `up`/`env`; everything else in the env file stays there.
    const PUBLIC_KEYS: &[&str] = &[
        env::DOMAIN,
        env::GITLAB_URL,
        env::HARBOR_URL,
        env::KEYCLOAK_URL,
        env::VAULT_ADDR,
        env::KUBECONFIG,
        env::PROMETHEUS_URL,
    ];

    fn is_up(dir: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else {
            return false;
        };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        // `complete` is written last by `up`: a state without it is an interrupted `up`.
        state["complete"].as_bool() == Some(true)
            && state["processes"].as_array().is_some_and(|p| {
                !p.is_empty()
                    && p.iter().all(|proc| {
                        proc["pid"]
                            .as_u64()
                            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
                    })
            })
    }

    fn print_env(dir: &Path) -> anyhow::Result<()> {
        let env_file = std::fs::canonicalize(dir.join(ENV_FILE))
            .context("the sandbox is not up: run `sandbox up`")?;
        let text = std::fs::read_to_string(&env_file)?;
        println!("export CICD_ENV_FILE={}", env_file.display());
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if PUBLIC_KEYS.contains(&key) {
                    println!("# {key}={value}");
                }
            }
        }
        Ok(())
    }

    /// SIGINT and SIGTERM, caught from the start of `up` on (before its directory exists), so
    /// that an interruption at any moment stops what `up` started.
    struct Interruptions {
        int: tokio::signal::unix::Signal,
        term: tokio::signal::unix::Signal,
    }

    impl Interruptions {
        fn catch() -> anyhow::Result<Self> {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
                term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            })
        }

        /// The next SIGINT or SIGTERM, by name.
        async fn next(&mut self) -> &'static str {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
    }

    pub async fn run(action: Action, dir: &Path) -> anyhow::Result<()> {
        match action {
            Action::Up {
                kube,
                vault,
                prometheus,
            } => {
                let mut interruptions = Interruptions::catch()?;
                if is_up(dir) {
                    eprintln!("sandbox already up in {}", dir.display());
                    return print_env(dir);
                }
                // What an interrupted or crashed `up` left: its recorded processes and anything
                // else still running in the directory (an etcd holding its lock).
                if dir.join("state.json").exists() || !sandbox::processes_in(dir).is_empty() {
                    let stopped = sandbox::down(dir)?;
                    eprintln!(
                        "sandbox: cleaned up what an interrupted `sandbox up` left in {} ({} process(es) stopped)",
                        dir.display(),
                        stopped.processes
                    );
                }
                let started = std::time::Instant::now();
                let starting = Sandbox::start(Options {
                    kube,
                    vault,
                    prometheus,
                    dir: Some(dir.to_path_buf()),
                    detached: true,
                });
                // Ctrl-C or SIGTERM while starting: stop everything started so far (each
                // process is recorded the moment it starts), then report the interruption.
                let sandbox = tokio::select! {
                    started = starting => started?,
                    signal = interruptions.next() => {
                        let stopped = sandbox::down(dir)?;
                        bail!(
                            "sandbox up interrupted by {signal}: stopped the {} process(es) it had started{}; run `sandbox up` again",
                            stopped.processes,
                            if stopped.removed { format!(" and removed {}", dir.display()) } else { String::new() }
                        );
                    }
                };
                eprintln!(
                    "sandbox up in {:.1}s ({}); stop it with `sandbox down`",
                    started.elapsed().as_secs_f64(),
                    dir.display()
                );
                sandbox.detach();
                print_env(dir)
            }
            Action::Env => print_env(dir),
            Action::Down => {
                let stopped = sandbox::down(dir)?;
                if stopped.removed || !dir.exists() {
                    eprintln!("sandbox down: {} process(es) stopped", stopped.processes);
                } else {
                    eprintln!(
                        "sandbox down: {} process(es) stopped; left {} in place: it is not a sandbox's directory (no {})",
                        stopped.processes,
                        dir.display(),
                        sandbox::DIR_MARKER
                    );
                }
                Ok(())
            }
            Action::ServeStandins(ports) => {
                if ports.len() != 4 {
                    bail!("--ports needs four ports: gitlab,harbor,keycloak,argocd");
                }
                let der = std::fs::read(dir.join("gitlab-id-token-key.pk8"))?;
                let key = keys::SigningKey::from_pkcs8(&der)?;
                let token = std::env::var("CICD_SANDBOX_GITLAB_TOKEN")
                    .context("CICD_SANDBOX_GITLAB_TOKEN unset")?;
                let secret = std::env::var("CICD_SANDBOX_KEYCLOAK_SECRET")
                    .context("CICD_SANDBOX_KEYCLOAK_SECRET unset")?;
                let (gitlab, keycloak) = sandbox::demo_states(&key, &token, &secret);
                let harbor_password = std::env::var("CICD_SANDBOX_HARBOR_PASSWORD")
                    .context("CICD_SANDBOX_HARBOR_PASSWORD unset")?;
                let harbor = standins::harbor::HarborState::new(standins::harbor::HarborData::new(
                    &harbor_password,
                ));
                let argocd = standins::argocd::ArgoCdState::new(
                    &std::env::var("CICD_SANDBOX_ARGOCD_PASSWORD")
                        .context("CICD_SANDBOX_ARGOCD_PASSWORD unset")?,
                    dir.join("kubeconfig.yaml"),
                );
                let bind = |port: u16| async move {
                    tokio::net::TcpListener::bind(("127.0.0.1", port)).await
                };
                let running = [
                    standins::serve_on(
                        "gitlab",
                        standins::gitlab::routes(gitlab),
                        bind(ports[0]).await?,
                    )?,
                    standins::serve_on(
                        "harbor",
                        standins::harbor::routes(harbor),
                        bind(ports[1]).await?,
                    )?,
                    standins::serve_on(
                        "keycloak",
                        standins::keycloak::routes(keycloak),
                        bind(ports[2]).await?,
                    )?,
                    standins::serve_on(
                        "argocd",
                        standins::argocd::routes(argocd),
                        bind(ports[3]).await?,
                    )?,
                ];
                for r in running {
                    r.task.await?;
                }
                Ok(())
            }
        }
    }
}
