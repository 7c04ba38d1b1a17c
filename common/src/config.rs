//! Configuration compatible with the existing platform: `scripts/.env`, `cluster/kubeconfig-rke2.yaml`,
//! `cluster/vault-init.json`, `GITLAB_API_TOKEN` / `scripts/.gitlab-api-token`. Service URLs derive
//! from `DOMAIN`, each overridable. Names are the constants of [`crate::env`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::env;
use crate::error::{Error, Result};
use crate::redact;

/// Default locations, relative to the platform directory (`CICD_PLATFORM_DIR`, else the current directory).
pub const DEFAULT_ENV_FILE: &str = "scripts/.env";
/// Kubeconfig of the RKE2 cluster, written by the base platform (`KUBECONFIG` overrides it).
pub const DEFAULT_KUBECONFIG: &str = "cluster/kubeconfig-rke2.yaml";
/// Vault's init output, read for `.root_token` when `VAULT_TOKEN` is unset (`VAULT_INIT_FILE`
/// overrides it).
pub const DEFAULT_VAULT_INIT_FILE: &str = "cluster/vault-init.json";
/// File holding the GitLab API token when `GITLAB_API_TOKEN` is unset (`GITLAB_API_TOKEN_FILE`
/// overrides it).
pub const DEFAULT_GITLAB_TOKEN_FILE: &str = "scripts/.gitlab-api-token";
/// The platform's engineering docs, which phase 12b publishes as the SOP wiki
/// (`SOP_WIKI_DOCS_DIR` overrides it).
pub const DEFAULT_SOP_WIKI_DOCS_DIR: &str = "docs/engineering";

/// Settings merged from the env file and the process environment (the environment wins).
/// Empty values count as unset: the base platform leaves keys empty until it generates them.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    platform_dir: PathBuf,
    env_file: Option<PathBuf>,
}

/// Key names whose values are secrets wherever they appear in the env file.
fn is_secret_key(key: &str) -> bool {
    ([
        "PASSWORD",
        "TOKEN",
        "SECRET",
        "PRIVATE_KEY",
        "CLIENT_SECRET",
        "API_KEY",
        "PASSPHRASE",
        "CREDENTIAL",
    ]
    .iter()
    .any(|m| key.contains(m))
        || key.ends_with("_PASS")
        || key.ends_with("_DSN"))
        && !key.ends_with("_FILE")
        && !key.ends_with("_PATH")
        // A mode, not a secret: its value ("client", "reviewer") would be masked in every message.
        && key != env::VAULT_K8S_TOKEN_REVIEWER
}

impl Environment {
    /// Loads `env_file` (explicit: must exist) or `scripts/.env` under the platform directory
    /// (default: optional), then overlays the process environment.
    pub fn load(explicit_env_file: Option<&Path>) -> Result<Self> {
        Self::load_from(explicit_env_file, std::env::vars())
    }

    /// As [`Environment::load`] with a given process environment (tests).
    pub fn load_from(
        explicit_env_file: Option<&Path>,
        process_env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let process: BTreeMap<String, String> = process_env.into_iter().collect();
        let platform_dir = process
            .get(env::CICD_PLATFORM_DIR)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let (env_file, required) = match explicit_env_file {
            Some(path) => (Some(path.to_path_buf()), true),
            None => match process.get(env::CICD_ENV_FILE).filter(|v| !v.is_empty()) {
                Some(path) => (Some(PathBuf::from(path)), true),
                None => (Some(platform_dir.join(DEFAULT_ENV_FILE)), false),
            },
        };
        let mut vars = BTreeMap::new();
        let mut loaded = None;
        if let Some(path) = env_file {
            if path.exists() {
                vars = read_env_file(&path, &|name| process.get(name).cloned())?;
                warn_if_readable_by_others(&path);
                loaded = Some(path);
            } else if required {
                return Err(Error::Config(format!(
                    "env file {} does not exist: pass an existing file with --env-file or {} (the platform keeps it in {DEFAULT_ENV_FILE})",
                    path.display(),
                    env::CICD_ENV_FILE
                )));
            }
        }
        for (key, value) in process {
            vars.insert(key, value);
        }
        vars.retain(|_, v| !v.trim().is_empty());
        for (key, value) in &vars {
            if is_secret_key(key) {
                redact::register(value);
            }
        }
        Ok(Self {
            vars,
            platform_dir,
            env_file: loaded,
        })
    }

    /// A setting, if set and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The env file that was read, if any.
    pub fn env_file(&self) -> Option<&Path> {
        self.env_file.as_deref()
    }

    /// A path setting, resolved against the platform directory when relative.
    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        let raw = PathBuf::from(self.get(name).unwrap_or(default));
        if raw.is_absolute() {
            raw
        } else {
            self.platform_dir.join(raw)
        }
    }

    /// Deserializes a settings struct with envy (field `foo_bar` reads `FOO_BAR`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        envy::from_iter(self.vars.iter().map(|(k, v)| (k.clone(), v.clone()))).map_err(|e| {
            Error::Config(format!(
                "{e}: fix the value in the env file or the environment"
            ))
        })
    }
}

/// Reads the env file as bash reads it (`common::dotenv`), `$NAME` falling back to `process`.
fn read_env_file(
    path: &Path,
    process: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("reading env file {}: {e}", path.display())))?;
    crate::dotenv::parse(&text, process).map_err(|e| {
        Error::Config(format!(
            "malformed env file {}: {e} (bash sources the same file, so it must mean the same to both)",
            path.display()
        ))
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} holds secrets but is readable by group/others: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}
#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// `KUBECONFIG` as kubectl reads it: a colon-separated list, each entry with a leading `~/`
/// meaning the home directory and a relative one resolved against the platform directory.
fn kubeconfig_paths(env: &Environment) -> Vec<PathBuf> {
    let Some(list) = env.get(env::KUBECONFIG) else {
        return vec![env.path(env::KUBECONFIG, DEFAULT_KUBECONFIG)];
    };
    let home = env.get("HOME").map(PathBuf::from);
    list.split(':')
        .filter(|p| !p.is_empty())
        .map(|p| match (p.strip_prefix("~/"), &home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ if Path::new(p).is_absolute() => PathBuf::from(p),
            _ => env.platform_dir.join(p),
        })
        .collect()
}

/// Refuses plain `http://` to a service that is not on a loopback address: the phases send
/// admin tokens to these URLs. `CICD_ALLOW_INSECURE_HTTP=true` accepts the risk, with a warning
/// (once per URL). In-cluster service URLs the phases write into manifests are not checked here:
/// they never carry this tool's tokens.
pub fn check_transport(name: &str, url: &str, allow_insecure: bool) -> Result<()> {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(()); // from_env already refused it
    };
    if parsed.scheme() != "http" {
        return Ok(());
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        return Ok(());
    }
    let shown = redact::redact(url);
    if !allow_insecure {
        return Err(Error::Config(format!(
            "{name}={shown} uses plain http://: its token would cross the network unencrypted; use https://, or set {}=true to accept that risk (loopback addresses are always allowed)",
            env::CICD_ALLOW_INSECURE_HTTP
        )));
    }
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !warned.iter().any(|u| u == url) {
        warned.push(url.to_owned());
        tracing::warn!(
            "{name}={shown} uses plain http:// ({}=true): tokens and passwords sent to it can be read and changed on the network",
            env::CICD_ALLOW_INSECURE_HTTP
        );
    }
    Ok(())
}

/// Where the CI tools live (gitlab-ci-local, the scanners, Python with jsonschema and casbin):
/// `CICD_TOOLS_DIR`, else `~/.cache/cicd-buildout/tools` (installed by `scripts/setup-test-env.sh`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os(env::CICD_TOOLS_DIR).map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cicd-buildout/tools")
        },
        PathBuf::from,
    )
}

/// A secret together with where it came from, so errors can name the place to fix.
#[derive(Clone)]
pub struct Credential {
    /// The secret, wrapped so that `Debug` and logs never show it.
    pub value: SecretString,
    /// Where it came from, e.g. `VAULT_TOKEN` or a file path: error messages name it as the place
    /// to fix.
    pub source: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential(from {}, {})", self.source, redact::MASK)
    }
}

#[derive(Debug, Deserialize)]
struct HttpSettings {
    #[serde(default = "default_timeout")]
    cicd_http_timeout_secs: u64,
    #[serde(default = "default_retries")]
    cicd_http_retries: u32,
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    4
}

/// What every phase needs to reach the platform.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// `DOMAIN`: the platform's base domain, from which unset service URLs derive.
    pub domain: Option<String>,
    /// GitLab's URL without a trailing slash (`GITLAB_URL`, else `https://gitlab.$DOMAIN`).
    pub gitlab_url: Option<String>,
    /// Vault's address (`VAULT_ADDR`, else `https://vault.$DOMAIN`).
    pub vault_addr: Option<String>,
    /// Harbor's URL (`HARBOR_URL`, else `https://harbor.$DOMAIN`).
    pub harbor_url: Option<String>,
    /// Keycloak's URL (`KEYCLOAK_URL`, else `https://keycloak.$DOMAIN`).
    pub keycloak_url: Option<String>,
    /// Argo CD's URL (`ARGOCD_URL`, else `https://argo.$DOMAIN`).
    pub argocd_url: Option<String>,
    /// Prometheus' URL (`PROMETHEUS_URL`, else `https://prometheus.$DOMAIN`).
    pub prometheus_url: Option<String>,
    /// Grafana's URL (`GRAFANA_URL`, else `https://grafana.$DOMAIN`).
    pub grafana_url: Option<String>,
    /// Kubeconfig paths (`KUBECONFIG`, a colon-separated list as kubectl reads it, else
    /// [`DEFAULT_KUBECONFIG`]); only [`PlatformConfig::require_kubeconfig`] checks them.
    pub kubeconfig: Vec<PathBuf>,
    /// Vault's init output (`VAULT_INIT_FILE`, else [`DEFAULT_VAULT_INIT_FILE`]), the fallback
    /// source of the Vault token.
    pub vault_init_file: PathBuf,
    /// The GitLab token file (`GITLAB_API_TOKEN_FILE`, else [`DEFAULT_GITLAB_TOKEN_FILE`]).
    pub gitlab_token_file: PathBuf,
    /// PEM bundle of the platform's private CA (`CICD_CA_BUNDLE`), checked to exist; trusted in
    /// addition to the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// Timeout of one HTTP request (`CICD_HTTP_TIMEOUT_SECS`, default 30 s, at least 1 s).
    pub http_timeout: Duration,
    /// Retries of an idempotent request (`CICD_HTTP_RETRIES`, default 4).
    pub http_retries: u32,
    /// Plain `http://` to a non-loopback service is allowed (`CICD_ALLOW_INSECURE_HTTP=true`).
    pub allow_insecure_http: bool,
    /// How long an apply waits for a CRD (`CICD_CRD_WAIT_SECS`, default 300 s, 1 s to 1 h).
    crd_wait: Duration,
    env: Environment,
}

impl PlatformConfig {
    /// A configuration for unit tests: domain `example.com`, no platform directory, plus `vars`
    /// (as if set in the process environment). Reads no file.
    pub fn example(vars: &[(&str, &str)]) -> Result<Self> {
        let mut process = vec![
            ("CICD_PLATFORM_DIR".to_owned(), "/nonexistent".to_owned()),
            ("DOMAIN".to_owned(), "example.com".to_owned()),
        ];
        process.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Self::from_env(&Environment::load_from(None, process)?)
    }

    /// The configuration of loaded settings: derives unset service URLs from `DOMAIN`, resolves
    /// paths against the platform directory, and fails when a URL does not parse or the CA bundle
    /// is missing.
    pub fn from_env(env: &Environment) -> Result<Self> {
        let http: HttpSettings = env.parse()?;
        let domain = env.get(env::DOMAIN).map(str::to_owned);
        let derive = |name: &str, host: &str| -> Option<String> {
            env.get(name)
                .map(|u| u.trim_end_matches('/').to_owned())
                .or_else(|| domain.as_ref().map(|d| format!("https://{host}.{d}")))
        };
        let cfg = Self {
            gitlab_url: derive(env::GITLAB_URL, "gitlab"),
            vault_addr: derive(env::VAULT_ADDR, "vault"),
            harbor_url: derive(env::HARBOR_URL, "harbor"),
            keycloak_url: derive(env::KEYCLOAK_URL, "keycloak"),
            argocd_url: derive(env::ARGOCD_URL, "argo"),
            prometheus_url: derive(env::PROMETHEUS_URL, "prometheus"),
            grafana_url: derive(env::GRAFANA_URL, "grafana"),
            kubeconfig: kubeconfig_paths(env),
            vault_init_file: env.path(env::VAULT_INIT_FILE, DEFAULT_VAULT_INIT_FILE),
            gitlab_token_file: env.path(env::GITLAB_API_TOKEN_FILE, DEFAULT_GITLAB_TOKEN_FILE),
            ca_bundle: env
                .get(env::CICD_CA_BUNDLE)
                .map(|_| env.path(env::CICD_CA_BUNDLE, "")),
            http_timeout: Duration::from_secs(http.cicd_http_timeout_secs.max(1)),
            http_retries: http.cicd_http_retries,
            allow_insecure_http: match env.get(env::CICD_ALLOW_INSECURE_HTTP) {
                None | Some("" | "false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(Error::Config(format!(
                        "{}={other:?}: use true or false",
                        env::CICD_ALLOW_INSECURE_HTTP
                    )));
                }
            },
            crd_wait: match env.get(env::CICD_CRD_WAIT_SECS).map(str::trim) {
                None | Some("") => Duration::from_secs(300),
                Some(v) => match v.parse::<u64>() {
                    Ok(secs @ 1..=3600) => Duration::from_secs(secs),
                    _ => {
                        return Err(Error::Config(format!(
                            "{}={v:?} is not a number of seconds from 1 to 3600 (default 300)",
                            env::CICD_CRD_WAIT_SECS
                        )));
                    }
                },
            },
            domain,
            env: env.clone(),
        };
        for (name, url) in [
            (env::GITLAB_URL, &cfg.gitlab_url),
            (env::VAULT_ADDR, &cfg.vault_addr),
            (env::HARBOR_URL, &cfg.harbor_url),
            (env::KEYCLOAK_URL, &cfg.keycloak_url),
            (env::ARGOCD_URL, &cfg.argocd_url),
        ] {
            if let Some(url) = url {
                url::Url::parse(url).map_err(|e| {
                    Error::Config(format!(
                        "{name}={url} is not a URL ({e}): use e.g. https://host.example.com"
                    ))
                })?;
            }
        }
        if let Some(ca) = &cfg.ca_bundle {
            if !ca.is_file() {
                return Err(Error::Config(format!(
                    "{}={} does not exist: point it at the PEM bundle of the platform CA",
                    env::CICD_CA_BUNDLE,
                    ca.display()
                )));
            }
        }
        Ok(cfg)
    }

    /// The same configuration with `vars` set over the loaded settings (as if in the process
    /// environment): e.g. the readiness report observing one group with that group's token.
    pub fn with_settings(&self, vars: &[(&str, &str)]) -> Result<Self> {
        let mut env = self.env.clone();
        for (name, value) in vars {
            if value.trim().is_empty() {
                env.vars.remove(*name);
            } else {
                if is_secret_key(name) {
                    redact::register(value);
                }
                env.vars.insert((*name).to_owned(), (*value).to_owned());
            }
        }
        Self::from_env(&env)
    }

    /// The merged settings, for phase-specific structs.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// How long an apply waits for a CRD to be Established (`CICD_CRD_WAIT_SECS`, default 300 s;
    /// a value that is not a number from 1 to 3600 fails the configuration).
    pub fn crd_wait(&self) -> Duration {
        self.crd_wait
    }

    /// A service URL, or a configuration error naming both ways to set it.
    pub fn require_url(&self, name: &str) -> Result<&str> {
        let value = match name {
            env::GITLAB_URL => &self.gitlab_url,
            env::VAULT_ADDR => &self.vault_addr,
            env::HARBOR_URL => &self.harbor_url,
            env::KEYCLOAK_URL => &self.keycloak_url,
            env::ARGOCD_URL => &self.argocd_url,
            _ => &None,
        };
        let url = value.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "{name} is not set and cannot be derived: set DOMAIN or {name} in scripts/.env"
            ))
        })?;
        check_transport(name, url, self.allow_insecure_http)?;
        Ok(url)
    }

    /// The Vault token: `VAULT_TOKEN`, else `.root_token` of `cluster/vault-init.json`.
    pub fn vault_token(&self) -> Result<Credential> {
        if let Some(token) = self.env.get(env::VAULT_TOKEN) {
            redact::register(token);
            return Ok(Credential {
                value: token.to_owned().into(),
                source: env::VAULT_TOKEN.to_owned(),
            });
        }
        let path = &self.vault_init_file;
        let missing = || {
            Error::Config(format!(
                "no Vault token: set {} or provide {} with .root_token (written when the base platform initialised Vault)",
                env::VAULT_TOKEN,
                path.display()
            ))
        };
        let text = std::fs::read_to_string(path).map_err(|_| missing())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "{} is not valid JSON ({e}): restore it from the Vault init output",
                path.display()
            ))
        })?;
        let token = json
            .get("root_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(missing)?;
        redact::register(token);
        Ok(Credential {
            value: token.to_owned().into(),
            source: format!("{} (.root_token)", path.display()),
        })
    }

    /// The GitLab API token: `GITLAB_API_TOKEN`, else the token file. `None` when neither is set.
    pub fn gitlab_token(&self) -> Result<Option<Credential>> {
        if let Some(token) = self.env.get(env::GITLAB_API_TOKEN) {
            redact::register(token);
            return Ok(Some(Credential {
                value: token.to_owned().into(),
                source: env::GITLAB_API_TOKEN.to_owned(),
            }));
        }
        match std::fs::read_to_string(&self.gitlab_token_file) {
            Ok(text) if !text.trim().is_empty() => {
                redact::register(text.trim());
                Ok(Some(Credential {
                    value: text.trim().to_owned().into(),
                    source: self.gitlab_token_file.display().to_string(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// The kubeconfig files that exist, in order (kubectl skips missing files of a list); an
    /// error when none does.
    pub fn require_kubeconfig(&self) -> Result<Vec<&Path>> {
        let found: Vec<&Path> = self
            .kubeconfig
            .iter()
            .map(PathBuf::as_path)
            .filter(|p| p.is_file())
            .collect();
        if found.is_empty() {
            let shown: Vec<String> = self
                .kubeconfig
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(Error::Config(format!(
                "kubeconfig {} not found: set {} or copy the cluster's kubeconfig there (phase 1 of the base platform writes it)",
                shown.join(":"),
                env::KUBECONFIG
            )));
        }
        Ok(found)
    }

    /// PEM text of the private CA bundle, if configured.
    pub fn ca_pem(&self) -> Result<Option<String>> {
        self.ca_bundle
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p).map_err(|e| {
                    Error::Config(format!("cannot read CA bundle {}: {e}", p.display()))
                })
            })
            .transpose()
    }
}

/// Exposes a credential for an Authorization header (the only place secrets leave their wrapper).
pub fn expose(credential: &Credential) -> &str {
    credential.value.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env_of(file: Option<&str>, process: &[(&str, &str)]) -> Result<Environment> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.env");
        if let Some(text) = file {
            std::fs::File::create(&path)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        Environment::load_from(
            Some(&path),
            process
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn urls_derive_from_domain_and_can_be_overridden() {
        let env = env_of(
            Some("DOMAIN=example.org\nHARBOR_URL=https://registry.example.org/\n"),
            &[],
        )
        .unwrap();
        let cfg = PlatformConfig::from_env(&env).unwrap();
        assert_eq!(
            cfg.gitlab_url.as_deref(),
            Some("https://gitlab.example.org")
        );
        assert_eq!(cfg.vault_addr.as_deref(), Some("https://vault.example.org"));
        assert_eq!(cfg.argocd_url.as_deref(), Some("https://argo.example.org"));
        assert_eq!(
            cfg.harbor_url.as_deref(),
            Some("https://registry.example.org")
        );
    }

    /// Plain http:// to a non-loopback service is refused unless the risk is accepted; the
    /// sandbox's loopback URLs always pass (issue 18).
    #[test]
    fn plain_http_is_refused_off_loopback() {
        let cfg = |vars: &[(&str, &str)]| PlatformConfig::example(vars).unwrap();
        let c = cfg(&[("GITLAB_URL", "http://user:pw@gitlab.internal")]);
        let e = c.require_url(env::GITLAB_URL).unwrap_err().to_string();
        assert!(e.contains("uses plain http://"), "{e}");
        assert!(e.contains("CICD_ALLOW_INSECURE_HTTP=true"), "{e}");
        assert!(!e.contains("pw@"), "user info is not printed: {e}");
        for loopback in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            let c = cfg(&[("VAULT_ADDR", loopback)]);
            assert_eq!(c.require_url(env::VAULT_ADDR).unwrap(), loopback);
        }
        let c = cfg(&[
            ("HARBOR_URL", "http://harbor.internal"),
            ("CICD_ALLOW_INSECURE_HTTP", "true"),
        ]);
        assert_eq!(
            c.require_url(env::HARBOR_URL).unwrap(),
            "http://harbor.internal"
        );
        assert!(PlatformConfig::example(&[("CICD_ALLOW_INSECURE_HTTP", "yes")]).is_err());
    }

    /// KUBECONFIG as kubectl reads it: a list, `~/` for the home directory (issue 18).
    #[test]
    fn kubeconfig_is_a_list_with_home() {
        let c = PlatformConfig::example(&[
            ("HOME", "/home/op"),
            ("KUBECONFIG", "~/.kube/config:/etc/rke2/rke2.yaml::rel.yaml"),
        ])
        .unwrap();
        assert_eq!(
            c.kubeconfig,
            [
                PathBuf::from("/home/op/.kube/config"),
                PathBuf::from("/etc/rke2/rke2.yaml"),
                PathBuf::from("/nonexistent/rel.yaml"),
            ]
        );
        let e = c.require_kubeconfig().unwrap_err().to_string();
        assert!(
            e.contains("/home/op/.kube/config:/etc/rke2/rke2.yaml"),
            "{e}"
        );
    }

    #[test]
    fn an_invalid_crd_wait_is_an_error_not_a_default() {
        for bad in ["5m", "-1", "0", "100000"] {
            let e = PlatformConfig::example(&[("CICD_CRD_WAIT_SECS", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("CICD_CRD_WAIT_SECS"), "{bad}: {e}");
        }
        let c = PlatformConfig::example(&[("CICD_CRD_WAIT_SECS", " 42 ")]).unwrap();
        assert_eq!(c.crd_wait(), Duration::from_secs(42));
    }

    #[test]
    fn process_environment_wins_and_empty_values_are_unset() {
        let env = env_of(
            Some("DOMAIN=file.org\nVAULT_ADDR=\n"),
            &[("DOMAIN", "proc.org")],
        )
        .unwrap();
        let cfg = PlatformConfig::from_env(&env).unwrap();
        assert_eq!(cfg.vault_addr.as_deref(), Some("https://vault.proc.org"));
    }

    #[test]
    fn malformed_env_file_names_the_file_and_the_fix() {
        let err = env_of(Some("DOMAIN=ok\nthis line is not an assignment\n"), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("malformed env file") && msg.contains("KEY=value"),
            "{msg}"
        );
    }

    #[test]
    fn explicit_env_file_must_exist() {
        let err = env_of(None, &[]).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn vault_token_comes_from_vault_init_json_when_unset() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("vault-init.json");
        std::fs::write(&init, r#"{"root_token":"hvs.fromInitFile123"}"#).unwrap();
        let env = env_of(Some(&format!("VAULT_INIT_FILE={}\n", init.display())), &[]).unwrap();
        let cred = PlatformConfig::from_env(&env)
            .unwrap()
            .vault_token()
            .unwrap();
        assert_eq!(cred.value.expose_secret(), "hvs.fromInitFile123");
        assert!(cred.source.contains("root_token"));
        assert!(!format!("{cred:?}").contains("fromInitFile"));
    }

    #[test]
    fn missing_vault_token_says_how_to_provide_one() {
        let env = env_of(Some("VAULT_INIT_FILE=/nonexistent/vault-init.json\n"), &[]).unwrap();
        let err = PlatformConfig::from_env(&env)
            .unwrap()
            .vault_token()
            .unwrap_err();
        assert!(err.to_string().contains("set VAULT_TOKEN"), "{err}");
    }

    #[test]
    fn secret_values_from_the_env_file_are_registered_for_redaction() {
        let _env = env_of(Some("HARBOR_ADMIN_PASSWORD=Harbor-Pa55-xyz\n"), &[]).unwrap();
        assert_eq!(redact::redact("pw Harbor-Pa55-xyz"), "pw (sensitive)");
    }

    #[test]
    fn every_documented_name_is_unique_and_upper_case() {
        let mut seen = std::collections::BTreeSet::new();
        for name in env::ALL {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            );
        }
    }
}
