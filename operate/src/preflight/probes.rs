//! The checks themselves: reads only (GETs, Keycloak's sign-in, Vault's `sys/capabilities-self`).

use common::config::PlatformConfig;
use common::env;
use common::gitlab::{GitLabClient, Tier};
use common::harbor::HarborClient;
use common::keycloak::KeycloakClient;
use common::kube::KubeClient;
use common::vault::VaultClient;
use serde_json::json;

use super::{Prerequisite, Row, Status, first_needing};

const ALL: &[&str] = &["12", "12b", "13", "14", "15", "16", "17", "18"];
/// Phases that reach Vault (13 configures it; the later ones write and read its KV and keys).
const VAULT_PHASES: &[&str] = &["13", "14", "15", "16", "17", "18"];
/// Phases that reach Kubernetes.
const KUBE_PHASES: &[&str] = &["12", "13", "15", "16", "17", "18"];

pub const KUBERNETES: Prerequisite = Prerequisite {
    name: "Kubernetes API",
    needed_by: KUBE_PHASES,
    provided_by: "base phases 0–1 (the RKE2 cluster) and cluster/kubeconfig-rke2.yaml",
};
pub const GITLAB: Prerequisite = Prerequisite {
    name: "GitLab reachable",
    needed_by: ALL,
    provided_by: "base phase 11 (gitlab)",
};
pub const GITLAB_TOKEN: Prerequisite = Prerequisite {
    name: "GitLab token: admin, scope api",
    needed_by: ALL,
    provided_by: "GITLAB_API_TOKEN or scripts/.gitlab-api-token (an administrator's personal access token)",
};
pub const GITLAB_TIER: Prerequisite = Prerequisite {
    name: "GitLab tier",
    // Approval rules, code owners (12) and group webhooks (17) are Premium.
    needed_by: &["12", "17"],
    provided_by: "the GitLab licence (base phase 11 installs GitLab EE)",
};
pub const KEYCLOAK_REALM: Prerequisite = Prerequisite {
    name: "Keycloak realm",
    // 12 syncs its groups; 13 points Vault's OIDC auth for people at the realm's discovery
    // document, which Vault reads when the config is written.
    needed_by: &["12", "13"],
    provided_by: "base phase 10 (keycloak-setup)",
};
/// The same realm when phase 12's membership sync is off (`GITLAB_KEYCLOAK_SYNC=false`).
const KEYCLOAK_REALM_FOR_VAULT: Prerequisite = Prerequisite {
    needed_by: &["13"],
    ..KEYCLOAK_REALM
};
pub const KEYCLOAK_GROUPS: Prerequisite = Prerequisite {
    name: "Keycloak groups",
    needed_by: &["12"],
    provided_by: "base phase 10 (keycloak-setup)",
};
pub const VAULT_UNSEALED: Prerequisite = Prerequisite {
    name: "Vault unsealed",
    needed_by: VAULT_PHASES,
    provided_by: "base phase 2 (vault)",
};
pub const VAULT_TOKEN: Prerequisite = Prerequisite {
    name: "Vault token capabilities",
    needed_by: VAULT_PHASES,
    provided_by: "VAULT_TOKEN or .root_token of cluster/vault-init.json (base phase 2)",
};
pub const HARBOR: Prerequisite = Prerequisite {
    name: "Harbor reachable",
    needed_by: &["14", "16", "18"],
    provided_by: "base phase 4 (harbor)",
};
pub const HARBOR_ADMIN: Prerequisite = Prerequisite {
    name: "Harbor admin credentials",
    needed_by: &["14", "16", "18"],
    provided_by: "HARBOR_ADMIN_PASSWORD (base phase 4)",
};
pub const ARGOCD_CRDS: Prerequisite = Prerequisite {
    name: "Argo CD CRDs",
    // Phase 13 deploys ESO as an Application; 15–18 deploy through Applications.
    needed_by: &["13", "15", "16", "17", "18"],
    provided_by: "base phase 5 (argocd)",
};
pub const ROLLOUTS_CRDS: Prerequisite = Prerequisite {
    name: "Argo Rollouts CRDs",
    needed_by: &["15", "18"],
    provided_by: "base phase 5 (argocd installs Argo Rollouts)",
};
pub const ESO_CRDS: Prerequisite = Prerequisite {
    name: "External Secrets CRDs",
    // Phase 13 installs ESO and waits for its CRDs; later phases create ExternalSecrets.
    needed_by: &["15", "16", "17"],
    provided_by: "phase 13 (vault-cicd installs External Secrets): run --from 13",
};
pub const GATEWAY_CRDS: Prerequisite = Prerequisite {
    name: "Gateway API CRDs",
    needed_by: &["15", "18"],
    provided_by: "base phase 1 (foundation installs Gateway API v1.3.0)",
};
pub const MONITORING_CRDS: Prerequisite = Prerequisite {
    name: "Prometheus Operator CRDs",
    needed_by: &["17"],
    provided_by: "base phase 3 (monitoring)",
};
pub const PROMETHEUS: Prerequisite = Prerequisite {
    name: "Prometheus reachable",
    needed_by: &["17"],
    provided_by: "base phase 3 (monitoring)",
};
pub const GRAFANA: Prerequisite = Prerequisite {
    name: "Grafana reachable",
    needed_by: &["17"],
    provided_by: "base phase 3 (monitoring)",
};

/// CRDs and the API versions the phases write (name, version).
const ARGOCD_CRD_NAMES: &[(&str, &str)] = &[
    ("applications.argoproj.io", "v1alpha1"),
    ("applicationsets.argoproj.io", "v1alpha1"),
    ("appprojects.argoproj.io", "v1alpha1"),
];
const ROLLOUTS_CRD_NAMES: &[(&str, &str)] = &[
    ("rollouts.argoproj.io", "v1alpha1"),
    ("analysistemplates.argoproj.io", "v1alpha1"),
    ("clusteranalysistemplates.argoproj.io", "v1alpha1"),
    ("analysisruns.argoproj.io", "v1alpha1"),
];
const ESO_CRD_NAMES: &[(&str, &str)] = &[
    ("externalsecrets.external-secrets.io", "v1"),
    ("clusterexternalsecrets.external-secrets.io", "v1"),
    ("clustersecretstores.external-secrets.io", "v1"),
];
const GATEWAY_CRD_NAMES: &[(&str, &str)] = &[
    ("gateways.gateway.networking.k8s.io", "v1"),
    ("httproutes.gateway.networking.k8s.io", "v1"),
];
const MONITORING_CRD_NAMES: &[(&str, &str)] = &[
    ("servicemonitors.monitoring.coreos.com", "v1"),
    ("podmonitors.monitoring.coreos.com", "v1"),
    ("prometheusrules.monitoring.coreos.com", "v1"),
];

/// What phase 13 writes in Vault, and the capabilities it needs there (any one of each set).
const VAULT_NEEDS: &[(&str, &[&str])] = &[
    // Enabling an auth method needs sudo on sys/auth (Vault API docs, /sys/auth).
    ("sys/auth/jwt/gitlab", &["sudo"]),
    ("sys/mounts/kv", &["create", "update"]),
    ("sys/policies/acl/ci-read-secrets", &["create", "update"]),
    ("auth/jwt/gitlab/role/gitlab-ci", &["create", "update"]),
    ("kv/data/ci/projects", &["create", "update"]),
];

/// One check's outcome before it is placed in a row.
struct Outcome {
    status: Status,
    detail: String,
    fix: String,
}

fn ok(detail: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Ok,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn fail(detail: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Fail,
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn warn(detail: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Warn,
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn skipped(because: &str) -> Outcome {
    Outcome {
        status: Status::Skipped,
        detail: format!("needs {because}"),
        fix: String::new(),
    }
}

/// The rows, in table order, for the prerequisites of `selected`.
struct Table<'a> {
    selected: &'a [&'static str],
    rows: Vec<Row>,
}

impl Table<'_> {
    /// Whether any selected phase needs `p`.
    fn needs(&self, p: &Prerequisite) -> bool {
        first_needing(p, self.selected).is_some()
    }

    fn push(&mut self, p: &Prerequisite, outcome: Outcome) -> bool {
        let Some(phase) = first_needing(p, self.selected) else {
            return true;
        };
        let fix = match outcome.status {
            Status::Fail if !outcome.fix.is_empty() => {
                format!("{} (provided by {})", outcome.fix, p.provided_by)
            }
            _ => outcome.fix,
        };
        let good = matches!(outcome.status, Status::Ok | Status::Warn);
        self.rows.push(Row {
            check: p.name,
            phase,
            status: outcome.status,
            detail: common::redact::redact(&outcome.detail),
            fix,
            provided_by: p.provided_by,
        });
        good
    }
}

/// Every check the selected phases need, in table order. `sandbox`: the local sandbox, which has
/// no Grafana.
pub async fn probe_all(cfg: &PlatformConfig, selected: &[&'static str], sandbox: bool) -> Vec<Row> {
    // A preflight answers quickly: one short attempt per read.
    let mut cfg = cfg.clone();
    cfg.http_retries = 0;
    cfg.http_timeout = cfg.http_timeout.min(std::time::Duration::from_secs(10));
    let mut t = Table {
        selected,
        rows: Vec::new(),
    };

    // GitLab.
    if t.needs(&GITLAB) {
        match GitLabClient::connect(&cfg) {
            Err(e) => {
                t.push(
                    &GITLAB,
                    fail(e.one_line(), "set GITLAB_URL (or DOMAIN) and the token"),
                );
            }
            Ok(gitlab) => {
                let reachable = t.push(&GITLAB, gitlab_version(&gitlab).await);
                if reachable {
                    let token = gitlab_token(&gitlab).await;
                    if t.push(&GITLAB_TOKEN, token) {
                        let tier = gitlab_tier(&gitlab, &cfg).await;
                        t.push(&GITLAB_TIER, tier);
                    } else {
                        t.push(&GITLAB_TIER, skipped("a valid GitLab token"));
                    }
                } else {
                    t.push(&GITLAB_TOKEN, skipped("GitLab"));
                    t.push(&GITLAB_TIER, skipped("GitLab"));
                }
            }
        }
    }

    // Keycloak: the realm (phases 12 and 13), its groups (phase 12's membership sync, which
    // GITLAB_KEYCLOAK_SYNC=false turns off).
    let harden = gitlab_harden::settings::Settings::load(&cfg);
    let sync = harden.as_ref().map_or(true, |s| s.keycloak_sync);
    let realm = if sync {
        &KEYCLOAK_REALM
    } else {
        &KEYCLOAK_REALM_FOR_VAULT
    };
    if t.needs(realm) {
        let found = t.push(realm, keycloak_realm(&cfg).await);
        if sync && t.needs(&KEYCLOAK_GROUPS) {
            let groups = if found {
                keycloak_groups(&cfg, harden.as_ref().map_err(|e| format!("{e:#}"))).await
            } else {
                skipped("the Keycloak realm")
            };
            t.push(&KEYCLOAK_GROUPS, groups);
        }
    }

    // Vault.
    if t.needs(&VAULT_UNSEALED) {
        // The seal status needs no token: a missing token is the token row's failure.
        if t.push(&VAULT_UNSEALED, vault_unsealed(&cfg).await) {
            let caps = match VaultClient::connect(&cfg) {
                Ok(vault) => vault_capabilities(&vault).await,
                Err(e) => fail(
                    e.one_line(),
                    "set VAULT_TOKEN, or provide cluster/vault-init.json with its root token",
                ),
            };
            t.push(&VAULT_TOKEN, caps);
        } else {
            t.push(&VAULT_TOKEN, skipped("an unsealed Vault"));
        }
    }

    // Harbor.
    if t.needs(&HARBOR) {
        match HarborClient::connect(&cfg) {
            Err(e) => {
                t.push(&HARBOR, fail(e.one_line(), "set HARBOR_URL (or DOMAIN)"));
                t.push(&HARBOR_ADMIN, skipped("Harbor"));
            }
            Ok(harbor) => {
                if t.push(&HARBOR, harbor_version(&harbor).await) {
                    let admin = harbor_admin(&harbor).await;
                    t.push(&HARBOR_ADMIN, admin);
                } else {
                    t.push(&HARBOR_ADMIN, skipped("Harbor"));
                }
            }
        }
    }

    // Kubernetes and the CRDs.
    let crd_checks: Vec<(&Prerequisite, &[(&str, &str)])> = [
        (&ARGOCD_CRDS, ARGOCD_CRD_NAMES),
        (&ROLLOUTS_CRDS, ROLLOUTS_CRD_NAMES),
        // Phase 13 in this run installs ESO itself; only a run starting later needs it there.
        (&ESO_CRDS, ESO_CRD_NAMES),
        (&GATEWAY_CRDS, GATEWAY_CRD_NAMES),
        (&MONITORING_CRDS, MONITORING_CRD_NAMES),
    ]
    .into_iter()
    .filter(|(p, _)| !(p.name == ESO_CRDS.name && selected.contains(&"13")))
    .collect();
    if t.needs(&KUBERNETES) || crd_checks.iter().any(|(p, _)| t.needs(p)) {
        match kube_version(&cfg).await {
            Ok((kube, outcome)) => {
                t.push(&KUBERNETES, outcome);
                for (p, names) in crd_checks {
                    if t.needs(p) {
                        let outcome = crds(&kube, names).await;
                        t.push(p, outcome);
                    }
                }
            }
            Err(outcome) => {
                t.push(&KUBERNETES, outcome);
                for (p, _) in crd_checks {
                    t.push(p, skipped("the Kubernetes API"));
                }
            }
        }
    }

    // Monitoring.
    if t.needs(&PROMETHEUS) {
        let outcome = http_probe(
            &cfg,
            cfg.prometheus_url.clone(),
            "/-/ready",
            env::PROMETHEUS_URL,
        )
        .await;
        t.push(&PROMETHEUS, soften(outcome));
    }
    if t.needs(&GRAFANA) {
        let url = cfg.grafana_url.clone();
        let outcome = if sandbox && cfg.environment().get(env::GRAFANA_URL).is_none() {
            Outcome {
                status: Status::NotInSandbox,
                detail: "the sandbox runs no Grafana; phase 17 applies the dashboard ConfigMap Grafana's sidecar would load".into(),
                fix: String::new(),
            }
        } else {
            soften(http_probe(&cfg, url, "/api/health", env::GRAFANA_URL).await)
        };
        t.push(&GRAFANA, outcome);
    }
    t.rows
}

/// No phase calls Prometheus or Grafana itself (phase 17 applies objects they load, and its
/// summary probes them): a failure here is a warning, so a monitoring stack reachable only
/// inside the cluster does not stop a run.
fn soften(outcome: Outcome) -> Outcome {
    match outcome.status {
        Status::Fail => Outcome {
            status: Status::Warn,
            fix: format!(
                "{} (the phases still run; phase 17's summary will show it down)",
                outcome.fix
            ),
            ..outcome
        },
        _ => outcome,
    }
}

async fn gitlab_version(gitlab: &GitLabClient) -> Outcome {
    match gitlab.version().await {
        Ok(v) => ok(format!(
            "version {}{}",
            v["version"].as_str().unwrap_or("?"),
            if v["enterprise"] == true {
                " (Enterprise Edition)"
            } else {
                ""
            }
        )),
        // `/version` needs a token: a 401 proves GitLab answers; the token row says the rest.
        Err(e) if matches!(e.status(), Some(401)) => {
            ok("reachable (it refused the token: see the token row)")
        }
        Err(e) => fail(
            e.one_line(),
            "check GITLAB_URL, that GitLab is up, and CICD_CA_BUNDLE for TLS errors",
        ),
    }
}

async fn gitlab_token(gitlab: &GitLabClient) -> Outcome {
    let user = match gitlab.current_user().await {
        Ok(u) => u,
        Err(e) => {
            return fail(
                e.one_line(),
                "set GITLAB_API_TOKEN to an administrator's personal access token with scope api",
            );
        }
    };
    let username = user.username;
    let scopes = match gitlab.token_scopes().await {
        Ok(scopes) => scopes,
        Err(e) => return fail(e.one_line(), "check the token in GITLAB_API_TOKEN"),
    };
    let admin = user.is_admin;
    let api_scope = scopes.as_ref().is_none_or(|s| s.iter().any(|x| x == "api"));
    let scopes_text = scopes.map_or_else(|| "scopes unknown".to_owned(), |s| s.join(","));
    let detail = format!("user {username}, admin {admin}, scopes {scopes_text}");
    match (admin, api_scope) {
        (true, true) => ok(detail),
        (false, _) => fail(
            detail,
            format!(
                "the token belongs to {username}, who is not an administrator: phases 12 and 16 change instance settings and runners; use an administrator's personal access token with scope api"
            ),
        ),
        (true, false) => fail(
            detail,
            "the token lacks scope api (the phases write projects, protections and variables): create one with scope api",
        ),
    }
}

async fn gitlab_tier(gitlab: &GitLabClient, cfg: &PlatformConfig) -> Outcome {
    match gitlab.tier().await {
        Ok(Tier::Free) => {
            let what = "Free tier: no approval rules or code-owner approvals (the plan's GATE 2, phase 12) and no group webhooks (phase 17 falls back to project hooks)";
            if cfg.environment().get(env::CICD_ACCEPT_FREE_TIER) == Some("true") {
                warn(
                    what,
                    "accepted by CICD_ACCEPT_FREE_TIER=true: phases 12 and 17 skip the Premium features with a warning",
                )
            } else {
                fail(
                    what,
                    format!(
                        "license GitLab Premium, or set {}=true to run without the plan's approval gates (phases 12 and 17 then skip them with a warning)",
                        env::CICD_ACCEPT_FREE_TIER
                    ),
                )
            }
        }
        Ok(tier) => ok(format!("{tier:?}")),
        Err(e) => fail(e.one_line(), "check the token's rights to read the licence"),
    }
}

/// The realm's public discovery document (`GET /realms/{realm}/.well-known/openid-configuration`,
/// what Vault's OIDC auth reads): 404 when the realm does not exist.
async fn keycloak_realm(cfg: &PlatformConfig) -> Outcome {
    let realm = cfg.environment().get(env::KC_REALM).unwrap_or("");
    match common::keycloak::discovery_document(cfg).await {
        Ok(Some(_)) => ok(format!("realm {realm} (discovery document served)")),
        Ok(None) => fail(
            format!("realm {realm} does not exist: 404 from its discovery document"),
            format!(
                "create realm {realm} (and its groups), or set KC_REALM to the platform's realm"
            ),
        ),
        Err(e) => fail(
            e.one_line(),
            "check KEYCLOAK_URL and KC_REALM, that Keycloak is up, and CICD_CA_BUNDLE for TLS errors",
        ),
    }
}

/// Phase 12's groups, read with its admin credentials.
async fn keycloak_groups(
    cfg: &PlatformConfig,
    settings: Result<&gitlab_harden::settings::Settings, String>,
) -> Outcome {
    let wanted: std::collections::BTreeSet<String> = match settings {
        Ok(s) => s
            .group_levels
            .keys()
            .cloned()
            .chain(
                gitlab_harden::desired::APPROVER_GROUPS
                    .iter()
                    .map(|g| (*g).to_owned()),
            )
            .collect(),
        Err(e) => return fail(e, "fix GITLAB_KEYCLOAK_GROUP_LEVELS"),
    };
    let client = match KeycloakClient::connect(cfg).await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                e.one_line(),
                "set KEYCLOAK_ADMIN_CLIENT_ID/KEYCLOAK_ADMIN_CLIENT_SECRET (a confidential client of the realm with view-users and query-groups) or KEYCLOAK_ADMIN_USER/KEYCLOAK_ADMIN_PASSWORD",
            );
        }
    };
    let mut missing = Vec::new();
    for name in &wanted {
        match client.top_level_group(name).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(name.clone()),
            Err(e) => {
                return fail(
                    e.one_line(),
                    "give the Keycloak credentials view-users and query-groups in the realm",
                );
            }
        }
    }
    if missing.is_empty() {
        ok(format!(
            "{} groups: {}",
            wanted.len(),
            wanted.iter().cloned().collect::<Vec<_>>().join(", ")
        ))
    } else {
        // Phase 12 goes on without them (nobody gets access through a missing group).
        warn(
            format!(
                "{} of {} groups missing: {}",
                missing.len(),
                wanted.len(),
                missing.join(", ")
            ),
            "create the groups in the realm (base phase 10, keycloak-setup), or drop them from GITLAB_KEYCLOAK_GROUP_LEVELS; phase 12 grants nothing through a missing group",
        )
    }
}

async fn vault_unsealed(cfg: &PlatformConfig) -> Outcome {
    let status = common::vault::seal_status(cfg)
        .await
        .map_err(|e| e.one_line());
    match status {
        Ok(s) if s["sealed"] == false => ok(format!(
            "version {}, unsealed",
            s["version"].as_str().unwrap_or("?")
        )),
        Ok(s) => fail(
            format!("sealed (progress {}/{})", s["progress"], s["t"]),
            "unseal Vault with the unseal keys of cluster/vault-init.json",
        ),
        Err(e) => fail(
            e,
            "check VAULT_ADDR, that Vault is running, and CICD_CA_BUNDLE for TLS errors",
        ),
    }
}

async fn vault_capabilities(vault: &VaultClient) -> Outcome {
    let mut missing = Vec::new();
    let mut root = true;
    for (path, wanted) in VAULT_NEEDS {
        let caps = match vault.capabilities(path).await {
            Ok(c) => c,
            Err(e) => return fail(e.one_line(), "use a valid Vault token (VAULT_TOKEN)"),
        };
        root &= caps.iter().any(|c| c == "root");
        if !caps
            .iter()
            .any(|c| c == "root" || wanted.contains(&c.as_str()))
        {
            missing.push(format!(
                "{} on {path} (has {})",
                wanted.join("/"),
                caps.join(",")
            ));
        }
    }
    if missing.is_empty() {
        ok(if root {
            "root token".to_owned()
        } else {
            format!("{} paths writable", VAULT_NEEDS.len())
        })
    } else {
        fail(
            format!("missing {}", missing.join("; ")),
            "use the root token (.root_token of cluster/vault-init.json) or a token whose policy grants these capabilities",
        )
    }
}

async fn harbor_version(harbor: &HarborClient) -> Outcome {
    match harbor.system_info().await {
        Ok(v) => ok(format!(
            "version {}",
            v["harbor_version"].as_str().unwrap_or("?")
        )),
        Err(e) => fail(e.one_line(), "check HARBOR_URL and that Harbor is up"),
    }
}

async fn harbor_admin(harbor: &HarborClient) -> Outcome {
    match harbor.current_user().await {
        Ok(u) if u["sysadmin_flag"] == true => ok(format!(
            "user {}, system admin",
            u["username"].as_str().unwrap_or("?")
        )),
        Ok(u) => fail(
            format!(
                "user {} is not a system admin",
                u["username"].as_str().unwrap_or("?")
            ),
            "phases 14 and 16 create projects, robots and scanners: use the admin account's password in HARBOR_ADMIN_PASSWORD",
        ),
        Err(e) => fail(
            e.one_line(),
            "set HARBOR_ADMIN_PASSWORD to the Harbor admin's password",
        ),
    }
}

async fn kube_version(cfg: &PlatformConfig) -> Result<(KubeClient, Outcome), Outcome> {
    let kube = KubeClient::connect(cfg, "cicd-preflight")
        .await
        .map_err(|e| {
            fail(
                e.one_line(),
                "set KUBECONFIG or provide cluster/kubeconfig-rke2.yaml",
            )
        })?;
    match kube.client().apiserver_version().await {
        Ok(v) => Ok((kube, ok(format!("server {}", v.git_version)))),
        Err(e) => Err(fail(
            format!("reading the server version: {e}"),
            "check the kubeconfig's server address and credentials",
        )),
    }
}

/// Each CRD exists, is established and serves the version the phases write.
async fn crds(kube: &KubeClient, names: &[(&str, &str)]) -> Outcome {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (name, version) in names {
        let object = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name}});
        match kube.get(&object).await {
            Ok(None) => problems.push(format!("{name} missing")),
            Ok(Some(crd)) => {
                let established = crd["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                let served: Vec<&str> = crd["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["served"] == true)
                    .filter_map(|v| v["name"].as_str())
                    .collect();
                if !established {
                    problems.push(format!("{name} not established"));
                } else if !served.contains(version) {
                    problems.push(format!(
                        "{name} serves {} but not {version}",
                        served.join(",")
                    ));
                } else {
                    found.push(format!("{name} {version}"));
                }
            }
            Err(e) => problems.push(format!("{name}: {}", e.one_line())),
        }
    }
    if problems.is_empty() {
        ok(found.join(", "))
    } else {
        fail(problems.join("; "), "install or upgrade the CRDs")
    }
}

async fn http_probe(
    cfg: &PlatformConfig,
    base: Option<String>,
    path: &str,
    setting: &str,
) -> Outcome {
    let Some(base) = base else {
        return fail("no URL", format!("set {setting} or DOMAIN"));
    };
    let client = match common::http::build_reqwest(cfg) {
        Ok(c) => c,
        Err(e) => return fail(e.one_line(), "check CICD_CA_BUNDLE"),
    };
    // Phase 17's own summary probe, so both say the same about the same server.
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let (probe, _) = obs_setup::summary::probe_get(&client, setting, url).await;
    let detail = format!("{}: {}", probe.url, probe.detail);
    if probe.up {
        ok(detail)
    } else {
        fail(
            detail,
            format!("check {setting} and that the server is up and ready"),
        )
    }
}
