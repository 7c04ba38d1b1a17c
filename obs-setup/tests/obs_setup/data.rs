//! The phase's data checked by the real tools: Grafana's dashboard JSON schema (foundation-sdk),
//! `promtool check rules` and `promtool test rules` on the extracted `.spec`, the Prometheus
//! Operator's and External Secrets' CRD schemas, and the Kubernetes 1.32 strict schemas for the
//! core kinds (policy/v1 `PodDisruptionBudget` among them, which kube-apiserver 1.20 does not serve).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use obs_setup::desired::{self, COLLECTOR, SECRET_NAME};
use obs_setup::settings::{Settings, Store};
use serde_json::{Value, json};

use crate::{schema_errors, specs_dir};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Plan §4.2: `(title, type, expr)` of each panel, in order.
const PLAN_PANELS: &[(&str, &str, &str)] = &[
    (
        "Deployment Frequency",
        "stat",
        "sum(increase(cicd_deployment_frequency_total{environment='production'}[24h]))",
    ),
    (
        "Lead Time for Changes",
        "stat",
        "histogram_quantile(0.50, sum(rate(cicd_lead_time_seconds_bucket{environment='production'}[7d])) by (le))",
    ),
    (
        "Change Failure Rate",
        "gauge",
        "avg(cicd_change_failure_rate{environment='production'})",
    ),
    (
        "Mean Time to Restore",
        "stat",
        "histogram_quantile(0.50, sum(rate(cicd_mean_time_to_restore_seconds_bucket{environment='production'}[30d])) by (le))",
    ),
    (
        "Pipeline Duration Trend",
        "timeseries",
        "histogram_quantile(0.95, sum(rate(cicd_pipeline_duration_seconds_bucket[1h])) by (le, stage))",
    ),
    (
        "Pipeline Success Rate",
        "timeseries",
        "cicd_pipeline_success_rate",
    ),
    (
        "Vulnerability Trend",
        "timeseries",
        "sum(cicd_vulnerability_count) by (severity)",
    ),
    (
        "Rollback Frequency",
        "timeseries",
        "sum(increase(cicd_rollback_total[24h])) by (service)",
    ),
];

#[test]
fn the_dashboard_is_the_plan_and_valid_grafana_json() {
    let d = obs_setup::dashboard();
    assert_eq!(d["title"], "DORA Metrics - CI/CD Performance");
    let panels = d["panels"].as_array().unwrap();
    // The plan's eight panels, then the readiness row (issue 21): a row and three panels over
    // the gauges `cicd_readiness{section,check}` of cicd-readiness.
    assert_eq!(panels.len(), PLAN_PANELS.len() + 4);
    let readiness = &panels[PLAN_PANELS.len()..];
    assert_eq!(readiness[0]["type"], "row");
    assert_eq!(readiness[0]["title"], "CI/CD readiness");
    for panel in &readiness[1..] {
        let expr = panel["targets"][0]["expr"].as_str().unwrap();
        assert!(expr.contains("cicd_readiness"), "{expr}");
        assert!(
            !expr.contains(" or "),
            "a readiness query must not answer without the gauges: {expr}"
        );
    }
    for (panel, (title, kind, expr)) in panels.iter().zip(PLAN_PANELS) {
        assert_eq!(panel["title"], *title);
        assert_eq!(panel["type"], *kind, "{title}");
        assert_eq!(panel["targets"].as_array().unwrap().len(), 1, "{title}");
        assert_eq!(panel["targets"][0]["expr"], *expr, "{title}");
        assert_eq!(panel["targets"][0]["datasource"]["uid"], "${datasource}");
    }
    // The datasource variable every panel uses.
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource"
        && v["name"] == "datasource"
        && v["query"] == "prometheus"));
    // DORA bands on the four DORA panels: four steps (Low…Elite), in increasing order.
    let bands: Vec<Vec<Value>> = panels[..4]
        .iter()
        .map(|p| {
            p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["value"].clone())
                .collect()
        })
        .collect();
    assert_eq!(
        bands[0],
        vec![Value::Null, json!(0.0333), json!(0.1429), json!(1)]
    );
    assert_eq!(
        bands[1],
        vec![Value::Null, json!(3600), json!(604_800), json!(2_592_000)]
    );
    assert_eq!(
        bands[2],
        vec![Value::Null, json!(0.15), json!(0.30), json!(0.45)]
    );
    assert_eq!(
        bands[3],
        vec![Value::Null, json!(3600), json!(86400), json!(604_800)]
    );
    // Grafana's own schema (foundation-sdk), strict (no unknown fields), and each panel's options
    // against its plugin schema. (schemastore's grafana-dashboard-5.x.json describes Grafana 5,
    // whose variable `refresh` was a boolean; current Grafana writes 1 = on load.)
    let sdk = specs_dir().join("grafana/foundation-sdk/jsonschema");
    assert_eq!(
        schema_errors(&d, &sdk.join("dashboard.jsonschema.json"), None),
        None
    );
    for panel in panels {
        let schema = match panel["type"].as_str().unwrap() {
            "stat" => "stat.jsonschema.json",
            "timeseries" => "timeseries.jsonschema.json",
            _ => continue,
        };
        assert_eq!(
            schema_errors(&panel["options"], &sdk.join(schema), Some("Options")),
            None,
            "{}",
            panel["title"]
        );
    }
    let mut bad = d.clone();
    bad["panels"][0]["gridPos"]["w"] = json!(30);
    assert!(schema_errors(&bad, &sdk.join("dashboard.jsonschema.json"), None).is_some());

    // The sidecar ConfigMap carries it unchanged.
    let cm = desired::dashboard_config_map(&Settings::example());
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    let embedded: Value = serde_json::from_str(cm["data"]["dora.json"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, d);
}

/// Plan §4.4 exactly: `(alert, expr, for, severity, team)`.
const PLAN_ALERTS: &[(&str, &str, Option<&str>, &str, &str)] = &[
    (
        "PipelineSuccessRateLow",
        "cicd_pipeline_success_rate < 0.90",
        Some("30m"),
        "warning",
        "platform",
    ),
    (
        "PipelineDurationHigh",
        "histogram_quantile(0.95, rate(cicd_pipeline_duration_seconds_bucket[1h])) > 900",
        Some("1h"),
        "warning",
        "platform",
    ),
    (
        "DeploymentRollbackFrequent",
        "increase(cicd_rollback_total[24h]) > 3",
        None,
        "critical",
        "platform",
    ),
    (
        "CriticalVulnerabilityDetected",
        "cicd_vulnerability_count{severity=\"CRITICAL\"} > 0",
        None,
        "critical",
        "security",
    ),
    (
        "LeadTimeRegression",
        "histogram_quantile(0.50, rate(cicd_lead_time_seconds_bucket[7d])) > 86400",
        None,
        "warning",
        "platform",
    ),
];

fn alerts_of(spec: &Value) -> Vec<(String, Value)> {
    spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| (r["alert"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// The extracted `.spec` as a plain rule file, with the unit tests beside it (tests/ refers to
/// ../cicd-alerts.yaml).
fn rules_dir(spec: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cicd-alerts.yaml"), spec.to_string()).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for file in test_files() {
        std::fs::copy(
            &file,
            dir.path().join("tests").join(file.file_name().unwrap()),
        )
        .unwrap();
    }
    dir
}

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("rules/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian prometheus; ./scripts/setup-test-env.sh)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_rules_are_the_plan_and_pass_promtool_check_and_unit_tests() {
    let spec = obs_setup::alert_rule_groups();
    let groups = spec["groups"].as_array().unwrap();
    assert_eq!(groups[0]["name"], "cicd-alerts");
    let plan_group: Vec<&Value> = groups[0]["rules"].as_array().unwrap().iter().collect();
    assert_eq!(plan_group.len(), PLAN_ALERTS.len(), "§4.4 and nothing else");
    for (rule, (alert, expr, r#for, severity, team)) in plan_group.iter().zip(PLAN_ALERTS) {
        assert_eq!(rule["alert"], *alert);
        assert_eq!(rule["expr"], *expr, "{alert}");
        assert_eq!(rule["for"].as_str(), *r#for, "{alert}");
        assert_eq!(
            rule["labels"],
            json!({"severity": severity, "team": team}),
            "{alert}"
        );
    }
    let health: BTreeSet<&str> = groups[1]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for alert in [
        "DoraCollectorDown",
        "DoraCollectorAbsent",
        "DoraCollectorStoreErrors",
        "DoraCollectorProcessingLag",
        "DoraWebhooksStale",
    ] {
        assert!(health.contains(alert), "{alert}");
    }
    // The daily readiness report's own health (issue 21).
    assert_eq!(groups[2]["name"], "cicd-readiness-health");
    let readiness: Vec<&str> = groups[2]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        readiness,
        [
            "CicdReadinessExporterAbsent",
            "CicdReadinessReportStale",
            "CicdReadinessReportMissing",
            "CicdReadinessCheckFailing"
        ]
    );

    let dir = rules_dir(&spec);
    let (ok, out) = promtool(&["check", "rules", "cicd-alerts.yaml"], dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 15 rules found"), "{out}");
    let tests: Vec<String> = test_files()
        .iter()
        .map(|f| format!("tests/{}", f.file_name().unwrap().to_string_lossy()))
        .collect();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, out) = promtool(&args, dir.path());
    assert!(ok, "{out}");
    assert_eq!(out.matches("SUCCESS").count(), tests.len(), "{out}");

    // Every alert is tested both firing and quiet.
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in test_files() {
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for test in doc["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"].as_array().unwrap() {
                let entry = cases
                    .entry(case["alertname"].as_str().unwrap().to_owned())
                    .or_default();
                if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    for (alert, _) in alerts_of(&spec) {
        let (firing, quiet) = cases.get(&alert).copied().unwrap_or_default();
        assert!(
            firing > 0 && quiet > 0,
            "{alert}: {firing} firing, {quiet} quiet cases"
        );
    }

    // A broken rule is caught by the same check (the harness can fail).
    let mut broken = spec.clone();
    broken["groups"][0]["rules"][0]["expr"] = json!("cicd_pipeline_success_rate <");
    let dir = rules_dir(&broken);
    assert!(!promtool(&["check", "rules", "cicd-alerts.yaml"], dir.path()).0);
}

#[test]
fn custom_resources_validate_against_their_crd_schemas() {
    let s = Settings::example();
    let catalog = specs_dir().join("crds/jsonschema-datreeio-catalog");
    let rule = desired::prometheus_rule(&s);
    assert_eq!(
        schema_errors(
            &rule,
            &catalog.join("monitoring.coreos.com/prometheusrule_v1.json"),
            None
        ),
        None
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let secret = desired::external_secret();
    assert_eq!(
        schema_errors(
            &secret,
            &catalog.join("external-secrets.io/externalsecret_v1.json"),
            None
        ),
        None
    );
    assert_eq!(secret["spec"]["secretStoreRef"]["name"], "vault-backend");
    assert_eq!(secret["spec"]["target"]["name"], SECRET_NAME);
    assert_eq!(
        secret["spec"]["dataFrom"][0]["extract"]["key"],
        "monitoring/dora-collector"
    );
    let mut bad = rule.clone();
    bad["spec"]["groups"][0]["rules"][0]["for"] = json!("thirty minutes");
    assert!(
        schema_errors(
            &bad,
            &catalog.join("monitoring.coreos.com/prometheusrule_v1.json"),
            None
        )
        .is_some()
    );
}

/// The core kinds — the phase's `ConfigMaps` and the collector's workload with its Ingress —
/// against the Kubernetes 1.32 strict schemas; the sandbox's kube-apiserver 1.20 validates the
/// rendered overlays too, all but the policy/v1 `PodDisruptionBudget` (tests in `project`).
#[test]
fn core_objects_validate_against_the_kubernetes_schemas() {
    let dir = specs_dir().join("k8s-jsonschema/v1.32/standalone-strict");
    for store in [Store::Sqlite, Store::Postgres] {
        let mut s = Settings::example();
        s.store = store;
        let mut core: Vec<Value> = desired::objects(&s)
            .into_iter()
            .filter(|(_, crd)| crd.is_none())
            .map(|(o, _)| o)
            .collect();
        core.extend(
            desired::workload(&s)
                .into_iter()
                .filter(|o| o["kind"] != "ExternalSecret"),
        );
        core.push(desired::ingress(&s));
        // + the Argo Rollouts notification ConfigMap (issue 17), + the readiness report's
        // settings and report ConfigMaps, ClusterRole, two reader Roles and their bindings
        // (issue 21).
        assert_eq!(core.len(), if store == Store::Sqlite { 17 } else { 16 });
        for object in core {
            let kind = object["kind"].as_str().unwrap();
            let file = if object["apiVersion"] == "v1" {
                format!("{}-v1.json", kind.to_lowercase())
            } else {
                let version = object["apiVersion"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap();
                let group = object["apiVersion"]
                    .as_str()
                    .unwrap()
                    .split(['/', '.'])
                    .next()
                    .unwrap();
                format!("{}-{group}-{version}.json", kind.to_lowercase())
            };
            assert_eq!(
                schema_errors(&object, &dir.join(&file), None),
                None,
                "{kind} ({file})"
            );
        }
    }
    let pdb = desired::pod_disruption_budget();
    assert_eq!(pdb["apiVersion"], "policy/v1");
    let mut bad = pdb.clone();
    bad["spec"]["maxUnavailabel"] = json!(1);
    assert!(
        schema_errors(&bad, &dir.join("poddisruptionbudget-policy-v1.json"), None).is_some(),
        "strict: a misspelt field fails"
    );
}

/// The collector's contract (services/dora-collector): image, user, filesystem, port, probes,
/// env and secret keys. (The image the overlays pin: tests in `project`.)
#[test]
fn the_deployment_matches_the_collector_contract() {
    let s = Settings::example();
    let d = desired::deployment(&s);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"], COLLECTOR,
        "the kustomize image name the overlays pin"
    );
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "harbor-pull"}]));
    assert!(!d.to_string().contains(":latest"));
    assert_eq!(c["command"], json!(["/usr/local/bin/dora-collector"]));
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["cpu"].is_string());
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/lib/dora-collector");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "dora-collector-data"
    );
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    assert_eq!(
        env["GITLAB_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"],
        json!({"name": "dora-collector-secrets", "key": "webhook-secret", "optional": false})
    );
    assert_eq!(
        env["DORA_STORE_URL"]["value"],
        "sqlite:///var/lib/dora-collector/dora.db"
    );
    assert_eq!(env["DORA_LISTEN_ADDR"]["value"], "0.0.0.0:8080");
    assert_eq!(
        env["DORA_GITLAB_TOKEN"]["valueFrom"]["secretKeyRef"]["key"],
        "gitlab-token"
    );
    assert_eq!(
        env["DORA_GITLAB_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"],
        true
    );
    // The public route never exposes /metrics; the ServiceMonitor scrapes the Service's http port.
    let ingress = desired::ingress(&s).to_string();
    assert!(ingress.contains("/webhooks/") && !ingress.contains("/metrics"));
    let sm = desired::service_monitor(&s);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        COLLECTOR
    );
    // Ingress only on 8080 from four sources (Prometheus, GitLab, the ingress controller, the
    // Argo Rollouts controller's notifications); egress DNS + GitLab (+ PostgreSQL).
    let np = desired::network_policy(&s);
    assert_eq!(
        np["spec"]["ingress"][0]["from"].as_array().unwrap().len(),
        4
    );
    assert!(
        np["spec"]["ingress"][0]["from"]
            .to_string()
            .contains(r#""kubernetes.io/metadata.name":"argo-rollouts""#),
        "the Rollouts controller may post its notifications"
    );
    assert!(
        obs_setup::rollouts_notifications::collector_url(&s)
            .starts_with(&format!("http://{COLLECTOR}.{}.svc:8080/", s.namespace)),
        "the notification service targets the Service the policy guards"
    );
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": 8080}])
    );
    assert_eq!(np["spec"]["egress"].as_array().unwrap().len(), 2);
    let mut pg = Settings::example();
    pg.store = Store::Postgres;
    assert_eq!(
        desired::network_policy(&pg)["spec"]["egress"][2]["ports"],
        json!([{"protocol": "TCP", "port": 5432}])
    );
}

#[test]
fn the_alloy_config_is_the_plan_with_labels() {
    let text = desired::ALLOY_CONFIG;
    for needle in [
        "discovery.kubernetes \"gitlab_runners\"",
        "names = [\"gitlab-runners\"]",
        "label = \"app=gitlab-runner\"",
        "loki.source.kubernetes \"runner_logs\"",
        "forward_to = [loki.write.default.receiver]",
        "clustering {",
        "enabled = true",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    assert_eq!(text.matches('{').count(), text.matches('}').count());
    let cm = desired::alloy_config_map(&Settings::example());
    assert_eq!(cm["data"]["cicd-runner-logs.alloy"], text);
}
