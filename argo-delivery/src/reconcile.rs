//! Observe the cluster through server-side dry runs, plan, apply. Kubernetes only: every object
//! is applied by server-side apply with the field manager `cicd-buildout/argo-delivery`, so keys
//! of `argocd-rbac-cm` that others own (Argo CD's Helm chart) are left as they are.

use std::time::Duration;

use common::cli::Phase;
use common::config::PlatformConfig;
use common::kube::{KubeClient, ObjectPlanner};
use common::plan::Plan;
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
        let crd_wait = cfg.crd_wait();
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
        let mut planner = ObjectPlanner::new(&self.kube, self.crd_wait);
        for (object, crd) in desired::objects(&self.settings) {
            let op = Op::Apply {
                object: object.clone(),
                crd,
            };
            planner
                .add(
                    &mut plan,
                    &object,
                    crd,
                    "Argo CD, Argo Rollouts, External Secrets",
                    op,
                )
                .await?;
        }
        Ok(plan)
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Option<String>> {
        let Op::Apply { object, crd } = op;
        self.kube
            .apply_planned(object, crd.as_deref(), self.crd_wait)
            .await?;
        Ok(None)
    }
}
