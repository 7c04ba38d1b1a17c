//! Phase 13 reconcile: observe Vault and Kubernetes (reads only), diff against [`Desired`] into a
//! [`Plan`], and execute exactly the planned changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::config::PlatformConfig;
use common::kube::KubeClient;
use common::phase::{DesiredObject, Outcome, Phase};
use common::plan::{Change, Plan};
use common::vault::{AuditDevice, Mount, VaultClient};
use common::{Error, env};
use serde_json::{Value, json};

use crate::desired::{
    AuditSpec, Desired, HumanGroup, Inputs, KvSeed, MountSpec, PLACEHOLDER, VaultDocument, desired,
    render_templated_policy,
};
use crate::service_paths::{self, LiveGroup, ServiceOp, ServicesObserved};
use crate::settings::{KV_MOUNT, Settings, TRANSIT_MOUNT};

pub const FIELD_MANAGER: &str = "cicd-buildout/vault-cicd";
pub const PHASE_NAME: &str = "13 vault-cicd";

/// What the executor does for one change.
#[derive(Debug, Clone)]
pub enum Op {
    EnableSecrets(MountSpec),
    EnableAuth(MountSpec),
    PutPolicy {
        name: String,
        text: String,
    },
    /// A policy templated on an auth mount created by the same plan: its accessor is read first.
    PutTemplatedPolicy {
        name: String,
        template: String,
        mount: String,
    },
    WriteDocument(VaultDocument),
    CreateSigningKey {
        mount: String,
        name: String,
    },
    SeedKv(KvSeed),
    EnableAudit(AuditSpec),
    KubeApply {
        object: Value,
        wait_crd: Option<&'static str>,
    },
    /// A project's service secrets: migrated from the old layout, or a placeholder.
    Service(ServiceOp),
    /// A Keycloak group's Vault identity group and its alias.
    HumanGroup(HumanGroup),
}

/// Phase 13, connected.
pub struct VaultCicd {
    pub vault: VaultClient,
    pub kube: KubeClient,
    /// Reads only: which project each service name is (its `services/<project id>`).
    pub gitlab: common::gitlab::GitLabClient,
    pub desired: Desired,
    pub settings: Settings,
    crd_wait: Duration,
}

impl VaultCicd {
    pub async fn connect(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let settings = Settings::load(cfg)?;
        let gitlab_url = cfg.require_url(env::GITLAB_URL)?.to_owned();
        let vault = VaultClient::connect(cfg)?;
        let kube = KubeClient::connect(cfg, FIELD_MANAGER).await?;
        let gitlab = common::gitlab::GitLabClient::connect(cfg)?;
        let keycloak_issuer = match (&cfg.keycloak_url, cfg.environment().get(env::KC_REALM)) {
            (Some(url), Some(realm)) if !realm.is_empty() => {
                Some(format!("{}/realms/{realm}", url.trim_end_matches('/')))
            }
            _ => None,
        };
        let k8s_ca = match &settings.vault_k8s_ca_cert {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("{}={path} cannot be read ({e}): point it at the PEM of the Kubernetes API's CA", env::VAULT_K8S_CA_CERT))
            })?),
            None => None,
        };
        let platform_ca = cfg.ca_pem()?;
        let desired = desired(&Inputs {
            settings: &settings,
            domain: cfg.domain.as_deref(),
            gitlab_url: &gitlab_url,
            vault_addr: vault.addr(),
            keycloak_issuer: keycloak_issuer.as_deref(),
            k8s_ca_pem: k8s_ca.as_deref(),
            platform_ca_pem: platform_ca.as_deref(),
        });
        Ok(Self {
            vault,
            kube,
            gitlab,
            desired,
            crd_wait: Duration::from_secs(settings.cicd_crd_wait_secs),
            settings,
        })
    }
}

/// Policy text as Vault compares it: trailing whitespace is not a difference.
fn normalize_policy(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Compares only the fields we set; multi-line strings ignore surrounding whitespace.
fn same_value(observed: Option<&Value>, desired: &Value) -> bool {
    match (observed, desired) {
        (Some(Value::String(o)), Value::String(d)) => o.trim() == d.trim(),
        (Some(o), d) => o == d,
        (None, _) => false,
    }
}

fn mount_check(kind_of: &str, spec: &MountSpec, existing: Option<&Mount>) -> anyhow::Result<bool> {
    match existing {
        None => Ok(true),
        Some(m) if m.kind != spec.kind => Err(Error::Precondition {
            operation: format!("planning {kind_of} {}", spec.path),
            message: format!(
                "{}/ is already mounted as type {} but phase 13 needs {}: move that mount elsewhere, then rerun",
                spec.path, m.kind, spec.kind
            ),
        }
        .into()),
        Some(m) => {
            if let Some(wanted) = spec.options.get("version") {
                let have = m.options.as_ref().and_then(|o| o.get("version")).map_or("1", String::as_str);
                if have != wanted {
                    return Err(Error::Precondition {
                        operation: format!("planning {kind_of} {}", spec.path),
                        message: format!(
                            "{}/ is KV version {have} but the CI/CD layout needs version {wanted}: run `vault kv enable-versioning {}/` (a one-time migration) and rerun",
                            spec.path, spec.path
                        ),
                    }
                    .into());
                }
            }
            Ok(false)
        }
    }
}

/// The pure diff: desired state against what was observed.
pub struct Observed {
    pub secret_mounts: BTreeMap<String, Mount>,
    pub auth_mounts: BTreeMap<String, Mount>,
    pub policies: BTreeMap<String, Option<String>>,
    pub documents: BTreeMap<String, Option<Value>>,
    pub signing_key_type: Option<String>,
    pub kv_existing: BTreeSet<String>,
    pub audit: BTreeMap<String, AuditDevice>,
    /// The role `ci-server-cert` as it is (`Some(None)`: absent), or `None` when its PKI mount
    /// does not exist.
    pub ci_cert_role: Option<Option<Value>>,
    /// The services' projects and their secrets in both layouts.
    pub services: ServicesObserved,
    /// The people's identity groups, by name.
    pub human_groups: BTreeMap<String, Option<LiveGroup>>,
}

impl Phase for VaultCicd {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    /// Reads everything the diff needs. Reads only.
    async fn observe(&self) -> anyhow::Result<Observed> {
        let d = &self.desired;
        let secret_mounts = self.vault.secret_mounts().await?;
        let auth_mounts = self.vault.auth_mounts().await?;
        let mut policies = BTreeMap::new();
        let names = d
            .policies
            .iter()
            .map(|(n, _)| n)
            .chain(d.templated_policies.iter().map(|(n, _, _)| n));
        for name in names {
            policies.insert(name.clone(), self.vault.policy(name).await?);
        }
        let mut documents = BTreeMap::new();
        for doc in &d.documents {
            let mount_path = doc
                .path
                .split("/config")
                .next()
                .unwrap_or_default()
                .split("/role/")
                .next()
                .unwrap_or_default();
            let mount_key = format!("{}/", mount_path.trim_start_matches("auth/"));
            let value = if auth_mounts.contains_key(&mount_key) {
                match self
                    .vault
                    .read(&format!("reading {} {}", doc.resource, doc.name), &doc.path)
                    .await
                {
                    Ok(v) => v,
                    // An unconfigured auth method answers 400/404 for its config: nothing there yet.
                    Err(Error::Api {
                        status: 400 | 404, ..
                    }) => None,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            documents.insert(doc.path.clone(), value);
        }
        let signing_key_type = if secret_mounts.contains_key(&format!("{TRANSIT_MOUNT}/")) {
            self.vault
                .transit_key_type(&d.signing_key.0, &d.signing_key.1)
                .await?
        } else {
            None
        };
        let mut kv_existing = BTreeSet::new();
        if secret_mounts.contains_key(&format!("{KV_MOUNT}/")) {
            for seed in &d.kv_seeds {
                if self
                    .vault
                    .kv2_metadata(KV_MOUNT, &seed.path)
                    .await?
                    .is_some()
                {
                    kv_existing.insert(seed.path.clone());
                }
            }
        }
        let audit = self.vault.audit_devices().await?;
        let ci_cert_role = match &d.ci_cert_role {
            Some((mount, role)) if secret_mounts.contains_key(&format!("{mount}/")) => Some(
                match self
                    .vault
                    .read(
                        &format!("reading {} {}", role.resource, role.name),
                        &role.path,
                    )
                    .await
                {
                    Ok(v) => v,
                    Err(Error::Api { status: 404, .. }) => None,
                    Err(e) => return Err(e.into()),
                },
            ),
            _ => None,
        };
        let services = service_paths::observe(
            d,
            &self.gitlab,
            &self.vault,
            secret_mounts.contains_key(&format!("{KV_MOUNT}/")),
        )
        .await?;
        let human_groups = service_paths::observe_groups(&self.vault, &d.human_groups).await?;
        Ok(Observed {
            secret_mounts,
            auth_mounts,
            policies,
            documents,
            signing_key_type,
            kv_existing,
            audit,
            ci_cert_role,
            services,
            human_groups,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.desired, observed)
    }

    fn objects(&self, observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        let example = self
            .desired
            .services
            .first()
            .and_then(|name| observed.services.projects.get(name).cloned().flatten())
            .map(|project| crate::desired::example_external_secret(&self.settings, project.id));
        Ok(self
            .desired
            .kube_objects
            .iter()
            .chain(example.iter())
            .map(|(object, crd)| {
                DesiredObject::new(
                    object.clone(),
                    *crd,
                    "ESO comes from the Argo CD Application external-secrets",
                    |object, wait_crd| Op::KubeApply { object, wait_crd },
                )
            })
            .collect())
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        Some((&self.kube, self.crd_wait))
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        match op {
            Op::EnableSecrets(m) => {
                self.vault
                    .enable_secrets(&m.path, &m.kind, &m.options, &m.description)
                    .await?;
            }
            Op::EnableAuth(m) => {
                self.vault
                    .enable_auth(&m.path, &m.kind, &m.description)
                    .await?;
            }
            Op::PutPolicy { name, text } => self.vault.put_policy(name, text).await?,
            Op::PutTemplatedPolicy {
                name,
                template,
                mount,
            } => {
                let mounts = self.vault.auth_mounts().await?;
                let accessor = mounts
                    .get(&format!("{mount}/"))
                    .map(|m| m.accessor.clone())
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| Error::Precondition {
                        operation: format!("writing vault policy {name}"),
                        message: format!(
                            "auth method {mount}/ has no accessor (is it enabled?): rerun `vault-cicd apply`"
                        ),
                    })?;
                self.vault
                    .put_policy(name, &render_templated_policy(template, &accessor))
                    .await?;
            }
            Op::WriteDocument(d) => {
                self.vault
                    .write(
                        &format!("writing {} {}", d.resource, d.name),
                        &d.path,
                        &d.body,
                    )
                    .await?;
            }
            Op::CreateSigningKey { mount, name } => {
                self.vault.create_signing_key(mount, name).await?;
            }
            Op::SeedKv(seed) => {
                let mut meta: BTreeMap<String, String> =
                    [("managed-by".to_owned(), "cicd-buildout".to_owned())].into();
                if seed.placeholder {
                    meta.insert("placeholder".into(), "true".into());
                }
                match self
                    .vault
                    .kv2_create(KV_MOUNT, &seed.path, &seed.data, &meta)
                    .await
                {
                    Ok(()) => {}
                    // Check-and-set 0 refused: someone wrote it since the plan. Theirs wins.
                    Err(Error::Api {
                        status: 400, body, ..
                    }) if body.contains("check-and-set") => {
                        return Ok(Outcome::Skipped(
                            "written by someone else since the plan; left untouched".into(),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Op::EnableAudit(a) => {
                let options: BTreeMap<String, String> =
                    [("file_path".to_owned(), a.file_path.clone())].into();
                match self.vault.enable_audit(&a.path, &a.kind, &options).await {
                    Ok(()) => {}
                    Err(Error::Api { body, .. })
                        if body.contains("declarative") || body.contains("config-based") =>
                    {
                        return Ok(Outcome::Skipped(format!(
                            "this server (OpenBao) only accepts audit devices from its configuration file: add `audit \"{}\" \"{}\" {{ options {{ file_path = \"{}\" }} }}` to the server config and reload it",
                            a.kind, a.path, a.file_path
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Op::KubeApply { object, wait_crd } => {
                self.kube
                    .apply_planned(object, *wait_crd, self.crd_wait)
                    .await?;
            }
            Op::Service(ServiceOp::Migrate { from, project }) => {
                if !service_paths::migrate(&self.vault, from, project).await? {
                    return Ok(Outcome::Skipped(
                        "written by someone else since the plan; left untouched".into(),
                    ));
                }
            }
            Op::Service(ServiceOp::Seed { seed, project_path }) => {
                if !service_paths::seed(&self.vault, seed, project_path).await? {
                    return Ok(Outcome::Skipped(
                        "written by someone else since the plan; left untouched".into(),
                    ));
                }
            }
            Op::HumanGroup(group) => service_paths::apply_group(&self.vault, group).await?,
        }
        Ok(Outcome::Applied)
    }
}

/// The pure diff of the Vault side.
/// A Vault document (config or role) to create, or to update where a managed field differs.
fn plan_document(plan: &mut Plan<Op>, doc: &VaultDocument, live: Option<Value>) {
    let desired = doc.body.as_object().cloned().unwrap_or_default();
    let op = Op::WriteDocument(doc.clone());
    match live {
        Some(live)
            if desired.iter().any(|(_, v)| !v.is_null())
                && !desired.keys().all(|k| is_unset(live.get(k))) =>
        {
            let differing: Vec<&String> = desired
                .iter()
                .filter(|(k, v)| !same_value(live.get(*k), v))
                .map(|(k, _)| k)
                .collect();
            if !differing.is_empty() {
                let before: serde_json::Map<String, Value> = differing
                    .iter()
                    .map(|k| ((*k).clone(), live.get(*k).cloned().unwrap_or(Value::Null)))
                    .collect();
                let after: serde_json::Map<String, Value> = differing
                    .iter()
                    .map(|k| ((*k).clone(), desired[*k].clone()))
                    .collect();
                plan.push(Change::update(
                    doc.resource,
                    &doc.name,
                    Value::Object(before),
                    Value::Object(after),
                    &[],
                    op,
                ));
            }
        }
        _ => plan.push(Change::create(
            doc.resource,
            &doc.name,
            doc.body.clone(),
            &[],
            op,
        )),
    }
}

pub fn diff(d: &Desired, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    for spec in &d.secret_engines {
        if mount_check(
            "secrets engine",
            spec,
            o.secret_mounts.get(&format!("{}/", spec.path)),
        )? {
            plan.push(Change::create(
                "vault secrets engine",
                &spec.path,
                json!({"type": spec.kind, "options": spec.options}),
                &[],
                Op::EnableSecrets(spec.clone()),
            ));
        }
    }
    for (name, text) in &d.policies {
        plan_policy(&mut plan, o, name, text, || Op::PutPolicy {
            name: name.clone(),
            text: text.clone(),
        });
    }
    for spec in &d.auth_methods {
        if mount_check(
            "auth method",
            spec,
            o.auth_mounts.get(&format!("{}/", spec.path)),
        )? {
            plan.push(Change::create(
                "vault auth method",
                &spec.path,
                json!({"type": spec.kind}),
                &[],
                Op::EnableAuth(spec.clone()),
            ));
        }
    }
    // Templated policies follow the auth methods: they name a mount's accessor.
    for (name, template, mount) in &d.templated_policies {
        match o.auth_mounts.get(&format!("{mount}/")) {
            Some(m) if !m.accessor.is_empty() => {
                let text = render_templated_policy(template, &m.accessor);
                plan_policy(&mut plan, o, name, &text, || Op::PutPolicy {
                    name: name.clone(),
                    text: text.clone(),
                });
            }
            _ => plan.push(Change::create(
                "vault policy",
                name,
                json!(template),
                &[],
                Op::PutTemplatedPolicy {
                    name: name.clone(),
                    template: template.clone(),
                    mount: mount.clone(),
                },
            )),
        }
    }
    for doc in &d.documents {
        plan_document(
            &mut plan,
            doc,
            o.documents.get(&doc.path).cloned().flatten(),
        );
    }
    match (&d.ci_cert_role, &o.ci_cert_role) {
        (Some((_, role)), Some(live)) => plan_document(&mut plan, role, live.clone()),
        (Some((mount, _)), None) => plan.warn(format!(
            "PKI mount {mount}/ does not exist (the platform's phase 2 creates pki_int, its pathlen:0 intermediate): the role {} for short-lived CI server certificates (plan §3.2) is not created; create the mount or set {} to the intermediate's mount, and rerun",
            crate::desired::CI_CERT_ROLE,
            common::env::VAULT_CI_PKI_MOUNT
        )),
        (None, _) => plan.warn(format!(
            "no domain for CI server certificates (neither {} nor DOMAIN is set): the PKI role {} is not created",
            common::env::VAULT_CI_CERT_DOMAINS,
            crate::desired::CI_CERT_ROLE
        )),
    }
    let (mount, name) = &d.signing_key;
    match &o.signing_key_type {
        None => plan.push(Change::create("vault transit key", name, json!({"type": "ecdsa-p256", "exportable": false}), &[], Op::CreateSigningKey { mount: mount.clone(), name: name.clone() })),
        Some(kind) if kind != "ecdsa-p256" => plan.warn(format!(
            "transit key {mount}/{name} exists with type {kind}, not ecdsa-p256: a key's type cannot change; left as is (cosign supports it only if it is an asymmetric type)"
        )),
        Some(_) => {}
    }
    for seed in &d.kv_seeds {
        if !o.kv_existing.contains(&seed.path) {
            let keys: Vec<&String> = seed.data.keys().collect();
            plan.push(Change::create(
                "vault kv secret",
                &format!("{KV_MOUNT}/{}", seed.path),
                json!({"keys": keys, "placeholder": seed.placeholder, "values": if seed.placeholder { PLACEHOLDER } else { "(sensitive)" }}),
                &[],
                Op::SeedKv(seed.clone()),
            ));
        }
    }
    service_paths::diff(&mut plan, d, &o.services, Op::Service);
    if let Some(why) = &d.human_auth_missing {
        plan.warn(why.clone());
    }
    for group in &d.human_groups {
        let accessor = o
            .auth_mounts
            .get(&format!("{}/", group.mount))
            .map(|m| m.accessor.as_str());
        let live = o.human_groups.get(&group.name).cloned().flatten();
        if let Some((create, wanted)) = service_paths::group_change(group, live.as_ref(), accessor)
        {
            let op = Op::HumanGroup(group.clone());
            if create {
                plan.push(Change::create(
                    "vault identity group",
                    &group.name,
                    wanted,
                    &[],
                    op,
                ));
            } else {
                let before = live.map_or(Value::Null, |l| {
                    let (alias, alias_mount) = l.alias.map_or((None, None), |(name, acc)| {
                        let mount = if Some(acc.as_str()) == accessor {
                            group.mount.clone()
                        } else {
                            format!("the mount with accessor {acc}")
                        };
                        (Some(name), Some(mount))
                    });
                    json!({"type": l.kind, "policies": l.policies, "alias": alias, "mount": alias_mount})
                });
                plan.push(Change::update(
                    "vault identity group",
                    &group.name,
                    before,
                    wanted,
                    &[],
                    op,
                ));
            }
        }
    }
    let audit_key = format!("{}/", d.audit.path);
    match o.audit.get(&audit_key) {
        None => plan.push(Change::create(
            "vault audit device",
            &d.audit.path,
            json!({"type": d.audit.kind, "file_path": d.audit.file_path}),
            &[],
            Op::EnableAudit(d.audit.clone()),
        )),
        Some(dev) if dev.kind != d.audit.kind || dev.options.get("file_path") != Some(&d.audit.file_path) => plan.warn(format!(
            "audit device {audit_key} is {} writing to {}, not {} {}: changing it means disabling and re-enabling (a gap in the audit trail), so it is left for an operator",
            dev.kind,
            dev.options.get("file_path").map_or("?", String::as_str),
            d.audit.kind,
            d.audit.file_path
        )),
        Some(_) => {}
    }
    Ok(plan)
}

/// A policy's create or update, when its live text differs.
fn plan_policy(plan: &mut Plan<Op>, o: &Observed, name: &str, text: &str, op: impl FnOnce() -> Op) {
    match o.policies.get(name).cloned().flatten() {
        None => plan.push(Change::create("vault policy", name, json!(text), &[], op())),
        Some(live) if normalize_policy(&live) != normalize_policy(text) => {
            plan.push(Change::update(
                "vault policy",
                name,
                json!(format!("{}\n", normalize_policy(&live))),
                json!(format!("{}\n", normalize_policy(text))),
                &[],
                op(),
            ));
        }
        Some(_) => {}
    }
}

fn is_unset(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Inputs;

    fn desired_state() -> Desired {
        let settings: Settings = serde_json::from_value(json!({})).unwrap();
        desired(&Inputs {
            settings: &settings,
            domain: Some("x"),
            gitlab_url: "https://gitlab.x",
            vault_addr: "https://vault.x",
            keycloak_issuer: Some("https://keycloak.x/realms/platform"),
            k8s_ca_pem: None,
            platform_ca_pem: None,
        })
    }

    /// `example-service` is project 42 of the group, its secrets in place.
    fn services_in_place(d: &Desired) -> ServicesObserved {
        ServicesObserved {
            projects: d
                .services
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        Some(service_paths::ServiceProject {
                            id: 42,
                            path: format!("platform_services/{n}"),
                        }),
                    )
                })
                .collect(),
            legacy: BTreeSet::new(),
            present: [42].into(),
        }
    }

    /// What Vault would report after a complete apply of `d`.
    fn matching(d: &Desired) -> Observed {
        let mount = |kind: &str, opts: &BTreeMap<String, String>| Mount {
            kind: kind.into(),
            options: Some(opts.clone()),
            description: String::new(),
            accessor: format!("auth_{kind}_0123abcd"),
        };
        Observed {
            secret_mounts: d
                .secret_engines
                .iter()
                .map(|m| (format!("{}/", m.path), mount(&m.kind, &m.options)))
                .collect(),
            auth_mounts: d
                .auth_methods
                .iter()
                .map(|m| (format!("{}/", m.path), mount(&m.kind, &m.options)))
                .collect(),
            policies: d
                .policies
                .iter()
                .map(|(n, t)| (n.clone(), Some(format!("{t}\n\n"))))
                .chain(d.templated_policies.iter().map(|(n, t, _)| {
                    (
                        n.clone(),
                        Some(render_templated_policy(t, "auth_jwt_0123abcd")),
                    )
                }))
                .collect(),
            documents: d
                .documents
                .iter()
                .map(|doc| {
                    let mut live = doc.body.clone();
                    live["extra_server_field"] = json!("ignored");
                    (doc.path.clone(), Some(live))
                })
                .collect(),
            signing_key_type: Some("ecdsa-p256".into()),
            kv_existing: d.kv_seeds.iter().map(|s| s.path.clone()).collect(),
            audit: [(
                format!("{}/", d.audit.path),
                AuditDevice {
                    kind: "file".into(),
                    options: [("file_path".to_owned(), d.audit.file_path.clone())].into(),
                },
            )]
            .into(),
            ci_cert_role: d
                .ci_cert_role
                .as_ref()
                .map(|(_, role)| Some(role.body.clone())),
            services: services_in_place(d),
            human_groups: d
                .human_groups
                .iter()
                .map(|g| {
                    (
                        g.name.clone(),
                        Some(LiveGroup {
                            kind: "external".into(),
                            policies: g.policies.clone(),
                            alias: Some((g.name.clone(), "auth_jwt_0123abcd".into())),
                        }),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn noop_matching_state_gives_an_empty_plan() {
        let d = desired_state();
        let plan = diff(&d, &matching(&d)).unwrap();
        assert!(plan.is_empty(), "{plan}");
        assert!(plan.warnings.is_empty());
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn fresh_server_plans_every_object() {
        let d = desired_state();
        let empty = Observed {
            secret_mounts: BTreeMap::new(),
            auth_mounts: BTreeMap::new(),
            policies: BTreeMap::new(),
            documents: BTreeMap::new(),
            signing_key_type: None,
            kv_existing: BTreeSet::new(),
            audit: BTreeMap::new(),
            ci_cert_role: None,
            services: ServicesObserved {
                projects: services_in_place(&d).projects,
                ..ServicesObserved::default()
            },
            human_groups: BTreeMap::new(),
        };
        let plan = diff(&d, &empty).unwrap();
        let expected = d.secret_engines.len()
            + d.policies.len()
            + d.templated_policies.len()
            + d.auth_methods.len()
            + d.documents.len()
            + 1
            + d.kv_seeds.len()
            + d.services.len()
            + d.human_groups.len()
            + 1;
        assert_eq!(plan.changes.len(), expected);
        assert_eq!(plan.summary().update, 0);
        insta::assert_snapshot!(plan.to_string());
    }

    /// A templated policy names the accessor of its mount: known once the mount exists, read at
    /// apply time when the mount is created by the same plan.
    #[test]
    fn the_promotion_policy_follows_the_jwt_mount_accessor() {
        let d = desired_state();
        let mut o = matching(&d);
        o.auth_mounts.get_mut("jwt/gitlab/").unwrap().accessor = "auth_jwt_new".into();
        let plan = diff(&d, &o).unwrap();
        assert_eq!(plan.changes.len(), 2, "{plan}");
        for (change, policy) in plan
            .changes
            .iter()
            .zip(["ci-promote", "ci-project-secrets"])
        {
            match &change.op {
                Op::PutPolicy { name, text } => {
                    assert_eq!(name, policy);
                    assert!(
                        text.contains("identity.entity.aliases.auth_jwt_new.metadata.project_id")
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        o.auth_mounts.remove("jwt/gitlab/");
        let plan = diff(&d, &o).unwrap();
        assert!(
            plan.changes.iter().any(
                |c| matches!(&c.op, Op::PutTemplatedPolicy { name, .. } if name == "ci-promote")
            )
        );
    }

    #[test]
    fn an_existing_secret_is_never_touched() {
        let d = desired_state();
        let mut o = matching(&d);
        o.kv_existing.remove("ci/harbor-credentials");
        let plan = diff(&d, &o).unwrap();
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].name, "kv/ci/harbor-credentials");
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn a_changed_role_field_shows_as_that_field() {
        let d = desired_state();
        let mut o = matching(&d);
        let path = d
            .documents
            .iter()
            .find(|x| x.name == "gitlab-ci")
            .unwrap()
            .path
            .clone();
        o.documents.get_mut(&path).unwrap().as_mut().unwrap()["token_ttl"] = json!(7200);
        let plan = diff(&d, &o).unwrap();
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(
            plan.changes[0].diff,
            vec!["~ token_ttl: 7200 -> 3600".to_owned()]
        );
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn kv_version_1_is_refused_with_the_migration_command() {
        let d = desired_state();
        let mut o = matching(&d);
        o.secret_mounts.get_mut("kv/").unwrap().options =
            Some([("version".to_owned(), "1".to_owned())].into());
        let err = diff(&d, &o).err().unwrap().to_string();
        assert!(err.contains("enable-versioning"), "{err}");
    }

    #[test]
    fn the_ci_cert_role_is_made_on_the_platform_intermediate_only() {
        let d = desired_state();
        let mut o = matching(&d);
        o.ci_cert_role = Some(None);
        let plan = diff(&d, &o).unwrap();
        let titles: Vec<String> = plan.changes.iter().map(Change::title).collect();
        assert_eq!(titles, ["vault pki role pki_int/ci-server-cert"]);
        let after = plan.changes[0].after.as_ref().unwrap();
        assert_eq!(after["allowed_domains"], json!(["ci.x"]), "CI-only names");
        assert_eq!(after["max_ttl"], 86400, "plan §3.2: max_ttl 24h");
        assert_eq!(after["allow_subdomains"], true);
        assert_eq!(after["allow_ip_sans"], false);
        // A hand-widened role is narrowed back in place.
        let mut widened = d.ci_cert_role.as_ref().unwrap().1.body.clone();
        widened["allowed_domains"] = json!(["ci.x", "x"]);
        o.ci_cert_role = Some(Some(widened));
        let plan = diff(&d, &o).unwrap();
        assert_eq!(
            plan.summary(),
            common::plan::Summary {
                create: 0,
                update: 1,
                delete: 0
            }
        );
        assert_eq!(
            plan.changes[0].diff,
            [r#"~ allowed_domains: ["ci.x","x"] -> ["ci.x"]"#]
        );
    }

    /// The old layout's `services/<name>` is copied to `services/<project id>` when the name is a
    /// project of the group and the target is absent; unknown names stay with a warning.
    #[test]
    fn old_service_secrets_are_copied_never_over_an_existing_one() {
        let d = desired_state();
        let mut o = matching(&d);
        o.services.legacy = ["example-service".to_owned(), "orphan".to_owned()].into();
        o.services.projects.insert("orphan".into(), None);
        o.services.present.clear();
        let plan = diff(&d, &o).unwrap();
        let titles: Vec<String> = plan.changes.iter().map(Change::title).collect();
        assert_eq!(titles, ["vault kv secret kv/services/42"], "{plan}");
        assert!(matches!(
            &plan.changes[0].op,
            Op::Service(ServiceOp::Migrate { from, project }) if from == "example-service" && project.id == 42
        ));
        assert_eq!(plan.warnings.len(), 1, "{plan}");
        assert!(plan.warnings[0].contains("kv/services/orphan"), "{plan}");
        insta::assert_snapshot!(plan.to_string());
        // The target exists: nothing to copy, even though the old one is still there.
        o.services.present.insert(42);
        let plan = diff(&d, &o).unwrap();
        assert!(plan.changes.is_empty(), "{plan}");
    }

    /// A Keycloak group's identity group: created, and fixed in place when its policies or alias
    /// drifted (an alias on another mount gives nobody the policy).
    #[test]
    fn human_groups_get_exactly_their_policies() {
        let d = desired_state();
        let names: Vec<(&str, &[String])> = d
            .human_groups
            .iter()
            .map(|g| (g.name.as_str(), g.policies.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("cicd-admins", &["ci-admin".to_owned()][..]),
                ("cicd-security", &["security-audit".to_owned()][..])
            ]
        );
        let mut o = matching(&d);
        if let Some(Some(g)) = o.human_groups.get_mut("cicd-security") {
            g.policies.push("ci-admin".into());
        }
        if let Some(Some(g)) = o.human_groups.get_mut("cicd-admins") {
            g.alias = Some(("cicd-admins".into(), "auth_userpass_999".into()));
        }
        let plan = diff(&d, &o).unwrap();
        assert_eq!(plan.summary().update, 2, "{plan}");
        insta::assert_snapshot!(plan.to_string());
    }
}
