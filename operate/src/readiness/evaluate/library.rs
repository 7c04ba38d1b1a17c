//! Phase 14's evidence: Harbor immutability and the CI library's blocking gates.

use common::config::PlatformConfig;
use common::phase::Phase;

use super::super::credentials::{self, Access, GitLabAccess, HarborAccess};
use super::{IMMUTABLE, Row, State, VERDICT, ev, rerun, row};

/// The release projects (phase 14's `immutable_semver`) and those mutable by design.
fn release_projects() -> (Vec<&'static str>, Vec<&'static str>) {
    let (release, others): (Vec<_>, Vec<_>) = ci_templates::desired::HARBOR_PROJECTS
        .iter()
        .partition(|p| p.immutable_semver);
    (
        release.iter().map(|p| p.name).collect(),
        others.iter().map(|p| p.name).collect(),
    )
}

/// Whether a project's rules hold an enabled immutability rule.
fn has_immutable_rule(rules: &[serde_json::Value]) -> bool {
    rules
        .iter()
        .any(|r| r["disabled"] != true && r["action"] == "immutable")
}

/// "Immutable artifacts": every Harbor project that holds released images has an enabled
/// immutability rule (caches are mutable by design); `pending` are phase 14's planned rule
/// changes, when its plan was read.
fn immutable_row(mutable: &[&str], pending: Option<&[String]>, source: String) -> Row {
    let (release, others) = release_projects();
    let pending_text = match pending {
        None => String::new(),
        Some([]) => "; immutable-rule changes pending: none".to_owned(),
        Some(p) => format!("; immutable-rule changes pending: {}", p.join(", ")),
    };
    let value = format!(
        "{}/{} release project(s) with an enabled immutability rule{}{pending_text}; {} mutable by design (caches, MR images)",
        release.len() - mutable.len(),
        release.len(),
        if mutable.is_empty() {
            String::new()
        } else {
            format!(" (missing on {})", mutable.join(", "))
        },
        others.join(", ")
    );
    let pending = pending.unwrap_or_default();
    if mutable.is_empty() && pending.is_empty() {
        row(&IMMUTABLE, State::Pass, vec![ev(source, value)], "")
    } else {
        let mut names: Vec<String> = mutable.iter().map(|m| (*m).to_owned()).collect();
        names.extend(pending.iter().cloned());
        names.sort();
        names.dedup();
        row(
            &IMMUTABLE,
            State::Fail,
            vec![ev(source, value)],
            format!(
                "release tags can be overwritten in Harbor project(s) {}: run {} (phase 14 restores the immutability rule)",
                names.join(", "),
                rerun("14")
            ),
        )
    }
}

/// The in-cluster run: Harbor's immutability read with phase 14's read-only robot; the library's
/// gates need phase 14's observation, which reads with the operator's credentials only.
async fn robot_rows(
    cfg: &PlatformConfig,
    harbor: &common::harbor::HarborClient,
    gitlab: &GitLabAccess,
) -> Vec<Row> {
    let (release, _) = release_projects();
    let mut mutable = Vec::new();
    for name in &release {
        let rules = match harbor.project(name).await {
            Ok(Some(p)) => harbor.immutable_rules(p.project_id).await,
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        match rules {
            Ok(rules) if has_immutable_rule(&rules) => {}
            Ok(_) => mutable.push(*name),
            Err(e) => {
                return vec![
                    row(
                        &IMMUTABLE,
                        State::Unknown,
                        vec![ev(
                            format!("Harbor: immutable tag rules of {name} (robot cicd-readiness)"),
                            e.one_line(),
                        )],
                        "fix the report's Harbor robot: rerun phase 14 (./scripts/deploy-cluster.sh --only 14)",
                    ),
                    library_with_group_token(cfg, gitlab).await,
                ];
            }
        }
    }
    vec![
        immutable_row(
            &mutable,
            None,
            format!(
                "Harbor: immutable tag rules of {}, read with the report's robot {}",
                release.join(", "),
                common::contract::READINESS_HARBOR_ROBOT
            ),
        ),
        library_with_group_token(cfg, gitlab).await,
    ]
}

/// The verdict row in the in-cluster run: the library read with the read-only token of the group
/// that holds it (phase 14's own observation also reads Harbor robots and Vault).
async fn library_with_group_token(cfg: &PlatformConfig, gitlab: &GitLabAccess) -> Row {
    let unknown = |source: &str, why: String, fix: &str| {
        row(&VERDICT, State::Unknown, vec![ev(source, why)], fix)
    };
    let groups = match gitlab {
        GitLabAccess::Groups(groups) => groups,
        GitLabAccess::Unavailable(why) => {
            return unknown(
                credentials::SOURCE,
                why.clone(),
                "the in-cluster run reads its GitLab tokens from Vault: run phase 17",
            );
        }
        GitLabAccess::Operator(_) => {
            return unknown(
                credentials::SOURCE,
                "the operator's run reads the library through phase 14".into(),
                "run phase 14",
            );
        }
    };
    let path = match ci_templates::settings::Settings::load(cfg) {
        Ok(s) => s.templates_project,
        Err(e) => {
            return unknown(
                "phase 14 settings",
                format!("{e:#}"),
                "fix the CI_* settings",
            );
        }
    };
    let Some((group, group_cfg)) = groups
        .iter()
        .find(|(g, _)| path.starts_with(&format!("{g}/")))
    else {
        return unknown(
            credentials::SOURCE,
            format!(
                "the library project {path} is in no group of {} (the report's tokens reach those groups only)",
                common::env::GITLAB_GROUPS
            ),
            "keep the library in a hardened group, or run the report with the operator's credentials",
        );
    };
    let read_as = format!(" (read-only token of {group})");
    let source = format!("GitLab: the library project {path}{read_as}");
    let client = match common::gitlab::GitLabClient::connect(group_cfg) {
        Ok(c) => c,
        Err(e) => return unknown(&source, e.one_line(), "rerun phase 17"),
    };
    let project = match client.project(&path).await {
        Ok(Some(p)) => p,
        Ok(None) => return verdict_row(group_cfg, None, &read_as).await,
        Err(e) => return unknown(&source, e.one_line(), "rerun phase 17"),
    };
    match client
        .repository_files(project.id, gitlab_harden::settings::MAIN_BRANCH)
        .await
    {
        Ok(files) => {
            let paths: Vec<String> = files.into_iter().map(|f| f.path).collect();
            verdict_row(group_cfg, Some(&(project.id, paths)), &read_as).await
        }
        Err(e) => unknown(&source, e.one_line(), "rerun phase 17"),
    }
}

/// Phase 14's observation and plan (Harbor immutability, the library's blocking gates), or in
/// the cluster the report's own robot.
pub(super) async fn harbor_and_library_rows(cfg: &PlatformConfig, access: &Access) -> Vec<Row> {
    match &access.harbor {
        HarborAccess::Operator => {}
        HarborAccess::Robot(harbor) => return robot_rows(cfg, harbor, &access.gitlab).await,
        HarborAccess::Unavailable(why) => {
            return vec![
                row(
                    &IMMUTABLE,
                    State::Unknown,
                    vec![ev(credentials::SOURCE, why.clone())],
                    "the in-cluster run reads its Harbor robot from Vault: run phase 14 and 17",
                ),
                library_with_group_token(cfg, &access.gitlab).await,
            ];
        }
    }
    let failed = |e: String| {
        let e = ev("phase 14 (ci-templates) observe", e);
        vec![
            row(
                &IMMUTABLE,
                State::Unknown,
                vec![e.clone()],
                "fix Harbor/GitLab access (cicd-preflight --only 14)",
            ),
            row(
                &VERDICT,
                State::Unknown,
                vec![e],
                "fix Harbor/GitLab access (cicd-preflight --only 14)",
            ),
        ]
    };
    let phase = match ci_templates::reconcile::CiTemplates::connect(cfg) {
        Ok(p) => p,
        Err(e) => return failed(format!("{e:#}")),
    };
    let observed = match phase.observe().await {
        Ok(o) => o,
        Err(e) => return failed(format!("{e:#}")),
    };
    let plan = match phase.diff(&observed) {
        Ok(plan) => plan,
        Err(e) => return failed(format!("phase 14 cannot plan: {e:#}")),
    };
    let (release, _) = release_projects();
    let mutable: Vec<&str> = release
        .iter()
        .copied()
        .filter(|name| {
            !observed.harbor_projects.get(name).is_some_and(|p| {
                p.as_ref()
                    .is_some_and(|p| has_immutable_rule(&p.immutable_rules))
            })
        })
        .collect();
    let pending: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.resource == "harbor immutable rule")
        .map(|c| c.name.clone())
        .collect();
    let immutable = immutable_row(
        &mutable,
        Some(&pending),
        format!(
            "Harbor: immutable tag rules of {} (read by phase 14), and phase 14's plan",
            release.join(", ")
        ),
    );

    let templates = observed
        .templates
        .as_ref()
        .map(|(id, files)| (*id, files.keys().cloned().collect::<Vec<String>>()));
    vec![immutable, verdict_row(cfg, templates.as_ref(), "").await]
}

/// "Pipeline verdict is definitive": no gate of the library at its release tag may fail without
/// failing the pipeline. `templates`: the library project's id and files, `None` when it does not
/// exist; `cfg` reads GitLab; `read_as` ends the evidence's source (which credential read it).
async fn verdict_row(
    cfg: &PlatformConfig,
    templates: Option<&(u64, Vec<String>)>,
    read_as: &str,
) -> Row {
    match templates {
        None => row(
            &VERDICT,
            State::Fail,
            vec![ev("GitLab: the CI template library project", "not found")],
            format!("run {} (phase 14 publishes the library)", rerun("14")),
        ),
        Some((id, files)) => {
            // The files the services run: the library at its release tag.
            let tag = ci_templates::desired::library_tag();
            let texts = match library_texts(cfg, *id, files.iter(), &tag).await {
                Ok(t) => t,
                Err(e) => {
                    return row(
                        &VERDICT,
                        State::Unknown,
                        vec![ev(format!("GitLab: the library at {tag}"), e)],
                        "make the library project readable",
                    );
                }
            };
            let mut soft = Vec::new();
            let mut exit_code_only = 0;
            for (path, text) in &texts {
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    // A trailing comment does not change the value.
                    let t = line.split(" #").next().unwrap_or_default().trim();
                    if t == "allow_failure: true" {
                        soft.push(format!("{path}:{}", i + 1));
                    } else if t == "allow_failure:"
                        && lines
                            .get(i + 1)
                            .is_some_and(|n| n.trim().starts_with("exit_codes:"))
                    {
                        exit_code_only += 1;
                    }
                }
            }
            let e = ev(
                format!(
                    "GitLab: {} YAML file(s) of the library project {id} at {tag}{read_as}",
                    texts.len()
                ),
                format!(
                    "allow_failure: true in {} place(s){}; {exit_code_only} job(s) allow only a warning exit code",
                    soft.len(),
                    if soft.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", soft.join(", "))
                    }
                ),
            );
            if texts.is_empty() {
                row(
                    &VERDICT,
                    State::Fail,
                    vec![e],
                    format!(
                        "the library has no YAML at its release tag {tag}: run {} (phase 14 releases it)",
                        rerun("14")
                    ),
                )
            } else if soft.is_empty() {
                row(&VERDICT, State::Pass, vec![e], "")
            } else {
                row(
                    &VERDICT,
                    State::Fail,
                    vec![e],
                    "a gate that may fail lets a red pipeline look green: remove allow_failure: true from the library's gate jobs and release it",
                )
            }
        }
    }
}

/// The library's YAML files at `tag`, read concurrently.
pub(super) async fn library_texts(
    cfg: &PlatformConfig,
    project: u64,
    paths: impl Iterator<Item = &String>,
    tag: &str,
) -> Result<Vec<(String, String)>, String> {
    use futures::StreamExt as _;
    let gitlab = common::gitlab::GitLabClient::connect(cfg).map_err(|e| e.one_line())?;
    let yaml: Vec<String> = paths
        .filter(|p| {
            std::path::Path::new(p.as_str())
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
        })
        .cloned()
        .collect();
    let read: Vec<Result<Option<(String, String)>, String>> = futures::stream::iter(yaml)
        .map(|path| {
            let gitlab = &gitlab;
            async move {
                gitlab
                    .file_text(project, &path, tag)
                    .await
                    .map(|t| t.map(|t| (path, t)))
                    .map_err(|e| e.one_line())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut texts: Vec<(String, String)> = read
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    texts.sort();
    Ok(texts)
}
