//! What phase 15 wants in the cluster, as data (no I/O): Argo CD's RBAC (plan §2.6), the
//! `AppProjects`, and the Argo Rollouts analysis templates of §2.4 with their gates.

use std::collections::BTreeSet;

use common::contract::{
    self, DeliveredService, EPHEMERAL_LABEL, HARBOR_PULL_LABEL, PULL_SECRET, TTL_LABEL,
};
use common::kube::owned_labels;
use serde_json::{Value, json};

use crate::settings::{Settings, Thresholds};

/// The phase label value on every object.
pub const PHASE_LABEL: &str = "15";

/// `policy.csv` of `argocd-rbac-cm` (plan §2.6, "`ArgoCD` RBAC"). The plan's senior developers sync
/// "their own projects" (`default/*` there); with the `AppProjects` below that is staging and
/// ephemeral, never production.
pub const POLICY_CSV: &str = include_str!("../rbac/policy.csv");

/// The keys of `argocd-rbac-cm` this phase owns; server-side apply leaves every other key alone.
pub fn rbac_config_map(s: &Settings) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-rbac-cm",
            "namespace": s.argocd_namespace,
            "labels": owned_labels(PHASE_LABEL),
        },
        "data": {
            "policy.csv": POLICY_CSV,
            "policy.default": "role:readonly",
            "scopes": "[groups]",
        },
    })
}

/// One `AppProject`: where its apps may come from and go to, and who may do what.
struct ProjectSpec {
    name: &'static str,
    description: &'static str,
    namespaces: &'static [&'static str],
    cluster_resources: &'static [(&'static str, &'static str)],
    /// Namespaced kinds the project may not deploy: `(group, kind glob)`.
    namespaced_denied: &'static [(&'static str, &'static str)],
    /// `(role, Keycloak groups, actions)`; each action is allowed on `<project>/*`.
    roles: &'static [(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    )],
    /// Extra source repositories (Helm charts of platform components).
    extra_sources: &'static [&'static str],
    sync_windows: fn() -> Value,
}

fn no_windows() -> Value {
    json!([])
}

/// Production syncs automatically only on working days 07:00–19:00 UTC; outside that window
/// only a manual sync (an on-call fix) goes through.
fn production_windows() -> Value {
    json!([{
        "kind": "allow",
        "schedule": "0 7 * * 1-5",
        "duration": "12h",
        "applications": ["*"],
        "manualSync": true,
        "timeZone": "UTC",
    }])
}

const PROJECTS: &[ProjectSpec] = &[
    ProjectSpec {
        name: "production",
        description: "Production workloads: promoted by approved merge requests (cicd-buildout)",
        // Plus each delivered service's production namespace (the service list).
        namespaces: &["prod-*"],
        cluster_resources: &[],
        namespaced_denied: &[],
        roles: &[
            (
                "deployer",
                &["platform-admins", "infra-engineers"],
                &["get", "sync", "override"],
            ),
            ("promoter", &["ci-service-accounts"], &["get", "sync"]),
        ],
        extra_sources: &[],
        sync_windows: production_windows,
    },
    ProjectSpec {
        name: "staging",
        description: "Staging: every merge to main (cicd-buildout)",
        namespaces: &["staging-*"],
        cluster_resources: &[],
        namespaced_denied: &[],
        roles: &[
            (
                "deployer",
                &["senior-developers", "infra-engineers"],
                &["get", "sync"],
            ),
            ("promoter", &["ci-service-accounts"], &["get", "sync"]),
        ],
        extra_sources: &[],
        sync_windows: no_windows,
    },
    ProjectSpec {
        name: "ephemeral",
        description: "Per-merge-request environments, deleted after their TTL (cicd-buildout)",
        namespaces: &["ephemeral-*"],
        // CreateNamespace=true: the ephemeral namespace is created by the sync.
        cluster_resources: &[("", "Namespace")],
        // Merge request content runs here: it may not ask External Secrets for anything. The
        // namespace's pull Secret comes from the ClusterExternalSecret, which ESO creates, not
        // Argo CD (ADR 0008).
        namespaced_denied: &[
            ("external-secrets.io", "*"),
            ("generators.external-secrets.io", "*"),
        ],
        roles: &[
            (
                "developer",
                &["developers", "senior-developers"],
                &["get", "sync"],
            ),
            // CI's deploy-ephemeral/cleanup-ephemeral, through the project-role token phase 15
            // mints (`argocd app create --upsert` updates an existing Application).
            (
                "pipeline",
                &["ci-service-accounts"],
                &["get", "create", "update", "sync", "delete"],
            ),
        ],
        extra_sources: &[],
        sync_windows: no_windows,
    },
    ProjectSpec {
        name: "platform",
        description: "Platform components (operators, controllers) managed by platform admins (cicd-buildout)",
        namespaces: &[
            "argocd",
            "external-secrets",
            "monitoring",
            contract::RUNNER_NAMESPACE,
            "cicd-system",
        ],
        cluster_resources: &[
            ("", "Namespace"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
            (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
            ("external-secrets.io", "ClusterSecretStore"),
            ("argoproj.io", "ClusterAnalysisTemplate"),
        ],
        namespaced_denied: &[],
        roles: &[(
            "admin",
            &["platform-admins"],
            &["get", "sync", "override", "create", "update", "delete"],
        )],
        extra_sources: &[
            "https://charts.external-secrets.io",
            "https://argoproj.github.io/argo-helm",
            // The runner pools of phase 16 (security-setup): chart gitlab-runner.
            "https://charts.gitlab.io",
        ],
        sync_windows: no_windows,
    },
];

/// The project and role of CI's Argo CD token (ADR 0008).
pub const PIPELINE_PROJECT: &str = "ephemeral";
pub const PIPELINE_ROLE: &str = "pipeline";

/// The four `AppProjects`.
pub fn app_projects(s: &Settings) -> Vec<Value> {
    PROJECTS
        .iter()
        .map(|p| {
            let mut namespaces: Vec<String> = p.namespaces.iter().map(|n| (*n).to_owned()).collect();
            // The delivered services' own namespaces, when no glob of the project covers them.
            for service in &s.services {
                let own = match p.name {
                    "production" if service.production_project == "production" => {
                        Some(&service.production.namespace)
                    }
                    "staging" => Some(&service.staging.namespace),
                    _ => None,
                };
                if let Some(ns) = own {
                    let covered = namespaces.iter().any(|n| {
                        n == ns || n.strip_suffix('*').is_some_and(|prefix| ns.starts_with(prefix))
                    });
                    if !covered {
                        namespaces.push(ns.clone());
                    }
                }
            }
            let mut sources = vec![
                format!("https://{}/platform_services/*", s.gitlab_host),
                format!("git@{}:platform_services/*", s.gitlab_host),
            ];
            sources.extend(p.extra_sources.iter().map(|x| (*x).to_owned()));
            let roles: Vec<Value> = p
                .roles
                .iter()
                .map(|(role, groups, actions)| {
                    json!({
                        "name": role,
                        "description": format!("{} in project {}", actions.join(", "), p.name),
                        "groups": groups,
                        "policies": actions
                            .iter()
                            .map(|a| format!("p, proj:{}:{role}, applications, {a}, {}/*, allow", p.name, p.name))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AppProject",
                "metadata": {"name": p.name, "namespace": s.argocd_namespace, "labels": owned_labels(PHASE_LABEL)},
                "spec": {
                    "description": p.description,
                    "sourceRepos": sources,
                    "destinations": namespaces.iter().map(|n| json!({"server": "https://kubernetes.default.svc", "namespace": n})).collect::<Vec<_>>(),
                    "clusterResourceWhitelist": p.cluster_resources.iter().map(|(g, k)| json!({"group": g, "kind": k})).collect::<Vec<_>>(),
                    "namespaceResourceBlacklist": p.namespaced_denied.iter().map(|(g, k)| json!({"group": g, "kind": k})).collect::<Vec<_>>(),
                    "roles": roles,
                    "syncWindows": (p.sync_windows)(),
                    "orphanedResources": {"warn": true},
                },
            })
        })
        .collect()
}

/// How a metric value compares to a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    AtLeast,
    Below,
    Above,
}

impl Compare {
    fn symbol(self) -> &'static str {
        match self {
            Compare::AtLeast => ">=",
            Compare::Below => "<",
            Compare::Above => ">",
        }
    }
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Compare::AtLeast => value >= threshold,
            Compare::Below => value < threshold,
            Compare::Above => value > threshold,
        }
    }
}

/// What Argo Rollouts concludes from one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Successful,
    Failed,
    /// Neither condition holds — including no traffic yet (an empty result or NaN): the rollout
    /// pauses for a person instead of rolling back a canary that simply got no requests.
    Inconclusive,
}

/// One Prometheus gate of an analysis template.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub template: &'static str,
    pub metric: &'static str,
    /// `PromQL` with `{{ args.service-name }}`.
    pub query: &'static str,
    pub success: (Compare, f64),
    pub failure: (Compare, f64),
}

/// Guard shared by both conditions: a value exists and is a number.
const HAS_DATA: &str = "len(result) > 0 && !isNaN(result[0])";

impl Gate {
    pub fn success_condition(&self) -> String {
        format!(
            "{HAS_DATA} && result[0] {} {}",
            self.success.0.symbol(),
            self.success.1
        )
    }
    pub fn failure_condition(&self) -> String {
        format!(
            "{HAS_DATA} && result[0] {} {}",
            self.failure.0.symbol(),
            self.failure.1
        )
    }
    /// The verdict the two conditions give for a query result (Argo Rollouts evaluates the
    /// failure condition first; a measurement meeting neither is inconclusive).
    pub fn verdict(&self, result: &[f64]) -> Verdict {
        match result.first() {
            Some(v) if !v.is_nan() && self.failure.0.holds(*v, self.failure.1) => Verdict::Failed,
            Some(v) if !v.is_nan() && self.success.0.holds(*v, self.success.1) => {
                Verdict::Successful
            }
            _ => Verdict::Inconclusive,
        }
    }
    /// The query for one service (what Argo Rollouts sends after substituting the argument).
    pub fn query_for(&self, service: &str) -> String {
        self.query.replace("{{ args.service-name }}", service)
    }
}

const SUCCESS_RATE_QUERY: &str = "sum(rate(http_requests_total{service=\"{{ args.service-name }}\",status=~\"2..\"}[5m]))\n/\nsum(rate(http_requests_total{service=\"{{ args.service-name }}\"}[5m]))\n";
const ERROR_RATE_QUERY: &str = "sum(rate(http_requests_total{service=\"{{ args.service-name }}\",status=~\"5..\"}[5m]))\n/\nsum(rate(http_requests_total{service=\"{{ args.service-name }}\"}[5m]))\n";
const LATENCY_QUERY: &str = "histogram_quantile(0.99,\n  sum(rate(http_request_duration_seconds_bucket{service=\"{{ args.service-name }}\"}[5m])) by (le))\n";

/// The three Prometheus gates of §2.4 with the configured thresholds.
pub fn gates(t: &Thresholds) -> Vec<Gate> {
    vec![
        Gate {
            template: "success-rate",
            metric: "success-rate",
            query: SUCCESS_RATE_QUERY,
            success: (Compare::AtLeast, t.success_rate_target),
            failure: (Compare::Below, t.success_rate_min),
        },
        Gate {
            template: "latency-check",
            metric: "p99-latency",
            query: LATENCY_QUERY,
            success: (Compare::Below, t.p99_target_seconds),
            failure: (Compare::Above, t.p99_max_seconds),
        },
        Gate {
            template: "error-rate",
            metric: "error-rate",
            query: ERROR_RATE_QUERY,
            success: (Compare::Below, t.error_rate_target),
            failure: (Compare::Above, t.error_rate_max),
        },
    ]
}

fn template_object(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ClusterAnalysisTemplate",
        "metadata": {"name": name, "labels": owned_labels(PHASE_LABEL)},
        "spec": spec,
    })
}

/// `ClusterAnalysisTemplates` success-rate, latency-check, error-rate (Prometheus) and smoke-test (a
/// Job), usable by every namespace's Rollouts.
pub fn analysis_templates(s: &Settings) -> Vec<Value> {
    let mut out: Vec<Value> = gates(&s.thresholds)
        .iter()
        .map(|g| {
            template_object(
                g.template,
                &json!({
                    "args": [{"name": "service-name"}],
                    "metrics": [{
                        "name": g.metric,
                        "interval": "60s",
                        "count": 5,
                        "successCondition": g.success_condition(),
                        "failureCondition": g.failure_condition(),
                        "failureLimit": 2,
                        // An inconclusive measurement (no traffic yet) pauses the rollout.
                        "inconclusiveLimit": 0,
                        "provider": {"prometheus": {"address": s.prometheus_url, "query": g.query}},
                    }],
                }),
            )
        })
        .collect();
    out.push(template_object(
        "smoke-test",
        &json!({
            "args": [{"name": "service-name"}, {"name": "namespace"}],
            "metrics": [{
                "name": "smoke-test",
                "count": 1,
                "failureLimit": 0,
                "provider": {"job": {"spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 120,
                    "template": {"spec": {
                        "restartPolicy": "Never",
                        // The analysis Job runs in the service's namespace, like its pods.
                        "imagePullSecrets": [{"name": PULL_SECRET}],
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 100, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "smoke",
                            "image": "curlimages/curl:8.11.1",
                            "args": ["--fail", "--silent", "--show-error", "--retry", "5", "--retry-all-errors", "--max-time", "10",
                                     "http://{{args.service-name}}-preview.{{args.namespace}}.svc/healthz"],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        }],
                    }},
                }}},
            }],
        }),
    ));
    out
}

/// `argocd/argocd-gitlab-token` from Vault (`kv/ci/gitlab-api-token`) through External Secrets:
/// the pull-request generator's GitLab token (a `read_api` group access token this phase mints,
/// [`crate::generator_token`]), never a literal in a manifest. Refreshed every 5 minutes: a
/// rotation revokes the old token at once, and the generator retries every 60 s meanwhile.
///
/// Where the bash phase left a literal Secret of that name, ESO takes it over in place
/// (sandbox/fixtures/eso-docs/ownership-deletion-policy.md): `creationPolicy: Owner` adopts a
/// Secret that has no ownerReference by adding ours and updating it, never by deleting and
/// recreating it; `deletionPolicy: Retain` (ESO's default, stated so it cannot change under us)
/// keeps the Secret if Vault's key is missing, where `Delete` would remove the bash token before
/// Vault has one.
pub fn gitlab_token_secret(s: &Settings) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "argocd-gitlab-token", "namespace": s.argocd_namespace, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "refreshInterval": "5m",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": contract::SECRET_STORE},
            "target": {"name": "argocd-gitlab-token", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [{"secretKey": "token", "remoteRef": {"key": contract::KV_GITLAB_GENERATOR_TOKEN, "property": "token"}}],
        },
    })
}

fn repo_url(s: &Settings, service: &DeliveredService) -> String {
    format!("https://{}/{}.git", s.gitlab_host, service.project_path)
}

/// Labels of every ephemeral namespace (per MR or per main commit): what the cleaner deletes by,
/// and what gives the namespace its pull Secret.
pub fn ephemeral_namespace_labels(ttl: &str) -> Value {
    json!({EPHEMERAL_LABEL: "true", TTL_LABEL: ttl, HARBOR_PULL_LABEL: "true"})
}

/// One `ApplicationSet` per delivered service: an Application per open merge request (GitLab
/// pull-request generator), deployed from the MR's head to `ephemeral-<service>-mr-<n>`, labelled
/// with its TTL, running the image the MR pipeline's build-image pushed to the scratch project
/// under the MR's head SHA.
pub fn ephemeral_application_sets(s: &Settings) -> Vec<Value> {
    s.services
        .iter()
        .map(|service| {
            let name = &service.name;
            let image = format!(
                "{name}={}/{}/{name}:{{{{ .head_sha }}}}",
                s.harbor_registry,
                contract::HARBOR_SCRATCH_PROJECT
            );
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "ApplicationSet",
                "metadata": {"name": format!("ephemeral-{name}"), "namespace": s.argocd_namespace, "labels": owned_labels(PHASE_LABEL)},
                "spec": {
                    "goTemplate": true,
                    "goTemplateOptions": ["missingkey=error"],
                    "generators": [{"pullRequest": {
                        "gitlab": {
                            "project": service.project_path,
                            "api": format!("{}/", s.gitlab_url),
                            "tokenRef": {"secretName": "argocd-gitlab-token", "key": "token"},
                            "pullRequestState": "opened",
                        },
                        "requeueAfterSeconds": 60,
                    }}],
                    "template": {
                        "metadata": {
                            "name": format!("{name}-mr-{{{{ .number }}}}"),
                            "labels": {"app.kubernetes.io/part-of": "ephemeral", EPHEMERAL_LABEL: "true", TTL_LABEL: s.ephemeral_ttl},
                        },
                        "spec": {
                            "project": PIPELINE_PROJECT,
                            "source": {
                                "repoURL": repo_url(s, service),
                                "targetRevision": "{{ .head_sha }}",
                                "path": service.ephemeral_overlay,
                                "kustomize": {"images": [image]},
                            },
                            "destination": {"server": "https://kubernetes.default.svc", "namespace": format!("ephemeral-{name}-mr-{{{{ .number }}}}")},
                            "syncPolicy": {
                                "automated": {"prune": true, "selfHeal": true},
                                "syncOptions": ["CreateNamespace=true"],
                                "managedNamespaceMetadata": {"labels": ephemeral_namespace_labels(&s.ephemeral_ttl)},
                            },
                        },
                    },
                },
            })
        })
        .collect()
}

/// Staging and production Applications of every delivered service: staging follows `main`'s
/// staging overlay (promote-artifact pins its digest), production the production overlay that an
/// approved promotion merge request changes (plan §2.5).
pub fn delivery_applications(s: &Settings) -> Vec<Value> {
    let mut out = Vec::new();
    for service in &s.services {
        for (stage, project, target) in [
            ("staging", "staging", &service.staging),
            (
                "production",
                service.production_project.as_str(),
                &service.production,
            ),
        ] {
            let mut labels = owned_labels(PHASE_LABEL);
            labels["cicd.platform/service"] = json!(service.name);
            labels[common::contract::STAGE_LABEL] = json!(stage);
            out.push(json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": target.application, "namespace": s.argocd_namespace, "labels": labels},
                "spec": {
                    "project": project,
                    "source": {"repoURL": repo_url(s, service), "targetRevision": "main", "path": target.overlay},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": target.namespace},
                    "syncPolicy": {
                        "automated": {"prune": true, "selfHeal": true},
                        "syncOptions": ["ServerSideApply=true"],
                        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
                    },
                },
            }));
        }
    }
    out
}

/// The staging and production namespaces of the delivered services, labelled for the pull Secret.
/// `staging-*`/`prod-*` ones are this phase's own (Pod Security restricted); others (`monitoring`,
/// the demo namespace) belong to other phases or the base platform and only get the label.
pub fn workload_namespaces(s: &Settings) -> Vec<Value> {
    let names: BTreeSet<&str> = s
        .services
        .iter()
        .flat_map(|svc| {
            [
                svc.staging.namespace.as_str(),
                svc.production.namespace.as_str(),
            ]
        })
        .collect();
    names
        .into_iter()
        .map(|name| {
            let mut labels = json!({HARBOR_PULL_LABEL: "true"});
            if name.starts_with("staging-") || name.starts_with("prod-") {
                labels = owned_labels(PHASE_LABEL);
                labels[HARBOR_PULL_LABEL] = json!("true");
                labels["pod-security.kubernetes.io/enforce"] = json!("restricted");
            }
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
        })
        .collect()
}

/// `harbor-pull` in every namespace labelled `cicd.platform/harbor-pull=true`: a
/// `kubernetes.io/dockerconfigjson` Secret from the pull robot's Vault path (phase 14 writes it;
/// External Secrets' policy may read it), referenced by every workload pod.
pub fn harbor_pull_secret(s: &Settings) -> Value {
    let auths = format!(
        "{{\"auths\":{{\"{}\":{{\"username\":\"{{{{ .username }}}}\",\"password\":\"{{{{ .password }}}}\",\"auth\":\"{{{{ printf \"%s:%s\" .username .password | b64enc }}}}\"}}}}}}",
        s.harbor_registry
    );
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": PULL_SECRET, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "externalSecretName": PULL_SECRET,
            "namespaceSelectors": [{"matchLabels": {HARBOR_PULL_LABEL: "true"}}],
            "refreshTime": "1h",
            "externalSecretSpec": {
                "refreshInterval": "1h",
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": contract::PULL_SECRET_STORE},
                "target": {
                    "name": PULL_SECRET,
                    "creationPolicy": "Owner",
                    "template": {"type": "kubernetes.io/dockerconfigjson", "engineVersion": "v2", "data": {".dockerconfigjson": auths}},
                },
                "data": [
                    {"secretKey": "username", "remoteRef": {"key": contract::KV_HARBOR_PULL, "property": "username"}},
                    {"secretKey": "password", "remoteRef": {"key": contract::KV_HARBOR_PULL, "property": "password"}},
                ],
            },
        },
    })
}

/// Namespace of the cleaner.
pub const CLEANER_NAMESPACE: &str = "cicd-system";
/// The cleaner's script (tested against a real API server).
pub const CLEANER_SCRIPT: &str = include_str!("../cleaner/clean-ephemeral-namespaces.sh");
/// Pinned kubectl image of the cleaner (bash, GNU date).
pub const CLEANER_IMAGE: &str = "bitnami/kubectl:1.32.0";

/// The ephemeral-namespace cleaner: its namespace, a `ServiceAccount` of its own, a `ClusterRole`
/// allowing only to read and delete namespaces (RBAC cannot select by label: the script only
/// touches namespaces labelled `cicd.platform/ephemeral=true`), the script, and the `CronJob`.
pub fn namespace_cleaner() -> Vec<Value> {
    let labels = owned_labels(PHASE_LABEL);
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CLEANER_NAMESPACE, "labels": labels}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "namespace-cleaner", "namespace": CLEANER_NAMESPACE, "labels": labels}}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cicd-namespace-cleaner", "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "delete"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "cicd-namespace-cleaner", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cicd-namespace-cleaner"},
            "subjects": [{"kind": "ServiceAccount", "name": "namespace-cleaner", "namespace": CLEANER_NAMESPACE}],
        }),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "namespace-cleaner", "namespace": CLEANER_NAMESPACE, "labels": labels},
            "data": {"clean-ephemeral-namespaces.sh": CLEANER_SCRIPT},
        }),
        cleaner_cron_job(),
    ]
}

/// The `CronJob` (batch/v1: Kubernetes 1.21+).
pub fn cleaner_cron_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "namespace-cleaner", "namespace": CLEANER_NAMESPACE, "labels": owned_labels(PHASE_LABEL)},
        "spec": {
            "schedule": "*/15 * * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 1,
                "activeDeadlineSeconds": 600,
                "template": {"spec": {
                    "serviceAccountName": "namespace-cleaner",
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "cleaner",
                        "image": CLEANER_IMAGE,
                        "command": ["/bin/bash", "/scripts/clean-ephemeral-namespaces.sh"],
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "script", "mountPath": "/scripts", "readOnly": true}],
                    }],
                    "volumes": [{"name": "script", "configMap": {"name": "namespace-cleaner", "defaultMode": 365}}],
                }},
            }},
        },
    })
}

/// Every object of the phase with the CRD it needs, in apply order.
pub fn objects(s: &Settings) -> Vec<(Value, Option<&'static str>)> {
    let mut out = vec![(rbac_config_map(s), None)];
    out.extend(
        app_projects(s)
            .into_iter()
            .map(|o| (o, Some(contract::ARGOCD_APP_PROJECT_CRD))),
    );
    out.extend(
        analysis_templates(s)
            .into_iter()
            .map(|o| (o, Some(contract::CLUSTER_ANALYSIS_TEMPLATE_CRD))),
    );
    out.push((gitlab_token_secret(s), Some(contract::EXTERNAL_SECRET_CRD)));
    out.extend(workload_namespaces(s).into_iter().map(|o| (o, None)));
    out.push((
        harbor_pull_secret(s),
        Some(contract::CLUSTER_EXTERNAL_SECRET_CRD),
    ));
    out.extend(
        delivery_applications(s)
            .into_iter()
            .map(|o| (o, Some(contract::ARGOCD_APPLICATION_CRD))),
    );
    out.extend(
        ephemeral_application_sets(s)
            .into_iter()
            .map(|o| (o, Some(contract::ARGOCD_APPLICATION_SET_CRD))),
    );
    out.extend(namespace_cleaner().into_iter().map(|o| (o, None)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_traffic_is_inconclusive_not_failed() {
        let t = Thresholds::default();
        for gate in gates(&t) {
            assert_eq!(
                gate.verdict(&[]),
                Verdict::Inconclusive,
                "{}",
                gate.template
            );
            assert_eq!(
                gate.verdict(&[f64::NAN]),
                Verdict::Inconclusive,
                "{}",
                gate.template
            );
            assert!(
                gate.success_condition()
                    .starts_with("len(result) > 0 && !isNaN(result[0])")
            );
        }
        let success = &gates(&t)[0];
        assert_eq!(success.verdict(&[0.99]), Verdict::Successful);
        assert_eq!(
            success.verdict(&[0.96]),
            Verdict::Inconclusive,
            "between the lines"
        );
        assert_eq!(success.verdict(&[0.90]), Verdict::Failed);
        assert_eq!(
            success.success_condition(),
            "len(result) > 0 && !isNaN(result[0]) && result[0] >= 0.98"
        );
        assert_eq!(
            success.failure_condition(),
            "len(result) > 0 && !isNaN(result[0]) && result[0] < 0.95"
        );
    }

    #[test]
    fn policy_csv_is_the_plan_with_scoped_groups() {
        for line in [
            "g, platform-admins, role:admin",
            "g, infra-engineers, role:infra-ops",
            "g, ci-service-accounts, role:ci-sync",
            "g, developers, role:readonly",
        ] {
            assert!(POLICY_CSV.contains(line), "{line}");
        }
        assert!(
            !POLICY_CSV.contains("default/*"),
            "no project named default exists"
        );
    }
}
