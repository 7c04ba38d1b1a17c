//! The Helm release `gitlab-runner-security` that the platform's bash phase 16 installed in the
//! runner namespace (docs/research/upstream-bash-phases.md section 3.5), removed the way `helm uninstall`
//! removes a release (section 4.3, `common::helm`), without the helm binary: every object of the latest
//! revision's manifest, then every revision's Secret. Each deletion is a plan change with the
//! reason "left by the bash phase".
//!
//! Our own security pool is Argo CD Application `gitlab-runner-security` rendering the same chart
//! under the same release name, so its objects can have the very names the Helm release used.
//! Two rules beyond Helm's keep them safe: an object is deleted only if it carries Helm's
//! annotations of this release (Helm stamps them on everything it applies; Argo CD renders with
//! `helm template` and never adds them), and never while Argo CD tracks it. Such an object, and
//! one annotated `helm.sh/resource-policy: keep`, stays and the plan says so.

use common::helm::{self, StoredRevision};
use common::kube::KubeClient;
use common::plan::{Change, Plan};
use serde_json::{Value, json};

/// The release the bash phase installed (`helm_install_if_needed gitlab-runner-security …`).
pub const BASH_RELEASE: &str = "gitlab-runner-security";
/// Argo CD's resource tracking annotation (tracking method `annotation`, the default since 3.0).
pub const ARGOCD_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// One object of the latest revision's manifest.
#[derive(Debug, Clone)]
pub struct ManifestObject {
    /// apiVersion, kind and metadata as the manifest has them (never its data).
    pub manifest: Value,
    /// apiVersion, kind and metadata of the live object (`None`: absent or its kind not served).
    pub live: Option<Value>,
}

/// What is left of the release in the cluster.
#[derive(Debug, Clone, Default)]
pub struct LiveRelease {
    /// Its revision Secrets, oldest first, each with its live metadata.
    pub revisions: Vec<(StoredRevision, Value)>,
    /// The objects of the latest revision's manifest, in manifest order.
    pub objects: Vec<ManifestObject>,
}

/// What executing a change does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Deletes the object observed (uid precondition: never one recreated since).
    Delete { target: Value },
}

/// apiVersion, kind and metadata only: what the diff and the executor need, without the data
/// (a chart's Secret and the release Secrets hold the runner token).
fn shape(object: &Value) -> Value {
    json!({"apiVersion": object["apiVersion"], "kind": object["kind"], "metadata": object["metadata"]})
}

/// The object to delete, addressed by name and namespace, guarded by its uid.
fn target(live: &Value) -> Value {
    let meta = &live["metadata"];
    json!({"apiVersion": live["apiVersion"], "kind": live["kind"],
           "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}})
}

/// `Kind namespace/name` of a live object (cluster-scoped: `Kind name`).
fn title(live: &Value) -> (String, String) {
    let meta = &live["metadata"];
    let name = meta["name"].as_str().unwrap_or("?");
    let name = match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    };
    (live["kind"].as_str().unwrap_or("?").to_owned(), name)
}

/// Whether Argo CD tracks the object (annotation tracking, or its own field manager wrote it).
pub fn tracked_by_argocd(live: &Value) -> bool {
    live["metadata"]["annotations"][ARGOCD_TRACKING_ANNOTATION].is_string()
        || live["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|fields| {
                fields.iter().any(|f| {
                    f["manager"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("argocd"))
                })
            })
}

/// The deletions of the release, in `helm uninstall`'s order (objects, workloads first, then
/// the revision Secrets); warnings for the objects it keeps.
pub fn diff<A>(plan: &mut Plan<A>, live: &LiveRelease, namespace: &str, wrap: impl Fn(Op) -> A) {
    let Some((latest, _)) = live.revisions.last() else {
        return;
    };
    let release = format!("Helm release {BASH_RELEASE} in {namespace}");
    let mut deletions: Vec<(u8, Change<A>)> = Vec::new();
    for object in &live.objects {
        let Some(current) = &object.live else {
            continue;
        };
        let (kind, name) = title(current);
        if helm::keeps(&object.manifest) || helm::keeps(current) {
            plan.warn(format!(
                "{kind} {name} of {release} is kept: annotated {}: keep, which helm uninstall keeps too; delete it by hand once nothing needs it",
                helm::RESOURCE_POLICY_ANNOTATION
            ));
            continue;
        }
        if !helm::stamped_by(current, BASH_RELEASE, namespace) {
            plan.warn(format!(
                "{kind} {name} is in the manifest of {release} but lacks Helm's annotations of that release ({}={BASH_RELEASE}): another owner (e.g. our Argo CD Application {BASH_RELEASE}) has it now, so it is kept",
                helm::RELEASE_NAME_ANNOTATION
            ));
            continue;
        }
        if tracked_by_argocd(current) {
            plan.warn(format!(
                "{kind} {name} of {release} is tracked by Argo CD (synced over Helm's object), so it is kept; Argo CD owns it now"
            ));
            continue;
        }
        let change = Change::delete(
            &format!("kubernetes {kind}"),
            &name,
            json!({"helm release": BASH_RELEASE, "revision": latest.revision}),
            &[],
            wrap(Op::Delete {
                target: target(current),
            }),
        )
        .left_by_bash(&format!(
            "object of {release} (latest revision {}): listed in its manifest and annotated {}={BASH_RELEASE}, {}={namespace}; not tracked by Argo CD",
            latest.revision,
            helm::RELEASE_NAME_ANNOTATION,
            helm::RELEASE_NAMESPACE_ANNOTATION
        ));
        deletions.push((helm::uninstall_rank(&kind), change));
    }
    // Stable: objects of one rank keep their manifest order.
    deletions.sort_by_key(|(rank, _)| *rank);
    for (_, change) in deletions {
        plan.push(change);
    }
    for (revision, secret) in &live.revisions {
        plan.push(
            Change::delete(
                "kubernetes Secret",
                &format!("{namespace}/{}", revision.secret_name),
                json!({"type": helm::RELEASE_SECRET_TYPE, "status": revision.status, "revision": revision.revision}),
                &[],
                wrap(Op::Delete { target: target(secret) }),
            )
            .left_by_bash(&format!(
                "revision {} of {release}: type {}, labels owner=helm, name={BASH_RELEASE}, named {}.{BASH_RELEASE}.v<N>",
                revision.revision,
                helm::RELEASE_SECRET_TYPE,
                helm::STORAGE_PREFIX
            )),
        );
    }
}

/// Reads the release (no writes): its Secrets, the latest revision's manifest and each of its
/// objects as it is live.
pub async fn observe(kube: &KubeClient, namespace: &str) -> anyhow::Result<LiveRelease> {
    let secrets = kube
        .list(
            "v1",
            "Secret",
            namespace,
            &helm::release_selector(BASH_RELEASE),
        )
        .await?;
    let stored = helm::revisions(BASH_RELEASE, &secrets);
    let Some(latest) = stored.last() else {
        return Ok(LiveRelease::default());
    };
    let by_name = |name: &str| {
        secrets
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let latest_secret = by_name(&latest.secret_name);
    let what = format!("{namespace}/{}", latest.secret_name);
    let release = helm::decode_release(
        latest_secret["data"]["release"]
            .as_str()
            .unwrap_or_default(),
        &what,
    )?;
    let manifest = release["manifest"].as_str().unwrap_or_default();
    let mut objects = Vec::new();
    for object in helm::manifest_objects(manifest, &what)? {
        let mut address = shape(&object);
        // Helm installs namespaced objects without a namespace into the release's namespace.
        if address["metadata"]["namespace"].is_null() {
            address["metadata"]["namespace"] = json!(namespace);
        }
        let live = kube.get_if_served(&address).await?.map(|mut found| {
            found["apiVersion"] = address["apiVersion"].clone();
            found["kind"] = address["kind"].clone();
            shape(&found)
        });
        objects.push(ManifestObject {
            manifest: address,
            live,
        });
    }
    let revisions = stored
        .iter()
        .map(|r| (r.clone(), shape(&by_name(&r.secret_name))))
        .collect();
    Ok(LiveRelease { revisions, objects })
}

/// Executes one change.
pub async fn execute(kube: &KubeClient, op: &Op) -> anyhow::Result<()> {
    match op {
        Op::Delete { target } => kube.delete_observed(target).await?,
    }
    Ok(())
}
