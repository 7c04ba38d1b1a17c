//! Observe GitLab, Harbor and the cluster (reads only), plan, execute.
//!
//! The projects are demo material that people change on purpose (scenarios 1, 2, 3 and 5 are
//! commits), so a rerun never undoes a demo: missing files are added, files that differ from the
//! demo's version are reported and kept, and only `apply --reset` puts them back (and removes the
//! files scenario 3 adds). Seeding (shared with phase 17: `seeded_projects::seed`) protects `main`
//! and `v*` before the release tag is pushed, so the tag pipeline can log in to Vault and build
//! the images the arcade runs, and stores the project's promotion token in Vault.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::gitlab::GitLabClient;
use common::harbor::HarborClient;
use common::kube::KubeClient;
use common::phase::{DesiredObject, Outcome, Phase};
use common::plan::{Change, Plan};
use common::vault::VaultClient;
use seeded_projects::seed::{self, SeedOp};
use serde_json::Value;

use crate::desired::{self, project_path};
use crate::projects::{DemoProject, PROJECTS, SCENARIO_FILES};
use crate::settings::Settings;

pub const PHASE_NAME: &str = "18 demo-apps";
pub const FIELD_MANAGER: &str = "cicd-buildout/demo-apps";

#[derive(Debug, Clone)]
pub enum Op {
    CreateHarborProject,
    /// A step of seeding a project (project, release protection, commit, tag, promotion token).
    Seed(SeedOp),
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
}

#[derive(Debug)]
pub struct Observed {
    pub group_id: u64,
    pub harbor_project_exists: bool,
    pub projects: BTreeMap<&'static str, seed::Observed>,
}

/// What phase 18 makes true: the settings, and whether `apply --reset` restores the demo's files
/// (a CLI flag, kept out of [`Settings`]).
#[derive(Debug, Clone)]
pub struct Desired {
    pub settings: Settings,
    pub reset: bool,
}

pub struct DemoApps {
    cfg: PlatformConfig,
    kube: KubeClient,
    gitlab: GitLabClient,
    harbor: HarborClient,
    vault: VaultClient,
    pub(crate) desired: Desired,
    crd_wait: Duration,
}

impl DemoApps {
    pub async fn connect(cfg: &PlatformConfig, reset: bool) -> anyhow::Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            desired: Desired {
                settings: Settings::load(cfg)?,
                reset,
            },
            kube: KubeClient::connect(cfg, FIELD_MANAGER).await?,
            gitlab: GitLabClient::connect(cfg)?,
            harbor: HarborClient::connect(cfg)?,
            vault: VaultClient::connect(cfg)?,
            crd_wait: cfg.crd_wait(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.desired.settings
    }
}

/// What phase 18 wants one project to be: the demo's files, kept when people change them.
pub fn wanted(s: &Settings, project: &DemoProject, reset: bool) -> anyhow::Result<seed::Wanted> {
    project.require_lockfile()?;
    Ok(seed::Wanted {
        group: s.gitlab_group.clone(),
        name: project.name.to_owned(),
        description: project.description.to_owned(),
        files: project.files(s)?,
        tag: s.image_tag.clone(),
        tag_message: "NetOps Arcade release: the images the demo runs (cicd-buildout phase 18)"
            .into(),
        commit_message: format!("NetOps Arcade: {} (cicd-buildout phase 18)", project.name),
        policy: seed::Policy::KeepChanges {
            reset,
            reset_removes: SCENARIO_FILES
                .iter()
                .filter(|(name, _)| *name == project.name)
                .map(|(_, path)| (*path).to_owned())
                .collect(),
        },
        approver_parent: s.approver_parent.clone(),
        promote_token: true,
    })
}

/// The pure part of the plan: Harbor project, GitLab projects, their content and release tag.
pub fn diff(d: &Desired, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let mut plan = Plan::new(PHASE_NAME);
    diff_into(&d.settings, d.reset, o, &mut plan)?;
    Ok(plan)
}

fn diff_into(s: &Settings, reset: bool, o: &Observed, plan: &mut Plan<Op>) -> anyhow::Result<()> {
    if !o.harbor_project_exists {
        plan.push(Change::create(
            "harbor project",
            &s.harbor_project,
            desired::harbor_project_body(s),
            &[],
            Op::CreateHarborProject,
        ));
        plan.warn(format!(
            "Harbor project {} did not exist: phase 18 creates it plain; run phase 14 (ci-templates) for its retention, immutable tags and robot accounts",
            s.harbor_project
        ));
    }
    for project in &PROJECTS {
        let path = project_path(s, project);
        let mut w = wanted(s, project, reset)?;
        if !o.projects[project.name].files.is_empty() {
            w.commit_message =
                "NetOps Arcade: restore the demo's files (cicd-buildout phase 18)".into();
        }
        let kept = seed::plan(&w, &o.projects[project.name], plan, Op::Seed);
        if !kept.is_empty() {
            plan.warn(format!(
                "{path}: {} file(s) differ from the demo's version and are kept (a scenario or your own change): {}; `demo-apps apply --reset` restores them",
                kept.len(),
                kept.join(", ")
            ));
        }
    }
    Ok(())
}

impl Phase for DemoApps {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        let s = &self.desired.settings;
        let group = self.gitlab.group(&s.gitlab_group).await?.with_context(|| {
            format!(
                "GitLab group {} not found: run phase 12 (gitlab-harden) first, or set {}",
                s.gitlab_group,
                common::env::DEMO_GITLAB_GROUP
            )
        })?;
        let mut projects = BTreeMap::new();
        for project in &PROJECTS {
            let observed = seed::observe(
                &self.gitlab,
                &self.vault,
                &project_path(s, project),
                &s.image_tag,
            )
            .await?;
            projects.insert(project.name, observed);
        }
        Ok(Observed {
            group_id: group.id,
            harbor_project_exists: self.harbor.project(&s.harbor_project).await?.is_some(),
            projects,
        })
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.desired, observed)
    }

    fn objects(&self, _observed: &Observed) -> anyhow::Result<Vec<DesiredObject<Op>>> {
        Ok(DesiredObject::each(
            desired::objects(&self.desired.settings),
            "Argo CD",
            |object, crd| Op::Apply { object, crd },
        ))
    }

    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        Some((&self.kube, self.crd_wait))
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        let s = &self.desired.settings;
        match op {
            Op::CreateHarborProject => {
                self.harbor
                    .create_project(&desired::harbor_project_body(s))
                    .await?;
            }
            Op::Seed(step) => seed::execute(&self.cfg, &self.gitlab, &self.vault, step).await?,
            Op::Apply { object, crd } => {
                self.kube
                    .apply_planned(object, crd.as_deref(), self.crd_wait)
                    .await?;
            }
        }
        Ok(Outcome::Applied)
    }
}
