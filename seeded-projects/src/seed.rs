//! Seeding a project the platform creates (phases 17 and 18, later onboarding), so that the
//! delivery loop works from its first tag (docs/adr/0008):
//! 1. the project, if missing;
//! 2. `main` and `v*` tags protected before anything is pushed: a tag pipeline's `id_token` says
//!    `ref_protected` only if the tag was protected when it was pushed (phase 12 later adds the
//!    rest of its hardening);
//! 3. the project's promotion token in Vault (`kv/ci/projects/<id>/promote`), before any push:
//!    the first main pipeline ends in promote-artifact, which reads it;
//! 4. one commit with exactly the files that differ (by git blob id);
//! 5. the release tag, whose pipeline builds the image the phase deploys;
//! 6. for a project this run created, phase 12's hardening (phase 12 ran before it existed).

use std::collections::BTreeMap;

use anyhow::Context as _;
use common::contract::{
    PromoteTokenChange, PromoteTokenObserved, apply_promote_token, observe_promote_token,
    promote_token_change,
};
use common::gitlab::{GitLabClient, RELEASE_TAG_PATTERN, access, git_blob_id};
use common::plan::{Change, Plan};
use common::vault::VaultClient;
use serde_json::{Value, json};

/// The branch every seeded project is committed to and Argo CD follows.
pub const BRANCH: &str = "main";

/// Who owns a seeded project's files after the first commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Demo material people change on purpose: add missing files, keep changed ones (reported);
    /// with `reset`, restore them and delete `reset_removes`.
    KeepChanges {
        reset: bool,
        reset_removes: Vec<String>,
    },
    /// The platform's own service: every file follows this version, except the overlays'
    /// `kustomization.yaml`, whose image pins belong to promotion (created once, never rewritten).
    Managed,
    /// A copy of this version's files and nothing else (the service template): every file
    /// follows, files this version no longer has are deleted.
    Exact,
    /// [`Policy::Managed`] that also deletes the files this version no longer has (this
    /// repository: a file removed here must not linger and still build there); promotion's pins
    /// are kept, never deleted.
    Mirror,
}

/// Files whose content promotion owns once they exist.
pub fn promotion_owned(path: &str) -> bool {
    path.starts_with("deploy/overlays/") && path.ends_with("/kustomization.yaml")
}

/// What a phase wants one project to be.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub group: String,
    pub name: String,
    pub description: String,
    pub files: BTreeMap<String, String>,
    pub tag: String,
    pub tag_message: String,
    pub commit_message: String,
    pub policy: Policy,
    /// The approver groups' parent (`GITLAB_APPROVER_GROUP_PARENT`): the project's first commit
    /// carries a default CODEOWNERS unless its files have one (`common::codeowners`).
    pub approver_parent: String,
    /// Whether the project gets a promotion token in Vault: a project whose pipelines promote.
    /// The service template runs no pipeline, so it gets none (least privilege).
    pub promote_token: bool,
}

impl Wanted {
    pub fn path(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }
}

/// What GitLab and Vault have of it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub project_id: Option<u64>,
    /// Blob id of every file on `main`.
    pub files: BTreeMap<String, String>,
    pub main_protected: bool,
    pub release_tags_protected: bool,
    pub tag_exists: bool,
    pub promote_token: PromoteTokenObserved,
    /// Days since the epoch when observed (the promotion token's age is judged against it, so
    /// that [`plan`] stays pure).
    pub today: i64,
}

impl Observed {
    /// A project exactly as seeding leaves it on `today` (id `project_id`, every wanted file, both
    /// protections, the tag, a promotion token valid for its full life and its copy in Vault).
    /// The diff tests of the seeding phases start from it.
    pub fn as_seeded(w: &Wanted, project_id: u64, today: i64) -> Self {
        let token = common::gitlab::ProjectAccessToken {
            id: project_id + 1000,
            name: common::contract::PROMOTE_TOKEN_NAME.into(),
            scopes: vec!["api".into()],
            access_level: 40,
            expires_at: Some(common::dates::format(
                today + i64::from(common::contract::PROMOTE_TOKEN_DAYS),
            )),
            active: true,
            revoked: false,
            token: None,
        };
        Self {
            project_id: Some(project_id),
            files: w
                .files
                .iter()
                .map(|(path, content)| (path.clone(), git_blob_id(content)))
                .collect(),
            main_protected: true,
            release_tags_protected: true,
            tag_exists: true,
            promote_token: PromoteTokenObserved {
                stored_token_id: Some(token.id),
                active: Some(token),
            },
            today,
        }
    }
}

/// Reads the project, its protection, files, tag and promotion token (reads only).
pub async fn observe(
    gitlab: &GitLabClient,
    vault: &VaultClient,
    path: &str,
    tag: &str,
) -> anyhow::Result<Observed> {
    let Some(project) = gitlab.project(path).await? else {
        return Ok(Observed {
            today: common::dates::today(),
            ..Observed::default()
        });
    };
    let id = project.id;
    Ok(Observed {
        project_id: Some(id),
        files: gitlab
            .repository_files(id, BRANCH)
            .await?
            .into_iter()
            .map(|e| (e.path, e.id))
            .collect(),
        main_protected: gitlab.protected_branch(id, BRANCH).await?.is_some(),
        release_tags_protected: gitlab
            .protected_tag(id, RELEASE_TAG_PATTERN)
            .await?
            .is_some_and(|t| t.allows_only(common::gitlab::RELEASE_TAG_CREATE_LEVEL)),
        tag_exists: gitlab.tag_target(id, tag).await?.is_some(),
        promote_token: observe_promote_token(gitlab, vault, id).await?,
        today: common::dates::today(),
    })
}

/// One seeding step.
#[derive(Debug, Clone)]
pub enum SeedOp {
    CreateProject {
        group: String,
        name: String,
        description: String,
    },
    ProtectReleases {
        path: String,
        main: bool,
        tags: bool,
    },
    Commit {
        path: String,
        actions: Vec<Value>,
        message: String,
    },
    CreateTag {
        path: String,
        tag: String,
        message: String,
    },
    PromoteToken {
        path: String,
        change: PromoteTokenChange,
    },
    /// Phase 12's hardening of a project created after phase 12 ran, by phase 12's own code: its
    /// next run then finds nothing to do.
    Harden { path: String },
}

/// The commit's file actions, its plan lines, and the files kept as they are.
pub fn file_actions(
    wanted: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    policy: &Policy,
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
                let update = match policy {
                    Policy::KeepChanges { reset, .. } => *reset,
                    Policy::Managed | Policy::Mirror => !promotion_owned(path),
                    Policy::Exact => true,
                };
                if update {
                    actions
                        .push(json!({"action": "update", "file_path": path, "content": content}));
                    lines.push(format!("~ {path}"));
                } else if matches!(policy, Policy::KeepChanges { .. }) {
                    kept.push(path.clone());
                }
            }
            Some(_) => {}
        }
    }
    if matches!(policy, Policy::Exact | Policy::Mirror) {
        for path in observed.keys() {
            // The project's own CODEOWNERS (written by the first commit) is not the version's;
            // a mirror keeps what promotion owns.
            let stays = wanted.contains_key(path)
                || common::codeowners::LOCATIONS.contains(&path.as_str())
                || (*policy == Policy::Mirror && promotion_owned(path));
            if !stays {
                actions.push(json!({"action": "delete", "file_path": path}));
                lines.push(format!("- {path}"));
            }
        }
    }
    if let Policy::KeepChanges {
        reset: true,
        reset_removes,
    } = policy
    {
        for path in reset_removes {
            if observed.contains_key(path) {
                actions.push(json!({"action": "delete", "file_path": path}));
                lines.push(format!("- {path}"));
            }
        }
    }
    (actions, lines, kept)
}

/// The pure plan of one project; `wrap` turns a step into the phase's own op. Returns the files
/// kept as changed (for the phase's warning).
pub fn plan<O>(
    w: &Wanted,
    o: &Observed,
    plan: &mut Plan<O>,
    wrap: impl Fn(SeedOp) -> O,
) -> Vec<String> {
    let path = w.path();
    if o.project_id.is_none() {
        plan.push(Change::create(
            "gitlab project",
            &path,
            json!({"namespace": w.group, "default_branch": BRANCH, "description": w.description}),
            &[],
            wrap(SeedOp::CreateProject {
                group: w.group.clone(),
                name: w.name.clone(),
                description: w.description.clone(),
            }),
        ));
    }
    if !o.main_protected || !o.release_tags_protected {
        plan.push(Change::create(
            "gitlab release protection",
            &path,
            json!({
                "protected_branch": (!o.main_protected).then_some(json!({"name": BRANCH, "push_access_level": access::MAINTAINER, "merge_access_level": access::MAINTAINER, "allow_force_push": false})),
                "protected_tag": (!o.release_tags_protected).then_some(json!({"name": RELEASE_TAG_PATTERN, "create_access_level": access::MAINTAINER})),
                "why": "a release tag pipeline gets its Vault token only on a protected tag",
            }),
            &[],
            wrap(SeedOp::ProtectReleases {
                path: path.clone(),
                main: !o.main_protected,
                tags: !o.release_tags_protected,
            }),
        ));
    }
    // Before the commit: the commit starts a main pipeline whose promote-artifact reads the token.
    let token = if !w.promote_token {
        None
    } else if o.project_id.is_some() {
        promote_token_change(&o.promote_token, o.today)
    } else {
        Some(PromoteTokenChange::Create)
    };
    if let Some(change) = token {
        plan.push(Change::create(
            "gitlab promotion token",
            &path,
            json!({"change": change.describe(), "vault": "kv/ci/projects/<project id>/promote", "token": "(sensitive)"}),
            &[],
            wrap(SeedOp::PromoteToken {
                path: path.clone(),
                change,
            }),
        ));
    }
    // The default CODEOWNERS, unless the project or its content has one: phase 12 then finds it
    // and its rerun after this phase stays empty.
    let files = common::codeowners::with_default(
        &w.files,
        &o.files,
        common::codeowners::OwnersKind::Service,
        &w.approver_parent,
    );
    let (actions, lines, kept) = file_actions(&files, &o.files, &w.policy);
    if !actions.is_empty() {
        let title = format!("{path}@{BRANCH}");
        let seeding = o.files.is_empty();
        let op = wrap(SeedOp::Commit {
            path: path.clone(),
            actions,
            message: w.commit_message.clone(),
        });
        plan.push(if seeding {
            Change::create("gitlab commit", &title, json!({"files": lines}), &[], op)
        } else {
            Change::update(
                "gitlab commit",
                &title,
                json!({}),
                json!({"files": lines}),
                &[],
                op,
            )
        });
    }
    if !o.tag_exists {
        plan.push(Change::create(
            "gitlab tag",
            &format!("{path}:{}", w.tag),
            json!({"ref": BRANCH, "why": "its release pipeline builds the image tag the platform deploys"}),
            &[],
            wrap(SeedOp::CreateTag {
                path: path.clone(),
                tag: w.tag.clone(),
                message: w.tag_message.clone(),
            }),
        ));
    }
    if o.project_id.is_none() {
        plan.push(Change::create(
            "gitlab hardening (phase 12)",
            &path,
            json!({"as": "phase 12 hardens every project of its groups: protected main, approvals, merge checks"}),
            &[],
            wrap(SeedOp::Harden { path: path.clone() }),
        ));
    }
    kept
}

async fn project_id(gitlab: &GitLabClient, path: &str) -> anyhow::Result<u64> {
    Ok(gitlab
        .project(path)
        .await?
        .with_context(|| format!("GitLab project {path} disappeared during apply: rerun apply"))?
        .id)
}

/// Carries out one step.
pub async fn execute(
    cfg: &common::config::PlatformConfig,
    gitlab: &GitLabClient,
    vault: &VaultClient,
    op: &SeedOp,
) -> anyhow::Result<()> {
    match op {
        SeedOp::Harden { path } => {
            // Phase 12 has not run on this platform (its approver groups do not exist): its first
            // run hardens every project of the group, this one included.
            let parent = common::codeowners::approver_parent(cfg.environment());
            if gitlab.group(&parent).await?.is_none() {
                tracing::warn!(
                    "{path}: not hardened now: phase 12 (gitlab-harden) has not run here (no group {parent}); its first run hardens it"
                );
                return Ok(());
            }
            let harden =
                gitlab_harden::reconcile::GitLabHarden::for_projects(cfg, [path.clone()]).await?;
            let applied = common::phase::apply_quietly(&harden)
                .await
                .with_context(|| {
                    format!(
                        "hardening {path} as phase 12 does (rerun gitlab-harden apply to finish)"
                    )
                })?;
            tracing::info!(
                "hardened {path} as phase 12 hardens every project: {applied} change(s)"
            );
        }
        SeedOp::CreateProject {
            group,
            name,
            description,
        } => {
            let g = gitlab
                .group(group)
                .await?
                .with_context(|| format!("GitLab group {group} disappeared during apply"))?;
            gitlab.create_project(name, g.id, description).await?;
        }
        SeedOp::ProtectReleases { path, main, tags } => {
            let id = project_id(gitlab, path).await?;
            if *main && gitlab.protected_branch(id, BRANCH).await?.is_none() {
                gitlab
                    .protect_branch(
                        id,
                        &json!({"name": BRANCH, "push_access_level": access::MAINTAINER, "merge_access_level": access::MAINTAINER, "allow_force_push": false}),
                    )
                    .await?;
            }
            if *tags {
                gitlab.ensure_release_tag_protection(id).await?;
            }
        }
        SeedOp::Commit {
            path,
            actions,
            message,
        } => {
            let id = project_id(gitlab, path).await?;
            gitlab.commit(id, BRANCH, message, actions).await?;
        }
        SeedOp::CreateTag { path, tag, message } => {
            let id = project_id(gitlab, path).await?;
            gitlab.create_tag(id, tag, BRANCH, message).await?;
        }
        SeedOp::PromoteToken { path, change } => {
            let id = project_id(gitlab, path).await?;
            // A project created in this apply has no token yet: observe again rather than trust
            // the plan's guess.
            // And when another run already did it, there is nothing left to do.
            let now = observe_promote_token(gitlab, vault, id).await?;
            if let Some(now_change) = promote_token_change(&now, common::dates::today()) {
                if now_change != *change {
                    tracing::info!(project = %path, planned = %change.describe(), now = %now_change.describe(), "the promotion token changed since the plan");
                }
                apply_promote_token(gitlab, vault, id, path, &now_change).await?;
            } else {
                tracing::info!(project = %path, "the promotion token is already current");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn managed_projects_follow_the_version_but_promotion_keeps_its_pins() {
        let wanted = files(&[
            ("src/main.rs", "new"),
            (
                "deploy/overlays/staging/kustomization.yaml",
                "digest: sha256:0",
            ),
            ("deploy/base/deployment.yaml", "v2"),
        ]);
        let observed: BTreeMap<String, String> = files(&[
            ("src/main.rs", "old"),
            (
                "deploy/overlays/staging/kustomization.yaml",
                "digest: sha256:promoted",
            ),
            ("deploy/base/deployment.yaml", "v2"),
        ])
        .into_iter()
        .map(|(p, c)| (p, git_blob_id(&c)))
        .collect();
        let (actions, lines, kept) = file_actions(&wanted, &observed, &Policy::Managed);
        assert_eq!(lines, ["~ src/main.rs"]);
        assert_eq!(actions.len(), 1);
        assert!(kept.is_empty());
        let demo = Policy::KeepChanges {
            reset: false,
            reset_removes: vec![],
        };
        let (actions, _, kept) = file_actions(&wanted, &observed, &demo);
        assert!(actions.is_empty());
        assert_eq!(kept.len(), 2);
        // The template follows its version exactly: pins too, and removed files go.
        let mut with_old = observed.clone();
        with_old.insert("old.txt".into(), git_blob_id("gone"));
        with_old.insert(".gitlab/CODEOWNERS".into(), git_blob_id("owners"));
        let (_, lines, kept) = file_actions(&wanted, &with_old, &Policy::Exact);
        assert_eq!(
            lines,
            [
                "~ deploy/overlays/staging/kustomization.yaml",
                "~ src/main.rs",
                "- old.txt"
            ]
        );
        assert!(kept.is_empty());
        // This repository: follows its version like a managed project, and what it deleted goes,
        // promotion's pins and CODEOWNERS excepted.
        let mut mirrored = with_old.clone();
        mirrored.insert(
            "deploy/overlays/old/kustomization.yaml".into(),
            git_blob_id("pinned"),
        );
        let (_, lines, _) = file_actions(&wanted, &mirrored, &Policy::Mirror);
        assert_eq!(lines, ["~ src/main.rs", "- old.txt"]);
    }
}
