//! Observe the cluster through server-side dry runs, plan, apply. Kubernetes objects are applied by
//! server-side apply with the field manager `cicd-buildout/argo-delivery`, so keys of
//! `argocd-rbac-cm` that others own (Argo CD's Helm chart) are left as they are. The one other
//! change is CI's Argo CD token (ADR 0008): a JWT of role `pipeline` in project `ephemeral`, minted
//! through Argo CD's API and kept in Vault at `kv/ci/argocd-token`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use common::argocd::{ArgoCdClient, ProjectToken};
use common::config::{Credential, PlatformConfig};
use common::contract::{self, KV_ARGOCD_TOKEN, KV_MOUNT, PromoteTokenChange};
use common::gitlab::GitLabClient;
use common::kube::KubeClient;
use common::phase::{DesiredObject, Outcome, Phase};
use common::plan::{Change, Plan};
use common::vault::VaultClient;
use common::{Error, env, redact};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::desired::{self, PIPELINE_PROJECT, PIPELINE_ROLE};
use crate::generator_token::{self, GeneratorTokenObserved};
use crate::leftovers::{self, LiveLeftovers};
use crate::settings::Settings;

pub const PHASE_NAME: &str = "15 argo-delivery";
pub const FIELD_MANAGER: &str = "cicd-buildout/argo-delivery";
/// Lifetime of CI's Argo CD token, and the days left at which a rerun replaces it.
pub const PIPELINE_TOKEN_DAYS: i64 = 30;
pub const PIPELINE_TOKEN_RENEW_DAYS: i64 = 7;

#[derive(Debug, Clone)]
pub enum Op {
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
    /// Mint a new pipeline token, store it in Vault, then revoke `replaces` (the old one).
    MintPipelineToken { replaces: Option<ProjectToken> },
    /// A change to what the bash phase 15 left ([`leftovers`]).
    Leftover(leftovers::Op),
    /// Create or rotate the pull-request generator's group access token ([`generator_token`]).
    GeneratorToken(PromoteTokenChange),
}

/// What Vault says about the stored token (its custom metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredToken {
    pub placeholder: bool,
    pub id: Option<String>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
}

/// What phase 15's pure diff needs: CI's Argo CD token as Vault and Argo CD know it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// What Vault holds at `kv/ci/argocd-token` (its custom metadata).
    pub stored: Option<StoredToken>,
    /// The tokens Argo CD lists for role `pipeline` (none before the `AppProject` exists).
    pub listed: Vec<ProjectToken>,
    /// Seconds since the epoch, when observed.
    pub now: i64,
    /// What may be left of the bash phase 15.
    pub leftovers: LiveLeftovers,
    /// The pull-request generator's GitLab token as GitLab and Vault know it.
    pub generator: GeneratorTokenObserved,
}

/// The pure diff: the bash phase's leftovers (first: the token is minted for an adopted
/// `AppProject`), then the token change, if any. The other Kubernetes objects are planned by dry
/// run ([`desired::objects`]).
pub fn diff(s: &Settings, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    leftovers::diff(
        &mut plan,
        s,
        &o.leftovers,
        &desired::app_projects(s),
        Some(contract::ARGOCD_APP_PROJECT_CRD),
        Op::Leftover,
    );
    if let Some((reason, replaces)) = pipeline_token_change(o.stored.as_ref(), &o.listed, o.now) {
        plan.push(Change::create(
            "argocd project token",
            &format!("proj:{PIPELINE_PROJECT}:{PIPELINE_ROLE} → kv/{KV_ARGOCD_TOKEN}"),
            json!({"reason": reason, "valid_days": PIPELINE_TOKEN_DAYS, "token": "(sensitive)"}),
            &[],
            Op::MintPipelineToken { replaces },
        ));
    }
    let today = o.now.div_euclid(86_400);
    if let Some(change) = generator_token::change(&o.generator, today, s.rotate_tokens) {
        let group = generator_token::token_group(s)?;
        plan.push(Change::create(
            "gitlab group access token",
            &generator_token::describe(&change, &group),
            json!({"scopes": generator_token::GENERATOR_TOKEN_SCOPES, "access_level": "Reporter", "valid_days": generator_token::GENERATOR_TOKEN_DAYS, "token": "(sensitive)"}),
            &[],
            Op::GeneratorToken(change),
        ));
    }
    Ok(plan)
}

/// The pure decision: mint when Vault holds none (or phase 13's placeholder), when Argo CD no
/// longer lists it (revoked), or when fewer than [`PIPELINE_TOKEN_RENEW_DAYS`] remain.
pub fn pipeline_token_change(
    stored: Option<&StoredToken>,
    listed: &[ProjectToken],
    now: i64,
) -> Option<(String, Option<ProjectToken>)> {
    let Some(stored) = stored.filter(|s| !s.placeholder && s.id.is_some()) else {
        return Some(("Vault holds no token yet".into(), None));
    };
    let Some(live) = listed
        .iter()
        .find(|t| t.id.as_deref() == stored.id.as_deref())
    else {
        return Some((
            "Argo CD no longer lists the stored token (revoked or project recreated)".into(),
            None,
        ));
    };
    match live.exp {
        Some(exp) if exp - now < PIPELINE_TOKEN_RENEW_DAYS * 86_400 => Some((
            format!(
                "it expires {}",
                common::dates::format(exp.div_euclid(86_400))
            ),
            Some(live.clone()),
        )),
        _ => None,
    }
}

/// The service catalog's entries (`data` of the `ConfigMap` [`contract::SERVICE_CATALOG`] in the Argo CD
/// namespace); empty when nothing was onboarded yet.
pub async fn read_catalog(
    kube: &KubeClient,
    argocd_namespace: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let map = kube
        .get(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": contract::SERVICE_CATALOG, "namespace": argocd_namespace}}))
        .await?;
    Ok(map
        .and_then(|m| m.get("data").cloned())
        .and_then(|d| serde_json::from_value(d).ok())
        .unwrap_or_default())
}

pub struct ArgoDelivery {
    kube: KubeClient,
    vault: VaultClient,
    gitlab: GitLabClient,
    cfg: PlatformConfig,
    settings: Settings,
    crd_wait: Duration,
    /// Signed in once, on first use.
    argocd: OnceCell<ArgoCdClient>,
}

impl ArgoDelivery {
    /// `rotate_tokens`: rotate the pull-request generator's token now (`--rotate`).
    pub async fn connect(cfg: &PlatformConfig, rotate_tokens: bool) -> anyhow::Result<Self> {
        let mut settings = Settings::load(cfg)?;
        settings.rotate_tokens = rotate_tokens;
        let crd_wait = cfg.crd_wait();
        let kube = KubeClient::connect(cfg, FIELD_MANAGER).await?;
        // The onboarded services join the platform's (onboard-service writes the catalog).
        let catalog = read_catalog(&kube, &settings.argocd_namespace).await?;
        let (services, skipped) = contract::services_with_catalog(cfg.environment(), &catalog)?;
        for problem in &skipped {
            tracing::warn!("left out of the delivered services: {problem}");
        }
        settings.services = services;
        Ok(Self {
            kube,
            vault: VaultClient::connect(cfg)?,
            gitlab: GitLabClient::connect(cfg)?,
            cfg: cfg.clone(),
            settings,
            crd_wait,
            argocd: OnceCell::new(),
        })
    }

    /// Argo CD's admin password: `ARGOCD_ADMIN_PASSWORD`, else what the install left in
    /// `argocd-initial-admin-secret`.
    async fn admin_password(&self) -> anyhow::Result<Credential> {
        if let Some(password) = self.cfg.environment().get(env::ARGOCD_ADMIN_PASSWORD) {
            redact::register(password);
            return Ok(Credential {
                value: password.to_owned().into(),
                source: env::ARGOCD_ADMIN_PASSWORD.to_owned(),
            });
        }
        let namespace = &self.settings.argocd_namespace;
        let secret = self
            .kube
            .get(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-initial-admin-secret", "namespace": namespace}}))
            .await?;
        let encoded = secret
            .as_ref()
            .and_then(|s| s["data"]["password"].as_str())
            .ok_or_else(|| Error::Config(format!(
                "no Argo CD admin password: set {} (the initial Secret {namespace}/argocd-initial-admin-secret is gone)",
                env::ARGOCD_ADMIN_PASSWORD
            )))?;
        let password = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{namespace}/argocd-initial-admin-secret has no readable password: set {}",
                    env::ARGOCD_ADMIN_PASSWORD
                ))
            })?;
        redact::register(&password);
        Ok(Credential {
            value: password.into(),
            source: format!("Secret {namespace}/argocd-initial-admin-secret"),
        })
    }

    async fn argocd(&self) -> anyhow::Result<&ArgoCdClient> {
        self.argocd
            .get_or_try_init(|| async {
                let password = self.admin_password().await?;
                Ok::<_, anyhow::Error>(ArgoCdClient::login(&self.cfg, "admin", &password).await?)
            })
            .await
    }

    async fn stored_token(&self) -> anyhow::Result<Option<StoredToken>> {
        let meta = self.vault.kv2_metadata(KV_MOUNT, KV_ARGOCD_TOKEN).await?;
        Ok(meta.filter(|m| !m.current_deleted).map(|m| {
            let get = |k: &str| m.custom_metadata.get(k).cloned();
            StoredToken {
                placeholder: get("placeholder").as_deref() == Some("true"),
                id: get("token-id"),
                iat: get("issued-at").and_then(|v| v.parse().ok()),
                exp: get("expires-at-unix").and_then(|v| v.parse().ok()),
            }
        }))
    }

    async fn mint_pipeline_token(&self, replaces: Option<&ProjectToken>) -> anyhow::Result<()> {
        let argocd = self.argocd().await?;
        let id = format!("cicd-{}", unix_now());
        let expires_in = u64::try_from(PIPELINE_TOKEN_DAYS * 86_400).unwrap_or(u64::MAX);
        let token = argocd
            .create_project_role_token(
                PIPELINE_PROJECT,
                PIPELINE_ROLE,
                &id,
                "CI deploy-ephemeral/cleanup-ephemeral (cicd-buildout phase 15)",
                expires_in,
            )
            .await?;
        let issued = argocd
            .project_role_tokens(PIPELINE_PROJECT, PIPELINE_ROLE)
            .await?
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.id.as_deref() == Some(id.as_str()));
        let data: BTreeMap<String, String> =
            [("token".to_owned(), token.expose_secret().to_owned())].into();
        let mut meta: BTreeMap<String, String> = [
            (
                "managed-by".to_owned(),
                "cicd-buildout/argo-delivery".to_owned(),
            ),
            ("token-id".to_owned(), id.clone()),
            (
                "subject".to_owned(),
                format!("proj:{PIPELINE_PROJECT}:{PIPELINE_ROLE}"),
            ),
        ]
        .into();
        if let Some(t) = &issued {
            meta.insert("issued-at".into(), t.iat.to_string());
            if let Some(exp) = t.exp {
                meta.insert("expires-at-unix".into(), exp.to_string());
                meta.insert(
                    "expires-at".into(),
                    common::dates::format(exp.div_euclid(86_400)),
                );
            }
        }
        self.vault
            .kv2_put(KV_MOUNT, KV_ARGOCD_TOKEN, &data, &meta)
            .await?;
        // The new token is in Vault before the old one goes: running jobs keep working.
        if let Some(old) = replaces {
            argocd
                .delete_project_role_token(
                    PIPELINE_PROJECT,
                    PIPELINE_ROLE,
                    old.iat,
                    old.id.as_deref().unwrap_or_default(),
                )
                .await?;
        }
        Ok(())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

impl Phase for ArgoDelivery {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        let stored = self.stored_token().await?;
        // Without the AppProject (first run: it is in this plan) nothing can be listed yet.
        let listed = self
            .argocd()
            .await?
            .project_role_tokens(PIPELINE_PROJECT, PIPELINE_ROLE)
            .await?
            .unwrap_or_default();
        Ok(Observed {
            stored,
            listed,
            now: unix_now(),
            leftovers: leftovers::observe(&self.kube, &self.settings).await?,
            generator: generator_token::observe(
                &self.gitlab,
                &self.vault,
                &generator_token::token_group(&self.settings)?,
            )
            .await?,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.settings, observed)
    }

    /// The desired objects, except the `AppProjects` the diff adopts (it applies them itself,
    /// after clearing what kubectl owned).
    fn objects(&self, observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        let adopted =
            leftovers::adopted_app_projects(&observed.leftovers, &self.settings.argocd_namespace);
        let objects = desired::objects(&self.settings)
            .into_iter()
            .filter(|(object, _)| {
                object["kind"] != "AppProject"
                    || !adopted
                        .iter()
                        .any(|name| object["metadata"]["name"] == *name)
            });
        Ok(DesiredObject::each(
            objects,
            "Argo CD, Argo Rollouts, External Secrets",
            |object, crd| Op::Apply { object, crd },
        ))
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        Some((&self.kube, self.crd_wait))
    }

    /// The pipeline token is minted for role `pipeline` of `AppProject` `ephemeral`, an object.
    fn objects_first(&self) -> bool {
        true
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        match op {
            Op::Apply { object, crd } => {
                self.kube
                    .apply_planned(object, crd.as_deref(), self.crd_wait)
                    .await?;
            }
            Op::MintPipelineToken { replaces } => {
                self.mint_pipeline_token(replaces.as_ref()).await?;
            }
            Op::Leftover(op) => leftovers::execute(&self.kube, op, self.crd_wait).await?,
            Op::GeneratorToken(change) => {
                let group = generator_token::token_group(&self.settings)?;
                generator_token::apply(&self.gitlab, &self.vault, &group, change).await?;
            }
        }
        Ok(Outcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, exp: Option<i64>) -> ProjectToken {
        ProjectToken {
            iat: 1,
            exp,
            id: Some(id.into()),
        }
    }

    #[test]
    fn the_pipeline_token_is_minted_refilled_and_renewed() {
        let now = 1_000_000_000;
        let placeholder = StoredToken {
            placeholder: true,
            ..StoredToken::default()
        };
        assert!(pipeline_token_change(None, &[], now).is_some());
        assert!(pipeline_token_change(Some(&placeholder), &[], now).is_some());
        let stored = StoredToken {
            id: Some("cicd-1".into()),
            ..StoredToken::default()
        };
        let fresh = [listed("cicd-1", Some(now + 20 * 86_400))];
        assert_eq!(pipeline_token_change(Some(&stored), &fresh, now), None);
        let revoked = [listed("cicd-0", Some(now + 20 * 86_400))];
        let (why, replaces) = pipeline_token_change(Some(&stored), &revoked, now).unwrap();
        assert!(why.contains("no longer lists"), "{why}");
        assert_eq!(replaces, None);
        let ageing = [listed("cicd-1", Some(now + 6 * 86_400))];
        let (_, replaces) = pipeline_token_change(Some(&stored), &ageing, now).unwrap();
        assert_eq!(
            replaces,
            Some(ageing[0].clone()),
            "the old token is revoked after"
        );
    }
}
