//! Observe Vault, GitLab and the cluster (reads only), plan, execute. Kubernetes objects go through
//! server-side apply (field manager `cicd-buildout/obs-setup`); the webhook secret lives only in
//! Vault and in the GitLab hook, never in a plan or a log.
//!
//! The collector's GitLab project is seeded through `seeded_projects::seed` (shared with phase
//! 18): the project, `main` and `v*` protected before the release tag is pushed (its pipeline then
//! gets a Vault token and builds the image production pins), one commit with the files that
//! differ, the tag, the promotion token in Vault. Its files follow the collector's version; the
//! overlays' `kustomization.yaml` (image pins) belong to promotion once they exist.
//!
//! The hook's token: GitLab never returns it, so the Vault secret's custom metadata records
//! `<hook id>:<SHA-256 prefix>` of the token last set on the hook. The hook is edited (token
//! included) when that record differs from the current secret and hook — the secret was rotated in
//! Vault, or the hook was recreated by hand — or a managed field drifted; otherwise nothing is
//! written.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::gitlab::{GitLabClient, GroupHook};
use common::kube::KubeClient;
use common::phase::{DesiredObject, Outcome, Phase};
use common::plan::{Change, Plan, changed_fields};
use common::redact;
use common::vault::VaultClient;
use seeded_projects::seed::{self, SeedOp};
use serde_json::{Value, json};

use crate::desired::{
    self, DATABASE_URL_KEY, HOOK_NAME, HOOK_TOKEN_METADATA, KV_MOUNT, KV_PATH, WEBHOOK_SECRET_KEY,
};
use crate::settings::{Settings, Store};

pub const PHASE_NAME: &str = "17 obs-setup";
pub const FIELD_MANAGER: &str = "cicd-buildout/obs-setup";

#[derive(Debug, Clone)]
pub enum Op {
    /// Generate the webhook secret and store it with check-and-set 0 (never overwrites).
    CreateSecret,
    /// The path exists (e.g. with `database-url`) but has no webhook secret: add one as a new
    /// version, check-and-set on the observed version.
    AddSecretKey {
        version: u64,
    },
    CreateHook {
        group: u64,
    },
    UpdateHook {
        group: u64,
        hook: u64,
    },
    /// The feature-flag auditor's Vault policy.
    AuditorPolicy,
    /// The feature-flag auditor's Kubernetes auth role.
    AuditorRole,
    /// The readiness report's Vault policy.
    ReadinessPolicy,
    /// The readiness report's Kubernetes auth role.
    ReadinessRole,
    /// The readiness report's read-only group tokens: create or rotate these (one per change of
    /// the plan), then rewrite its Vault secret with every hardened group's token; with none,
    /// only the rewrite (a group left `GITLAB_GROUPS`).
    ReadinessTokens(Vec<(String, common::contract::PromoteTokenChange)>),
    /// A step of seeding the collector's project (project, release protection, commit, tag,
    /// promotion token).
    Seed(SeedOp),
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
}

/// What the plan needs to know.
#[derive(Debug)]
pub struct Observed {
    pub group_id: u64,
    /// `None` on GitLab Free (no group hooks).
    pub hooks: Option<Vec<GroupHook>>,
    /// The secret's data (`None`: never written).
    pub secret: Option<BTreeMap<String, Value>>,
    pub secret_version: u64,
    pub metadata: BTreeMap<String, String>,
    /// The collector's project in GitLab and its promotion token in Vault.
    pub project: seed::Observed,
    /// The feature-flags project (the auditor's image producer).
    pub flags_project: seed::Observed,
    /// This repository's project (the readiness report's image producer).
    pub readiness_project: seed::Observed,
    /// The auditor's Vault policy text and Kubernetes auth role, if they exist.
    pub auditor_policy: Option<String>,
    pub auditor_role: Option<Value>,
    /// Whether Vault has the Kubernetes auth method phase 13 enables (the role lives there).
    pub k8s_auth_enabled: bool,
    /// GitLab's tier, written for the readiness report (`CICD_GITLAB_TIER`): its read-only
    /// tokens may not read the licence.
    pub tier: common::gitlab::Tier,
    /// The readiness report's tokens, Vault policy and role.
    pub readiness: crate::readiness_access::Observed,
}

impl Observed {
    pub fn webhook_secret(&self) -> Option<&str> {
        self.secret
            .as_ref()
            .and_then(|d| d.get(WEBHOOK_SECRET_KEY))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

pub struct ObsSetup {
    pub(crate) kube: KubeClient,
    pub(crate) gitlab: GitLabClient,
    vault: VaultClient,
    pub(crate) settings: Settings,
    crd_wait: Duration,
    pub(crate) cfg: PlatformConfig,
}

/// The hook this phase owns: the one at the configured URL, else the one named `dora-collector`.
pub fn our_hook<'a>(hooks: &'a [GroupHook], s: &Settings) -> Option<&'a GroupHook> {
    hooks
        .iter()
        .find(|h| h.url == s.webhook_url)
        .or_else(|| hooks.iter().find(|h| h.name.as_deref() == Some(HOOK_NAME)))
}

impl ObsSetup {
    pub async fn connect(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let crd_wait = cfg.crd_wait();
        Ok(Self {
            settings: Settings::load(cfg)?,
            kube: KubeClient::connect(cfg, FIELD_MANAGER).await?,
            gitlab: GitLabClient::connect(cfg)?,
            vault: VaultClient::connect(cfg)?,
            crd_wait,
            cfg: cfg.clone(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn current_secret(&self) -> anyhow::Result<String> {
        let data = self.vault.kv2_read(KV_MOUNT, KV_PATH).await?;
        let secret = data
            .as_ref()
            .and_then(|d| d.get(WEBHOOK_SECRET_KEY))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!("Vault {KV_MOUNT}/{KV_PATH} has no {WEBHOOK_SECRET_KEY} (rerun apply)")
            })?
            .to_owned();
        redact::register(&secret);
        Ok(secret)
    }

    /// Records which token the hook now has, in the secret's custom metadata.
    async fn record_hook_token(&self, hook: u64, secret: &str) -> anyhow::Result<()> {
        let existing = self
            .vault
            .kv2_metadata(KV_MOUNT, KV_PATH)
            .await?
            .map(|m| m.custom_metadata)
            .unwrap_or_default();
        let metadata =
            desired::secret_metadata(&existing, Some(&desired::token_fingerprint(hook, secret)));
        self.vault
            .write(
                &format!("recording the hook's token fingerprint on {KV_MOUNT}/{KV_PATH}"),
                &format!("{KV_MOUNT}/metadata/{KV_PATH}"),
                &json!({"custom_metadata": metadata}),
            )
            .await?;
        Ok(())
    }
}

/// The pure part of the plan: Vault secret, GitLab hook, the collector's project.
pub fn diff(s: &Settings, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    diff_into(s, o, &mut plan)?;
    Ok(plan)
}

fn diff_into(s: &Settings, o: &Observed, plan: &mut Plan<Op>) -> anyhow::Result<()> {
    secret_and_hook(s, o, plan);
    let mut wanted = crate::project::wanted(s)?;
    if !o.project.files.is_empty() {
        wanted.commit_message = format!(
            "DORA collector {}: the collector's files at this version (cicd-buildout phase 17)",
            s.release_tag
        );
    }
    seed::plan(&wanted, &o.project, plan, Op::Seed);
    // The feature-flag auditor: its image's producer, then its Vault access.
    seed::plan(&crate::flags::wanted(s)?, &o.flags_project, plan, Op::Seed);
    // The readiness report: its image's producer (this repository).
    seed::plan(
        &crate::readiness::wanted(s)?,
        &o.readiness_project,
        plan,
        Op::Seed,
    );
    vault_access(
        plan,
        o.k8s_auth_enabled,
        VaultAccess {
            name: crate::flags::AUDITOR,
            reads: "kv/feature-flags/* (read, list), the Mattermost webhook's secret",
            policy: &crate::flags::auditor_policy(),
            live_policy: o.auditor_policy.as_deref(),
            role: crate::flags::auditor_role(s),
            live_role: o.auditor_role.as_ref(),
        },
        (Op::AuditorPolicy, Op::AuditorRole),
    );
    // The readiness report's own read-only credentials.
    let r = &o.readiness;
    vault_access(
        plan,
        o.k8s_auth_enabled,
        VaultAccess {
            name: common::contract::READINESS_VAULT_ROLE,
            reads: "kv/monitoring/cicd-readiness (its GitLab tokens) and kv/monitoring/cicd-readiness-harbor (phase 14's robot), read",
            policy: &crate::readiness_access::policy(),
            live_policy: r.policy.as_deref(),
            role: crate::readiness_access::role(s),
            live_role: r.role.as_ref(),
        },
        (Op::ReadinessPolicy, Op::ReadinessRole),
    );
    let changes = crate::readiness_access::token_changes(r);
    let dropped = crate::readiness_access::dropped_groups(r, s);
    for (group, change) in &changes {
        let line = crate::readiness_access::describe(group, change);
        match change {
            common::contract::PromoteTokenChange::Create => plan.push(Change::create(
                "gitlab group access token",
                &format!("{group}/{}", crate::readiness_access::TOKEN_NAME),
                json!({"plan": line}),
                &[],
                Op::ReadinessTokens(vec![(group.clone(), change.clone())]),
            )),
            common::contract::PromoteTokenChange::Rotate { .. } => plan.push(Change::update(
                "gitlab group access token",
                &format!("{group}/{}", crate::readiness_access::TOKEN_NAME),
                json!({}),
                json!({"plan": line}),
                &[],
                Op::ReadinessTokens(vec![(group.clone(), change.clone())]),
            )),
        }
    }
    for (group, t) in &r.tokens {
        if t.group_id.is_none() {
            plan.warn(format!(
                "GitLab has no group {group} (GITLAB_GROUPS): the readiness report's token for it waits for phase 12 (gitlab-harden), which creates the group; rerun this phase after it"
            ));
        }
        if !t.foreign.is_empty() {
            plan.warn(format!(
                "group {group} has access token(s) named {} with other rights than read_api and Maintainer ({}): not the readiness report's, so never rotated or stored; revoke them in the group's access token settings",
                crate::readiness_access::TOKEN_NAME,
                t.foreign.join("; ")
            ));
        }
    }
    if !dropped.is_empty() {
        plan.push(Change::update(
            "vault secret",
            &format!(
                "{}/{}",
                common::contract::KV_MOUNT,
                common::contract::KV_READINESS_CREDENTIALS
            ),
            json!({"groups": dropped}),
            json!({"groups": "only those of GITLAB_GROUPS; the dropped groups' tokens revoked in GitLab"}),
            &[],
            Op::ReadinessTokens(Vec::new()),
        ));
    }
    Ok(())
}

/// A workload's Vault access: its policy and its Kubernetes auth role.
struct VaultAccess<'a> {
    name: &'a str,
    /// What the policy reads, for the plan.
    reads: &'a str,
    policy: &'a str,
    live_policy: Option<&'a str>,
    role: Value,
    live_role: Option<&'a Value>,
}

fn vault_access(
    plan: &mut Plan<Op>,
    k8s_auth_enabled: bool,
    want: VaultAccess<'_>,
    (policy_op, role_op): (Op, Op),
) {
    match want.live_policy.map(str::trim) {
        None => plan.push(Change::create(
            "vault policy",
            want.name,
            json!({"reads": want.reads}),
            &[],
            policy_op,
        )),
        Some(have) if have != want.policy.trim() => plan.push(Change::update(
            "vault policy",
            want.name,
            json!({"text": have}),
            json!({"text": want.policy}),
            &[],
            policy_op,
        )),
        Some(_) => {}
    }
    if !k8s_auth_enabled {
        plan.warn(format!(
            "Vault has no Kubernetes auth at auth/{}/: the role {} waits for phase 13 (vault-cicd apply); rerun this phase after it",
            crate::flags::K8S_MOUNT,
            want.name
        ));
    } else if !want
        .live_role
        .is_some_and(|live| crate::flags::role_matches(live, &want.role))
    {
        plan.push(Change::create(
            "vault kubernetes role",
            &format!("auth/{}/role/{}", crate::flags::K8S_MOUNT, want.name),
            want.role,
            &[],
            role_op,
        ));
    }
}

fn secret_and_hook(s: &Settings, o: &Observed, plan: &mut Plan<Op>) {
    let path = format!("{KV_MOUNT}/{KV_PATH}");
    let secret = o.webhook_secret();
    // One secret per webhook source (GitLab, Argo Rollouts, Harbor).
    let missing: Vec<&str> = desired::SOURCE_SECRET_KEYS
        .into_iter()
        .filter(|k| {
            o.secret
                .as_ref()
                .and_then(|d| d.get(*k))
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .collect();
    let generated = |keys: &[&str]| {
        Value::Object(
            keys.iter()
                .map(|k| ((*k).to_owned(), json!("generated (32 random bytes)")))
                .collect(),
        )
    };
    match &o.secret {
        None => plan.push(Change::create(
            "vault secret",
            &path,
            generated(&missing),
            &missing,
            Op::CreateSecret,
        )),
        Some(_) if !missing.is_empty() => plan.push(Change::update(
            "vault secret",
            &path,
            Value::Object(
                missing
                    .iter()
                    .map(|k| ((*k).to_owned(), Value::Null))
                    .collect(),
            ),
            generated(&missing),
            &missing,
            Op::AddSecretKey {
                version: o.secret_version,
            },
        )),
        Some(_) => {}
    }
    let Some(hooks) = &o.hooks else {
        plan.warn(format!(
            "GitLab Free has no group webhooks (Premium): add a webhook to each project of {} by hand, URL {}, secret token from Vault {path} key {WEBHOOK_SECRET_KEY}",
            s.webhook_group, s.webhook_url
        ));
        return;
    };
    let title = format!("{}/{HOOK_NAME}", s.webhook_group);
    let wanted = desired::hook_fields(s);
    match our_hook(hooks, s) {
        None => {
            let mut after = wanted;
            after["token"] = json!(format!("from Vault {path}"));
            plan.push(Change::create(
                "gitlab group hook",
                &title,
                after,
                &[],
                Op::CreateHook { group: o.group_id },
            ));
        }
        Some(hook) => {
            let mut live = hook.settings.clone();
            live.insert("url".into(), json!(hook.url));
            let (mut before, mut after) = match changed_fields(&Value::Object(live), &wanted) {
                Some((Value::Object(before), Value::Object(after))) => (before, after),
                _ => (serde_json::Map::new(), serde_json::Map::new()),
            };
            let token_current = secret.is_some_and(|secret| {
                o.metadata.get(HOOK_TOKEN_METADATA)
                    == Some(&desired::token_fingerprint(hook.id, secret))
            });
            if !token_current {
                before.insert(
                    "token".into(),
                    json!("not the current Vault secret (rotated, new, or hook recreated)"),
                );
                after.insert("token".into(), json!(format!("from Vault {path}")));
            }
            if !after.is_empty() {
                plan.push(Change::update(
                    "gitlab group hook",
                    &title,
                    Value::Object(before),
                    Value::Object(after),
                    &[],
                    Op::UpdateHook {
                        group: o.group_id,
                        hook: hook.id,
                    },
                ));
            }
        }
    }
}

impl Phase for ObsSetup {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        let s = &self.settings;
        let group = self
            .gitlab
            .group(&s.webhook_group)
            .await?
            .with_context(|| {
                format!(
                    "GitLab group {} not found: create it or set {}",
                    s.webhook_group,
                    common::env::OBS_WEBHOOK_GROUP
                )
            })?;
        let tier = self.gitlab.tier().await?;
        let hooks = if tier.is_paid() {
            Some(self.gitlab.group_hooks(group.id).await?)
        } else {
            None
        };
        self.vault
            .require_kv2(KV_MOUNT, "the collector's secrets go")
            .await?;
        let secret = self.vault.kv2_read(KV_MOUNT, KV_PATH).await?;
        let meta = self.vault.kv2_metadata(KV_MOUNT, KV_PATH).await?;
        let project_path = &s.delivery.project_path;
        let project_group = project_path.rsplit_once('/').map_or("", |(g, _)| g);
        if self.gitlab.group(project_group).await?.is_none() {
            anyhow::bail!(
                "GitLab group {project_group} not found: the DORA collector's project {project_path} goes there; run phase 12 (gitlab-harden) first, or create the group"
            );
        }
        let project = seed::observe(&self.gitlab, &self.vault, project_path, &s.release_tag)
            .await
            .with_context(|| {
                format!("reading GitLab project {project_path} and its promotion token")
            })?;
        let flags_path = format!(
            "{}/{}",
            common::contract::PLATFORM_GROUP,
            crate::flags::SOURCE.name
        );
        let flags_project = seed::observe(
            &self.gitlab,
            &self.vault,
            &flags_path,
            crate::flags::RELEASE_TAG,
        )
        .await
        .with_context(|| format!("reading GitLab project {flags_path} and its promotion token"))?;
        let readiness_path = format!(
            "{}/{}",
            common::contract::PLATFORM_GROUP,
            seeded_projects::this_repository::NAME
        );
        let readiness_project = seed::observe(
            &self.gitlab,
            &self.vault,
            &readiness_path,
            &seeded_projects::this_repository::release_tag(),
        )
        .await
        .with_context(|| {
            format!("reading GitLab project {readiness_path} and its promotion token")
        })?;
        let auditor_policy = self.vault.policy(crate::flags::AUDITOR).await?;
        let k8s_auth_enabled = self
            .vault
            .auth_mounts()
            .await?
            .contains_key(&format!("{}/", crate::flags::K8S_MOUNT));
        let auditor_role = if k8s_auth_enabled {
            self.vault
                .read(
                    "reading the feature-flag auditor's Kubernetes role",
                    &format!(
                        "auth/{}/role/{}",
                        crate::flags::K8S_MOUNT,
                        crate::flags::AUDITOR
                    ),
                )
                .await?
        } else {
            None
        };
        let observed = Observed {
            group_id: group.id,
            hooks,
            secret,
            secret_version: meta.as_ref().map_or(0, |m| m.current_version),
            metadata: meta.map(|m| m.custom_metadata).unwrap_or_default(),
            project,
            flags_project,
            readiness_project,
            auditor_policy,
            auditor_role,
            k8s_auth_enabled,
            tier,
            readiness: crate::readiness_access::observe(
                &self.gitlab,
                &self.vault,
                s,
                k8s_auth_enabled,
            )
            .await?,
        };
        for key in desired::SOURCE_SECRET_KEYS {
            if let Some(secret) = observed
                .secret
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
            {
                redact::register(secret);
            }
        }
        if s.store == Store::Postgres && s.postgres_external {
            let url = observed
                .secret
                .as_ref()
                .and_then(|d| d.get(DATABASE_URL_KEY))
                .and_then(Value::as_str)
                .unwrap_or_default();
            redact::register(url);
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "{}=true but Vault {KV_MOUNT}/{KV_PATH} has no `{DATABASE_URL_KEY}` starting with postgres://: write it there first (the collector's two replicas share that database), or unset {} to use the collector's own CloudNativePG cluster",
                    common::env::OBS_DORA_POSTGRES_EXTERNAL,
                    common::env::OBS_DORA_POSTGRES_EXTERNAL
                );
            }
        }
        Ok(observed)
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.settings, observed)
    }

    fn objects(&self, observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        Ok(desired::objects(&self.settings)
            .into_iter()
            .map(|(mut object, crd)| {
                crate::readiness::record_tier(&mut object, observed.tier);
                let installed_by = if crd == Some(common::contract::EXTERNAL_SECRET_CRD) {
                    "the External Secrets Operator"
                } else if crd == Some(crate::cnpg::CLUSTER_CRD) {
                    "the CloudNativePG operator"
                } else {
                    "the Prometheus Operator"
                };
                DesiredObject::new(object, crd, installed_by, &|object, crd| Op::Apply {
                    object,
                    crd,
                })
            })
            .collect())
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        Some((&self.kube, self.crd_wait))
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        match op {
            Op::CreateSecret => {
                let mut data = BTreeMap::new();
                for key in desired::SOURCE_SECRET_KEYS {
                    let secret = desired::generate_secret()?;
                    redact::register(&secret);
                    data.insert(key.to_owned(), secret);
                }
                self.vault
                    .kv2_create(
                        KV_MOUNT,
                        KV_PATH,
                        &data,
                        &desired::secret_metadata(&BTreeMap::new(), None),
                    )
                    .await?;
            }
            Op::AddSecretKey { version } => {
                let mut data = self
                    .vault
                    .kv2_read(KV_MOUNT, KV_PATH)
                    .await?
                    .unwrap_or_default();
                let mut added = Vec::new();
                for key in desired::SOURCE_SECRET_KEYS {
                    if data
                        .get(key)
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        let secret = desired::generate_secret()?;
                        redact::register(&secret);
                        data.insert(key.to_owned(), json!(secret));
                        added.push(key);
                    }
                }
                self.vault
                    .write(
                        &format!("adding {} to {KV_MOUNT}/{KV_PATH}", added.join(", ")),
                        &format!("{KV_MOUNT}/data/{KV_PATH}"),
                        &json!({"options": {"cas": version}, "data": data}),
                    )
                    .await?;
            }
            Op::CreateHook { group } => {
                let secret = self.current_secret().await?;
                let hook = self
                    .gitlab
                    .create_group_hook(*group, &desired::hook_body(&self.settings, &secret))
                    .await?;
                self.record_hook_token(hook.id, &secret).await?;
            }
            Op::UpdateHook { group, hook } => {
                let secret = self.current_secret().await?;
                self.gitlab
                    .edit_group_hook(*group, *hook, &desired::hook_body(&self.settings, &secret))
                    .await?;
                self.record_hook_token(*hook, &secret).await?;
            }
            Op::Seed(step) => seed::execute(&self.cfg, &self.gitlab, &self.vault, step).await?,
            Op::AuditorPolicy => {
                self.vault
                    .put_policy(crate::flags::AUDITOR, &crate::flags::auditor_policy())
                    .await?;
            }
            Op::AuditorRole => {
                let path = format!(
                    "auth/{}/role/{}",
                    crate::flags::K8S_MOUNT,
                    crate::flags::AUDITOR
                );
                self.vault
                    .write(
                        &format!("writing Vault role {path}: phase 13 (vault-cicd apply) enables Kubernetes auth"),
                        &path,
                        &crate::flags::auditor_role(&self.settings),
                    )
                    .await?;
            }
            Op::ReadinessPolicy => {
                self.vault
                    .put_policy(
                        common::contract::READINESS_VAULT_ROLE,
                        &crate::readiness_access::policy(),
                    )
                    .await?;
            }
            Op::ReadinessRole => {
                let path = format!(
                    "auth/{}/role/{}",
                    crate::flags::K8S_MOUNT,
                    common::contract::READINESS_VAULT_ROLE
                );
                self.vault
                    .write(
                        &format!("writing Vault role {path}: phase 13 (vault-cicd apply) enables Kubernetes auth"),
                        &path,
                        &crate::readiness_access::role(&self.settings),
                    )
                    .await?;
            }
            Op::ReadinessTokens(changes) => {
                crate::readiness_access::apply(&self.gitlab, &self.vault, &self.settings, changes)
                    .await?;
            }
            Op::Apply { object, crd } => {
                self.kube
                    .apply_planned(object, crd.as_deref(), self.crd_wait)
                    .await?;
            }
        }
        Ok(Outcome::Applied)
    }
}
