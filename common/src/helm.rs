//! Helm 3 releases as they are stored in the cluster, read without the helm binary: enough to
//! remove a release the way `helm uninstall` does (phase 16 removes the bash phase's runner
//! release with it).
//!
//! The layout, from helm/helm (Apache-2.0), described in our words:
//! - `pkg/storage/driver/secrets.go` (the default storage driver): one Secret per revision in the
//!   release's namespace, named `sh.helm.release.v1.<release>.v<revision>`, of type
//!   `helm.sh/release.v1`, labelled `owner=helm`, `name=<release>`, `status=<status>` and
//!   `version=<revision>`. Its `data.release` holds the release as JSON, gzip-compressed and then
//!   base64-encoded by Helm (so, through the Kubernetes API, base64 twice); `pkg/storage/driver/util.go`
//!   decodes a payload without the gzip magic bytes as plain JSON.
//! - The release JSON carries `manifest`: every rendered object of the chart as one multi-document
//!   YAML text (`pkg/releaseutil/manifest.go` splits it on `---` separators).
//! - `pkg/action/uninstall.go`: uninstall takes the latest revision, deletes each object of its
//!   manifest except those annotated `helm.sh/resource-policy: keep`, then deletes every revision's
//!   Secret. It never selects objects by label.
//! - `pkg/action/install.go`/`validate.go`: Helm annotates everything it applies with
//!   `meta.helm.sh/release-name` and `meta.helm.sh/release-namespace` (and labels it
//!   `app.kubernetes.io/managed-by=Helm`).

use std::io::Read as _;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{Error, Result};

/// Prefix of a release Secret's name (`sh.helm.release.v1.<release>.v<revision>`).
pub const STORAGE_PREFIX: &str = "sh.helm.release.v1";
/// `type` of a release Secret.
pub const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";
/// Annotation Helm puts on every object it applies: the release's name.
pub const RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
/// Annotation Helm puts on every object it applies: the release's namespace.
pub const RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";
/// Annotation that makes `helm uninstall` leave an object (`keep`).
pub const RESOURCE_POLICY_ANNOTATION: &str = "helm.sh/resource-policy";

/// The first bytes of gzip data (RFC 1952 magic and the deflate method), as Helm checks them.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The label selector of a release's Secrets (`owner=helm,name=<release>`).
pub fn release_selector(release: &str) -> String {
    format!("owner=helm,name={release}")
}

/// The name of a revision's Secret.
pub fn secret_name(release: &str, revision: u64) -> String {
    format!("{STORAGE_PREFIX}.{release}.v{revision}")
}

/// One stored revision of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevision {
    /// The Secret holding it.
    pub secret_name: String,
    /// The revision number (`version` label, the name's `v<N>`).
    pub revision: u64,
    /// `deployed`, `superseded`, `failed`, …
    pub status: String,
}

/// The revisions of `release` among `secrets` (Secrets as the API returns them), oldest first.
/// A Secret counts only when its type, labels and name all say it is one of the release's
/// revisions, so a Secret that merely shares a label is never taken for one.
pub fn revisions(release: &str, secrets: &[Value]) -> Vec<StoredRevision> {
    let prefix = format!("{STORAGE_PREFIX}.{release}.v");
    let mut out: Vec<StoredRevision> = secrets
        .iter()
        .filter(|s| s["type"] == RELEASE_SECRET_TYPE)
        .filter(|s| {
            let labels = &s["metadata"]["labels"];
            labels["owner"] == "helm" && labels["name"] == release
        })
        .filter_map(|s| {
            let name = s["metadata"]["name"].as_str()?;
            let revision: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            let labelled = s["metadata"]["labels"]["version"].as_str();
            if labelled.is_some_and(|v| v != revision.to_string()) {
                return None;
            }
            Some(StoredRevision {
                secret_name: name.to_owned(),
                revision,
                status: s["metadata"]["labels"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    out
}

/// The release JSON of a release Secret's `data.release` as the Kubernetes API returns it
/// (base64 of Helm's base64 of the gzipped JSON). `what` names the Secret in errors.
pub fn decode_release(data_release: &str, what: &str) -> Result<Value> {
    let fail = |message: String| Error::Precondition {
        operation: format!("decoding Helm release {what}"),
        message: format!(
            "{message}: not a Helm 3 release Secret as helm writes it; remove the release with `helm uninstall` or delete its Secrets by hand, then rerun"
        ),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let helm_text = b64
        .decode(data_release.trim())
        .map_err(|e| fail(format!("data.release is not base64 ({e})")))?;
    let payload = b64
        .decode(helm_text.trim_ascii())
        .map_err(|e| fail(format!("the stored release is not base64 ({e})")))?;
    let json = if payload.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(payload.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| fail(format!("the stored release is not valid gzip ({e})")))?;
        out
    } else {
        payload
    };
    serde_json::from_slice(&json).map_err(|e| fail(format!("the stored release is not JSON ({e})")))
}

/// The objects of a rendered manifest (`---`-separated YAML documents), in order; documents
/// holding only comments or nothing (Helm writes `# Source:` headers, empty templates) are skipped.
pub fn manifest_objects(manifest: &str, what: &str) -> Result<Vec<Value>> {
    let mut documents = vec![String::new()];
    for line in manifest.lines() {
        if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    let mut out = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let has_content = document
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if !has_content {
            continue;
        }
        // The parser's message quotes the document, and a chart's Secret holds credentials
        // (the runner token): only the document's number is printed.
        let object: Value = serde_saphyr::from_str(document).map_err(|_| Error::Precondition {
            operation: format!("reading the manifest of Helm release {what}"),
            message: format!(
                "document {} is not valid YAML: remove the release with `helm uninstall` instead",
                index + 1
            ),
        })?;
        if object.is_object() {
            out.push(object);
        }
    }
    Ok(out)
}

/// Whether `helm uninstall` leaves the object (`helm.sh/resource-policy: keep`).
pub fn keeps(object: &Value) -> bool {
    object["metadata"]["annotations"][RESOURCE_POLICY_ANNOTATION]
        .as_str()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("keep"))
}

/// Whether the (live) object carries Helm's annotations of `release` in `namespace`, i.e. Helm
/// applied it for that release.
pub fn stamped_by(object: &Value, release: &str, namespace: &str) -> bool {
    let annotations = &object["metadata"]["annotations"];
    annotations[RELEASE_NAME_ANNOTATION] == release
        && annotations[RELEASE_NAMESPACE_ANNOTATION] == namespace
}

/// Where a kind comes in an uninstall: users of other objects before what they use (workloads,
/// then services, bindings, roles, configuration, service accounts), namespaces last — the
/// reverse of the order Helm installs in (helm/helm `pkg/releaseutil/kind_sorter.go`).
pub fn uninstall_rank(kind: &str) -> u8 {
    match kind {
        "Pod"
        | "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "HorizontalPodAutoscaler" => 0,
        "Service" | "Ingress" | "IngressClass" | "APIService" => 1,
        "PodDisruptionBudget" | "NetworkPolicy" => 2,
        "RoleBinding" | "ClusterRoleBinding" => 3,
        "Role" | "ClusterRole" => 4,
        "ConfigMap" | "Secret" | "PersistentVolumeClaim" => 5,
        "ServiceAccount" => 6,
        "Namespace" | "CustomResourceDefinition" => 8,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use serde_json::json;

    use super::*;

    /// A release Secret as `helm install` stores it: JSON, gzip, base64 (Helm), and base64 again
    /// as the Kubernetes API shows `data`.
    fn api_data(release: &Value) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(release.to_string().as_bytes()).unwrap();
        let helm = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        base64::engine::general_purpose::STANDARD.encode(helm)
    }

    const MANIFEST: &str = "---\n# Source: gitlab-runner/templates/service-account.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: gitlab-runner-security\n---\n# Source: gitlab-runner/templates/empty.yaml\n---\n# Source: gitlab-runner/templates/configmap.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gitlab-runner-security\n  annotations:\n    helm.sh/resource-policy: keep\ndata:\n  entrypoint: |\n    #!/bin/bash\n    --- not a separator inside a block\n";

    #[test]
    fn a_release_secret_decodes_to_its_manifest_objects() {
        let release = json!({"name": "gitlab-runner-security", "version": 2, "namespace": "gitlab-runners",
                             "info": {"status": "deployed"}, "manifest": MANIFEST});
        let decoded = decode_release(&api_data(&release), "gitlab-runners/r").unwrap();
        assert_eq!(decoded, release);
        let objects = manifest_objects(decoded["manifest"].as_str().unwrap(), "r").unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["ServiceAccount", "ConfigMap"],
            "comment-only documents skipped"
        );
        assert!(
            objects[1]["data"]["entrypoint"]
                .as_str()
                .unwrap()
                .contains("--- not a separator"),
            "an indented `---` stays in its block"
        );
        assert!(!keeps(&objects[0]) && keeps(&objects[1]));
    }

    #[test]
    fn an_uncompressed_payload_is_read_as_json_like_helm_does() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let data = b64.encode(b64.encode(r#"{"manifest": ""}"#));
        assert_eq!(decode_release(&data, "x").unwrap(), json!({"manifest": ""}));
        let err = decode_release(&b64.encode("%%%"), "ns/s").unwrap_err();
        assert!(
            err.to_string()
                .contains("decoding Helm release ns/s: the stored release is not base64"),
            "{err}"
        );
    }

    #[test]
    fn revisions_need_type_labels_and_name_together() {
        let secret = |name: &str, kind: &str, owner: &str, version: &str, status: &str| json!({"type": kind, "metadata": {"name": name, "labels": {"owner": owner, "name": "r", "version": version, "status": status}}});
        let found = revisions(
            "r",
            &[
                secret(
                    "sh.helm.release.v1.r.v2",
                    RELEASE_SECRET_TYPE,
                    "helm",
                    "2",
                    "deployed",
                ),
                secret(
                    "sh.helm.release.v1.r.v1",
                    RELEASE_SECRET_TYPE,
                    "helm",
                    "1",
                    "superseded",
                ),
                secret("sh.helm.release.v1.r.v3", "Opaque", "helm", "3", "deployed"),
                secret(
                    "sh.helm.release.v1.r.v4",
                    RELEASE_SECRET_TYPE,
                    "someone",
                    "4",
                    "deployed",
                ),
                secret(
                    "sh.helm.release.v1.rr.v5",
                    RELEASE_SECRET_TYPE,
                    "helm",
                    "5",
                    "deployed",
                ),
                secret(
                    "sh.helm.release.v1.r.v6",
                    RELEASE_SECRET_TYPE,
                    "helm",
                    "7",
                    "deployed",
                ),
            ],
        );
        assert_eq!(
            found,
            [
                StoredRevision {
                    secret_name: secret_name("r", 1),
                    revision: 1,
                    status: "superseded".into()
                },
                StoredRevision {
                    secret_name: secret_name("r", 2),
                    revision: 2,
                    status: "deployed".into()
                },
            ]
        );
        assert_eq!(release_selector("r"), "owner=helm,name=r");
    }

    #[test]
    fn only_helms_own_annotations_of_this_release_count() {
        let object = |name: &str, ns: &str| json!({"metadata": {"annotations": {RELEASE_NAME_ANNOTATION: name, RELEASE_NAMESPACE_ANNOTATION: ns}}});
        assert!(stamped_by(&object("r", "n"), "r", "n"));
        assert!(!stamped_by(&object("r", "other"), "r", "n"));
        assert!(!stamped_by(&object("r2", "n"), "r", "n"));
        assert!(!stamped_by(&json!({"metadata": {}}), "r", "n"));
        assert!(uninstall_rank("Deployment") < uninstall_rank("ConfigMap"));
        assert!(uninstall_rank("ConfigMap") < uninstall_rank("ServiceAccount"));
        assert!(uninstall_rank("ServiceAccount") < uninstall_rank("Namespace"));
    }
}
