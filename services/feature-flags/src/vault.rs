//! Reading flags from Vault's KV v2 HTTP API (list, metadata, data), with a token.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{FLAGS_FOLDER, Flag, KV_MOUNT, valid_segment};

/// A reader of `kv/feature-flags/` with a Vault token (renewed by logging in again when Vault
/// refuses it: a Kubernetes login's token expires).
#[derive(Clone)]
pub struct FlagStore {
    http: reqwest::Client,
    addr: String,
    source: TokenSource,
    token: std::sync::Arc<tokio::sync::RwLock<Option<String>>>,
}

impl FlagStore {
    /// `addr` is `VAULT_ADDR`; the token is never logged.
    pub fn new(addr: &str, source: TokenSource) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            addr: addr.trim_end_matches('/').to_owned(),
            source,
            token: std::sync::Arc::default(),
        })
    }

    async fn token(&self, fresh: bool) -> anyhow::Result<String> {
        if !fresh {
            if let Some(token) = self.token.read().await.clone() {
                return Ok(token);
            }
        }
        let token = self.source.token(&self.addr).await?;
        *self.token.write().await = Some(token.clone());
        Ok(token)
    }

    async fn get(&self, what: &str, path: &str, list: bool) -> anyhow::Result<Option<Value>> {
        let url = format!("{}/v1/{path}", self.addr);
        let mut response = None;
        // A refused token is replaced once (expired), then the answer stands.
        for fresh in [false, true] {
            let mut request = self
                .http
                .get(&url)
                .header("X-Vault-Token", self.token(fresh).await?);
            if list {
                request = request.query(&[("list", "true")]);
            }
            let answer = request
                .send()
                .await
                .with_context(|| format!("GET {url} ({what}): Vault did not answer"))?;
            let refused = answer.status() == reqwest::StatusCode::FORBIDDEN;
            response = Some(answer);
            if !refused || matches!(self.source, TokenSource::Token(_)) {
                break;
            }
        }
        let response = response.context("no request was sent (a bug)")?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            bail!(
                "{status} from Vault on GET {url} ({what}): {body}{}",
                if status == reqwest::StatusCode::FORBIDDEN {
                    " — the token's policy must allow read and list on kv/data/feature-flags/* and kv/metadata/feature-flags/*"
                } else {
                    ""
                }
            );
        }
        Ok(Some(response.json().await.with_context(|| {
            format!("GET {url} ({what}): not JSON")
        })?))
    }

    /// Names under a KV folder (`keys` of a LIST); folders keep their trailing `/`.
    async fn list(&self, folder: &str) -> anyhow::Result<Vec<String>> {
        let answer = self
            .get(
                &format!("listing {folder}"),
                &format!("{KV_MOUNT}/metadata/{folder}"),
                true,
            )
            .await?;
        Ok(answer
            .and_then(|a| a["data"]["keys"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect())
    }

    /// One string field of a KV v2 secret (`path` under the mount), if present.
    pub async fn kv_field(&self, path: &str, key: &str) -> anyhow::Result<Option<String>> {
        let answer = self
            .get(
                &format!("reading {KV_MOUNT}/{path}"),
                &format!("{KV_MOUNT}/data/{path}"),
                false,
            )
            .await?;
        Ok(answer.and_then(|a| a["data"]["data"][key].as_str().map(str::to_owned)))
    }

    /// Services that have flags.
    pub async fn services(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .list(FLAGS_FOLDER)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_suffix('/').map(str::to_owned))
            .filter(|k| valid_segment(k))
            .collect())
    }

    /// Every flag of `service`, sorted by name. Names that are not valid segments are skipped
    /// (and logged): they could not be asked for.
    pub async fn flags(&self, service: &str) -> anyhow::Result<Vec<Flag>> {
        let mut out = Vec::new();
        for name in self.list(&format!("{FLAGS_FOLDER}/{service}")).await? {
            if name.ends_with('/') || !valid_segment(&name) {
                tracing::warn!(service, flag = %name, "skipped: not a flag name (lowercase letters, digits, '-', '_')");
                continue;
            }
            let path = format!("{FLAGS_FOLDER}/{service}/{name}");
            let Some(meta) = self
                .get(
                    &format!("metadata of {path}"),
                    &format!("{KV_MOUNT}/metadata/{path}"),
                    false,
                )
                .await?
            else {
                continue;
            };
            let Some(data) = self
                .get(
                    &format!("reading {path}"),
                    &format!("{KV_MOUNT}/data/{path}"),
                    false,
                )
                .await?
            else {
                // Deleted (soft) current version: not a flag any more.
                continue;
            };
            let fields = &data["data"]["data"];
            let text = |key: &str| fields[key].as_str().unwrap_or_default().to_owned();
            let created = meta["data"]["created_time"].as_str().unwrap_or_default();
            let created_day = common::dates::parse(created.get(..10).unwrap_or_default())
                .with_context(|| {
                    format!("{path}: Vault's created_time {created:?} is not a date")
                })?;
            out.push(Flag {
                service: service.to_owned(),
                name,
                enabled: matches!(fields["enabled"].as_str(), Some("true"))
                    || fields["enabled"] == Value::Bool(true),
                owner: text("owner"),
                description: text("description"),
                created_day,
                created: common::dates::format(created_day),
            });
        }
        Ok(out)
    }
}

/// Where the token comes from (never a command-line argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `VAULT_TOKEN`.
    Token(String),
    /// `VAULT_TOKEN_FILE`: a file holding the token (a Vault Agent sink, a mounted Secret).
    File(String),
    /// `VAULT_K8S_ROLE`: log in with the pod's service account token (Kubernetes auth at
    /// `VAULT_K8S_MOUNT`, default `kubernetes`; the token file at `VAULT_K8S_TOKEN_PATH`).
    Kubernetes {
        mount: String,
        role: String,
        jwt_path: String,
    },
}

/// The service account token's default path in a pod.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl TokenSource {
    /// From the environment: `VAULT_TOKEN`, else `VAULT_TOKEN_FILE`, else `VAULT_K8S_ROLE`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let set = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = set("VAULT_TOKEN") {
            return Ok(Self::Token(token));
        }
        if let Some(file) = set("VAULT_TOKEN_FILE") {
            return Ok(Self::File(file));
        }
        if let Some(role) = set("VAULT_K8S_ROLE") {
            return Ok(Self::Kubernetes {
                mount: set("VAULT_K8S_MOUNT").unwrap_or_else(|| "kubernetes".into()),
                role,
                jwt_path: set("VAULT_K8S_TOKEN_PATH")
                    .unwrap_or_else(|| SERVICE_ACCOUNT_TOKEN.into()),
            });
        }
        bail!(
            "no Vault credentials: set VAULT_K8S_ROLE (Kubernetes auth, in a pod), VAULT_TOKEN_FILE or VAULT_TOKEN"
        )
    }

    /// The token, logging in when needed.
    pub async fn token(&self, addr: &str) -> anyhow::Result<String> {
        match self {
            Self::Token(token) => Ok(token.clone()),
            Self::File(file) => {
                let token = std::fs::read_to_string(file)
                    .with_context(|| format!("reading VAULT_TOKEN_FILE {file}"))?;
                anyhow::ensure!(!token.trim().is_empty(), "VAULT_TOKEN_FILE {file} is empty");
                Ok(token.trim().to_owned())
            }
            Self::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let jwt = std::fs::read_to_string(jwt_path)
                    .with_context(|| format!("reading the service account token {jwt_path}"))?;
                let url = format!("{}/v1/auth/{mount}/login", addr.trim_end_matches('/'));
                let response = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?
                    .post(&url)
                    .json(&serde_json::json!({"role": role, "jwt": jwt.trim()}))
                    .send()
                    .await
                    .with_context(|| {
                        format!(
                            "POST {url} (Kubernetes login as role {role}): Vault did not answer"
                        )
                    })?;
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if !status.is_success() {
                    bail!(
                        "{status} from Vault on POST {url} (Kubernetes login as role {role}): {} — the role must bind this pod's service account and namespace",
                        body["errors"]
                    );
                }
                body["auth"]["client_token"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("POST {url}: no client_token in Vault's answer"))
            }
        }
    }
}
