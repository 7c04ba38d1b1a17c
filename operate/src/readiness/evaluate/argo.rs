//! Argo CD's evidence: RBAC and `AppProject`s (phase 15's plan), self-heal, ephemeral
//! environments, rollback analysis.

use common::config::PlatformConfig;
use common::env;
use common::kube::KubeClient;
use serde_json::json;

use super::{
    Attestations, CONFIG, PROD_LIKE, ROLLBACK, Row, SOLE_PATH, State, attested, ev, rerun, row,
};

/// Argo CD: RBAC and `AppProject`s (phase 15's plan), Applications' self-heal, ephemeral
/// environments, rollback analysis.
pub(super) async fn argo_rows(
    cfg: &PlatformConfig,
    kube: Result<&KubeClient, &str>,
    attestations: &Attestations,
    today: i64,
) -> Vec<Row> {
    let kube = match kube {
        Ok(kube) => kube,
        Err(why) => {
            let e = ev("kubernetes", why);
            return [&SOLE_PATH, &PROD_LIKE, &ROLLBACK, &CONFIG]
                .into_iter()
                .map(|s| {
                    row(
                        s,
                        State::Unknown,
                        vec![e.clone()],
                        "set KUBECONFIG to a kubeconfig that may read Argo CD's objects",
                    )
                })
                .collect();
        }
    };
    let ns = cfg
        .environment()
        .get(env::ARGOCD_NAMESPACE)
        .unwrap_or("argocd")
        .to_owned();

    // Sole deploy path: no default role that deploys, and phase 15's RBAC and AppProjects as desired.
    let rbac = kube
        .get(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": ns}}))
        .await;
    let mut sole_ev = Vec::new();
    let mut sole_problems = Vec::new();
    // Both halves must be read for a pass: the live RBAC and phase 15's plan.
    let (mut rbac_read, mut plan_read) = (false, false);
    match rbac {
        Ok(Some(cm)) => {
            let default = cm["data"]["policy.default"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let lines = cm["data"]["policy.csv"]
                .as_str()
                .unwrap_or("")
                .lines()
                .filter(|l| l.trim_start().starts_with("p,"))
                .count();
            rbac_read = true;
            sole_ev.push(ev(
                format!("kubernetes: ConfigMap {ns}/argocd-rbac-cm"),
                format!("policy.default {default:?}, {lines} policy line(s)"),
            ));
            if !(default.is_empty() || default == "role:readonly") {
                sole_problems.push(format!(
                    "policy.default is {default} (every signed-in user gets it)"
                ));
            }
        }
        Ok(None) => {
            sole_ev.push(ev(
                format!("kubernetes: ConfigMap {ns}/argocd-rbac-cm"),
                "missing",
            ));
            sole_problems.push("argocd-rbac-cm is missing".into());
        }
        Err(e) => sole_ev.push(ev("kubernetes: argocd-rbac-cm", e.one_line())),
    }
    match argo_delivery::reconcile::ArgoDelivery::connect(cfg, false).await {
        Ok(phase) => match common::phase::plan(&phase).await {
            Ok(plan) => {
                plan_read = true;
                let drift: Vec<String> = plan
                    .changes
                    .iter()
                    .filter(|c| {
                        c.name.contains("argocd-rbac-cm") || c.resource.contains("AppProject")
                    })
                    .map(|c| format!("{} {}", c.resource, c.name))
                    .collect();
                sole_ev.push(ev(
                    "phase 15 (argo-delivery) plan",
                    format!(
                        "RBAC and AppProject changes pending: {}",
                        if drift.is_empty() {
                            "none".into()
                        } else {
                            drift.join(", ")
                        }
                    ),
                ));
                if !drift.is_empty() {
                    sole_problems.push(format!("changed by hand: {}", drift.join(", ")));
                }
            }
            Err(e) => sole_ev.push(ev("phase 15 (argo-delivery) plan", format!("{e:#}"))),
        },
        Err(e) => sole_ev.push(ev("phase 15 (argo-delivery) connect", format!("{e:#}"))),
    }
    let sole_readable = rbac_read && plan_read;
    let sole = if !sole_problems.is_empty() {
        row(
            &SOLE_PATH,
            State::Fail,
            sole_ev,
            format!(
                "{}: run {} (phase 15 restores Argo CD's RBAC and AppProjects)",
                sole_problems.join("; "),
                rerun("15")
            ),
        )
    } else if sole_readable {
        row(&SOLE_PATH, State::Pass, sole_ev, "")
    } else {
        row(
            &SOLE_PATH,
            State::Unknown,
            sole_ev,
            "make Argo CD's RBAC and phase 15's plan readable (cicd-preflight --only 15)",
        )
    };

    // Applications: config with the artifact (self-heal), production-like ephemeral environments.
    let apps = kube
        .list("argoproj.io/v1alpha1", "Application", &ns, "")
        .await;
    let sets = kube
        .list("argoproj.io/v1alpha1", "ApplicationSet", &ns, "")
        .await;
    let (config, prod_like) = match (apps, sets) {
        (Ok(apps), Ok(sets)) => {
            let no_heal: Vec<String> = apps
                .iter()
                .filter(|a| a["spec"]["syncPolicy"]["automated"]["selfHeal"] != true)
                .filter_map(|a| a["metadata"]["name"].as_str().map(str::to_owned))
                .collect();
            let e = ev(
                format!("kubernetes: Applications in {ns}"),
                format!(
                    "{} Application(s); self-heal (hand edits reverted) on {}",
                    apps.len(),
                    apps.len() - no_heal.len()
                ),
            );
            let config = if apps.is_empty() {
                row(
                    &CONFIG,
                    State::Unknown,
                    vec![e],
                    "deploy through Argo CD (phases 15–18)",
                )
            } else if no_heal.is_empty() {
                row(&CONFIG, State::Pass, vec![e], "")
            } else {
                row(
                    &CONFIG,
                    State::Fail,
                    vec![e],
                    format!(
                        "turn on automated sync with selfHeal for {} (their live config can drift from Git)",
                        no_heal.join(", ")
                    ),
                )
            };
            // Each production Application's repository also feeds an ephemeral ApplicationSet:
            // the merge requests of the service are tested in an environment built from the
            // same repository and base as production (only the overlay differs).
            let set_repos: Vec<&str> = sets
                .iter()
                .filter_map(|s| s["spec"]["template"]["spec"]["source"]["repoURL"].as_str())
                .collect();
            let production: Vec<(&str, &str)> = apps
                .iter()
                .filter(|a| a["metadata"]["labels"][common::contract::STAGE_LABEL] == "production")
                .filter_map(|a| {
                    Some((
                        a["metadata"]["name"].as_str()?,
                        a["spec"]["source"]["repoURL"].as_str()?,
                    ))
                })
                .collect();
            let without: Vec<&str> = production
                .iter()
                .filter(|(_, repo)| !set_repos.contains(repo))
                .map(|(name, _)| *name)
                .collect();
            let e = ev(
                format!("kubernetes: ApplicationSets and production Applications in {ns}"),
                format!(
                    "{} ApplicationSet(s) for ephemeral environments; {}/{} production Application(s) have one from the same repository{}",
                    sets.len(),
                    production.len() - without.len(),
                    production.len(),
                    if without.is_empty() {
                        String::new()
                    } else {
                        format!(" (none for {})", without.join(", "))
                    }
                ),
            );
            let prod_like = if production.is_empty() {
                row(
                    &PROD_LIKE,
                    State::Unknown,
                    vec![e],
                    "no production Application yet: onboard a service (onboard-service)",
                )
            } else if without.is_empty() {
                row(&PROD_LIKE, State::Pass, vec![e], "")
            } else {
                row(
                    &PROD_LIKE,
                    State::Fail,
                    vec![e],
                    format!(
                        "{} reach production without a per-MR environment: run {} (phase 15's ApplicationSets), or onboard them with onboard-service",
                        without.join(", "),
                        rerun("15")
                    ),
                )
            };
            (config, prod_like)
        }
        (Err(e), _) | (_, Err(e)) => {
            let e = ev("kubernetes: Applications", e.one_line());
            (
                row(
                    &CONFIG,
                    State::Unknown,
                    vec![e.clone()],
                    "make Argo CD's objects readable",
                ),
                row(
                    &PROD_LIKE,
                    State::Unknown,
                    vec![e],
                    "make Argo CD's objects readable",
                ),
            )
        }
    };

    // On-demand rollback: analysis templates (automated rollback) and a timed drill.
    let templates = kube
        .list("argoproj.io/v1alpha1", "ClusterAnalysisTemplate", "", "")
        .await
        .map(|t| t.len());
    let mut rb_ev = vec![ev(
        "kubernetes: ClusterAnalysisTemplates",
        match &templates {
            Ok(n) => format!("{n} (automated rollback on a failed analysis)"),
            Err(e) => e.one_line(),
        },
    )];
    let drill = attested(attestations, ROLLBACK.check, today, &mut rb_ev);
    let rollback = match (templates, drill) {
        (Ok(n), Some(a)) if n > 0 && a.value.is_some_and(|s| s < 300.0) => {
            row(&ROLLBACK, State::Pass, rb_ev, "")
        }
        (Ok(0), _) => row(
            &ROLLBACK,
            State::Fail,
            rb_ev,
            format!("no analysis templates: run {}", rerun("15")),
        ),
        (Ok(_), Some(a)) if a.value.is_some() => row(
            &ROLLBACK,
            State::Fail,
            rb_ev,
            "the last drill took 5 minutes or more (value: seconds): see docs/cicd/runbooks/rollback-procedure.md",
        ),
        (Ok(_), Some(_)) => row(
            &ROLLBACK,
            State::Unknown,
            rb_ev,
            "the drill's attestation has no duration: record the seconds it took as value",
        ),
        _ => row(
            &ROLLBACK,
            State::Unknown,
            rb_ev,
            "time a rollback drill and record it (check on_demand_rollback, value: seconds) in the attestation file",
        ),
    };
    vec![sole, prod_like, rollback, config]
}
