//! Observe GitLab, Harbor, Vault and the cluster (reads only), a pure [`diff`] to a [`Plan`] for
//! the API objects, Kubernetes objects planned by server-side dry run, and the executor.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::env;
use common::gitlab::{GitLabClient, Runner};
use common::harbor::HarborClient;
use common::kube::KubeClient;
use common::phase::{DesiredObject, Outcome, Phase, lock};
use common::plan::{Change, Plan, changed_fields};
use common::vault::VaultClient;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value, json};

use crate::desired::{
    self, ARGOCD_APPLICATION_CRD, CILIUM_CRD, EXTERNAL_SECRET_CRD, KV_MOUNT, KYVERNO_CRD,
    MANAGED_BY, POOLS, Pool, RUNNER_ID_METADATA, RUNNER_TOKEN_KEY, SIGNING_KEY, TRANSIT_MOUNT,
    VERIFY_IMAGES_FILE, WEBHOOK_POLICY_NAME,
};
use crate::settings::Settings;
use crate::{helm_leftover, runner_leftovers};

pub const PHASE_NAME: &str = "16 security-setup";
pub const FIELD_MANAGER: &str = "cicd-buildout/security-setup";

#[derive(Debug, Clone)]
pub enum Op {
    /// Creates the pool's runner and stores its token in Vault in the same step.
    CreateRunner {
        pool: &'static Pool,
        group_id: u64,
    },
    UpdateRunner {
        id: u64,
        body: Value,
    },
    /// The pool's runner exists but Vault has no token for it: a new token, stored.
    StoreRunnerToken {
        pool: &'static Pool,
        id: u64,
    },
    /// A runner the bash phase registered (see [`crate::runner_leftovers`]).
    DeleteRunner {
        id: u64,
    },
    UpdateProjectMetadata {
        project: String,
        id: u64,
        metadata: Value,
    },
    SetScanAllSchedule {
        exists: bool,
    },
    SetCveAllowlist,
    /// The address (a secret) is taken from the observation at execution time.
    CreateWebhook {
        project: String,
    },
    UpdateWebhook {
        project: String,
        id: u64,
    },
    /// Generates the collector's Harbor secret at `kv/monitoring/dora-collector` (check-and-set:
    /// `None` creates the path, `Some(v)` adds the key to version `v`).
    CreateDoraSecret {
        version: Option<u64>,
    },
    /// The DORA policy; the secret is read from Vault at execution time.
    CreateDoraWebhook {
        project: String,
    },
    UpdateDoraWebhook {
        project: String,
        id: u64,
    },
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
    /// Removes the bash phase's Helm release ([`helm_leftover`]).
    HelmLeftover(helm_leftover::Op),
}

/// What a Harbor project looks like now.
#[derive(Debug, Clone)]
pub struct HarborProjectState {
    pub id: u64,
    pub metadata: Map<String, Value>,
    /// This phase's webhook policy, if present.
    pub webhook: Option<Value>,
    /// The DORA collector's policy, if present.
    pub dora_webhook: Option<Value>,
}

/// The collector's Harbor secret in Vault, as observed.
#[derive(Debug, Default)]
pub struct DoraSecret {
    /// `None`: the path does not exist.
    pub version: Option<u64>,
    pub secret: Option<SecretString>,
}

/// What one pool's runner looks like now.
#[derive(Debug, Clone)]
pub struct PoolRunner {
    pub pool: &'static Pool,
    /// The runner's details (the oldest one of the group with the pool's description).
    pub runner: Option<Runner>,
    /// How many runners of the group carry the description.
    pub runners_with_description: usize,
    /// Vault holds a live token for exactly this runner at the pool's path.
    pub token_stored: bool,
}

/// Everything [`diff`] needs.
pub struct Observed {
    pub group_id: u64,
    /// One entry per pool, in the order of [`POOLS`].
    pub runners: Vec<PoolRunner>,
    /// The runners the bash phase may have left (the diff decides by identity).
    pub bash_runners: runner_leftovers::Found,
    pub projects: BTreeMap<String, HarborProjectState>,
    pub scan_schedule: Value,
    pub allowlist: Value,
    /// The Mattermost incoming-webhook URL, when configured.
    pub mattermost: Option<SecretString>,
    /// The DORA collector's Harbor secret.
    pub dora: DoraSecret,
    /// The signing key's public half (PEM).
    pub public_key: String,
    /// The cluster serves Cilium's policy CRD (the egress policies are optional).
    pub cilium_served: bool,
    /// The cluster serves Kyverno's `ClusterPolicy` (the admission policy is optional).
    pub kyverno_served: bool,
    /// What is left of the bash phase's Helm release `gitlab-runner-security`.
    pub helm_release: helm_leftover::LiveRelease,
}

pub struct SecuritySetup {
    gitlab: GitLabClient,
    harbor: HarborClient,
    vault: VaultClient,
    kube: KubeClient,
    settings: Settings,
    argocd_namespace: String,
    crd_wait: Duration,
    /// The Mattermost URL, known after observing (never part of an [`Op`] or a plan).
    mattermost: Mutex<Option<SecretString>>,
}

impl SecuritySetup {
    pub async fn connect(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let crd_wait = cfg.crd_wait();
        Ok(Self {
            settings: Settings::load(cfg)?,
            gitlab: GitLabClient::connect(cfg)?,
            harbor: HarborClient::connect(cfg)?,
            vault: VaultClient::connect(cfg)?,
            kube: KubeClient::connect(cfg, FIELD_MANAGER).await?,
            argocd_namespace: cfg
                .environment()
                .get(env::ARGOCD_NAMESPACE)
                .unwrap_or("argocd")
                .to_owned(),
            crd_wait,
            mattermost: Mutex::new(None),
        })
    }

    /// The public key of the latest version of the signing key (PEM).
    async fn public_key(&self) -> anyhow::Result<String> {
        let key = self
            .vault
            .read(
                &format!("reading transit key {TRANSIT_MOUNT}/{SIGNING_KEY}"),
                &format!("{TRANSIT_MOUNT}/keys/{SIGNING_KEY}"),
            )
            .await?
            .with_context(|| {
                format!(
                    "Vault has no transit key {TRANSIT_MOUNT}/keys/{SIGNING_KEY} (the image signing key): run phase 13 (vault-cicd apply) first"
                )
            })?;
        let latest = key["latest_version"].as_u64().unwrap_or(1);
        key["keys"][latest.to_string()]["public_key"]
            .as_str()
            .filter(|k| k.contains("BEGIN PUBLIC KEY"))
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "transit key {TRANSIT_MOUNT}/{SIGNING_KEY} has no public key (type {}): it must be an asymmetric key such as ecdsa-p256; phase 13 creates it so",
                    key["type"].as_str().unwrap_or("?")
                )
            })
    }

    /// The default scanner must be registered, enabled and answering.
    async fn require_scanner(&self) -> anyhow::Result<()> {
        let scanners = self.harbor.scanners().await?;
        let default = scanners
            .iter()
            .find(|s| s["is_default"] == true)
            .context(
                "Harbor has no default vulnerability scanner, so scan-on-push would scan nothing: install Harbor with Trivy (Helm value trivy.enabled=true) or register a scanner under Administration → Interrogation Services and set it as default, then rerun",
            )?;
        let name = default["name"].as_str().unwrap_or("?");
        if default["disabled"] == true {
            anyhow::bail!(
                "Harbor's default scanner {name} is disabled: enable it under Administration → Interrogation Services, then rerun"
            );
        }
        let uuid = default["uuid"].as_str().unwrap_or_default();
        self.harbor.scanner_metadata(uuid, name).await.with_context(|| {
            format!(
                "Harbor's default scanner {name} is unhealthy ({} does not answer): check the scanner adapter (kubectl -n harbor get pods for harbor-trivy), then rerun",
                default["url"].as_str().unwrap_or("its adapter")
            )
        })?;
        Ok(())
    }

    async fn mattermost_url(&self) -> anyhow::Result<Option<SecretString>> {
        if let Some(url) = &self.settings.mattermost_url {
            return Ok(Some(url.expose_secret().to_owned().into()));
        }
        let stored = self
            .vault
            .kv2_read(KV_MOUNT, &self.settings.mattermost_vault_path)
            .await?;
        Ok(stored
            .and_then(|data| data.get("url").and_then(Value::as_str).map(str::to_owned))
            .filter(|u| !u.is_empty())
            .map(|u| {
                common::redact::register(&u);
                u.into()
            }))
    }

    /// The Kubernetes objects, in apply order: per pool the token Secret first (the chart reads
    /// it), then the Application; the public key; the optional policies where their CRDs are served.
    fn desired_objects(&self, o: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        let s = &self.settings;
        let mut objects: Vec<(Value, Option<&'static str>, &'static str)> = Vec::new();
        for pool in POOLS {
            objects.push((
                desired::runner_token_external_secret(s, pool),
                Some(EXTERNAL_SECRET_CRD),
                "External Secrets Operator, phase 13",
            ));
            objects.push((
                desired::runner_application(s, pool, &self.argocd_namespace)?,
                Some(ARGOCD_APPLICATION_CRD),
                "Argo CD",
            ));
        }
        objects.push((desired::cosign_configmap(s, &o.public_key), None, ""));
        if o.cilium_served {
            objects.push((desired::runner_egress_policy(s), Some(CILIUM_CRD), "Cilium"));
            for policy in desired::runner_delivery_egress_policies(s, &self.argocd_namespace) {
                objects.push((policy, Some(CILIUM_CRD), "Cilium"));
            }
        }
        if o.kyverno_served {
            objects.push((
                desired::verify_images_policy(s, &o.public_key)?,
                Some(KYVERNO_CRD),
                "Kyverno",
            ));
        }
        Ok(objects
            .into_iter()
            .map(|(object, crd, installed_by)| {
                DesiredObject::new(object, crd, installed_by, |object, crd| Op::Apply {
                    object,
                    crd,
                })
            })
            .collect())
    }

    /// Stores a pool's runner token at its Vault path (never printed anywhere).
    async fn store_token(&self, pool: &Pool, id: u64, token: &SecretString) -> anyhow::Result<()> {
        let data = BTreeMap::from([(
            RUNNER_TOKEN_KEY.to_owned(),
            token.expose_secret().to_owned(),
        )]);
        let metadata = BTreeMap::from([
            ("managed-by".to_owned(), MANAGED_BY.to_owned()),
            (RUNNER_ID_METADATA.to_owned(), id.to_string()),
            (
                "runner-description".to_owned(),
                self.settings.runner_description(pool),
            ),
        ]);
        let path = pool.token_path();
        self.vault
            .kv2_put(KV_MOUNT, &path, &data, &metadata)
            .await
            .with_context(|| {
                format!(
                    "storing the token of the {} pool's runner {id} at {KV_MOUNT}/{path} (the runner exists: rerun apply, which resets its token and stores the new one)",
                    pool.name
                )
            })
    }

    /// The collector's Harbor secret and the path's version (none when the path is absent).
    async fn dora_secret(&self) -> anyhow::Result<DoraSecret> {
        let path = common::contract::KV_DORA_COLLECTOR;
        let Some(meta) = self.vault.kv2_metadata(KV_MOUNT, path).await? else {
            return Ok(DoraSecret::default());
        };
        let data = if meta.current_deleted {
            None
        } else {
            self.vault.kv2_read(KV_MOUNT, path).await?
        };
        let secret = data
            .as_ref()
            .and_then(|d| d.get(common::contract::DORA_HARBOR_SECRET_KEY))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(|v| {
                common::redact::register(v);
                SecretString::from(v.to_owned())
            });
        Ok(DoraSecret {
            version: Some(meta.current_version),
            secret,
        })
    }

    async fn dora_policy(&self) -> anyhow::Result<Value> {
        let url = self
            .settings
            .dora_webhook_url
            .as_deref()
            .context("the DORA collector's URL is not known (set OBS_WEBHOOK_URL or DOMAIN)")?;
        let secret = self.dora_secret().await?.secret.with_context(|| {
            format!(
                "Vault {KV_MOUNT}/{} has no {} (rerun apply, which generates it)",
                common::contract::KV_DORA_COLLECTOR,
                common::contract::DORA_HARBOR_SECRET_KEY
            )
        })?;
        Ok(desired::dora_webhook_policy(url, secret.expose_secret()))
    }

    fn webhook_address(&self) -> anyhow::Result<String> {
        lock(&self.mattermost)
            .as_ref()
            .map(|u| u.expose_secret().to_owned())
            .context("the Mattermost webhook URL is not known (rerun apply)")
    }
}

fn runner_state(r: &Runner) -> Value {
    let mut tags = r.tag_list.clone();
    tags.sort();
    json!({"description": r.description, "tag_list": tags, "run_untagged": r.run_untagged, "locked": r.locked, "paused": r.paused})
}

fn metadata_diff(
    want: &BTreeMap<&str, String>,
    have: &Map<String, Value>,
) -> Option<(Value, Value)> {
    changed_fields(&Value::Object(have.clone()), &json!(want))
}

/// One pool's runner: create it (token to Vault), update the attributes that drifted, or store
/// a new token when Vault lost it.
fn diff_runner(plan: &mut Plan<Op>, s: &Settings, group_id: u64, o: &PoolRunner) {
    let pool = o.pool;
    let description = s.runner_description(pool);
    let vault_path = format!("{KV_MOUNT}/{} ({RUNNER_TOKEN_KEY})", pool.token_path());
    let want = desired::runner_view(s, pool);
    let Some(runner) = &o.runner else {
        let mut after = want;
        after["group"] = s.runner_group.clone().into();
        after["runner_type"] = "group_type".into();
        after["token"] = format!("stored at {vault_path}, never shown").into();
        plan.push(Change::create(
            "gitlab runner",
            &description,
            after,
            &[],
            Op::CreateRunner { pool, group_id },
        ));
        return;
    };
    if o.runners_with_description > 1 {
        plan.warn(format!(
            "{} runners of group {} are described `{description}`: this phase uses the oldest (id {}) for the {} pool; delete the others in GitLab (Settings → CI/CD → Runners)",
            o.runners_with_description, s.runner_group, runner.id, pool.name
        ));
    }
    let have = runner_state(runner);
    if have != want {
        let body = changed_fields(&have, &want).map_or_else(|| json!({}), |(_, after)| after);
        plan.push(Change::update(
            "gitlab runner",
            &description,
            have,
            want,
            &[],
            Op::UpdateRunner {
                id: runner.id,
                body,
            },
        ));
    }
    if !o.token_stored {
        plan.push(Change::update(
            "runner token",
            &format!("runner {} → {vault_path}", runner.id),
            json!({"stored": false}),
            json!({"stored": true, "how": "a new token from GitLab (reset), written to Vault"}),
            &[],
            Op::StoreRunnerToken {
                pool,
                id: runner.id,
            },
        ));
    }
}

/// The pure diff of the API objects (GitLab, Vault, Harbor).
/// The collector's scan webhook of one Harbor project (`secret` empty: generated by this apply).
fn diff_dora_webhook(
    plan: &mut Plan<Op>,
    project: &str,
    state: &HarborProjectState,
    url: &str,
    secret: &str,
) {
    let title = format!("{project}: {}", desired::DORA_WEBHOOK_POLICY_NAME);
    let mut want = desired::dora_webhook_view(&desired::dora_webhook_policy(url, secret));
    if secret.is_empty() {
        want["auth_header"] = json!("(generated by this apply)");
    }
    match &state.dora_webhook {
        None => plan.push(Change::create(
            "harbor webhook",
            &title,
            want,
            &["auth_header"],
            Op::CreateDoraWebhook {
                project: project.to_owned(),
            },
        )),
        Some(have) => {
            let have_view = desired::dora_webhook_view(have);
            if have_view != want {
                plan.push(Change::update(
                    "harbor webhook",
                    &title,
                    have_view,
                    want,
                    &["auth_header"],
                    Op::UpdateDoraWebhook {
                        project: project.to_owned(),
                        id: have["id"].as_u64().unwrap_or_default(),
                    },
                ));
            }
        }
    }
}

pub fn diff(s: &Settings, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    // The runners of the four pools: each created once, found again by its description.
    for pool_runner in &o.runners {
        diff_runner(&mut plan, s, o.group_id, pool_runner);
    }
    runner_leftovers::diff(&mut plan, &o.bash_runners);

    // Harbor: scan-on-push, severity gate, alerts per project.
    let metadata = desired::project_metadata(s);
    // The DORA collector's Harbor secret, generated here: this phase registers the scan webhook
    // and runs before phase 17 (which generates the collector's other secrets next to it).
    let dora_secret = match (&s.dora_webhook_url, &o.dora.secret) {
        (None, _) => None,
        (Some(_), Some(secret)) => Some(secret.expose_secret().to_owned()),
        (Some(_), None) => {
            let path = format!("{KV_MOUNT}/{}", common::contract::KV_DORA_COLLECTOR);
            let key = common::contract::DORA_HARBOR_SECRET_KEY;
            let generated = json!({key: "generated (32 random bytes)"});
            plan.push(match o.dora.version {
                None => Change::create(
                    "vault secret",
                    &path,
                    generated,
                    &[key],
                    Op::CreateDoraSecret { version: None },
                ),
                Some(version) => Change::update(
                    "vault secret",
                    &path,
                    json!({key: null}),
                    generated,
                    &[key],
                    Op::CreateDoraSecret {
                        version: Some(version),
                    },
                ),
            });
            // Not known before apply: every policy gets the new one.
            Some(String::new())
        }
    };
    for (name, state) in &o.projects {
        if let Some((before, after)) = metadata_diff(&metadata, &state.metadata) {
            plan.push(Change::update(
                "harbor project",
                name,
                before,
                after.clone(),
                &[],
                Op::UpdateProjectMetadata {
                    project: name.clone(),
                    id: state.id,
                    metadata: after,
                },
            ));
        }
        if let (Some(url), Some(secret)) = (&s.dora_webhook_url, &dora_secret) {
            diff_dora_webhook(&mut plan, name, state, url, secret);
        }
        let Some(address) = &o.mattermost else {
            continue;
        };
        let want = desired::webhook_view(&desired::webhook_policy(address.expose_secret()));
        let title = format!("{name}: {WEBHOOK_POLICY_NAME}");
        match &state.webhook {
            None => plan.push(Change::create(
                "harbor webhook",
                &title,
                want,
                &["address"],
                Op::CreateWebhook {
                    project: name.clone(),
                },
            )),
            Some(have) => {
                let have_view = desired::webhook_view(have);
                if have_view != want {
                    let address_changed = have_view["address"] != want["address"];
                    let mut change = Change::update(
                        "harbor webhook",
                        &title,
                        have_view,
                        want,
                        &["address"],
                        Op::UpdateWebhook {
                            project: name.clone(),
                            id: have["id"].as_u64().unwrap_or_default(),
                        },
                    );
                    if address_changed {
                        change.diff.push("~ address: (sensitive) changed".into());
                    }
                    plan.push(change);
                }
            }
        }
    }
    if o.mattermost.is_none() {
        plan.warn(format!(
            "no Mattermost webhook URL ({} unset and no key `url` at {KV_MOUNT}/{}): Harbor scan alerts are not configured",
            env::MATTERMOST_WEBHOOK_URL,
            s.mattermost_vault_path
        ));
    }

    // The scan-all schedule.
    let want = desired::schedule_view(&desired::scan_all_schedule(s));
    let exists = o.scan_schedule["schedule"].is_object();
    let have = desired::schedule_view(&o.scan_schedule);
    if have != want {
        let change = if exists {
            Change::update(
                "harbor scan-all schedule",
                "system",
                have,
                want,
                &[],
                Op::SetScanAllSchedule { exists },
            )
        } else {
            Change::create(
                "harbor scan-all schedule",
                "system",
                want,
                &[],
                Op::SetScanAllSchedule { exists },
            )
        };
        plan.push(change);
    }

    // The system CVE allowlist (exactly the configured ids).
    let have = desired::allowlist_ids(&o.allowlist);
    let never_expires = o.allowlist["expires_at"].is_null();
    if have != s.cve_allowlist || !never_expires {
        plan.push(Change::update(
            "harbor CVE allowlist",
            "system",
            json!({"items": have, "expires_at": o.allowlist["expires_at"]}),
            json!({"items": s.cve_allowlist, "expires_at": null}),
            &[],
            Op::SetCveAllowlist,
        ));
    }
    // The optional policies: applied only where the cluster serves their CRDs (see objects).
    if !o.cilium_served {
        plan.warn(format!(
            "CRD {CILIUM_CRD} is not served (Cilium is not the cluster's CNI, or its CRDs are missing): the runner egress policies (CiliumNetworkPolicy {}/{} and the deploy and test pools' policies) are not applied and runner egress stays unrestricted; install Cilium and rerun apply",
            s.runner_namespace,
            desired::EGRESS_POLICY_NAME
        ));
    }
    if !o.kyverno_served {
        plan.warn(format!(
            "CRD {KYVERNO_CRD} is not served (Kyverno is not installed): the admission policy {VERIFY_IMAGES_FILE} is not applied, so unsigned images are not rejected at deploy and scratch images are not confined to ephemeral namespaces; install Kyverno and rerun apply (signatures can still be checked with the ConfigMap {}/{})",
            s.cosign_namespace,
            desired::COSIGN_CONFIGMAP
        ));
    }
    helm_leftover::diff(
        &mut plan,
        &o.helm_release,
        &s.runner_namespace,
        Op::HelmLeftover,
    );
    Ok(plan)
}

impl Phase for SecuritySetup {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        let s = &self.settings;
        let group = self.gitlab.group(&s.runner_group).await?.with_context(|| {
            format!(
                "GitLab group {} not found: create it (phase 12 hardens it) or set {}",
                s.runner_group,
                env::SECURITY_RUNNER_GROUP
            )
        })?;
        let group_runners = self.gitlab.group_runners(group.id).await?;
        self.vault
            .require_kv2(KV_MOUNT, "the runner tokens go")
            .await?;
        let mut runners = Vec::new();
        for pool in POOLS {
            let description = s.runner_description(pool);
            let mut matching: Vec<&Runner> = group_runners
                .iter()
                .filter(|r| r.description == description)
                .collect();
            matching.sort_by_key(|r| r.id);
            let runner = match matching.first() {
                Some(r) => Some(self.gitlab.runner(r.id).await?),
                None => None,
            };
            let token_stored = match &runner {
                Some(r) => self
                    .vault
                    .kv2_metadata(KV_MOUNT, &pool.token_path())
                    .await?
                    .is_some_and(|m| {
                        !m.current_deleted
                            && m.custom_metadata
                                .get(RUNNER_ID_METADATA)
                                .is_some_and(|id| *id == r.id.to_string())
                    }),
                None => false,
            };
            runners.push(PoolRunner {
                pool,
                runner,
                runners_with_description: matching.len(),
                token_stored,
            });
        }
        let bash_runners = runner_leftovers::observe(&self.gitlab, &self.vault).await?;

        self.require_scanner().await?;
        let mut projects = BTreeMap::new();
        for name in &s.scan_projects {
            let project = self.harbor.project(name).await?.with_context(|| {
                format!(
                    "Harbor project {name} not found: run phase 14 (ci-templates apply) first, or set {}",
                    env::HARBOR_SCAN_PROJECTS
                )
            })?;
            let policies = self.harbor.webhook_policies(name).await?;
            let find = |policy: &str| policies.iter().find(|p| p["name"] == policy).cloned();
            projects.insert(
                name.clone(),
                HarborProjectState {
                    id: project.project_id,
                    metadata: project.metadata,
                    webhook: find(WEBHOOK_POLICY_NAME),
                    dora_webhook: find(desired::DORA_WEBHOOK_POLICY_NAME),
                },
            );
        }
        let scan_schedule = self.harbor.scan_all_schedule().await?;
        let allowlist = self.harbor.system_cve_allowlist().await?;
        let mattermost = self.mattermost_url().await?;
        *lock(&self.mattermost) = mattermost
            .as_ref()
            .map(|u| u.expose_secret().to_owned().into());
        let public_key = self.public_key().await?;
        let dora = self.dora_secret().await?;
        Ok(Observed {
            dora,
            group_id: group.id,
            runners,
            bash_runners,
            projects,
            scan_schedule,
            allowlist,
            mattermost,
            public_key,
            cilium_served: self.kube.crd_established(CILIUM_CRD).await?,
            kyverno_served: self.kube.crd_established(KYVERNO_CRD).await?,
            helm_release: helm_leftover::observe(&self.kube, &s.runner_namespace).await?,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.settings, observed)
    }

    fn objects(&self, observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        self.desired_objects(observed)
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        Some((&self.kube, self.crd_wait))
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        let s = &self.settings;
        match op {
            Op::CreateRunner { pool, group_id } => {
                let created = self
                    .gitlab
                    .create_runner(&desired::runner_create_body(s, pool, *group_id))
                    .await?;
                self.store_token(pool, created.id, &created.token).await?;
            }
            Op::UpdateRunner { id, body } => self.gitlab.update_runner(*id, body).await?,
            Op::StoreRunnerToken { pool, id } => {
                let reset = self.gitlab.reset_runner_token(*id).await?;
                self.store_token(pool, *id, &reset.token).await?;
            }
            Op::DeleteRunner { id } => self.gitlab.delete_runner(*id).await?,
            Op::UpdateProjectMetadata { id, metadata, .. } => {
                self.harbor
                    .update_project(*id, &json!({"metadata": metadata}))
                    .await?;
            }
            Op::SetScanAllSchedule { exists } => {
                self.harbor
                    .set_scan_all_schedule(&desired::scan_all_schedule(s), *exists)
                    .await?;
            }
            Op::SetCveAllowlist => {
                self.harbor
                    .set_system_cve_allowlist(&desired::cve_allowlist(s))
                    .await?;
            }
            Op::CreateWebhook { project } => {
                let body = desired::webhook_policy(&self.webhook_address()?);
                self.harbor.create_webhook_policy(project, &body).await?;
            }
            Op::UpdateWebhook { project, id } => {
                let mut body = desired::webhook_policy(&self.webhook_address()?);
                body["id"] = (*id).into();
                self.harbor
                    .update_webhook_policy(project, *id, &body)
                    .await?;
            }
            Op::CreateDoraSecret { version } => {
                let secret = common::contract::generate_webhook_secret()?;
                common::redact::register(&secret);
                let path = common::contract::KV_DORA_COLLECTOR;
                let key = common::contract::DORA_HARBOR_SECRET_KEY;
                match version {
                    None => {
                        let data = BTreeMap::from([(key.to_owned(), secret)]);
                        self.vault
                            .kv2_create(KV_MOUNT, path, &data, &BTreeMap::new())
                            .await?;
                    }
                    Some(version) => {
                        let mut data = self
                            .vault
                            .kv2_read(KV_MOUNT, path)
                            .await?
                            .unwrap_or_default();
                        data.insert(key.to_owned(), json!(secret));
                        self.vault
                            .write(
                                &format!("adding {key} to {KV_MOUNT}/{path}"),
                                &format!("{KV_MOUNT}/data/{path}"),
                                &json!({"options": {"cas": version}, "data": data}),
                            )
                            .await?;
                    }
                }
            }
            Op::CreateDoraWebhook { project } => {
                let body = self.dora_policy().await?;
                self.harbor.create_webhook_policy(project, &body).await?;
            }
            Op::UpdateDoraWebhook { project, id } => {
                let mut body = self.dora_policy().await?;
                body["id"] = (*id).into();
                self.harbor
                    .update_webhook_policy(project, *id, &body)
                    .await?;
            }
            Op::Apply { object, crd } => {
                self.kube
                    .apply_planned(object, crd.as_deref(), self.crd_wait)
                    .await?;
            }
            Op::HelmLeftover(op) => helm_leftover::execute(&self.kube, op).await?,
        }
        Ok(Outcome::Applied)
    }
}
