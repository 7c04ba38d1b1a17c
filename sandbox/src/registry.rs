//! A real OCI registry on loopback for the release path's tests: Debian's `docker-registry` (the
//! distribution registry 2.8) with htpasswd (bcrypt) authentication, standing in for Harbor's
//! registry. Its users are Harbor's robot accounts as the Harbor stand-in issued them, so the
//! credentials phase 14 put in Vault are the ones that push and pull here. Plain HTTP on
//! 127.0.0.1: cosign and go-containerregistry use http for loopback registries by themselves;
//! buildah, skopeo and syft are told so (`--tls-verify=false`, `SYFT_REGISTRY_INSECURE_USE_HTTP`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running registry; stopped on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`: the registry host images are named with.
    pub host: String,
    pub dir: PathBuf,
}

fn find(program: &str) -> anyhow::Result<PathBuf> {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{program} not found: run ./scripts/setup-test-env.sh (Debian docker-registry, apache2-utils)"
    )
}

impl Registry {
    /// Starts a registry in `dir` whose users are `(name, password)`; passwords go to htpasswd
    /// through stdin, never on a command line.
    pub fn start(dir: &Path, users: &[(String, String)]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("data"))?;
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, "")?;
        let tool = find("htpasswd")?;
        for (name, password) in users {
            let mut child = Command::new(&tool)
                .args(["-B", "-i"])
                .arg(&htpasswd)
                .arg(name)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("running htpasswd")?;
            child
                .stdin
                .take()
                .context("htpasswd stdin")?
                .write_all(password.as_bytes())?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "htpasswd for {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: {}\nauth:\n  htpasswd:\n    realm: cicd-sandbox\n    path: {}\n",
            dir.join("data").display(),
            crate::keys::random_token(16),
            htpasswd.display()
        );
        std::fs::write(dir.join("config.yml"), config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(find("docker-registry")?)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let registry = Self {
            child,
            host,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // /v2/ answers 401 once it serves (authentication required).
            if let Ok(mut stream) = std::net::TcpStream::connect(&registry.host) {
                use std::io::Read as _;
                let _ = stream.write_all(
                    format!(
                        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                        registry.host
                    )
                    .as_bytes(),
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 401") {
                    return Ok(registry);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not start: {}",
                    std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
