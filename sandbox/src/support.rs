//! Test support shared by the workspace's integration tests: building a sibling binary from a
//! test, the Prometheus HTTP API of the sandbox's Prometheus, root access to its OpenBao,
//! Kubernetes write detection and the check that no secret was printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// `cargo` (the one running the tests) without what cargo set for the test process: ring's build
/// script tracks `CARGO_MANIFEST_DIR`, so passing it on would rebuild ring and everything above it
/// here, and again at the next `cargo test`.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "OUT_DIR"
            || [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_TARGET_TMPDIR",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// The workspace's target directory, from a test's `env!("CARGO_TARGET_TMPDIR")` (`target/tmp`).
pub fn target_dir(cargo_target_tmpdir: &str) -> PathBuf {
    Path::new(cargo_target_tmpdir)
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .to_path_buf()
}

/// Builds `package`'s binary of the same name (debug profile) and returns its path: tests that
/// run another crate's program (cargo builds only the tested crate's own binaries).
pub fn workspace_binary(package: &str, cargo_target_tmpdir: &str) -> PathBuf {
    workspace_bin(package, package, cargo_target_tmpdir)
}

/// [`workspace_binary`] for a binary not named like its package (e.g. `sop-wiki` of
/// `gitlab-harden`).
pub fn workspace_bin(package: &str, bin: &str, cargo_target_tmpdir: &str) -> PathBuf {
    let out = cargo()
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running cargo build -p {package} --bin {bin}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = target_dir(cargo_target_tmpdir).join("debug").join(bin);
    assert!(
        binary.is_file(),
        "{} missing after the build",
        binary.display()
    );
    binary
}

/// Renders an Argo Rollouts notification body template with `vars` (`{"rollout": …}`) by the
/// controller's own engine: Go's text/template with sprig v3.3.0's functions minus `env` and
/// `expandenv` (`sandbox/tools/notification-render`, built by scripts/setup-test-env.sh).
/// Returns the rendered text, or the engine's error.
pub fn render_notification(template: &str, vars: &Value) -> Result<String, String> {
    let tool = common::config::tools_dir().join("go-bin/notification-render");
    assert!(
        tool.is_file(),
        "{} missing: run ./scripts/setup-test-env.sh",
        tool.display()
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (t, v) = (dir.path().join("body.tmpl"), dir.path().join("vars.json"));
    std::fs::write(&t, template).map_err(|e| e.to_string())?;
    std::fs::write(&v, vars.to_string()).map_err(|e| e.to_string())?;
    let out = Command::new(&tool)
        .arg(&t)
        .arg(&v)
        .output()
        .map_err(|e| format!("running {}: {e}", tool.display()))?;
    if out.status.success() {
        String::from_utf8(out.stdout).map_err(|e| e.to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Prometheus' HTTP API (`/api/v1/query`), for assertions on what a real Prometheus computed.
pub struct PrometheusApi {
    pub url: String,
    http: reqwest::Client,
}

impl PrometheusApi {
    pub fn new(url: &str) -> Self {
        common::cli::install_crypto_provider();
        Self {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The samples of `expr` at `time` (Unix seconds; default: now). Panics on a query error.
    pub async fn query(&self, expr: &str, time: Option<f64>) -> Vec<Value> {
        let mut params = vec![("query", expr.to_owned())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let r: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{expr}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The values of an instant vector (what Argo Rollouts gets as `result`).
    pub async fn values(&self, expr: &str, time: Option<f64>) -> Vec<f64> {
        self.query(expr, time)
            .await
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
            .collect()
    }

    /// The first value now, if any.
    pub async fn scalar(&self, expr: &str) -> Option<f64> {
        self.values(expr, None).await.first().copied()
    }

    /// Waits (60 s at most) until `expr` evaluates to at least `min`.
    pub async fn wait_for(&self, expr: &str, min: f64) {
        for _ in 0..600 {
            if self.scalar(expr).await.is_some_and(|v| v >= min) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus never saw {expr} >= {min}");
    }
}

/// A port reserved on 127.0.0.1: bound, never listening, so a connection to it is refused and
/// no other process can take it while the test runs (a loopback "bad next hop").
pub struct DeadPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl DeadPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        Self {
            _socket: socket,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Default for DeadPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A request to the sandbox's OpenBao with its root token (tests arrange and inspect state with it;
/// phases never see it).
pub fn vault(
    sandbox: &crate::Sandbox,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", sandbox.get("VAULT_ADDR")))
        .header("X-Vault-Token", sandbox.get("VAULT_TOKEN"))
}

/// `GET /v1/<path>` as root: the answer's `data`, or `None` on 404.
pub async fn vault_read(sandbox: &crate::Sandbox, path: &str) -> Option<Value> {
    let resp = vault(sandbox, reqwest::Method::GET, path)
        .send()
        .await
        .expect("OpenBao answers");
    if resp.status() == 404 {
        return None;
    }
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    Some(resp.json::<Value>().await.expect("JSON")["data"].clone())
}

/// Mounts KV v2 at `kv/`, as phase 13 does before the phases that write under it.
pub async fn mount_kv(sandbox: &crate::Sandbox) {
    let resp = vault(sandbox, reqwest::Method::POST, "sys/mounts/kv")
        .json(&serde_json::json!({"type": "kv", "options": {"version": "2"}}))
        .send()
        .await
        .expect("OpenBao answers");
    assert!(
        resp.status().is_success(),
        "mounting kv/: {}",
        resp.status()
    );
}

/// `resourceVersion` of each object (`None`: absent). Any Kubernetes write changes it, so equal
/// lists before and after a run prove the run wrote nothing.
pub async fn resource_versions(
    kube: &common::kube::KubeClient,
    refs: &[Value],
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for r in refs {
        out.push(kube.get(r).await.expect("reading an object").map(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }));
    }
    out
}

/// Asserts that none of `secrets` (each non-empty) appears in any of `outputs` (a run's stdout
/// and stderr); the message names neither.
pub fn assert_not_printed<'a>(outputs: impl IntoIterator<Item = &'a str>, secrets: &[&str]) {
    let outputs: Vec<&str> = outputs.into_iter().collect();
    for secret in secrets {
        assert!(!secret.is_empty(), "a known secret is empty");
        for output in &outputs {
            assert!(!output.contains(secret), "a secret was printed");
        }
    }
}

/// `(action, "resource name")` of every change of a plan's JSON `changes` (or row of an
/// `--adopt-report`'s `leftovers`) whose reason is a leftover of the platform's bash phases
/// ([`common::contract::LEFT_BY_BASH`]), in plan order.
pub fn bash_leftover_rows(changes: &Value) -> Vec<(String, String)> {
    changes
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|c| {
            c["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with(common::contract::LEFT_BY_BASH))
        })
        .map(|c| {
            (
                c["action"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{} {}",
                    c["resource"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}
