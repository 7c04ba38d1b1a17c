//! Observe GitLab, Harbor and the cluster (reads only), plan, execute.
//!
//! The projects are demo material that people change on purpose (scenarios 1, 2, 3 and 5 are
//! commits), so a rerun never undoes a demo: missing files are added, files that differ from the
//! demo's version are reported and kept, and only `apply --reset` puts them back (and removes the
//! files scenario 3 adds). The release tag is created once on the seeded commit; its pipeline
//! builds the images every Deployment here pins.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use common::cli::Phase;
use common::config::PlatformConfig;
use common::gitlab::{GitLabClient, git_blob_id};
use common::harbor::HarborClient;
use common::kube::{KubeClient, ObjectPlanner};
use common::plan::{Change, Plan};
use serde_json::{Value, json};

use crate::desired::{self, BRANCH, project_path};
use crate::projects::{DemoProject, PROJECTS, SCENARIO_FILES};
use crate::settings::Settings;

pub const PHASE_NAME: &str = "18 demo-apps";
pub const FIELD_MANAGER: &str = "cicd-buildout/demo-apps";

#[derive(Debug, Clone)]
pub enum Op {
    CreateHarborProject,
    CreateProject {
        name: &'static str,
        description: &'static str,
    },
    /// One commit with these file actions (GitLab Commits API).
    Commit {
        project: String,
        actions: Vec<Value>,
        message: String,
    },
    CreateTag {
        project: String,
    },
    Apply {
        object: Value,
        crd: Option<&'static str>,
    },
}

/// One demo project as GitLab has it.
#[derive(Debug, Default)]
pub struct ObservedProject {
    pub exists: bool,
    /// Blob id of every file on `main`.
    pub files: BTreeMap<String, String>,
    pub tag_exists: bool,
}

#[derive(Debug)]
pub struct Observed {
    pub group_id: u64,
    pub harbor_project_exists: bool,
    pub projects: BTreeMap<&'static str, ObservedProject>,
}

pub struct DemoApps {
    kube: KubeClient,
    gitlab: GitLabClient,
    harbor: HarborClient,
    pub(crate) settings: Settings,
    crd_wait: Duration,
}

impl DemoApps {
    pub async fn connect(cfg: &PlatformConfig, reset: bool) -> anyhow::Result<Self> {
        Ok(Self {
            settings: Settings::load(cfg, reset)?,
            kube: KubeClient::connect(cfg, FIELD_MANAGER).await?,
            gitlab: GitLabClient::connect(cfg)?,
            harbor: HarborClient::connect(cfg)?,
            crd_wait: cfg.crd_wait(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub async fn observe(&self) -> anyhow::Result<Observed> {
        let s = &self.settings;
        let group = self.gitlab.group(&s.gitlab_group).await?.with_context(|| {
            format!(
                "GitLab group {} not found: run phase 12 (gitlab-harden) first, or set {}",
                s.gitlab_group,
                common::env::DEMO_GITLAB_GROUP
            )
        })?;
        let mut projects = BTreeMap::new();
        for project in &PROJECTS {
            let mut observed = ObservedProject::default();
            if let Some(p) = self.gitlab.project(&project_path(s, project)).await? {
                observed.exists = true;
                observed.files = self
                    .gitlab
                    .repository_files(p.id, BRANCH)
                    .await?
                    .into_iter()
                    .map(|e| (e.path, e.id))
                    .collect();
                observed.tag_exists = self.gitlab.tag_target(p.id, &s.image_tag).await?.is_some();
            }
            projects.insert(project.name, observed);
        }
        Ok(Observed {
            group_id: group.id,
            harbor_project_exists: self.harbor.project(&s.harbor_project).await?.is_some(),
            projects,
        })
    }
}

/// The commit that brings one project to the demo's content: files to create, and with `reset`
/// files to restore and scenario files to remove. Also the files kept as changed (warnings).
pub fn project_actions(
    project: &DemoProject,
    wanted: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    reset: bool,
) -> (Vec<Value>, Vec<String>, Vec<String>) {
    let mut actions = Vec::new();
    let mut lines = Vec::new();
    let mut kept = Vec::new();
    for (path, content) in wanted {
        match observed.get(path) {
            None => {
                actions.push(json!({"action": "create", "file_path": path, "content": content}));
                lines.push(format!("+ {path}"));
            }
            Some(blob) if *blob != git_blob_id(content) => {
                if reset {
                    actions
                        .push(json!({"action": "update", "file_path": path, "content": content}));
                    lines.push(format!("~ {path}"));
                } else {
                    kept.push(path.clone());
                }
            }
            Some(_) => {}
        }
    }
    if reset {
        for (name, path) in SCENARIO_FILES {
            if *name == project.name && observed.contains_key(*path) {
                actions.push(json!({"action": "delete", "file_path": path}));
                lines.push(format!("- {path}"));
            }
        }
    }
    (actions, lines, kept)
}

/// The pure part of the plan: Harbor project, GitLab projects, their content and release tag.
pub fn diff(s: &Settings, o: &Observed, plan: &mut Plan<Op>) -> anyhow::Result<()> {
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
        let observed = &o.projects[project.name];
        if !observed.exists {
            plan.push(Change::create(
                "gitlab project",
                &path,
                json!({"namespace": s.gitlab_group, "default_branch": BRANCH, "description": project.description}),
                &[],
                Op::CreateProject {
                    name: project.name,
                    description: project.description,
                },
            ));
        }
        project.require_lockfile()?;
        let wanted = project.files(s)?;
        let (actions, lines, kept) = project_actions(project, &wanted, &observed.files, s.reset);
        if !kept.is_empty() {
            plan.warn(format!(
                "{path}: {} file(s) differ from the demo's version and are kept (a scenario or your own change): {}; `demo-apps apply --reset` restores them",
                kept.len(),
                kept.join(", ")
            ));
        }
        if !actions.is_empty() {
            let seeding = observed.files.is_empty();
            let message = if seeding {
                format!("NetOps Arcade: {} (cicd-buildout phase 18)", project.name)
            } else {
                format!(
                    "NetOps Arcade: restore the demo's {} files (cicd-buildout phase 18)",
                    actions.len()
                )
            };
            let title = format!("{path}@{BRANCH}");
            let change = if seeding {
                Change::create(
                    "gitlab commit",
                    &title,
                    json!({"files": lines}),
                    &[],
                    Op::Commit {
                        project: path.clone(),
                        actions,
                        message,
                    },
                )
            } else {
                Change::update(
                    "gitlab commit",
                    &title,
                    json!({}),
                    json!({"files": lines}),
                    &[],
                    Op::Commit {
                        project: path.clone(),
                        actions,
                        message,
                    },
                )
            };
            plan.push(change);
        }
        if !observed.tag_exists {
            plan.push(Change::create(
                "gitlab tag",
                &format!("{path}:{}", s.image_tag),
                json!({"ref": BRANCH, "why": "its release pipeline builds the image tag the arcade runs"}),
                &[],
                Op::CreateTag { project: path.clone() },
            ));
        }
    }
    Ok(())
}

impl DemoApps {
    async fn project_id(&self, path: &str) -> anyhow::Result<u64> {
        Ok(self
            .gitlab
            .project(path)
            .await?
            .with_context(|| {
                format!("GitLab project {path} disappeared during apply: rerun apply")
            })?
            .id)
    }
}

impl Phase for DemoApps {
    type Op = Op;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    async fn plan(&self) -> anyhow::Result<Plan<Op>> {
        let observed = self.observe().await?;
        let mut plan = Plan::new(PHASE_NAME);
        diff(&self.settings, &observed, &mut plan)?;
        let mut planner = ObjectPlanner::new(&self.kube, self.crd_wait);
        for (object, crd) in desired::objects(&self.settings) {
            let op = Op::Apply {
                object: object.clone(),
                crd,
            };
            planner.add(&mut plan, &object, crd, "Argo CD", op).await?;
        }
        Ok(plan)
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Option<String>> {
        let s = &self.settings;
        match op {
            Op::CreateHarborProject => {
                self.harbor
                    .create_project(&desired::harbor_project_body(s))
                    .await?;
            }
            Op::CreateProject { name, description } => {
                let group = self.gitlab.group(&s.gitlab_group).await?.with_context(|| {
                    format!("GitLab group {} disappeared during apply", s.gitlab_group)
                })?;
                self.gitlab
                    .create_project(name, group.id, description)
                    .await?;
            }
            Op::Commit {
                project,
                actions,
                message,
            } => {
                let id = self.project_id(project).await?;
                self.gitlab.commit(id, BRANCH, message, actions).await?;
            }
            Op::CreateTag { project } => {
                let id = self.project_id(project).await?;
                self.gitlab
                    .create_tag(
                        id,
                        &s.image_tag,
                        BRANCH,
                        "NetOps Arcade release: the images the demo runs (cicd-buildout phase 18)",
                    )
                    .await?;
            }
            Op::Apply { object, crd } => {
                self.kube
                    .apply_planned(object, crd.as_deref(), self.crd_wait)
                    .await?;
            }
        }
        Ok(None)
    }
}
