//! Kubernetes JSON schemas for kubeconform, offline: the platform's schema mirror in miniature.
//! The shared specs vendor the strict definitions of Kubernetes 1.32 (`_definitions.json`, derived
//! from the API's `OpenAPI` document) and a few per-kind files; this writes one per-kind file for
//! every kind the definitions carry, in kubeconform's naming, so a chart's `APIService` or
//! `PriorityClass` validates like its Deployment. The helm template's `KUBECONFORM_SCHEMA_LOCATION`
//! points at the directory (`schema_location`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The Kubernetes version of the vendored definitions.
pub const KUBERNETES_VERSION: &str = "1.32";

/// The shared specs (`CICD_SPECS_DIR`, else `../shared/specs` beside the repository).
pub fn specs_dir() -> PathBuf {
    std::env::var_os("CICD_SPECS_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/specs")
                .canonicalize()
                .unwrap_or_else(|_| "/work/shared/specs".into())
        },
        PathBuf::from,
    )
}

/// kubeconform's file name for a kind: `<kind>[-<first label of the group>]-<version>.json`.
pub fn schema_file_name(group: &str, kind: &str, version: &str) -> String {
    let group = group.split('.').next().unwrap_or_default();
    if group.is_empty() {
        format!("{}-{}.json", kind.to_lowercase(), version.to_lowercase())
    } else {
        format!(
            "{}-{}-{}.json",
            kind.to_lowercase(),
            group.to_lowercase(),
            version.to_lowercase()
        )
    }
}

/// Writes `_definitions.json` and one file per kind into `out`; returns how many kinds.
pub fn write_schema_dir(out: &Path) -> anyhow::Result<usize> {
    let source = specs_dir().join(format!(
        "k8s-jsonschema/v{KUBERNETES_VERSION}/strict/_definitions.json"
    ));
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    let root: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", source.display()))?;
    let definitions = root["definitions"]
        .as_object()
        .with_context(|| format!("{} has no definitions", source.display()))?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("_definitions.json"), &text)?;
    let mut kinds = 0;
    for definition in definitions.values() {
        let Some(gvks) = definition["x-kubernetes-group-version-kind"].as_array() else {
            continue;
        };
        for gvk in gvks {
            let (Some(group), Some(kind), Some(version)) = (
                gvk["group"].as_str(),
                gvk["kind"].as_str(),
                gvk["version"].as_str(),
            ) else {
                continue;
            };
            let mut schema = definition.clone();
            rebase_refs(&mut schema);
            let api_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            // Like the vendored per-kind files: apiVersion and kind pinned to this kind.
            if let Some(properties) = schema["properties"].as_object_mut() {
                for (field, value) in [("apiVersion", api_version.as_str()), ("kind", kind)] {
                    if let Some(property) = properties.get_mut(field) {
                        property["enum"] = serde_json::json!([value]);
                    }
                }
            }
            schema["$schema"] = serde_json::json!("http://json-schema.org/schema#");
            std::fs::write(
                out.join(schema_file_name(group, kind, version)),
                serde_json::to_vec(&schema)?,
            )?;
            kinds += 1;
        }
    }
    Ok(kinds)
}

/// `#/definitions/x` inside a definition becomes `_definitions.json#/definitions/x`.
fn rebase_refs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(target) = child.as_str().and_then(|r| r.strip_prefix('#')) {
                        *child = serde_json::json!(format!("_definitions.json#{target}"));
                    }
                } else {
                    rebase_refs(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rebase_refs),
        _ => {}
    }
}

/// kubeconform's `-schema-location` for a directory written by [`write_schema_dir`].
pub fn schema_location(dir: &Path) -> String {
    format!(
        "{}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_kubeconform() {
        assert_eq!(
            schema_file_name("apps", "Deployment", "v1"),
            "deployment-apps-v1.json"
        );
        assert_eq!(schema_file_name("", "Service", "v1"), "service-v1.json");
        assert_eq!(
            schema_file_name("apiregistration.k8s.io", "APIService", "v1"),
            "apiservice-apiregistration-v1.json"
        );
    }
}
