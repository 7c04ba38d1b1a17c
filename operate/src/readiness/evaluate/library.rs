//! Phase 14's evidence: Harbor immutability and the CI library's blocking gates.

use common::config::PlatformConfig;
use common::phase::Phase;

use super::{IMMUTABLE, Row, State, VERDICT, ev, rerun, row};

/// Phase 14's observation and plan: Harbor immutability, and the library's blocking gates.
pub(super) async fn harbor_and_library_rows(cfg: &PlatformConfig) -> Vec<Row> {
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

    // Immutable artifacts: every Harbor project that holds released images (phase 14's
    // `immutable_semver`) has an enabled immutability rule; caches are mutable by design.
    let release_projects: Vec<&str> = ci_templates::desired::HARBOR_PROJECTS
        .iter()
        .filter(|p| p.immutable_semver)
        .map(|p| p.name)
        .collect();
    let mutable: Vec<&str> = release_projects
        .iter()
        .copied()
        .filter(|name| {
            !observed.harbor_projects.get(name).is_some_and(|p| {
                p.as_ref().is_some_and(|p| {
                    p.immutable_rules
                        .iter()
                        .any(|r| r["disabled"] != true && r["action"] == "immutable")
                })
            })
        })
        .collect();
    let pending: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.resource == "harbor immutable rule")
        .map(|c| c.name.clone())
        .collect();
    let others: Vec<&str> = ci_templates::desired::HARBOR_PROJECTS
        .iter()
        .filter(|p| !p.immutable_semver)
        .map(|p| p.name)
        .collect();
    let source = format!(
        "Harbor: immutable tag rules of {} (read by phase 14), and phase 14's plan",
        release_projects.join(", ")
    );
    let value = format!(
        "{}/{} release project(s) with an enabled immutability rule{}; immutable-rule changes pending: {}; {} mutable by design (caches, MR images)",
        release_projects.len() - mutable.len(),
        release_projects.len(),
        if mutable.is_empty() {
            String::new()
        } else {
            format!(" (missing on {})", mutable.join(", "))
        },
        if pending.is_empty() {
            "none".to_owned()
        } else {
            pending.join(", ")
        },
        others.join(", ")
    );
    let immutable = if mutable.is_empty() && pending.is_empty() {
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
    };

    // The verdict is definitive: no gate of the library may fail without failing the pipeline.
    let verdict = match &observed.templates {
        None => row(
            &VERDICT,
            State::Fail,
            vec![ev("GitLab: the CI template library project", "not found")],
            format!("run {} (phase 14 publishes the library)", rerun("14")),
        ),
        Some((id, files)) => {
            // The files the services run: the library at its release tag.
            let tag = ci_templates::desired::library_tag();
            let texts = match library_texts(cfg, *id, files.keys(), &tag).await {
                Ok(t) => t,
                Err(e) => {
                    return vec![
                        immutable,
                        row(
                            &VERDICT,
                            State::Unknown,
                            vec![ev(format!("GitLab: the library at {tag}"), e)],
                            "make the library project readable",
                        ),
                    ];
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
                    "GitLab: {} YAML file(s) of the library project {id} at {tag}",
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
    };
    vec![immutable, verdict]
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
