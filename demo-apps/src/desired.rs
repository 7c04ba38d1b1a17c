//! What phase 18 wants, as plain data (no I/O): the demo namespace, the in-cluster traffic
//! generator, the Harbor project, and the five scenarios. The projects' staging and production
//! Argo CD Applications are phase 15's (one owner, from `common::contract::services`).

use common::contract;
use common::kube::owned_labels;
use serde::Serialize;
use serde_json::{Value, json};

use crate::projects::DemoProject;
use crate::settings::Settings;

pub const PHASE_LABEL: &str = "18";
/// The branch the projects are seeded on and Argo CD follows.
pub const BRANCH: &str = seeded_projects::seed::BRANCH;
/// Pod label shared by every arcade pod: the projects' `NetworkPolicy` and `PodMonitor` select it.
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "netops-arcade");

/// GitLab path of a demo project.
pub fn project_path(s: &Settings, project: &DemoProject) -> String {
    format!("{}/{}", s.gitlab_group, project.name)
}

/// The demo namespace, restricted by Pod Security admission (every arcade pod is non-root), and
/// labelled for the Harbor pull Secret (phase 15's `ClusterExternalSecret`).
pub fn namespace(s: &Settings) -> Value {
    let mut labels = owned_labels(PHASE_LABEL);
    labels["pod-security.kubernetes.io/enforce"] = json!("restricted");
    labels[PART_OF.0] = json!(PART_OF.1);
    labels[contract::HARBOR_PULL_LABEL] = json!("true");
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.namespace, "labels": labels}})
}

/// The traffic generator: the packet-relay image in `generate` mode on the pinned release tag,
/// posting `{"id","payload","hops":[],"ttl":8}` to router-west (what the bash phase's curl
/// `CronJob` on `curlimages/curl:latest` did, with metrics and a steady rate).
pub fn traffic_generator(s: &Settings) -> Value {
    let mut labels = owned_labels(PHASE_LABEL);
    labels["app"] = json!("traffic-generator");
    labels[PART_OF.0] = json!(PART_OF.1);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "traffic-generator", "namespace": s.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": "traffic-generator"}},
            "template": {
                "metadata": {"labels": {"app": "traffic-generator", PART_OF.0: PART_OF.1}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "imagePullSecrets": [{"name": contract::PULL_SECRET}],
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "generator",
                        "image": s.image("packet-relay"),
                        "args": ["generate"],
                        "env": [
                            {"name": "ROUTER_NAME", "value": "generator"},
                            {"name": "GENERATOR_TARGET", "value": "router-west=http://router-west:8080/relay"},
                            {"name": "GENERATOR_RATE", "value": s.generator_rate.to_string()},
                            {"name": "GENERATOR_TTL", "value": "8"},
                        ],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    })
}

/// Kubernetes objects in apply order, each with the CRD it needs.
pub fn objects(s: &Settings) -> Vec<(Value, Option<&'static str>)> {
    vec![(namespace(s), None), (traffic_generator(s), None)]
}

/// The Harbor project the images go to, when it is missing (phase 14 normally creates it with
/// retention and robots; this keeps phase 18 runnable on its own).
pub fn harbor_project_body(s: &Settings) -> Value {
    json!({"project_name": s.harbor_project, "metadata": {"public": "false", "auto_scan": "true"}})
}

/// One demo scenario (plan Phase 18): how to trigger it and what to watch.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub number: u8,
    pub title: &'static str,
    pub trigger: String,
    pub watch: String,
}

/// The five scenarios with this platform's URLs.
pub fn scenarios(s: &Settings) -> Vec<Scenario> {
    let relay = format!("{}/{}/packet-relay", s.gitlab_url, s.gitlab_group);
    let dashboard = format!("{}/{}/netops-dashboard", s.gitlab_url, s.gitlab_group);
    let routing = format!("{relay}/-/blob/{BRANCH}/deploy/overlays/rke2-prod/routing-config.yaml");
    let d = &s.domain;
    vec![
        Scenario {
            number: 1,
            title: "Bad IP (auto-rollback)",
            trigger: format!(
                "In {routing} set NEXT_HOPS to http://10.0.0.99:8080 and merge to main."
            ),
            watch: format!(
                "https://rollouts.{d}: router-core's canary starts, its packets drop, the success-rate AnalysisRun fails (< 0.95) and the Rollout aborts to stable. https://netops.{d}: the core → 10.0.0.99 link goes red, then the flow returns to router-east."
            ),
        },
        Scenario {
            number: 2,
            title: "Good IP (full transition)",
            trigger: format!(
                "In {routing} set NEXT_HOPS to http://router-north:8080 and merge to main."
            ),
            watch: format!(
                "https://rollouts.{d}: canary 5% → 25% → 50% → 100%, every analysis successful. https://netops.{d}: the east link fades, the north link turns green, zero dropped packets."
            ),
        },
        Scenario {
            number: 3,
            title: "Security block",
            trigger: format!(
                "In {dashboard}, copy scenarios/security-block/package.json and package-lock.json (lodash 4.17.11) to the project root and push a branch with a merge request."
            ),
            watch: "The pipeline stops at the dependency scan (trivy): CVE-2019-10744 is critical, the gate allows 0. The merge request shows the finding; nothing is built or deployed.".into(),
        },
        Scenario {
            number: 4,
            title: "Approval gate",
            trigger: format!(
                "Log in as a developer (Keycloak), change anything in {relay} and open a merge request."
            ),
            watch: "The merge request cannot be merged until a member of senior-developers approves (rule \"Senior Review Required\", phase 12); the author's own approval does not count.".into(),
        },
        Scenario {
            number: 5,
            title: "Blue-green switch",
            trigger: format!(
                "In {dashboard} change the page, set APP_VERSION v2 and APP_COLOR green in deploy/overlays/rke2-prod/release.yaml, merge, tag the merge commit with the next release (e.g. v0.2.0) and set newTag to it."
            ),
            watch: format!(
                "https://netops-preview.{d} shows v2 (green) while https://netops.{d} stays on v1 (blue). Promote in https://rollouts.{d} (or `kubectl argo rollouts promote netops-dashboard -n {}`): the switch is instant; the old version stays 30 s for a rollback.",
                s.namespace
            ),
        },
    ]
}

/// The scenarios as text (printed after `plan` and `apply`).
pub fn render_scenarios(s: &Settings) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "\nNetOps Arcade — dashboard https://netops.{}, Argo Rollouts https://rollouts.{}\n",
        s.domain, s.domain
    );
    for sc in scenarios(s) {
        let _ = write!(
            out,
            "\n  {}. {}\n     do:    {}\n     watch: {}\n",
            sc.number, sc.title, sc.trigger, sc.watch
        );
    }
    out
}
