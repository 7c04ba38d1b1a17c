//! Phase 12b `sop-wiki`: the platform's engineering docs as the wiki of `<group>/sop-wiki`
//! (docs/phase-12-gitlab-harden.md, "Phase 12b"). A binary of its own (`src/bin/sop-wiki.rs`) so
//! the driver runs it as the platform's phase 12b, after phase 12.
//!
//! - [`render`]: docs files → pages (pure).
//! - [`ownership`]: the record of the pages this phase owns, and the bash phase's pages.
//! - `diff`: what to change (pure); here: settings, observe and execute.

mod diff;
pub mod ownership;
pub mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use clap::Parser;
use common::cli::{GlobalArgs, Mode, init};
use common::config::{DEFAULT_SOP_WIKI_DOCS_DIR, Environment, PlatformConfig};
use common::env;
use common::gitlab::{GitLabClient, Project, WikiPage};
use common::phase::{Outcome, Phase, lock, run_phase};
use common::plan::Plan;
use serde::Deserialize;
use serde_json::{Value, json};

pub use diff::{diff, project_settings};
use ownership::{OwnershipRecord, RECORD_FILE};

pub const PHASE_NAME: &str = "12b sop-wiki";
/// Name (and path) of the wiki project in the group.
pub const PROJECT_NAME: &str = "sop-wiki";
/// The format every page is published in.
pub const WIKI_FORMAT: &str = "markdown";
/// The branch a new project's repository starts with when GitLab does not say.
const FALLBACK_BRANCH: &str = "main";

#[derive(Parser)]
#[command(
    name = "sop-wiki",
    version,
    about = "Phase 12b: the platform's engineering docs as the SOP wiki of <group>/sop-wiki"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Also delete the wiki pages sop-wiki owns that the docs no longer produce. Pages it does
    /// not own are never touched.
    #[arg(long, global = true)]
    pub prune: bool,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// Runs the CLI; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let phase = SopWiki::connect(&cfg, cli.prune)?;
    run_phase(&phase, cli.mode.unwrap_or(Mode::Plan), &cli.global).await
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default = "default_groups")]
    gitlab_groups: String,
}

fn default_groups() -> String {
    "platform_services".into()
}

/// Phase 12b settings.
#[derive(Debug, Clone)]
pub struct WikiSettings {
    /// The docs folder (`SOP_WIKI_DOCS_DIR`, default `docs/engineering` of the platform
    /// directory).
    pub docs_dir: PathBuf,
    /// The wiki project, `<first group of GITLAB_GROUPS>/sop-wiki`.
    pub project: String,
}

impl WikiSettings {
    /// The settings from the platform's environment (`scripts/.env` and the process).
    pub fn from_environment(environment: &Environment) -> anyhow::Result<Self> {
        let raw: Raw = environment.parse()?;
        let group = raw
            .gitlab_groups
            .split(',')
            .map(str::trim)
            .find(|g| !g.is_empty())
            .with_context(|| {
                format!(
                    "{} is empty: name the GitLab group that holds the sop-wiki project (e.g. platform_services)",
                    env::GITLAB_GROUPS
                )
            })?;
        Ok(Self {
            docs_dir: environment.path(env::SOP_WIKI_DOCS_DIR, DEFAULT_SOP_WIKI_DOCS_DIR),
            project: format!("{}/{PROJECT_NAME}", group.trim_matches('/')),
        })
    }

    /// The group holding the project.
    pub fn group(&self) -> &str {
        self.project.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// The project's name (and path) in its group.
    pub fn project_name(&self) -> &str {
        self.project
            .rsplit_once('/')
            .map_or(self.project.as_str(), |(_, name)| name)
    }
}

/// What phase 12b makes true: the settings, and whether `--prune` deletes owned pages the docs no
/// longer produce (a CLI flag, kept out of [`WikiSettings`]).
#[derive(Debug, Clone)]
pub struct Desired {
    pub settings: WikiSettings,
    pub prune: bool,
}

/// One change phase 12b can make.
#[derive(Debug, Clone)]
pub enum Op {
    /// `POST /projects` with the bash phase's settings.
    CreateProject {
        body: Value,
    },
    /// `PUT /projects/:id` with the settings that differ.
    EditProject {
        body: Value,
    },
    CreatePage {
        title: String,
        content: String,
    },
    UpdatePage {
        slug: String,
        body: Value,
    },
    DeletePage {
        slug: String,
    },
    /// Commits the ownership record (`create` when the file does not exist yet).
    WriteRecord {
        content: String,
        exists: bool,
    },
}

/// What [`diff`] needs.
#[derive(Debug)]
pub enum Observed {
    /// The docs folder does not exist: nothing to publish (the bash phase skipped silently; this
    /// phase says so).
    NoDocsFolder,
    Docs(WikiState),
}

/// The docs and the wiki as they are.
#[derive(Debug)]
pub struct WikiState {
    /// File name → text of the docs folder's `*.md` files.
    pub docs: BTreeMap<String, String>,
    /// The group that holds (or will hold) the project.
    pub group_id: u64,
    /// `None` when the project does not exist yet.
    pub project: Option<ProjectState>,
}

/// The wiki project as it is.
#[derive(Debug)]
pub struct ProjectState {
    pub id: u64,
    /// `visibility` and `wiki_enabled` as GitLab reports them.
    pub settings: Value,
    pub default_branch: String,
    /// The wiki's pages with their content; `None` while the wiki is disabled.
    pub pages: Option<Vec<WikiPage>>,
    /// `None` when the project has no ownership record yet.
    pub record: Option<OwnershipRecord>,
}

/// Phase 12b, connected.
pub struct SopWiki {
    gitlab: GitLabClient,
    /// To harden the project `apply` creates as phase 12 hardens every project of the group.
    cfg: PlatformConfig,
    desired: Desired,
    /// The project's id and default branch, from the observation or from the project `apply`
    /// creates.
    project: Mutex<Option<(u64, String)>>,
}

impl SopWiki {
    pub fn connect(cfg: &PlatformConfig, prune: bool) -> anyhow::Result<Self> {
        Ok(Self {
            gitlab: GitLabClient::connect(cfg)?,
            cfg: cfg.clone(),
            desired: Desired {
                settings: WikiSettings::from_environment(cfg.environment())?,
                prune,
            },
            project: Mutex::new(None),
        })
    }

    fn project(&self) -> anyhow::Result<(u64, String)> {
        lock(&self.project).clone().with_context(|| {
            format!(
                "GitLab project {} does not exist (it is created earlier in the same apply; rerun apply)",
                self.desired.settings.project
            )
        })
    }
}

/// The `*.md` files of `dir` (not its sub-folders, as the bash phase's `*.md`); `None` when
/// `dir` is not a folder.
pub fn read_docs(dir: &Path) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let unreadable = |e: &dyn std::fmt::Display| {
        format!(
            "reading the docs folder {}: {e}; make it readable or point {} elsewhere",
            dir.display(),
            env::SOP_WIKI_DOCS_DIR
        )
    };
    let mut docs = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!(unreadable(&e)))? {
        let entry = entry.map_err(|e| anyhow::anyhow!(unreadable(&e)))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `*.md` exactly as the bash phase's glob: case-sensitive, no hidden files.
        let markdown = name
            .strip_suffix(".md")
            .is_some_and(|stem| !stem.is_empty());
        if !markdown || name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(|e| {
            anyhow::anyhow!(
                "reading {}: {e}; the docs must be UTF-8 Markdown (fix or remove the file)",
                entry.path().display()
            )
        })?;
        docs.insert(name, text);
    }
    Ok(Some(docs))
}

/// `visibility` and `wiki_enabled` of a project (`wiki_enabled` from `wiki_access_level` when
/// GitLab no longer sends the deprecated flag).
fn managed_settings(project: &Project) -> Value {
    let wiki_enabled = project
        .settings
        .get("wiki_enabled")
        .and_then(Value::as_bool)
        .or_else(|| {
            project
                .settings
                .get("wiki_access_level")
                .and_then(Value::as_str)
                .map(|level| level != "disabled")
        });
    json!({
        "visibility": project.settings.get("visibility").cloned().unwrap_or(Value::Null),
        "wiki_enabled": wiki_enabled,
    })
}

impl Phase for SopWiki {
    type Op = Op;
    type Observed = Observed;

    fn name(&self) -> &str {
        PHASE_NAME
    }

    /// Reads the docs, the group, the project, its wiki pages (one list with content) and the
    /// ownership record (one file read).
    async fn observe(&self) -> anyhow::Result<Observed> {
        let settings = &self.desired.settings;
        let Some(docs) = read_docs(&settings.docs_dir)? else {
            return Ok(Observed::NoDocsFolder);
        };
        let group = settings.group();
        let group_id = self
            .gitlab
            .group(group)
            .await?
            .with_context(|| {
                format!(
                    "GitLab group {group} not found: create it (the platform's phase 11 does) or set {} to the group that holds the sop-wiki project",
                    env::GITLAB_GROUPS
                )
            })?
            .id;
        let project = match self.gitlab.project(&settings.project).await? {
            None => None,
            Some(project) => {
                let managed = managed_settings(&project);
                let default_branch = project
                    .settings
                    .get("default_branch")
                    .and_then(Value::as_str)
                    .unwrap_or(FALLBACK_BRANCH)
                    .to_owned();
                let pages = if managed["wiki_enabled"] == Value::Bool(false) {
                    None
                } else {
                    Some(self.gitlab.wiki_pages(project.id).await?)
                };
                let record = self
                    .gitlab
                    .file_text(project.id, RECORD_FILE, &default_branch)
                    .await?
                    .map(|text| OwnershipRecord::parse(&text, &settings.project))
                    .transpose()?;
                *lock(&self.project) = Some((project.id, default_branch.clone()));
                Some(ProjectState {
                    id: project.id,
                    settings: managed,
                    default_branch,
                    pages,
                    record,
                })
            }
        };
        Ok(Observed::Docs(WikiState {
            docs,
            group_id,
            project,
        }))
    }

    fn diff(&self, observed: &Observed) -> anyhow::Result<Plan<Op>> {
        diff(&self.desired, observed)
    }

    async fn execute(&self, op: &Op) -> anyhow::Result<Outcome> {
        let g = &self.gitlab;
        match op {
            Op::CreateProject { body } => {
                let project = g.create_project_with(body).await?;
                let branch = project
                    .settings
                    .get("default_branch")
                    .and_then(Value::as_str)
                    .unwrap_or(FALLBACK_BRANCH)
                    .to_owned();
                *lock(&self.project) = Some((project.id, branch));
                // Phase 12 ran before 12b and hardens every project of the group: without this the
                // new project would wait for the next run of phase 12 (a rerun would not be empty).
                let harden = crate::reconcile::GitLabHarden::for_projects(
                    &self.cfg,
                    [self.desired.settings.project.clone()],
                )
                .await?;
                let applied = common::phase::apply_quietly(&harden).await.with_context(|| {
                    format!(
                        "hardening the new project {} as phase 12 does (rerun gitlab-harden apply to finish)",
                        self.desired.settings.project
                    )
                })?;
                tracing::info!(
                    "hardened {} as phase 12 hardens every project: {applied} change(s)",
                    self.desired.settings.project
                );
            }
            Op::EditProject { body } => {
                g.edit_project(self.project()?.0, body).await?;
            }
            Op::CreatePage { title, content } => {
                g.create_wiki_page(self.project()?.0, title, content, WIKI_FORMAT)
                    .await?;
            }
            Op::UpdatePage { slug, body } => {
                g.update_wiki_page(self.project()?.0, slug, body).await?;
            }
            Op::DeletePage { slug } => {
                g.delete_wiki_page(self.project()?.0, slug).await?;
            }
            Op::WriteRecord { content, exists } => {
                let (id, branch) = self.project()?;
                let action = json!({
                    "action": if *exists { "update" } else { "create" },
                    "file_path": RECORD_FILE,
                    "content": content,
                });
                g.commit(
                    id,
                    &branch,
                    "sop-wiki: record the wiki pages phase 12b owns [skip ci]",
                    &[action],
                )
                .await?;
            }
        }
        Ok(Outcome::Applied)
    }
}
