//! Phase 12's evidence: protected `main` and merge settings, from gitlab-harden's own
//! observation and plan.

use common::config::PlatformConfig;
use common::phase::Phase;
use common::plan::{Change, Plan};
use gitlab_harden::reconcile::{Observed, Op};

use super::super::credentials::{self, GitLabAccess};
use super::{
    Evidence, Prom, Row, State, TESTING, TRUNK, WORK_STOPS, alert_rule_loaded, ev, rerun, row,
};

/// Phase 12's observation and plan, each group of `groups` with its own access; `Err` with the
/// evidence when one cannot be read.
async fn observe_and_plan(
    configs: &[(String, PlatformConfig)],
) -> Result<Vec<(Observed, Plan<Op>)>, (Evidence, &'static str)> {
    let mut out = Vec::new();
    for (what, cfg) in configs {
        let phase = gitlab_harden::reconcile::GitLabHarden::connect(cfg, false)
            .await
            .map_err(|e| {
                (
                    ev(
                        format!("phase 12 (gitlab-harden) observe{what}"),
                        format!("{e:#}"),
                    ),
                    "fix the GitLab settings (run cicd-preflight --only 12)",
                )
            })?;
        let observed = phase.observe().await.map_err(|e| {
            (
                ev(
                    format!("phase 12 (gitlab-harden) observe{what}"),
                    format!("{e:#}"),
                ),
                "fix the GitLab access (run cicd-preflight --only 12)",
            )
        })?;
        let plan = phase.diff(&observed).map_err(|e| {
            (
                ev(
                    format!("phase 12 (gitlab-harden) plan{what}"),
                    format!("{e:#}"),
                ),
                "phase 12 cannot plan: run gitlab-harden plan and fix what it reports",
            )
        })?;
        out.push((observed, plan));
    }
    Ok(out)
}

/// Phase 12's observation and plan: protected `main`, merge settings of every hardened project.
pub(super) async fn gitlab_rows(access: &GitLabAccess, prom: &Prom) -> Vec<Row> {
    let unknown = |e: Evidence, fix: &str| {
        vec![
            row(&TRUNK, State::Unknown, vec![e.clone()], fix),
            row(&TESTING, State::Unknown, vec![e.clone()], fix),
            row(&WORK_STOPS, State::Unknown, vec![e], fix),
        ]
    };
    let (configs, read_as) = match access {
        GitLabAccess::Operator(cfg) => (vec![(String::new(), (**cfg).clone())], String::new()),
        GitLabAccess::Groups(groups) => (
            groups
                .iter()
                .map(|(g, c)| (format!(" of group {g}"), c.clone()))
                .collect(),
            format!(
                " with {} read-only group token(s) ({})",
                groups.len(),
                groups
                    .iter()
                    .map(|(g, _)| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        GitLabAccess::Unavailable(why) => {
            return unknown(
                ev(credentials::SOURCE, why.clone()),
                "the in-cluster run reads its GitLab tokens from Vault: run phase 17 (./scripts/deploy-cluster.sh --only 17)",
            );
        }
    };
    let observed_plans = match observe_and_plan(&configs).await {
        Ok(o) => o,
        Err((e, fix)) => return unknown(e, fix),
    };
    let projects: usize = observed_plans.iter().map(|(o, _)| o.projects.len()).sum();
    let changes: Vec<&Change<Op>> = observed_plans
        .iter()
        .flat_map(|(_, p)| p.changes.iter())
        .collect();
    let warnings: Vec<&String> = observed_plans
        .iter()
        .flat_map(|(_, p)| p.warnings.iter())
        .collect();
    let pending = |resource: &str, field: Option<&str>| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.resource == resource)
            .filter(|c| {
                field.is_none_or(|f| c.diff.iter().any(|d| d.contains(f)) || c.before.is_none())
            })
            .map(|c| c.name.clone())
            .collect()
    };
    let source = format!(
        "phase 12 (gitlab-harden) plan over {projects} project(s) read from GitLab{read_as}"
    );
    let fix12 = |what: &str, names: &[String]| {
        format!(
            "{what} on {}: run {} (phase 12 restores it), and find who changed it in GitLab's audit events",
            names.join(", "),
            rerun("12")
        )
    };

    // Trunk-based: every hardened project's main protected as phase 12 wants.
    let unprotected: Vec<String> = observed_plans
        .iter()
        .flat_map(|(o, _)| o.projects.iter())
        .filter(|p| p.main.is_none())
        .map(|p| p.project.path_with_namespace.clone())
        .collect();
    let mut weakened = pending("protected branch", None);
    // On GitLab Free phase 12 cannot change who may push in place: it warns instead of planning
    // a change, and the warning lists the projects (Premium's allowed_to_*).
    if let Some(w) = warnings
        .iter()
        .find(|w| w.contains("cannot change who may push"))
    {
        weakened.push(format!("(GitLab Free) {w}"));
    }
    let trunk = if projects == 0 {
        row(
            &TRUNK,
            State::Unknown,
            vec![ev(source.clone(), "no project found")],
            "run phase 12",
        )
    } else if weakened.is_empty() && unprotected.is_empty() {
        row(
            &TRUNK,
            State::Pass,
            vec![ev(
                source.clone(),
                format!(
                    "main protected as desired on {projects}/{projects} projects; 0 protected-branch changes pending"
                ),
            )],
            "",
        )
    } else {
        let mut names = weakened.clone();
        names.extend(unprotected.iter().cloned());
        names.sort();
        names.dedup();
        row(
            &TRUNK,
            State::Fail,
            vec![ev(
                source.clone(),
                format!(
                    "{} protected-branch change(s) pending: {}",
                    names.len(),
                    names.join(", ")
                ),
            )],
            fix12("main's protection is weaker than phase 12's", &names),
        )
    };

    // Testing before merge and work stops when red: merge only when the pipeline succeeds.
    let must_succeed: Vec<String> = pending(
        "project settings",
        Some("only_allow_merge_if_pipeline_succeeds"),
    );
    let skipped_ok: Vec<String> =
        pending("project settings", Some("allow_merge_on_skipped_pipeline"));
    let testing = if projects == 0 {
        row(
            &TESTING,
            State::Unknown,
            vec![ev(source.clone(), "no project found")],
            "run phase 12",
        )
    } else if must_succeed.is_empty() {
        row(
            &TESTING,
            State::Pass,
            vec![ev(
                source.clone(),
                format!(
                    "only_allow_merge_if_pipeline_succeeds as desired on {projects}/{projects} projects"
                ),
            )],
            "",
        )
    } else {
        row(
            &TESTING,
            State::Fail,
            vec![ev(
                source.clone(),
                format!(
                    "merge without a green pipeline allowed on {}",
                    must_succeed.join(", ")
                ),
            )],
            fix12("merging without a green pipeline is allowed", &must_succeed),
        )
    };
    let (rule, rule_ev) = alert_rule_loaded(prom, "PipelineSuccessRateLow").await;
    let mut blocked = must_succeed.clone();
    blocked.extend(skipped_ok);
    blocked.sort();
    blocked.dedup();
    let stops_ev = vec![
        ev(
            source,
            format!(
                "MRs blocked on a red or skipped pipeline: {}/{projects} projects",
                projects - blocked.len().min(projects)
            ),
        ),
        rule_ev,
    ];
    let work_stops = match (blocked.is_empty() && projects > 0, rule) {
        _ if projects == 0 => row(&WORK_STOPS, State::Unknown, stops_ev, "run phase 12"),
        (true, Some(true)) => row(&WORK_STOPS, State::Pass, stops_ev, ""),
        (false, _) => row(
            &WORK_STOPS,
            State::Fail,
            stops_ev,
            fix12("MRs merge on a red or skipped pipeline", &blocked),
        ),
        (true, _) => row(
            &WORK_STOPS,
            State::Unknown,
            stops_ev,
            "load the PrometheusRule cicd-alerts (phase 17) so a red pipeline alerts the team",
        ),
    };
    vec![trunk, testing, work_stops]
}
