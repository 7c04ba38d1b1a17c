//! Observe the cluster through server-side dry runs, plan, apply. Kubernetes only: every object
//! is applied by server-side apply with the field manager `cicd-buildout/argo-delivery`, so keys
//! of `argocd-rbac-cm` that others own (Argo CD's Helm chart) are left as they are.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use common::cli::Phase;
use common::config::PlatformConfig;
use common::kube::{KubeClient, ObjectDiff, describe};
use common::plan::{Change, Plan};
use serde_json::Value;

use crate::desired;
use crate::settings::Settings;

pub const PHASE_NAME: &str = "15 argo-delivery";
pub const FIELD_MANAGER: &str = "cicd-buildout/argo-delivery";

#[derive(Debug, Clone)]
pub enum Op {
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
}

pub struct ArgoDelivery {
    kube: KubeClient,
    settings: Settings,
    crd_wait: Duration,
}

impl ArgoDelivery {
    pub async fn connect(cfg: &PlatformConfig) -> anyhow::Result<Self> {
        let settings = Settings::load(cfg)?;
        let crd_wait = cfg
            .environment()
            .get(common::env::CICD_CRD_WAIT_SECS)
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(300), Duration::from_secs);
        Ok(Self {
            kube: KubeClient::connect(cfg, FIELD_MANAGER).await?,
            settings,
            crd_wait,
        })
    }
}

impl Phase for ArgoDelivery {
    type Op = Op;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn plan(&self) -> anyhow::Result<Plan<Op>> {
        let mut plan = Plan::new(PHASE_NAME);
        let mut established: BTreeMap<&str, bool> = BTreeMap::new();
        for (object, crd) in desired::objects(&self.settings) {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = describe(&object)
                .split_once(' ')
                .map(|x| x.1.to_owned())
                .unwrap_or_default();
            let resource = format!("kubernetes {kind}");
            let op = Op::Apply {
                object: object.clone(),
                crd,
            };
            if let Some(crd) = crd {
                let ready = if let Some(r) = established.get(crd) {
                    *r
                } else {
                    let r = self.kube.crd_established(crd).await?;
                    established.insert(crd, r);
                    r
                };
                if !ready {
                    plan.warn(format!(
                        "CRD {crd} is not installed (Argo CD / Argo Rollouts): apply waits up to {}s for it before creating {}",
                        self.crd_wait.as_secs(),
                        describe(&object)
                    ));
                    plan.push(Change::create(&resource, &name, object, &[], op));
                    continue;
                }
            }
            let diff = match self.kube.diff(&object).await {
                // A built-in kind this cluster does not serve (batch/v1 CronJob before 1.21).
                Err(common::Error::Precondition { message, .. })
                    if crd.is_none() && message.contains("does not serve") =>
                {
                    plan.warn(format!(
                        "{}: the cluster does not serve {} {kind} (Kubernetes older than 1.21): skipped",
                        describe(&object),
                        object["apiVersion"].as_str().unwrap_or_default()
                    ));
                    continue;
                }
                other => other.with_context(|| format!("planning {}", describe(&object)))?,
            };
            match diff {
                ObjectDiff::Create => plan.push(Change::create(&resource, &name, object, &[], op)),
                ObjectDiff::Update { before, after } => {
                    plan.push(Change::update(&resource, &name, before, after, &[], op));
                }
                ObjectDiff::Unchanged => {}
            }
        }
        Ok(plan)
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Option<String>> {
        let Op::Apply { object, crd } = op;
        if let Some(crd) = crd {
            self.kube.wait_crd_established(crd, self.crd_wait).await?;
        }
        self.kube.apply(object, false).await?;
        Ok(None)
    }
}
