//! Argo Rollouts → collector: the notification engine's `ConfigMap` and Secret in the controller's
//! namespace (Argo Rollouts "Notifications": `argo-rollouts-notification-configmap` holds
//! services, templates, triggers and default subscriptions; `argo-rollouts-notification-secret`
//! holds the values `$key` references).
//!
//! - One webhook service, `dora-collector`, at the collector's in-cluster Service, with its own
//!   bearer token (`rollouts-webhook-secret` in Vault, never GitLab's).
//! - Four templates and the built-in triggers that send them: `on-rollout-updated` (a revision
//!   starts), `on-rollout-completed`, `on-rollout-aborted`, `on-analysis-run-failed`; a default
//!   subscription sends them for every Rollout, no annotation needed.
//! - The body is JSON whatever a field holds: every string goes through sprig's `toJson` (the
//!   engine renders with Go's text/template and sprig), so an analysis message with quotes
//!   (`Metric "success-rate" assessed Failed …`) stays valid JSON. `dig` reads optional fields
//!   without failing when a map is absent.
//!
//! Applied with server-side apply, so only these keys are this phase's: other services,
//! templates and triggers in the same `ConfigMap` stay the platform team's.

use serde_json::{Value, json};

use crate::desired::{COLLECTOR, KV_PATH, PORT, ROLLOUTS_SECRET_KEY};
use crate::settings::Settings;

pub const CONFIG_MAP: &str = "argo-rollouts-notification-configmap";
pub const SECRET: &str = "argo-rollouts-notification-secret";
/// The key of the notification Secret the webhook service's header references (`$…`).
pub const TOKEN_KEY: &str = "dora-collector-token";
/// The notification service's name (also the default subscription's recipient).
pub const SERVICE: &str = "dora-collector";

/// The events the collector reads, each with the built-in trigger that fires it.
pub const EVENTS: &[(&str, &str)] = &[
    ("on-rollout-updated", "rollout-updated"),
    ("on-rollout-completed", "rollout-completed"),
    ("on-rollout-aborted", "rollout-aborted"),
    ("on-analysis-run-failed", "analysis-run-failed"),
];

/// The webhook body of one event: `{"event", "service", "namespace", "environment", "revision",
/// "strategy", "template", "reason", "at"}` (read by the collector's `facts::from_rollouts`).
pub fn body_template(event: &str) -> String {
    let mut t = String::new();
    // The strategy and the canary's (last) analysis template, computed before the JSON.
    t.push_str("{{- $strategy := \"canary\" -}}\n");
    t.push_str("{{- if dig \"spec\" \"strategy\" \"blueGreen\" \"\" .rollout -}}{{- $strategy = \"bluegreen\" -}}{{- end -}}\n");
    t.push_str("{{- $template := \"\" -}}\n");
    t.push_str("{{- range (dig \"spec\" \"strategy\" \"canary\" \"analysis\" \"templates\" list .rollout) -}}{{- $template = .templateName -}}{{- end -}}\n");
    t.push_str(&format!("{{\"event\":{}", json!(event)));
    t.push_str(",\"service\":{{ dig \"metadata\" \"name\" \"\" .rollout | toJson }}");
    t.push_str(",\"namespace\":{{ dig \"metadata\" \"namespace\" \"\" .rollout | toJson }}");
    t.push_str(",\"environment\":{{ dig \"metadata\" \"labels\" \"cicd.platform/environment\" \"\" .rollout | toJson }}");
    t.push_str(",\"revision\":{{ dig \"metadata\" \"annotations\" \"rollout.argoproj.io/revision\" \"\" .rollout | toJson }}");
    t.push_str(",\"strategy\":{{ $strategy | toJson }}");
    t.push_str(",\"template\":{{ $template | toJson }}");
    t.push_str(",\"reason\":{{ dig \"status\" \"message\" \"\" .rollout | toJson }}");
    t.push_str(",\"at\":{{ now | unixEpoch }}}\n");
    t
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_default()
}

/// The collector's URL inside the cluster (the `NetworkPolicy` admits the controller).
pub fn collector_url(s: &Settings) -> String {
    format!(
        "http://{COLLECTOR}.{}.svc:{PORT}/webhooks/argo-rollouts",
        s.namespace
    )
}

pub fn config_map(s: &Settings) -> Value {
    let mut data = serde_json::Map::new();
    data.insert(
        format!("service.webhook.{SERVICE}"),
        json!(yaml(&json!({
            "url": collector_url(s),
            "headers": [
                {"name": "Authorization", "value": format!("Bearer ${TOKEN_KEY}")},
                {"name": "Content-Type", "value": "application/json"},
            ],
        }))),
    );
    for (trigger, event) in EVENTS {
        let template = format!("dora-{event}");
        data.insert(
            format!("template.{template}"),
            json!(yaml(
                &json!({"webhook": {SERVICE: {"method": "POST", "body": body_template(event)}}})
            )),
        );
        data.insert(
            format!("trigger.{trigger}"),
            json!(yaml(&json!([{"send": [template]}]))),
        );
    }
    let triggers: Vec<&str> = EVENTS.iter().map(|(t, _)| *t).collect();
    data.insert(
        "subscriptions".into(),
        json!(yaml(
            &json!([{"recipients": [SERVICE], "triggers": triggers}])
        )),
    );
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": s.rollouts_namespace,
                     "labels": crate::desired::labels()},
        "data": data,
    })
}

/// The notification Secret's `dora-collector-token`, from Vault (`rollouts-webhook-secret` of the
/// collector's secret) through the platform's `ClusterSecretStore`: the value never passes through
/// this phase's plan or output.
pub fn external_secret(s: &Settings) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": SECRET, "namespace": s.rollouts_namespace,
                     "labels": crate::desired::labels()},
        "spec": {
            "refreshInterval": "15m",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": common::contract::SECRET_STORE},
            "target": {"name": SECRET, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [{"secretKey": TOKEN_KEY, "remoteRef": {"key": KV_PATH, "property": ROLLOUTS_SECRET_KEY}}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_the_body_is_escaped() {
        let body = body_template("rollout-aborted");
        // Each interpolated value is piped through toJson (no bare "{{ … }}" inside quotes).
        assert_eq!(body.matches("| toJson }}").count(), 7, "{body}");
        assert!(!body.contains("\"{{"), "{body}");
    }

    #[test]
    fn the_config_map_wires_four_triggers_to_one_service() {
        let cm = config_map(&Settings::example());
        let data = cm["data"].as_object().unwrap();
        assert_eq!(data.len(), 1 + 4 + 4 + 1);
        assert!(
            data["service.webhook.dora-collector"]
                .as_str()
                .unwrap()
                .contains("Bearer $dora-collector-token")
        );
        assert!(
            data["subscriptions"]
                .as_str()
                .unwrap()
                .contains("on-analysis-run-failed")
        );
    }
}
