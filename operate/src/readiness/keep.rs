//! The daily `CronJob`'s one write: the last report kept in a `ConfigMap` (`report.json`, which
//! the exporter's `serve` reads where the kubelet mounts it, `report.md` and `report.html` for
//! people), by server-side apply under the field manager `cicd-readiness`.
//!
//! Its service account may patch that one `ConfigMap` by name and nothing else
//! (deploy/base/report-writer-role.yaml).

use anyhow::Context as _;
use common::config::PlatformConfig;
use common::kube::KubeClient;
use serde_json::{Value, json};

use super::Report;

/// The field manager of the report's writes.
pub const FIELD_MANAGER: &str = "cicd-readiness";

/// A `ConfigMap` holds at most 1 MiB; a report is a few kilobytes.
const MAX_CONFIGMAP_BYTES: usize = 1 << 20;

/// `[NAMESPACE/]NAME` split, with the default namespace.
pub fn target<'a>(spec: &'a str, default_ns: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    let (ns, name) = spec.split_once('/').unwrap_or((default_ns, spec));
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !valid(ns) || !valid(name) {
        anyhow::bail!(
            "--write-configmap {spec}: not [NAMESPACE/]NAME of lower-case letters, digits, '-' and '.'"
        );
    }
    Ok((ns, name))
}

/// The `ConfigMap` as applied: its `data` and two annotations, nothing phase 17 (which creates
/// it, labels included) also sets.
pub fn configmap(ns: &str, name: &str, report: &Report, json: &str) -> Value {
    let (pass, fail, unknown) = report.counts();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {
                "cicd.platform/readiness-generated-at": report.generated_at,
                "cicd.platform/readiness-counts": format!("{pass} pass, {fail} fail, {unknown} unknown"),
            },
        },
        "data": {
            "report.json": json,
            "report.md": common::redact::redact(&super::markdown(report)),
            "report.html": common::redact::redact(&super::html(report)),
        },
    })
}

/// Applies the report's `ConfigMap`.
pub async fn write_configmap(
    cfg: &PlatformConfig,
    spec: &str,
    default_ns: &str,
    report: &Report,
    json: &str,
) -> anyhow::Result<()> {
    let (ns, name) = target(spec, default_ns)?;
    let object = configmap(ns, name, report, json);
    let size: usize = object["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, v)| v.as_str().map_or(0, str::len))
        .sum();
    if size > MAX_CONFIGMAP_BYTES {
        anyhow::bail!(
            "the report is {size} bytes, over a ConfigMap's {MAX_CONFIGMAP_BYTES}: write it to files instead (--write-json, --write-html)"
        );
    }
    let kube = KubeClient::connect(cfg, FIELD_MANAGER)
        .await
        .context("connecting to Kubernetes to keep the report")?;
    kube.apply(&object, false).await.with_context(|| {
        format!(
            "keeping the report in ConfigMap {ns}/{name}: the ConfigMap must exist (phase 17 creates it: ./scripts/deploy-cluster.sh --only 17) and the report's service account needs get and patch on it (deploy/base/report-writer-role.yaml)"
        )
    })?;
    tracing::info!(configmap = %format!("{ns}/{name}"), "report kept");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_the_default_namespace_and_refuse_garbage() {
        assert_eq!(
            target("cicd-readiness-report", "monitoring").unwrap(),
            ("monitoring", "cicd-readiness-report")
        );
        assert_eq!(target("obs/r", "monitoring").unwrap(), ("obs", "r"));
        for bad in ["", "a/", "/a", "A", "a/b/c", "a b"] {
            assert!(target(bad, "monitoring").is_err(), "{bad}");
        }
    }
}
