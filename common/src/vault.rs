//! Vault / `OpenBao` client: vaultrs for policies, KV v2 and transit keys; raw calls through the one
//! [`ApiClient`] where vaultrs falls short (JWT roles with list-valued `bound_claims`, Kubernetes
//! auth, audit devices, mounts with options, logins).

use std::collections::{BTreeMap, HashMap};

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use vaultrs::client::{VaultClient as SdkClient, VaultClientSettingsBuilder};

use crate::config::{Credential, PlatformConfig, expose};
use crate::env;
use crate::error::{Error, Result, error_chain, short_body};
use crate::http::{ApiClient, Fixes, Retry, build_reqwest};
use crate::redact;

const SERVICE: &str = "Vault";

/// A mounted auth method or secrets engine (`sys/auth`, `sys/mounts`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Mount {
    /// The engine or method (`type`), e.g. `kv`, `transit`, `jwt`, `kubernetes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Mount options, e.g. `version: 2` for KV v2; `None` when Vault reports none.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    /// The mount's description.
    #[serde(default)]
    pub description: String,
    /// The mount's accessor (`auth_jwt_1a2b…`), which templated policies name.
    #[serde(default)]
    pub accessor: String,
}

/// An enabled audit device (`sys/audit`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AuditDevice {
    /// The device type (`type`), e.g. `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its options, e.g. `file_path`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// What `kv/metadata/<path>` says of a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KvMetadata {
    /// Number of the newest version.
    pub current_version: u64,
    /// Custom metadata the writer set, e.g. `token-id`, `managed-by`.
    pub custom_metadata: BTreeMap<String, String>,
    /// The current version is soft-deleted or destroyed.
    pub current_deleted: bool,
}

/// A token obtained by a login.
pub struct Login {
    /// The client token the login issued, registered for redaction.
    pub token: SecretString,
    /// The policies attached to that token.
    pub policies: Vec<String>,
}

/// Vault client bound to one address and token.
#[derive(Clone)]
pub struct VaultClient {
    api: ApiClient,
    /// For logins and token-less calls (no `X-Vault-Token`).
    anonymous: ApiClient,
    sdk: std::sync::Arc<SdkClient>,
    addr: String,
    credential: Credential,
    cfg_ca: Option<std::path::PathBuf>,
    reqwest: reqwest::Client,
    retries: u32,
}

fn fixes(addr: &str, source: &str) -> Fixes {
    Fixes {
        unauthorized: format!(
            "the Vault token from {source} is invalid or expired: use the root token or a token with the ci-admin policy"
        ),
        forbidden: format!(
            "the Vault token from {source} was refused (invalid, expired, or lacking rights): use the root token (.root_token of cluster/vault-init.json) or a token with the ci-admin policy"
        ),
        unreachable: format!(
            "check {}={addr}, that Vault is running and unsealed, and for TLS errors set {} to the platform CA bundle",
            env::VAULT_ADDR,
            env::CICD_CA_BUNDLE
        ),
    }
}

/// `GET sys/seal-status` (Vault API docs, /sys/seal-status: unauthenticated): `sealed`,
/// `version`, `t`, `progress`. Needs no token, so it answers before a token is checked.
pub async fn seal_status(cfg: &PlatformConfig) -> Result<Value> {
    let addr = cfg.require_url(env::VAULT_ADDR)?;
    ApiClient::new(SERVICE, addr, build_reqwest(cfg)?, cfg.http_retries)
        .with_fixes(fixes(addr, "no token (an unauthenticated read)"))
        .call_json(
            "reading the seal status",
            Method::GET,
            "v1/sys/seal-status",
            None,
            Retry::Safe,
        )
        .await
}

impl VaultClient {
    /// Connects with the configured address and token (`VAULT_TOKEN` or `cluster/vault-init.json`).
    pub fn connect(cfg: &PlatformConfig) -> Result<Self> {
        let addr = cfg.require_url(env::VAULT_ADDR)?.to_owned();
        let credential = cfg.vault_token()?;
        let reqwest = build_reqwest(cfg)?;
        Self::build(
            &addr,
            credential,
            reqwest,
            cfg.http_retries,
            cfg.ca_bundle.clone(),
            cfg.http_timeout,
        )
    }

    /// A client of the configured Vault with no token yet, for a workload that logs in
    /// ([`VaultClient::login`]) and then acts with [`VaultClient::with_token`].
    pub fn connect_for_login(cfg: &PlatformConfig, who: &str) -> Result<Self> {
        let addr = cfg.require_url(env::VAULT_ADDR)?.to_owned();
        let credential = Credential {
            value: String::new().into(),
            source: format!("no token yet ({who} logs in)"),
        };
        Self::build(
            &addr,
            credential,
            build_reqwest(cfg)?,
            cfg.http_retries,
            cfg.ca_bundle.clone(),
            cfg.http_timeout,
        )
    }

    fn build(
        addr: &str,
        credential: Credential,
        reqwest: reqwest::Client,
        retries: u32,
        cfg_ca: Option<std::path::PathBuf>,
        timeout: std::time::Duration,
    ) -> Result<Self> {
        let f = fixes(addr, &credential.source);
        let api = ApiClient::new(SERVICE, addr, reqwest.clone(), retries)
            .with_auth("x-vault-token", "", credential.clone())
            .with_fixes(f.clone());
        let anonymous = ApiClient::new(SERVICE, addr, reqwest.clone(), retries).with_fixes(f);
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(addr)
            .token(expose(&credential))
            // Explicit: vaultrs would otherwise read VAULT_SKIP_VERIFY/VAULT_CACERT behind our back.
            .verify(true)
            .ca_certs(cfg_ca.iter().map(|p| p.display().to_string()).collect())
            .timeout(Some(timeout));
        let settings = settings
            .build()
            .map_err(|e| Error::Config(format!("Vault client settings: {e}")))?;
        let sdk =
            SdkClient::new(settings).map_err(|e| Error::Config(format!("Vault client: {e}")))?;
        Ok(Self {
            api,
            anonymous,
            sdk: std::sync::Arc::new(sdk),
            addr: addr.to_owned(),
            credential,
            cfg_ca,
            reqwest,
            retries,
        })
    }

    /// A client for the same server acting with another token (e.g. one just obtained by a login).
    pub fn with_token(&self, token: &SecretString, source: &str) -> Result<Self> {
        let credential = Credential {
            value: token.clone(),
            source: source.to_owned(),
        };
        redact::register(expose(&credential));
        Self::build(
            &self.addr,
            credential,
            self.reqwest.clone(),
            self.retries,
            self.cfg_ca.clone(),
            std::time::Duration::from_secs(30),
        )
    }

    /// Vault's address, as configured (`VAULT_ADDR`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Where this client's token came from (for messages).
    pub fn credential_source(&self) -> &str {
        &self.credential.source
    }

    /// The HTTP layer (request counters).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    fn v1(path: &str) -> String {
        format!("v1/{}", path.trim_start_matches('/'))
    }

    /// Reads `path`; `None` on 404. Returns the response's `data`.
    pub async fn read(&self, operation: &str, path: &str) -> Result<Option<Value>> {
        let body: Option<Value> = self.api.get_optional(operation, &Self::v1(path)).await?;
        Ok(body.map(|b| b.get("data").cloned().unwrap_or(Value::Null)))
    }

    /// Writes `body` to `path` (Vault writes are upserts, so they are retried).
    pub async fn write(&self, operation: &str, path: &str, body: &Value) -> Result<Option<Value>> {
        let resp = self
            .api
            .call(
                operation,
                Method::POST,
                &Self::v1(path),
                Some(body),
                Retry::Safe,
            )
            .await?;
        if resp.body.trim().is_empty() {
            return Ok(None);
        }
        resp.json(SERVICE, operation, &self.api.url(&Self::v1(path)))
            .map(Some)
    }

    /// LIST `path`; empty when nothing is there.
    pub async fn list(&self, operation: &str, path: &str) -> Result<Vec<String>> {
        let method = Method::from_bytes(b"LIST").expect("LIST is a valid method token");
        let resp = self
            .api
            .send(
                operation,
                method.clone(),
                &Self::v1(path),
                None,
                Retry::Safe,
            )
            .await?;
        if resp.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let resp = self.api.expect(operation, &method, &Self::v1(path), resp)?;
        let body: Value = resp.json(SERVICE, operation, &self.api.url(&Self::v1(path)))?;
        Ok(body["data"]["keys"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    // ----- sys/auth, sys/mounts, sys/audit ------------------------------------------------------

    /// Enabled auth methods, keyed by path with a trailing slash (`jwt/gitlab/`).
    pub async fn auth_mounts(&self) -> Result<BTreeMap<String, Mount>> {
        self.mount_table("list auth methods", "sys/auth").await
    }

    /// Enabled secrets engines, keyed by path with a trailing slash (`kv/`).
    pub async fn secret_mounts(&self) -> Result<BTreeMap<String, Mount>> {
        self.mount_table("list secrets engines", "sys/mounts").await
    }

    /// Fails unless a KV version 2 engine is mounted at `mount` (phase 13 creates `kv/`);
    /// `purpose` says what the caller keeps there, for the message.
    pub async fn require_kv2(&self, mount: &str, purpose: &str) -> Result<()> {
        let mounts = self.secret_mounts().await?;
        let is_kv2 = mounts.get(&format!("{mount}/")).is_some_and(|m| {
            m.kind == "kv"
                && m.options
                    .as_ref()
                    .is_some_and(|o| o.get("version").is_some_and(|v| v == "2"))
        });
        if is_kv2 {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "Vault has no KV v2 engine at {mount}/, where {purpose}: run phase 13 (vault-cicd apply) first"
            )))
        }
    }

    async fn mount_table(&self, operation: &str, path: &str) -> Result<BTreeMap<String, Mount>> {
        let data = self.read(operation, path).await?.unwrap_or(Value::Null);
        let map = data.as_object().cloned().unwrap_or_default();
        let mut out = BTreeMap::new();
        for (key, value) in map {
            if let Ok(mount) = serde_json::from_value::<Mount>(value) {
                out.insert(key, mount);
            }
        }
        Ok(out)
    }

    /// `POST sys/auth/<path>`: enables auth method `kind` (e.g. `jwt`) at `path`.
    pub async fn enable_auth(&self, path: &str, kind: &str, description: &str) -> Result<()> {
        self.write(
            &format!("enabling auth method {kind} at {path}"),
            &format!("sys/auth/{path}"),
            &json!({"type": kind, "description": description}),
        )
        .await
        .map(drop)
    }

    /// `POST sys/mounts/<path>`: enables secrets engine `kind` (e.g. `kv`) at `path` with `options`
    /// (e.g. `version: 2`).
    pub async fn enable_secrets(
        &self,
        path: &str,
        kind: &str,
        options: &BTreeMap<String, String>,
        description: &str,
    ) -> Result<()> {
        self.write(
            &format!("enabling secrets engine {kind} at {path}"),
            &format!("sys/mounts/{path}"),
            &json!({"type": kind, "options": options, "description": description}),
        )
        .await
        .map(drop)
    }

    /// Enabled audit devices keyed by path (`cicd/`). Needs a sudo-capable token.
    pub async fn audit_devices(&self) -> Result<BTreeMap<String, AuditDevice>> {
        let data = self
            .read("list audit devices", "sys/audit")
            .await?
            .unwrap_or(Value::Null);
        Ok(data
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        serde_json::from_value(v.clone())
                            .ok()
                            .map(|d| (k.clone(), d))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `PUT sys/audit/<path>`: enables audit device `kind` with `options`. Needs a sudo-capable
    /// token.
    pub async fn enable_audit(
        &self,
        path: &str,
        kind: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.api
            .call(
                &format!("enabling audit device {kind} at {path}"),
                Method::PUT,
                &Self::v1(&format!("sys/audit/{path}")),
                Some(&json!({"type": kind, "options": options})),
                Retry::Safe,
            )
            .await
            .map(drop)
    }

    // ----- policies (vaultrs) ------------------------------------------------------------------

    /// The ACL policy text; `None` when absent.
    pub async fn policy(&self, name: &str) -> Result<Option<String>> {
        let operation = format!("reading policy {name}");
        match vaultrs::sys::policy::read(self.sdk.as_ref(), name).await {
            Ok(resp) => Ok(Some(resp.rules)),
            Err(e) if sdk_status(&e) == Some(404) => Ok(None),
            Err(e) => {
                Err(self.sdk_error(&operation, "GET", &format!("sys/policies/acl/{name}"), &e))
            }
        }
    }

    /// Creates or replaces the ACL policy `name` with the HCL `text`.
    pub async fn put_policy(&self, name: &str, text: &str) -> Result<()> {
        vaultrs::sys::policy::set(self.sdk.as_ref(), name, text)
            .await
            .map_err(|e| {
                self.sdk_error(
                    &format!("writing policy {name}"),
                    "PUT",
                    &format!("sys/policies/acl/{name}"),
                    &e,
                )
            })
    }

    // ----- KV v2 (vaultrs) ---------------------------------------------------------------------

    /// Metadata of a KV v2 secret; `None` when it has never been written.
    pub async fn kv2_metadata(&self, mount: &str, path: &str) -> Result<Option<KvMetadata>> {
        match vaultrs::kv2::read_metadata(self.sdk.as_ref(), mount, path).await {
            Ok(meta) => {
                let current = meta.versions.get(&meta.current_version.to_string());
                let current_deleted =
                    current.is_none_or(|v| v.destroyed || !v.deletion_time.is_empty());
                Ok(Some(KvMetadata {
                    current_version: meta.current_version,
                    custom_metadata: meta
                        .custom_metadata
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    current_deleted,
                }))
            }
            Err(e) if sdk_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.sdk_error(
                &format!("reading KV metadata of {mount}/{path}"),
                "GET",
                &format!("{mount}/metadata/{path}"),
                &e,
            )),
        }
    }

    /// Reads the current data of a KV v2 secret.
    pub async fn kv2_read(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<Option<BTreeMap<String, Value>>> {
        match vaultrs::kv2::read::<BTreeMap<String, Value>>(self.sdk.as_ref(), mount, path).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if sdk_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.sdk_error(
                &format!("reading secret {mount}/{path}"),
                "GET",
                &format!("{mount}/data/{path}"),
                &e,
            )),
        }
    }

    /// Deletes a KV v2 secret with every version and its metadata (`DELETE <mount>/metadata/<path>`).
    pub async fn kv2_delete_metadata(&self, mount: &str, path: &str) -> Result<()> {
        vaultrs::kv2::delete_metadata(self.sdk.as_ref(), mount, path)
            .await
            .map_err(|e| {
                self.sdk_error(
                    &format!("deleting secret {mount}/{path} with all its versions"),
                    "DELETE",
                    &format!("{mount}/metadata/{path}"),
                    &e,
                )
            })
    }

    /// `POST <mount>/destroy/<path>`: removes these versions' data for good (their metadata stays).
    /// Rotating a credential destroys the versions before it: an older value must not stay readable
    /// through `?version=` to whoever may read the path.
    pub async fn kv2_destroy_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        self.write(
            &format!("destroying old versions of secret {mount}/{path}"),
            &format!("{mount}/destroy/{path}"),
            &serde_json::json!({"versions": versions}),
        )
        .await
        .map(|_| ())
    }

    /// Writes a KV v2 secret only if it does not exist yet (check-and-set 0: never overwrites),
    /// then sets its custom metadata.
    pub async fn kv2_create(
        &self,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
        custom_metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.kv2_write(mount, path, data, custom_metadata, Some(0))
            .await
    }

    /// Writes a new version of a KV v2 secret, then replaces its custom metadata.
    pub async fn kv2_put(
        &self,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
        custom_metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.kv2_write(mount, path, data, custom_metadata, None)
            .await
    }

    /// Writes a new version only if the secret is still at `version` (0: does not exist yet),
    /// then replaces its custom metadata: a read-modify-write that another writer cannot undo.
    pub async fn kv2_put_cas(
        &self,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
        custom_metadata: &BTreeMap<String, String>,
        version: u32,
    ) -> Result<()> {
        self.kv2_write(mount, path, data, custom_metadata, Some(version))
            .await
    }

    async fn kv2_write(
        &self,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
        custom_metadata: &BTreeMap<String, String>,
        cas: Option<u32>,
    ) -> Result<()> {
        let written = match cas {
            Some(cas) => {
                vaultrs::kv2::set_with_options(
                    self.sdk.as_ref(),
                    mount,
                    path,
                    data,
                    vaultrs::api::kv2::requests::SetSecretRequestOptions { cas },
                )
                .await
            }
            None => vaultrs::kv2::set(self.sdk.as_ref(), mount, path, data).await,
        };
        written.map_err(|e| {
            self.sdk_error(
                &format!("writing secret {mount}/{path}"),
                "POST",
                &format!("{mount}/data/{path}"),
                &e,
            )
        })?;
        if !custom_metadata.is_empty() {
            let mut builder = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
            builder.custom_metadata(
                custom_metadata
                    .clone()
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
            );
            vaultrs::kv2::set_metadata(self.sdk.as_ref(), mount, path, Some(&mut builder))
                .await
                .map_err(|e| {
                    self.sdk_error(
                        &format!("labelling secret {mount}/{path}"),
                        "POST",
                        &format!("{mount}/metadata/{path}"),
                        &e,
                    )
                })?;
        }
        Ok(())
    }

    // ----- transit (vaultrs) -------------------------------------------------------------------

    /// The key's type (`ecdsa-p256`, …), or `None` when it does not exist.
    pub async fn transit_key_type(&self, mount: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .read(
                &format!("reading transit key {name}"),
                &format!("{mount}/keys/{name}"),
            )
            .await?
            .map(|d| d["type"].as_str().unwrap_or_default().to_owned()))
    }

    /// Creates a non-exportable ECDSA P-256 signing key (what cosign's `hashivault://` uses).
    pub async fn create_signing_key(&self, mount: &str, name: &str) -> Result<()> {
        let mut opts = vaultrs::api::transit::requests::CreateKeyRequest::builder();
        opts.key_type(vaultrs::api::transit::KeyType::EcdsaP256)
            .exportable(false);
        vaultrs::transit::key::create(self.sdk.as_ref(), mount, name, Some(&mut opts))
            .await
            .map_err(|e| {
                self.sdk_error(
                    &format!("creating transit key {name}"),
                    "POST",
                    &format!("{mount}/keys/{name}"),
                    &e,
                )
            })
    }

    // ----- logins ----------------------------------------------------------------------------------

    /// `POST auth/<mount>/login` with a role and JWT (JWT and Kubernetes auth alike).
    pub async fn login(&self, mount: &str, role: &str, jwt: &str) -> Result<Login> {
        let path = Self::v1(&format!("auth/{mount}/login"));
        let operation = format!("logging in as role {role} at auth/{mount}");
        let resp = self
            .anonymous
            .send(
                &operation,
                Method::POST,
                &path,
                Some(&json!({"role": role, "jwt": jwt})),
                Retry::Safe,
            )
            .await?;
        let resp = self
            .anonymous
            .expect(&operation, &Method::POST, &path, resp)
            .map_err(|mut e| {
                // A refused login is about the presented JWT, not our admin token: drop the admin fix.
                if let Error::Api { fix, .. } = &mut e {
                    fix.clear();
                }
                e
            })?;
        let body: Value = resp.json(SERVICE, &operation, &self.api.url(&path))?;
        let token = body["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| Error::Decode {
                service: SERVICE,
                operation: operation.clone(),
                url: self.api.url(&path),
                cause: "no auth.client_token in the answer".to_owned(),
            })?;
        redact::register(token);
        let policies = body["auth"]["policies"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Login {
            token: token.to_owned().into(),
            policies,
        })
    }

    /// Capabilities of this client's token on `path` (`sys/capabilities-self`).
    pub async fn capabilities(&self, path: &str) -> Result<Vec<String>> {
        let resp = self
            .write(
                &format!("checking capabilities on {path}"),
                "sys/capabilities-self",
                &json!({"paths": [path]}),
            )
            .await?
            .unwrap_or(Value::Null);
        let caps = resp
            .get(path)
            .or_else(|| resp.get("capabilities"))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(caps
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn sdk_error(
        &self,
        operation: &str,
        method: &str,
        path: &str,
        e: &vaultrs::error::ClientError,
    ) -> Error {
        let url = format!("{}/v1/{path}", self.addr);
        let f = fixes(&self.addr, &self.credential.source);
        match sdk_status(e) {
            Some(status) => Error::Api {
                service: SERVICE,
                operation: operation.to_owned(),
                method: method.to_owned(),
                url,
                status,
                body: match &e {
                    vaultrs::error::ClientError::APIError { errors, .. } => {
                        short_body(&errors.join("; "))
                    }
                    other => short_body(&other.to_string()),
                },
                fix: match status {
                    401 => f.unauthorized,
                    403 => f.forbidden,
                    _ => String::new(),
                },
            },
            None => Error::Unreachable {
                service: SERVICE,
                operation: operation.to_owned(),
                method: method.to_owned(),
                url,
                cause: error_chain(&e),
                fix: f.unreachable,
            },
        }
    }
}

fn sdk_status(e: &vaultrs::error::ClientError) -> Option<u16> {
    match e {
        vaultrs::error::ClientError::APIError { code, .. }
        | vaultrs::error::ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        } => Some(*code),
        _ => None,
    }
}
