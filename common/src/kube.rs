//! Kubernetes helper: server-side apply with one field manager per binary, plans made by
//! `dryRun=All` server-side apply diffed against the live object (ignoring managedFields,
//! resourceVersion and status), CRD readiness, `TokenRequest`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::PlatformConfig;
use crate::error::{Error, Result, error_chain, short_body};
use crate::plan::{Change, Plan};
use crate::redact;

/// Adds the Kubernetes objects of a phase to its [`Plan`]: a server-side dry run for each (so the
/// server's validation is part of the plan), a create for an object whose CRD is not Established
/// yet (apply waits for it) and a warning for a built-in kind the cluster does not serve.
pub struct ObjectPlanner<'a> {
    kube: &'a KubeClient,
    crd_wait: Duration,
    established: BTreeMap<String, bool>,
}

impl<'a> ObjectPlanner<'a> {
    /// A planner reading through `kube`; `crd_wait` is what the missing-CRD warning says apply will
    /// wait.
    pub fn new(kube: &'a KubeClient, crd_wait: Duration) -> Self {
        Self {
            kube,
            crd_wait,
            established: BTreeMap::new(),
        }
    }

    /// Plans every object, in order; an error names the object it came from.
    pub async fn add_all<A>(
        &mut self,
        plan: &mut Plan<A>,
        objects: Vec<crate::phase::DesiredObject<A>>,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        for desired in objects {
            self.add(
                plan,
                &desired.object,
                desired.crd,
                desired.installed_by,
                desired.op,
            )
            .await
            .with_context(|| format!("planning {}", describe(&desired.object)))?;
        }
        Ok(())
    }

    /// Plans `object` as change `op`. `crd` is the CRD its kind needs, and `installed_by` says
    /// what installs that CRD (for the warning when it is missing).
    async fn add<A>(
        &mut self,
        plan: &mut Plan<A>,
        object: &Value,
        crd: Option<&str>,
        installed_by: &str,
        op: A,
    ) -> Result<()> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = format!("kubernetes {kind}");
        let described = describe(object);
        let name = described
            .split_once(' ')
            .map(|x| x.1.to_owned())
            .unwrap_or_default();
        if let Some(crd) = crd {
            let ready = if let Some(ready) = self.established.get(crd) {
                *ready
            } else {
                let ready = self.kube.crd_established(crd).await?;
                self.established.insert(crd.to_owned(), ready);
                ready
            };
            if !ready {
                plan.warn(format!(
                    "CRD {crd} is not installed yet ({installed_by}): apply waits up to {}s for it before creating {described}",
                    self.crd_wait.as_secs()
                ));
                plan.push(Change::create(&resource, &name, object.clone(), &[], op));
                return Ok(());
            }
        } else if self.kube.discover(object).await?.is_none() {
            plan.warn(format!(
                "{described}: the cluster does not serve {} {kind} (an older Kubernetes): skipped",
                object["apiVersion"].as_str().unwrap_or_default()
            ));
            return Ok(());
        }
        match self.kube.diff(object).await? {
            ObjectDiff::Create => {
                plan.push(Change::create(&resource, &name, object.clone(), &[], op));
            }
            ObjectDiff::Update { before, after } => {
                plan.push(Change::update(&resource, &name, before, after, &[], op));
            }
            ObjectDiff::Unchanged => {}
        }
        Ok(())
    }
}

/// Labels on everything a phase creates, so a later prune deletes only what we own.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on this project's objects.
pub const MANAGED_BY_VALUE: &str = "cicd-buildout";
/// Label naming the phase that owns an object, e.g. `13`.
pub const PHASE_LABEL: &str = "cicd-buildout/phase";

/// How a desired object compares with the live one.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectDiff {
    /// No live object: it would be created (the server accepted it in a dry run).
    Create,
    /// Only the fields that differ: live (before) and after a dry-run apply (after).
    Update {
        /// The differing fields of the live object.
        before: Value,
        /// The same fields after a dry-run apply of the desired object.
        after: Value,
    },
    /// Applying the desired object would change nothing.
    Unchanged,
}

/// A Kubernetes client that writes as one field manager.
pub struct KubeClient {
    client: kube::Client,
    field_manager: String,
    kinds: Mutex<HashMap<(String, String), (ApiResource, Scope)>>,
}

/// `apiVersion/kind namespace/name` of an object, for messages.
pub fn describe(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    format!(
        "{} {ns}{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn kube_error(operation: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(status) => {
            let fix = match status.code {
                401 => "the kubeconfig's credentials were rejected: refresh cluster/kubeconfig-rke2.yaml".to_owned(),
                403 => "the kubeconfig's user lacks the RBAC rights for this: use the cluster-admin kubeconfig of the base platform".to_owned(),
                _ => String::new(),
            };
            Error::Kube {
                operation: operation.to_owned(),
                status: status.code,
                message: short_message(&status.message),
                fix,
            }
        }
        other => Error::Unreachable {
            service: "Kubernetes",
            operation: operation.to_owned(),
            method: String::new(),
            url: String::new(),
            cause: short_body(&error_chain(&other)),
            fix: "check KUBECONFIG (cluster/kubeconfig-rke2.yaml) and that the API server is up"
                .to_owned(),
        },
    }
}

/// Server messages can list hundreds of schema violations; keep the first 600 characters.
fn short_message(message: &str) -> String {
    let message = redact::redact(message);
    if message.chars().count() > 600 {
        format!(
            "{}… ({} characters in all)",
            message.chars().take(600).collect::<String>(),
            message.chars().count()
        )
    } else {
        message
    }
}

/// Removes what the server owns, so live and desired can be compared.
pub fn normalize(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
            "selfLink",
        ] {
            meta.remove(key);
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(LAST_APPLIED_ANNOTATION);
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
    obj
}

/// Keeps only the parts of two values that differ (for compact before/after in plans).
fn differing(before: &Value, after: &Value) -> (Value, Value) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut bo = serde_json::Map::new();
            let mut ao = serde_json::Map::new();
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                match (b.get(key), a.get(key)) {
                    (Some(bv), Some(av)) if bv == av => {}
                    (Some(bv), Some(av)) => {
                        let (x, y) = differing(bv, av);
                        bo.insert(key.clone(), x);
                        ao.insert(key.clone(), y);
                    }
                    (Some(bv), None) => {
                        bo.insert(key.clone(), bv.clone());
                    }
                    (None, Some(av)) => {
                        ao.insert(key.clone(), av.clone());
                    }
                    (None, None) => {}
                }
            }
            (Value::Object(bo), Value::Object(ao))
        }
        _ => (before.clone(), after.clone()),
    }
}

impl KubeClient {
    /// Connects with the configured kubeconfig (`KUBECONFIG` or `cluster/kubeconfig-rke2.yaml`).
    /// In a pod with no kubeconfig (the readiness `CronJob`), the pod's service account is used.
    pub async fn connect(cfg: &PlatformConfig, field_manager: &str) -> Result<Self> {
        match cfg.require_kubeconfig() {
            Ok(paths) => Self::from_kubeconfigs(&paths, field_manager).await,
            Err(e) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                let config = kube::Config::incluster().map_err(|in_cluster| {
                    Error::Config(format!(
                        "{e}; and the pod's service account is not usable: {in_cluster}"
                    ))
                })?;
                Self::from_config(config, field_manager)
            }
            Err(e) => Err(e),
        }
    }

    fn from_config(config: kube::Config, field_manager: &str) -> Result<Self> {
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::Config(format!("Kubernetes client: {e}")))?;
        Ok(Self {
            client,
            field_manager: field_manager.to_owned(),
            kinds: Mutex::new(HashMap::new()),
        })
    }

    /// Connects with the kubeconfig at `path`.
    pub async fn from_kubeconfig(path: &std::path::Path, field_manager: &str) -> Result<Self> {
        Self::from_kubeconfigs(&[path], field_manager).await
    }

    /// Connects with the kubeconfig files of a `KUBECONFIG` list, merged as kubectl merges them
    /// (the first file to set a value wins).
    pub async fn from_kubeconfigs(paths: &[&std::path::Path], field_manager: &str) -> Result<Self> {
        let mut merged: Option<kube::config::Kubeconfig> = None;
        for path in paths {
            let one = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                Error::Config(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            merged = Some(match merged {
                None => one,
                Some(before) => before.merge(one).map_err(|e| {
                    Error::Config(format!("merging kubeconfig {}: {e}", path.display()))
                })?,
            });
        }
        let path = paths
            .first()
            .map_or_else(String::new, |p| p.display().to_string());
        let kubeconfig = merged.ok_or_else(|| Error::Config("no kubeconfig given".into()))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| Error::Config(format!("kubeconfig {path} is not usable: {e}")))?;
        Self::from_config(config, field_manager)
    }

    /// The underlying kube client, for calls this wrapper does not cover.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The server-side apply field manager this client writes as (one per binary).
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// The resource serving `obj`'s apiVersion and kind; `None` when the cluster does not serve it.
    async fn discover(&self, obj: &Value) -> Result<Option<(ApiResource, Scope)>> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let key = (api_version.clone(), kind.clone());
        if let Some(found) = self.kinds.lock().await.get(&key) {
            return Ok(Some(found.clone()));
        }
        let (group, version) = api_version
            .split_once('/')
            .unwrap_or(("", api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let (resource, caps) = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(kube::Error::Discovery(_)) => return Ok(None),
            Err(other) => {
                return Err(kube_error(
                    &format!("discovering {kind} in {api_version}"),
                    other,
                ));
            }
        };
        let found = (resource, caps.scope);
        self.kinds.lock().await.insert(key, found.clone());
        Ok(Some(found))
    }

    async fn resource(&self, obj: &Value) -> Result<(ApiResource, Scope)> {
        self.discover(obj)
            .await?
            .ok_or_else(|| Error::Precondition {
                operation: format!("planning {}", describe(obj)),
                message: format!(
                    "the cluster does not serve {} in {}: install its CRD first",
                    obj["kind"].as_str().unwrap_or_default(),
                    obj["apiVersion"].as_str().unwrap_or_default()
                ),
            })
    }

    async fn api_for(&self, obj: &Value) -> Result<(Api<DynamicObject>, String)> {
        let (resource, scope) = self.resource(obj).await?;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api = match scope {
            Scope::Namespaced => {
                let ns =
                    obj["metadata"]["namespace"]
                        .as_str()
                        .ok_or_else(|| Error::Precondition {
                            operation: format!("planning {}", describe(obj)),
                            message: "a namespaced object needs metadata.namespace".to_owned(),
                        })?;
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        Ok((api, name))
    }

    /// The live object, or `None`.
    pub async fn get(&self, obj: &Value) -> Result<Option<Value>> {
        let (api, name) = self.api_for(obj).await?;
        let live = api
            .get_opt(&name)
            .await
            .map_err(|e| kube_error(&format!("reading {}", describe(obj)), e))?;
        Ok(live.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
    }

    /// Deletes the object (background propagation); absent already is fine.
    pub async fn delete(&self, obj: &Value) -> Result<()> {
        let (api, name) = self.api_for(obj).await?;
        match api
            .delete(&name, &kube::api::DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(kube_error(&format!("deleting {}", describe(obj)), e)),
        }
    }

    /// Whether the cluster serves `kind` in `api_version` (a CRD not installed yet, or a version an
    /// older or newer Kubernetes lacks, is not served).
    pub async fn serves(&self, api_version: &str, kind: &str) -> Result<bool> {
        let probe = json!({"apiVersion": api_version, "kind": kind});
        Ok(self.discover(&probe).await?.is_some())
    }

    /// The live object, or `None` when it is absent or the cluster does not serve its kind.
    pub async fn get_if_served(&self, obj: &Value) -> Result<Option<Value>> {
        if self.discover(obj).await?.is_none() {
            return Ok(None);
        }
        self.get(obj).await
    }

    /// The objects of `kind` (in `namespace`, for a namespaced kind) that match `label_selector`,
    /// each with its `apiVersion` and `kind`; none when the cluster does not serve the kind.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<Value>> {
        let probe = json!({"apiVersion": api_version, "kind": kind});
        let Some((resource, scope)) = self.discover(&probe).await? else {
            return Ok(Vec::new());
        };
        let api: Api<DynamicObject> = match scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        let listed = api
            .list(&ListParams::default().labels(label_selector))
            .await
            .map_err(|e| {
                kube_error(
                    &format!("listing {kind} in namespace {namespace} labelled {label_selector}"),
                    e,
                )
            })?;
        Ok(listed
            .items
            .into_iter()
            .map(|item| {
                let mut object = serde_json::to_value(item).unwrap_or(Value::Null);
                object["apiVersion"] = json!(api_version);
                object["kind"] = json!(kind);
                object
            })
            .collect())
    }

    /// Applies a JSON patch (RFC 6902; `ops` is its array of operations) as this binary's field
    /// manager. A patch that starts with `test` on `/metadata/resourceVersion` changes the object
    /// only if nobody changed it since it was read.
    pub async fn json_patch(&self, obj: &Value, ops: &Value) -> Result<Value> {
        let (api, name) = self.api_for(obj).await?;
        let operation = format!("patching {}", describe(obj));
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        // kube builds patch requests by type; a JSON patch body is the operations array as is,
        // sent with its own media type (the `jsonpatch` feature would add a crate for that).
        let mut request = kube::core::Request::new(api.resource_url())
            .patch(&name, &params, &Patch::Merge(ops))
            .map_err(|e| Error::Precondition {
                operation: operation.clone(),
                message: format!("the request cannot be built ({e}): a bug"),
            })?;
        request.headers_mut().insert(
            "content-type",
            "application/json-patch+json"
                .parse()
                .expect("a valid media type"),
        );
        match self.client.request::<Value>(request).await {
            Ok(result) => Ok(result),
            // A failed `test`, or a `remove` of a path that is gone: the server answers 422 ("the
            // server rejected our request due to an error in our request"). The patches are made
            // from what was observed, so the object changed since.
            Err(kube::Error::Api(s)) if s.code == 422 => Err(Error::Precondition {
                operation,
                message: format!(
                    "it changed since it was planned (422: {}): run plan again and rerun apply",
                    short_message(&s.message)
                ),
            }),
            Err(e) => Err(kube_error(&operation, e)),
        }
    }

    /// Deletes the very object `live` was read as (background propagation): the server refuses
    /// when the name now belongs to another object (its uid differs), so an object recreated after
    /// the plan is never deleted unseen. No resourceVersion precondition: controllers update a
    /// workload's status all the time. Absent already is fine.
    pub async fn delete_observed(&self, live: &Value) -> Result<()> {
        let (api, name) = self.api_for(live).await?;
        let mut params = DeleteParams::background();
        params.preconditions = Some(Preconditions {
            uid: live["metadata"]["uid"].as_str().map(str::to_owned),
            resource_version: None,
        });
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Precondition {
                operation: format!("deleting {}", describe(live)),
                message: format!(
                    "it was replaced since it was planned ({}): run plan again and rerun apply",
                    short_message(&s.message)
                ),
            }),
            Err(e) => Err(kube_error(&format!("deleting {}", describe(live)), e)),
        }
    }

    /// Server-side apply as this binary's field manager (forced: we own the fields we set).
    pub async fn apply(&self, obj: &Value, dry_run: bool) -> Result<Value> {
        let (api, name) = self.api_for(obj).await?;
        let mut params = PatchParams::apply(&self.field_manager).force();
        params.dry_run = dry_run;
        let verb = if dry_run {
            "dry-run applying"
        } else {
            "applying"
        };
        let result = api
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| kube_error(&format!("{verb} {}", describe(obj)), e))?;
        Ok(serde_json::to_value(result).unwrap_or(Value::Null))
    }

    /// Compares a desired object with the live one through a server-side dry-run apply, so the
    /// server's defaulting and validation are part of the plan (a rejected object fails the plan).
    pub async fn diff(&self, desired: &Value) -> Result<ObjectDiff> {
        match self.get(desired).await? {
            None => {
                // Validate the new object with the server too, so `plan` reports rejections.
                self.apply_dry_run_create(desired).await?;
                Ok(ObjectDiff::Create)
            }
            Some(live) => {
                let dry = self.apply(desired, true).await?;
                let (live, dry) = (normalize(live), normalize(dry));
                if live == dry {
                    Ok(ObjectDiff::Unchanged)
                } else {
                    let (before, after) = differing(&live, &dry);
                    Ok(ObjectDiff::Update { before, after })
                }
            }
        }
    }

    async fn apply_dry_run_create(&self, desired: &Value) -> Result<()> {
        match self.apply(desired, true).await {
            Ok(_) => Ok(()),
            // The namespace of a new object may itself be created earlier in the same plan.
            Err(Error::Kube {
                status: 404,
                message,
                ..
            }) if message.contains("namespaces") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the CRD `name` (e.g. `clustersecretstores.external-secrets.io`) is Established.
    pub async fn wait_crd_established(&self, name: &str, timeout: Duration) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let crd = api
                .get_opt(name)
                .await
                .map_err(|e| kube_error(&format!("reading CRD {name}"), e))?;
            let established = crd
                .as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|conds| {
                    conds
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Precondition {
                    operation: format!("waiting for CRD {name}"),
                    message: format!(
                        "{} after {}s: {}",
                        if crd.is_some() {
                            "not Established"
                        } else {
                            "not installed"
                        },
                        timeout.as_secs(),
                        "check that its operator was installed (Argo CD Application synced) and rerun"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Applies a planned object; first waits (up to `crd_wait`) for the CRD its kind needs,
    /// which an earlier change of the same apply may have just installed.
    pub async fn apply_planned(
        &self,
        object: &Value,
        crd: Option<&str>,
        crd_wait: Duration,
    ) -> Result<Value> {
        if let Some(crd) = crd {
            self.wait_crd_established(crd, crd_wait).await?;
        }
        self.apply(object, false).await
    }

    /// Whether a CRD exists and is Established, without waiting.
    pub async fn crd_established(&self, name: &str) -> Result<bool> {
        match self.wait_crd_established(name, Duration::ZERO).await {
            Ok(()) => Ok(true),
            Err(Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a service account exists.
    pub async fn service_account_exists(&self, namespace: &str, name: &str) -> Result<bool> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        Ok(api
            .get_opt(name)
            .await
            .map_err(|e| kube_error(&format!("reading service account {namespace}/{name}"), e))?
            .is_some())
    }

    /// A short-lived token for a service account (`TokenRequest` API), as ESO itself obtains one.
    pub async fn token_request(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
        seconds: i64,
    ) -> Result<SecretString> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": seconds}
        });
        let resp: Value = api
            .create_subresource("token", name, &PostParams::default(), &body)
            .await
            .map_err(|e| {
                kube_error(
                    &format!("requesting a token for service account {namespace}/{name}"),
                    e,
                )
            })?;
        let token = resp["status"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        redact::register(&token);
        Ok(token.into())
    }
}

/// The annotation in which client-side `kubectl apply` keeps the whole manifest it applied
/// (for a Secret that includes its data, base64-encoded).
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One reference token of a JSON Pointer (RFC 6901, section 4): `~` as `~0`, `/` as `~1`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Standard labels for objects a phase owns.
pub fn owned_labels(phase: &str) -> Value {
    json!({ MANAGED_BY_LABEL: MANAGED_BY_VALUE, PHASE_LABEL: phase })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_server_owned_fields() {
        let live = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "resourceVersion": "5", "uid": "u", "managedFields": [], "creationTimestamp": "t", "labels": {"a": "b"}},
            "status": {"phase": "Active"}
        });
        assert_eq!(
            normalize(live),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn pointer_tokens_escape_tilde_and_slash() {
        assert_eq!(
            pointer_token(LAST_APPLIED_ANNOTATION),
            "kubectl.kubernetes.io~1last-applied-configuration"
        );
        assert_eq!(pointer_token("a~b/c"), "a~0b~1c");
    }

    #[test]
    fn differing_keeps_only_changed_fields() {
        let (b, a) = differing(
            &json!({"spec": {"x": 1, "y": 2}, "k": "same"}),
            &json!({"spec": {"x": 1, "y": 3}, "k": "same"}),
        );
        assert_eq!(b, json!({"spec": {"y": 2}}));
        assert_eq!(a, json!({"spec": {"y": 3}}));
    }
}
