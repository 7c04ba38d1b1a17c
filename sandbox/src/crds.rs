//! The CRD fixtures the sandbox's kube-apiserver serves: loaded, patched for 1.20, installed.

use std::fs;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// CRD fixtures installed into the kube-apiserver (see fixtures/crds/SOURCES.md).
pub const CRD_FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/crds");

/// Installs the CRD fixtures, labelled as the sandbox's, and waits until each is established.
pub async fn install(kube: &common::kube::KubeClient) -> anyhow::Result<()> {
    // Created, not server-side applied: 1.20's apply path turns `default: ""` into null and
    // then rejects the schema, while a plain create (what `kubectl create` does) keeps it.
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(kube.client().clone());
    let mut crd_names = Vec::new();
    for crd in load_crd_fixtures()? {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut typed: CustomResourceDefinition =
            serde_json::from_value(crd).with_context(|| format!("decoding CRD {name}"))?;
        typed.metadata.labels =
            Some([("cicd-buildout/sandbox".to_owned(), "true".to_owned())].into());
        match crds.create(&kube::api::PostParams::default(), &typed).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(kube::Error::Api(status)) => {
                let message: String = status.message.chars().take(400).collect();
                bail!(
                    "installing CRD {name}: {} from kube-apiserver: {message}",
                    status.code
                )
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("installing CRD {name}")));
            }
        }
        crd_names.push(name);
    }
    for name in crd_names {
        kube.wait_crd_established(&name, Duration::from_secs(60))
            .await?;
    }
    Ok(())
}

/// The CRDs of fixtures/crds, parsed.
pub fn load_crd_fixtures() -> anyhow::Result<Vec<Value>> {
    let mut files = Vec::new();
    for group in fs::read_dir(CRD_FIXTURE_DIR)? {
        let group = group?.path();
        if group.is_dir() {
            for file in fs::read_dir(&group)? {
                let file = file?.path();
                if file.extension().is_some_and(|e| e == "yaml") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file)?;
        for doc in text.split("\n---") {
            if doc.trim().is_empty() || doc.trim() == "---" {
                continue;
            }
            let value: Value = serde_saphyr::from_str(doc)
                .with_context(|| format!("parsing {}", file.display()))?;
            if value["kind"] == "CustomResourceDefinition" {
                let mut crd = compat_for_1_20(value);
                if crd["metadata"]["name"] == "appprojects.argoproj.io" {
                    allow_null_core_group(&mut crd);
                }
                crds.push(crd);
            }
        }
    }
    Ok(crds)
}

/// kube-apiserver 1.20 reads `default: ""` in a CRD schema as null and rejects it ("Invalid value:
/// \"null\": must be of type string"), a bug later servers fixed. For the sandbox only, those empty
/// defaults are dropped; where one served a `x-kubernetes-list-map-keys` key (1.20 wants such keys
/// defaulted or required), the key is marked required instead. Validation is otherwise unchanged.
pub fn compat_for_1_20(value: Value) -> Value {
    compat(value, false)
}

/// The same defect reads an empty string in an object as null, so the core API group `""` in an
/// AppProject's resource white/blacklists arrives as null and is refused. For the AppProject CRD
/// only, `group` there may be null; real servers still check it, and the phases send `""`.
fn allow_null_core_group(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(group) = map
                .get_mut("properties")
                .and_then(|p| p.get_mut("group"))
                .and_then(Value::as_object_mut)
            {
                if group.get("type").and_then(Value::as_str) == Some("string") {
                    group.entry("nullable").or_insert(Value::Bool(true));
                }
            }
            map.values_mut().for_each(allow_null_core_group);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_null_core_group),
        _ => {}
    }
}

/// `in_junctor`: inside `anyOf`/`allOf`/`oneOf`/`not`, where a structural schema allows no
/// `nullable`.
fn compat(value: Value, in_junctor: bool) -> Value {
    match value {
        Value::Object(mut map) => {
            if let Some(keys) = map
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .cloned()
            {
                if let Some(items) = map.get_mut("items").and_then(Value::as_object_mut) {
                    for key in keys.iter().filter_map(Value::as_str) {
                        let had_empty_default = items
                            .get("properties")
                            .and_then(|p| p.get(key))
                            .and_then(|p| p.get("default"))
                            .is_some_and(|d| d.as_str() == Some(""));
                        if had_empty_default {
                            let required = items
                                .entry("required")
                                .or_insert_with(|| Value::Array(Vec::new()));
                            if let Some(list) = required.as_array_mut() {
                                if !list.iter().any(|r| r.as_str() == Some(key)) {
                                    list.push(Value::String(key.to_owned()));
                                }
                            }
                        }
                    }
                }
            }
            let out: serde_json::Map<String, Value> = map
                .into_iter()
                .filter(|(k, v)| !(k == "default" && v.as_str() == Some("")))
                .map(|(k, v)| {
                    let junctor =
                        in_junctor || matches!(k.as_str(), "anyOf" | "allOf" | "oneOf" | "not");
                    (k, compat(v, junctor))
                })
                .collect();
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| compat(v, in_junctor)).collect())
        }
        other => other,
    }
}
