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
    in_cluster: bool,
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
    if in_cluster {
        // The in-cluster run may not dry-run phase 15's apply (that needs write rights): it
        // compares phase 15's desired RBAC and AppProjects with the live objects instead.
        match hand_changes(cfg, kube, &ns).await {
            Ok((compared, drift)) => {
                plan_read = true;
                sole_ev.push(ev(
                    "phase 15 (argo-delivery) desired RBAC and AppProjects, compared with the live objects (read-only)",
                    format!(
                        "{compared} object(s) compared; changed by hand: {}",
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
            Err(e) => sole_ev.push(ev("phase 15 (argo-delivery) desired objects", e)),
        }
    } else {
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

/// Phase 15's desired `argocd-rbac-cm` and `AppProjects` against the live objects: how many were
/// compared, and those whose managed fields differ (or that are missing).
async fn hand_changes(
    cfg: &PlatformConfig,
    kube: &KubeClient,
    ns: &str,
) -> Result<(usize, Vec<String>), String> {
    let s = argo_delivery::settings::Settings::load(cfg).map_err(|e| format!("{e:#}"))?;
    let mut wanted = vec![argo_delivery::desired::rbac_config_map(&s)];
    wanted.extend(argo_delivery::desired::app_projects(&s));
    let mut drift = Vec::new();
    for want in &wanted {
        let mut key = want.clone();
        if key["metadata"]["namespace"].is_null() {
            key["metadata"]["namespace"] = json!(ns);
        }
        let title = format!(
            "{} {}",
            want["kind"].as_str().unwrap_or_default(),
            want["metadata"]["name"].as_str().unwrap_or_default()
        );
        match kube.get(&key).await.map_err(|e| e.one_line())? {
            None => drift.push(format!("{title} (missing)")),
            Some(live) => {
                let fields = ["data", "spec"];
                if fields
                    .iter()
                    .any(|f| !want[*f].is_null() && !contains(&live[*f], &want[*f]))
                {
                    drift.push(title);
                }
            }
        }
    }
    Ok((wanted.len(), drift))
}

/// Whether `have` holds everything `want` sets (objects: each key, recursively; arrays: the same
/// elements in order; anything else: equal): what a server-side apply of `want` would not change.
fn contains(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| v.is_null() || h.get(k).is_some_and(|hv| contains(hv, v))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        _ => have == want,
    }
}

#[cfg(test)]
mod tests {
    use super::contains;
    use serde_json::json;

    #[test]
    fn contains_is_what_an_apply_would_not_change() {
        let live =
            json!({"data": {"policy.csv": "p, a", "policy.default": "role:readonly", "x": 1}});
        assert!(contains(&live, &json!({"data": {"policy.csv": "p, a"}})));
        assert!(!contains(&live, &json!({"data": {"policy.csv": "p, b"}})));
        assert!(!contains(&live, &json!({"data": {"missing": "v"}})));
        let spec =
            json!({"destinations": [{"namespace": "a", "server": "s", "name": "in-cluster"}]});
        assert!(contains(
            &spec,
            &json!({"destinations": [{"namespace": "a", "server": "s"}]})
        ));
        assert!(!contains(
            &spec,
            &json!({"destinations": [{"namespace": "a"}, {"namespace": "b"}]})
        ));
    }
}
