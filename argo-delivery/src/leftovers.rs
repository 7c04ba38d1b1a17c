//! What the platform's bash phase 15 (`phase_15_argocd_delivery`) left in the cluster, and how
//! this phase converges it (docs/research/upstream-bash-phases.md section 3.1–3.4,
//! docs/phase-15-argo-delivery.md "Leftovers of the bash phase"):
//!
//! - `CronJob` `<argocd>/ephemeral-ns-cleaner` → deleted (our cleaner is `cicd-system/namespace-cleaner`);
//! - `ApplicationSet` `<argocd>/ephemeral-mr-envs` → deleted (ours are `ephemeral-<service>`);
//! - Secret `<argocd>/argocd-gitlab-token` → kept, handed to our `ExternalSecret` of the same name
//!   (`creationPolicy: Owner`: ESO adopts a Secret without owner in place); only kubectl's
//!   `last-applied-configuration` annotation, which holds the token again, is removed;
//! - `AppProjects` `production`, `staging`, `ephemeral` written by client-side `kubectl apply` →
//!   one JSON patch (guarded by `test` on the resourceVersion) clears their field ownership
//!   (Kubernetes "Server-Side Apply → Clearing managedFields") and the fields only bash set, then
//!   our server-side apply makes them exactly ours, and a last guarded patch drops the
//!   `before-first-apply` entry that apply leaves on an object without `managedFields`.
//!
//! Each is recognised by its exact bash identity, never by name alone; the `is_bash_*` rules are
//! pure and tested against what this phase itself creates (`diff_tests`).

use std::time::Duration;

use common::kube::{
    KubeClient, LAST_APPLIED_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, pointer_token,
};
use common::plan::{Change, Plan};
use serde_json::{Value, json};

use crate::settings::Settings;

/// The bash phase's cleaner `CronJob` (section 3.1).
pub const BASH_CLEANER: &str = "ephemeral-ns-cleaner";
/// Its one container's name and image, and the service account it runs as.
pub const BASH_CLEANER_CONTAINER: &str = "cleaner";
pub const BASH_CLEANER_IMAGE: &str = "bitnami/kubectl:latest";
pub const BASH_CLEANER_SERVICE_ACCOUNT: &str = "argocd-server";
/// The API versions a `CronJob` is read through: batch/v1 (Kubernetes 1.21+), then batch/v1beta1
/// (up to 1.24), so the leftover is found on every Kubernetes the platform ran on.
pub const CRON_JOB_VERSIONS: [&str; 2] = ["batch/v1", "batch/v1beta1"];

/// The bash phase's `ApplicationSet` (section 3.3), its template's project and path.
pub const BASH_APPLICATION_SET: &str = "ephemeral-mr-envs";
pub const BASH_APPLICATION_SET_PROJECT: &str = "ephemeral";
pub const BASH_APPLICATION_SET_PATH: &str = "deploy/overlays/rke2-prod";

/// The pull-request generators' token Secret: the bash literal (section 3.2) and our `ExternalSecret`'s
/// target share the name.
pub const GITLAB_TOKEN_SECRET: &str = "argocd-gitlab-token";
/// The key the bash phase stored the token under.
pub const GITLAB_TOKEN_KEY: &str = "token";

/// The `AppProjects` the bash phase applied (section 3.4); `platform` is ours only.
pub const BASH_APP_PROJECTS: [&str; 3] = ["production", "staging", "ephemeral"];
/// The field managers client-side `kubectl apply` writes as: `kubectl-client-side-apply` since
/// kubectl 1.18, `kubectl` before. Both record an `Update` operation.
pub const KUBECTL_APPLY_MANAGERS: [&str; 2] = ["kubectl-client-side-apply", "kubectl"];

/// The live objects that may be leftovers (each `None` when absent or its kind is not served).
#[derive(Debug, Clone, Default)]
pub struct LiveLeftovers {
    pub cleaner: Option<Value>,
    pub application_set: Option<Value>,
    pub token_secret: Option<Value>,
    /// The live `AppProjects` named in [`BASH_APP_PROJECTS`].
    pub app_projects: Vec<Value>,
}

/// What executing a leftover change does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Deletes the object exactly as observed (uid and resourceVersion preconditions).
    Delete { live: Value },
    /// One JSON patch; its first operation tests the observed resourceVersion.
    Patch { target: Value, ops: Value },
    /// The `AppProject` reset patch, then our server-side apply of `object`, then a patch that
    /// leaves only our manager's `managedFields` entries ([`keep_only_manager`]).
    Adopt {
        target: Value,
        ops: Value,
        object: Value,
        crd: Option<&'static str>,
    },
}

fn name_is(object: &Value, namespace: &str, name: &str) -> bool {
    object["metadata"]["name"] == name && object["metadata"]["namespace"] == namespace
}

/// Whether the object carries this project's ownership label.
fn ours(object: &Value) -> bool {
    object["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
}

/// The bash cleaner: its name in the Argo CD namespace, without our label, running exactly one
/// container `cleaner` on `bitnami/kubectl:latest` as `argocd-server`. Ours differs in all of it
/// (`cicd-system/namespace-cleaner`, labelled, pinned image, own service account).
pub fn is_bash_cleaner(object: &Value, argocd_namespace: &str) -> bool {
    let pod = &object["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().map_or(&[][..], Vec::as_slice);
    name_is(object, argocd_namespace, BASH_CLEANER)
        && object["kind"] == "CronJob"
        && !ours(object)
        && pod["serviceAccountName"] == BASH_CLEANER_SERVICE_ACCOUNT
        && matches!(containers, [only] if only["name"] == BASH_CLEANER_CONTAINER && only["image"] == BASH_CLEANER_IMAGE)
}

/// The bash `ApplicationSet`: its name in the Argo CD namespace, without our label, exactly one
/// GitLab pull-request generator reading `argocd-gitlab-token`, and a template in project
/// `ephemeral` deploying `deploy/overlays/rke2-prod`. Ours are named `ephemeral-<service>`,
/// labelled, and deploy each service's ephemeral overlay.
pub fn is_bash_application_set(object: &Value, argocd_namespace: &str) -> bool {
    let generators = object["spec"]["generators"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let template = &object["spec"]["template"]["spec"];
    name_is(object, argocd_namespace, BASH_APPLICATION_SET)
        && object["kind"] == "ApplicationSet"
        && !ours(object)
        && matches!(generators, [only] if only["pullRequest"]["gitlab"]["tokenRef"]["secretName"] == GITLAB_TOKEN_SECRET)
        && template["project"] == BASH_APPLICATION_SET_PROJECT
        && template["source"]["path"] == BASH_APPLICATION_SET_PATH
}

/// The bash token Secret, still carrying kubectl's copy of the token: `Opaque` with the single
/// key `token`, without our label, owned by nobody or only by our `ExternalSecret` of the same
/// name (ESO adopted it), and a `last-applied-configuration` that is that Secret's own manifest.
/// The Secret ESO creates for us has an owner and never that annotation.
pub fn is_bash_token_secret(object: &Value, argocd_namespace: &str) -> bool {
    let keys: Vec<&String> = object["data"]
        .as_object()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    let owners = object["metadata"]["ownerReferences"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let owned_by_nobody_else = owners
        .iter()
        .all(|o| o["kind"] == "ExternalSecret" && o["name"] == GITLAB_TOKEN_SECRET);
    let applied: Option<Value> = object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok());
    let applied_is_this_secret = applied.is_some_and(|a| {
        a["kind"] == "Secret"
            && a["metadata"]["name"] == GITLAB_TOKEN_SECRET
            && a["data"]
                .as_object()
                .is_some_and(|d| d.len() == 1 && d.contains_key(GITLAB_TOKEN_KEY))
    });
    name_is(object, argocd_namespace, GITLAB_TOKEN_SECRET)
        && object["kind"] == "Secret"
        && object["type"] == "Opaque"
        && keys == [GITLAB_TOKEN_KEY]
        && !ours(object)
        && owned_by_nobody_else
        && applied_is_this_secret
}

/// The managers of `object` that are client-side `kubectl apply` (`manager (operation)`).
pub fn kubectl_apply_managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|m| {
            m["operation"] == "Update"
                && m["manager"]
                    .as_str()
                    .is_some_and(|name| KUBECTL_APPLY_MANAGERS.contains(&name))
        })
        .map(|m| format!("{} (Update)", m["manager"].as_str().unwrap_or_default()))
        .collect()
}

/// The role the bash phase gave each of its `AppProjects` (research note, section 3.4).
pub fn bash_app_project_role(name: &str) -> Option<&'static str> {
    match name {
        "production" => Some("admin"),
        "staging" => Some("deployer"),
        "ephemeral" => Some("developer"),
        _ => None,
    }
}

/// A bash `AppProject`: one of [`BASH_APP_PROJECTS`] in the Argo CD namespace whose fields
/// client-side `kubectl apply` still owns, and whose applied manifest (kubectl's
/// `last-applied-configuration`) is the bash phase's: that project with its bash role. Our phase
/// writes only by server-side apply (operation `Apply`, manager `cicd-buildout/argo-delivery`),
/// so an `AppProject` only we wrote never matches, and neither does `platform`.
pub fn is_bash_app_project(object: &Value, argocd_namespace: &str) -> bool {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let applied: Option<Value> = object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok());
    let applied_is_bash = applied.is_some_and(|a| {
        a["kind"] == "AppProject"
            && a["metadata"]["name"] == name
            && bash_app_project_role(name).is_some_and(|role| {
                a["spec"]["roles"]
                    .as_array()
                    .is_some_and(|roles| roles.iter().any(|r| r["name"] == role))
            })
    });
    object["kind"] == "AppProject"
        && object["metadata"]["namespace"] == argocd_namespace
        && BASH_APP_PROJECTS.contains(&name)
        && !kubectl_apply_managers(object).is_empty()
        && applied_is_bash
}

/// The manager our apply leaves when it lands on an object whose `managedFields` were just
/// cleared (see [`keep_only_manager`]).
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// An `AppProject` whose adoption stopped after the reset (the apply or the last patch failed):
/// no kubectl manager any more, but a [`BEFORE_FIRST_APPLY`] entry co-owning our fields. The
/// rerun finishes it with the [`keep_only_manager`] patch.
pub fn is_interrupted_adoption(object: &Value, argocd_namespace: &str) -> bool {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    object["kind"] == "AppProject"
        && object["metadata"]["namespace"] == argocd_namespace
        && BASH_APP_PROJECTS.contains(&name)
        && object["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m.iter().any(|e| e["manager"] == BEFORE_FIRST_APPLY))
}

/// The names of the `AppProjects` [`diff`] adopts: [`crate::reconcile`] leaves them out of the
/// objects it plans by dry run, because the adoption applies them itself after the reset.
pub fn adopted_app_projects(live: &LiveLeftovers, argocd_namespace: &str) -> Vec<String> {
    live.app_projects
        .iter()
        .filter(|p| is_bash_app_project(p, argocd_namespace))
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// apiVersion, kind, name and namespace of an object (what an [`Op`] needs to address it).
fn reference(object: &Value) -> Value {
    json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"]},
    })
}

fn test_resource_version(live: &Value) -> Value {
    json!({"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]})
}

/// The one JSON patch that resets a bash `AppProject` before our apply: `test` the observed
/// resourceVersion; set `managedFields` to `[{}]`, which strips every entry (Kubernetes docs,
/// Server-Side Apply, "Clearing managedFields"); remove kubectl's last-applied annotation; remove
/// each top-level `spec` field that `desired` does not set (only bash set it).
pub fn app_project_reset(live: &Value, desired: &Value) -> Value {
    let mut ops = vec![
        test_resource_version(live),
        json!({"op": "add", "path": "/metadata/managedFields", "value": [{}]}),
    ];
    if live["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].is_string() {
        ops.push(json!({"op": "remove", "path": format!("/metadata/annotations/{}", pointer_token(LAST_APPLIED_ANNOTATION))}));
    }
    if let Some(spec) = live["spec"].as_object() {
        for key in spec.keys() {
            if desired["spec"].get(key).is_none() {
                ops.push(json!({"op": "remove", "path": format!("/spec/{}", pointer_token(key))}));
            }
        }
    }
    Value::Array(ops)
}

/// The patch that leaves only `manager`'s entries in `applied`'s `managedFields`, guarded by its
/// resourceVersion; `None` when no other entry is there. Our apply onto an object whose
/// `managedFields` were just cleared first credits every field it finds to `before-first-apply`
/// (operation `Update`), which would co-own our fields for good: a field we stop setting would then
/// never be removed. Writing `managedFields` by patch is allowed (Server-Side Apply, "Clearing
/// managedFields"); the patch changes nothing else.
pub fn keep_only_manager(applied: &Value, manager: &str) -> Option<Value> {
    let entries = applied["metadata"]["managedFields"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let ours: Vec<&Value> = entries.iter().filter(|m| m["manager"] == manager).collect();
    (ours.len() < entries.len()).then(|| {
        json!([
            test_resource_version(applied),
            {"op": "add", "path": "/metadata/managedFields", "value": ours},
        ])
    })
}

/// The leftover changes, in apply order, each with its bash identity as the reason.
pub fn diff<A>(
    plan: &mut Plan<A>,
    s: &Settings,
    live: &LiveLeftovers,
    desired_projects: &[Value],
    crd: Option<&'static str>,
    wrap: impl Fn(Op) -> A,
) {
    let ns = s.argocd_namespace.as_str();
    if let Some(cleaner) = live.cleaner.as_ref().filter(|c| is_bash_cleaner(c, ns)) {
        let pod = &cleaner["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        plan.push(
            Change::delete(
                "kubernetes CronJob",
                &format!("{ns}/{BASH_CLEANER}"),
                json!({"schedule": cleaner["spec"]["schedule"], "serviceAccountName": pod["serviceAccountName"], "image": pod["containers"][0]["image"]}),
                &[],
                wrap(Op::Delete { live: cleaner.clone() }),
            )
            .left_by_bash(&format!(
                "CronJob {ns}/{BASH_CLEANER}, one container {BASH_CLEANER_CONTAINER} on {BASH_CLEANER_IMAGE} as service account {BASH_CLEANER_SERVICE_ACCOUNT}, without {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} (ours: cicd-system/namespace-cleaner)"
            )),
        );
    }
    if let Some(set) = live
        .application_set
        .as_ref()
        .filter(|a| is_bash_application_set(a, ns))
    {
        let template = &set["spec"]["template"]["spec"];
        plan.push(
            Change::delete(
                "kubernetes ApplicationSet",
                &format!("{ns}/{BASH_APPLICATION_SET}"),
                json!({"generator": "pullRequest.gitlab", "project": template["project"], "path": template["source"]["path"]}),
                &[],
                wrap(Op::Delete { live: set.clone() }),
            )
            .left_by_bash(&format!(
                "ApplicationSet {ns}/{BASH_APPLICATION_SET}, one GitLab pull-request generator reading Secret {GITLAB_TOKEN_SECRET}, template project {BASH_APPLICATION_SET_PROJECT} path {BASH_APPLICATION_SET_PATH}, without {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} (ours: ephemeral-<service>)"
            )),
        );
    }
    if let Some(secret) = live
        .token_secret
        .as_ref()
        .filter(|t| is_bash_token_secret(t, ns))
    {
        let ops = json!([
            test_resource_version(secret),
            {"op": "remove", "path": format!("/metadata/annotations/{}", pointer_token(LAST_APPLIED_ANNOTATION))},
        ]);
        let mut change = Change::update(
            "kubernetes Secret",
            &format!("{ns}/{GITLAB_TOKEN_SECRET}"),
            json!({"annotations": {LAST_APPLIED_ANNOTATION: "(sensitive: kubectl's copy of the Secret, token included)"}}),
            json!({"annotations": {}}),
            &[],
            wrap(Op::Patch {
                target: reference(secret),
                ops,
            }),
        );
        change.diff.push(format!(
            "= the Secret and its data stay: ExternalSecret {ns}/{GITLAB_TOKEN_SECRET} (creationPolicy Owner) takes it over in place"
        ));
        plan.push(change.left_by_bash(&format!(
            "Secret {ns}/{GITLAB_TOKEN_SECRET}, type Opaque with the one key {GITLAB_TOKEN_KEY}, no owner but our ExternalSecret, written by client-side kubectl apply ({LAST_APPLIED_ANNOTATION})"
        )));
    }
    for project in live
        .app_projects
        .iter()
        .filter(|p| is_bash_app_project(p, ns))
    {
        let name = project["metadata"]["name"].as_str().unwrap_or_default();
        let Some(desired) = desired_projects
            .iter()
            .find(|d| d["metadata"]["name"] == name)
        else {
            continue;
        };
        let managers: Vec<String> = project["metadata"]["managedFields"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|m| {
                format!(
                    "{} ({})",
                    m["manager"].as_str().unwrap_or("?"),
                    m["operation"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let mut before = json!({"managers": managers, "spec": project["spec"], "labels": project["metadata"]["labels"]});
        if project["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].is_string() {
            before["annotations"] =
                json!({LAST_APPLIED_ANNOTATION: "(kubectl's copy of the manifest)"});
        }
        let after = json!({"managers": [format!("{} (Apply)", crate::reconcile::FIELD_MANAGER)], "spec": desired["spec"], "labels": desired["metadata"]["labels"]});
        let identity = format!(
            "AppProject {ns}/{name} with fields owned by client-side kubectl apply ({}), applied with the bash role {}",
            kubectl_apply_managers(project).join(", "),
            bash_app_project_role(name).unwrap_or_default()
        );
        plan.push(
            Change::update(
                "kubernetes AppProject",
                &format!("{ns}/{name}"),
                before,
                after,
                &[],
                wrap(Op::Adopt {
                    target: reference(project),
                    ops: app_project_reset(project, desired),
                    object: desired.clone(),
                    crd,
                }),
            )
            .left_by_bash(&identity),
        );
    }
    let manager = crate::reconcile::FIELD_MANAGER;
    for project in live
        .app_projects
        .iter()
        .filter(|p| !is_bash_app_project(p, ns) && is_interrupted_adoption(p, ns))
    {
        let name = project["metadata"]["name"].as_str().unwrap_or_default();
        let Some(ops) = keep_only_manager(project, manager) else {
            continue;
        };
        plan.push(
            Change::update(
                "kubernetes AppProject",
                &format!("{ns}/{name}"),
                json!({"managers": project["metadata"]["managedFields"].as_array().map(|m| m.iter().map(|e| e["manager"].clone()).collect::<Vec<_>>())}),
                json!({"managers": [manager]}),
                &[],
                wrap(Op::Patch {
                    target: reference(project),
                    ops,
                }),
            )
            .left_by_bash(&format!(
                "AppProject {ns}/{name} whose adoption stopped after its reset: {BEFORE_FIRST_APPLY} still co-owns our fields"
            )),
        );
    }
}

/// Reads the objects that may be leftovers (no writes).
pub async fn observe(kube: &KubeClient, s: &Settings) -> anyhow::Result<LiveLeftovers> {
    let ns = &s.argocd_namespace;
    let at = |api_version: &str, kind: &str, name: &str| json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": ns}});
    let mut cleaner = None;
    for version in CRON_JOB_VERSIONS {
        cleaner = kube
            .get_if_served(&at(version, "CronJob", BASH_CLEANER))
            .await?;
        if let Some(found) = &mut cleaner {
            // Lists and gets of a dynamic object may omit them; the identity checks the kind.
            found["apiVersion"] = json!(version);
            found["kind"] = json!("CronJob");
            break;
        }
    }
    let typed = |mut found: Option<Value>, api_version: &str, kind: &str| {
        if let Some(object) = &mut found {
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
        }
        found
    };
    let application_set = typed(
        kube.get_if_served(&at(
            "argoproj.io/v1alpha1",
            "ApplicationSet",
            BASH_APPLICATION_SET,
        ))
        .await?,
        "argoproj.io/v1alpha1",
        "ApplicationSet",
    );
    let token_secret = typed(
        kube.get(&at("v1", "Secret", GITLAB_TOKEN_SECRET)).await?,
        "v1",
        "Secret",
    );
    let mut app_projects = Vec::new();
    for name in BASH_APP_PROJECTS {
        let found = kube
            .get_if_served(&at("argoproj.io/v1alpha1", "AppProject", name))
            .await?;
        app_projects.extend(typed(found, "argoproj.io/v1alpha1", "AppProject"));
    }
    Ok(LiveLeftovers {
        cleaner,
        application_set,
        token_secret,
        app_projects,
    })
}

/// Executes one leftover change.
pub async fn execute(kube: &KubeClient, op: &Op, crd_wait: Duration) -> anyhow::Result<()> {
    match op {
        Op::Delete { live } => kube.delete_observed(live).await?,
        Op::Patch { target, ops } => {
            kube.json_patch(target, ops).await?;
        }
        Op::Adopt {
            target,
            ops,
            object,
            crd,
        } => {
            kube.json_patch(target, ops).await?;
            let applied = kube.apply_planned(object, *crd, crd_wait).await?;
            if let Some(ours_only) = keep_only_manager(&applied, kube.field_manager()) {
                kube.json_patch(target, &ours_only).await?;
            }
        }
    }
    Ok(())
}
