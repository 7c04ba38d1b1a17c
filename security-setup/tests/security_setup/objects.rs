//! Objects kube-apiserver in the sandbox cannot check: the `CiliumNetworkPolicy` against Cilium's
//! JSON schema (datreeio CRDs-catalog, tests/schemas), and the admission policy file as data.

use security_setup::desired;
use security_setup::settings::{ScanSchedule, Settings};
use serde_json::{Value, json};

fn settings() -> Settings {
    Settings {
        runner_group: "platform_services".into(),
        security_runner_description: "security-runners".into(),
        runner_namespace: "gitlab-runners".into(),
        chart_version: "0.71.0".into(),
        scan_projects: vec!["platform-services".into(), "application-services".into()],
        scan_schedule: ScanSchedule::parse("daily").unwrap(),
        prevent_vulnerable: true,
        severity_gate: "critical".into(),
        cve_allowlist: Vec::new(),
        mattermost_url: None,
        mattermost_vault_path: "ci/mattermost-webhook".into(),
        dora_webhook_url: Some("https://dora.example.com/webhooks/harbor".into()),
        cosign_namespace: "gitlab-runners".into(),
        gitlab_url: "https://gitlab.example.com".into(),
        harbor_registry: "harbor.example.com".into(),
        argocd_endpoint: Some(("argocd.example.com".into(), 443)),
    }
}

/// Why `object` fails the JSON schema `schema` (tests/schemas); `None` when valid.
fn schema_errors(object: &Value, schema: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let out = std::process::Command::new(common::config::tools_dir().join("venv/bin/python"))
        .args([
            "-c",
            concat!(
                // Cilium's schema has Go regexes (`\\PC`) Python cannot compile: validate without
                // checking the schema itself (no `format` checks, as kube-apiserver does).
                "import json,sys,jsonschema; s=json.load(open(sys.argv[2]));",
                " jsonschema.validators.validator_for(s)(s).validate(json.load(open(sys.argv[1])))"
            ),
        ])
        .arg(&file)
        .arg(format!(
            "{}/tests/schemas/{schema}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .expect("python with jsonschema (run ./scripts/setup-test-env.sh)");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_runner_egress_policy_follows_ciliums_schema_and_the_plan() {
    let policy = desired::runner_egress_policy(&settings());
    assert_eq!(schema_errors(&policy, "ciliumnetworkpolicy_v2.json"), None);
    // The schema is strict enough to catch a misspelt field.
    let mut bad = policy.clone();
    bad["spec"]["egress"][0]["toEndpoints"] = json!("harbor");
    assert!(schema_errors(&bad, "ciliumnetworkpolicy_v2.json").is_some());
    // §3.5: Harbor, Vault, GitLab, the package registries; DNS for the names.
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let names: Vec<&str> = egress
        .iter()
        .filter_map(|e| e["toEndpoints"][0]["matchLabels"]["app.kubernetes.io/name"].as_str())
        .collect();
    assert_eq!(names, ["harbor", "vault", "gitlab"]);
    let fqdns = egress.iter().find(|e| e.get("toFQDNs").is_some()).unwrap();
    assert_eq!(
        fqdns["toFQDNs"],
        json!([{"matchPattern": "*.golang.org"}, {"matchPattern": "*.npmjs.org"}, {"matchPattern": "*.pypi.org"}, {"matchName": "registry.npmjs.org"}])
    );
    assert!(
        egress
            .iter()
            .any(|e| e["toPorts"][0]["rules"]["dns"].is_array())
    );
}

/// The delivery jobs' extra egress (ADR 0008): each policy selects one pool's job pods, valid for
/// Cilium's schema; the test pool reaches exactly the namespaces phase 15 and the library label
/// ephemeral, whose overlays admit that pool (`common::contract::allow_pipeline_tests`).
#[test]
fn the_delivery_jobs_reach_argo_cd_and_the_ephemeral_environments_from_their_pools_only() {
    let policies = desired::runner_delivery_egress_policies(&settings(), "argocd");
    assert_eq!(policies.len(), 2);
    for policy in &policies {
        assert_eq!(
            schema_errors(policy, "ciliumnetworkpolicy_v2.json"),
            None,
            "{policy}"
        );
    }
    let pool = |p: &Value| {
        p["spec"]["endpointSelector"]["matchLabels"][desired::JOB_POD_POOL_LABEL].clone()
    };
    let deploy = &policies[0];
    assert_eq!(pool(deploy), "shared");
    assert_eq!(
        deploy["spec"]["egress"][0]["toEndpoints"][0]["matchLabels"]["app.kubernetes.io/name"],
        "argocd-server"
    );
    assert_eq!(
        deploy["spec"]["egress"][1]["toFQDNs"],
        json!([{"matchName": "argocd.example.com"}])
    );
    // A port in ARGOCD_URL goes to toPorts, never into the name (Cilium refuses "host:port").
    let mut custom = settings();
    custom.argocd_endpoint =
        security_setup::settings::name_and_port("https://argo.lab.internal:8443");
    let deploy = &desired::runner_delivery_egress_policies(&custom, "argocd")[0];
    assert_eq!(schema_errors(deploy, "ciliumnetworkpolicy_v2.json"), None);
    assert_eq!(
        deploy["spec"]["egress"][1]["toFQDNs"][0]["matchName"],
        "argo.lab.internal"
    );
    assert_eq!(
        deploy["spec"]["egress"][1]["toPorts"][0]["ports"][0]["port"],
        "8443"
    );
    assert_eq!(
        security_setup::settings::name_and_port("http://argo.lab.internal"),
        Some(("argo.lab.internal".into(), 80))
    );
    let tests = &policies[1];
    assert_eq!(pool(tests), common::contract::TEST_POOL);
    assert_eq!(
        tests["spec"]["egress"],
        json!([{"toEndpoints": [{"matchLabels": {"k8s:io.cilium.k8s.namespace.labels.cicd.platform/ephemeral": "true"}}]}])
    );
    // What the ephemeral overlays admit is what this pool's job pods carry.
    let admit = common::contract::allow_pipeline_tests(common::contract::RUNNER_NAMESPACE);
    let from = &admit["spec"]["ingress"][0]["from"][0];
    assert_eq!(
        from["podSelector"]["matchLabels"],
        json!({desired::JOB_POD_POOL_LABEL: pool(tests)})
    );
    assert_eq!(
        from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        settings().runner_namespace
    );
}

#[test]
fn the_verify_images_policy_is_a_kyverno_cluster_policy() {
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
    let policy = desired::verify_images_policy(&settings(), pem).unwrap();
    assert_eq!(policy["apiVersion"], "kyverno.io/v1");
    assert_eq!(policy["kind"], "ClusterPolicy");
    assert_eq!(policy["spec"]["validationFailureAction"], "Enforce");
    let verify = &policy["spec"]["rules"][0]["verifyImages"][0];
    assert_eq!(verify["required"], true);
    assert_eq!(
        verify["attestors"][0]["entries"][0]["keys"]["publicKeys"],
        pem
    );
    assert_eq!(policy["metadata"]["labels"]["cicd-buildout/phase"], "16");
    // Scratch images: refused outside ephemeral-* namespaces.
    let scratch = &policy["spec"]["rules"][1];
    assert_eq!(
        scratch["exclude"]["any"][0]["resources"]["namespaces"],
        json!(["ephemeral-*"])
    );
    assert_eq!(
        scratch["validate"]["pattern"]["spec"]["containers"][0]["image"],
        "!harbor.example.com/ci-scratch/*"
    );
    assert_eq!(
        scratch["validate"]["pattern"]["spec"]["=(initContainers)"][0]["image"],
        "!harbor.example.com/ci-scratch/*"
    );
}
