//! The two projects as pushed (rendered with the example settings): their Kubernetes manifests
//! and their pipelines.

use std::collections::BTreeMap;
use std::path::Path;

use common::kube::KubeClient;
use demo_apps::local::next_hops_of;
use demo_apps::projects::PROJECTS;
use serde_json::{Value, json};

use crate::{rendered_projects, specs_dir};

const OVERLAYS: [&str; 3] = ["ephemeral", "staging", "rke2-prod"];

/// Renders an overlay with `kubectl kustomize` (the test's tool; the phase never needs kubectl).
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("\n---")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("YAML"))
        .collect()
}

/// Why `object` fails the Kubernetes 1.32 strict schema `file`; `None` when valid.
fn schema_errors(object: &Value, file: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("object.json");
    std::fs::write(&instance, object.to_string()).unwrap();
    let out = std::process::Command::new(common::config::tools_dir().join("venv/bin/python"))
        .args(["-c", "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))"])
        .arg(&instance)
        .arg(specs_dir().join("k8s-jsonschema/v1.32/standalone-strict").join(file))
        .output()
        .expect("python with jsonschema (run ./scripts/setup-test-env.sh)");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

fn pod_spec(object: &Value) -> Option<&Value> {
    let spec = &object["spec"]["template"]["spec"];
    spec.is_object().then_some(spec)
}

fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Every overlay of both projects builds; the kinds kube-apiserver 1.20 serves (Rollout,
/// `HTTPRoute`, `PodMonitor` with their real CRDs; core kinds) pass its server-side validation (a
/// dry run); `PodDisruptionBudget` (policy/v1, which 1.20 lacks) passes the 1.32 JSON schema. The
/// plan's container rules hold for every workload: non-root, read-only root, limits, no
/// `:latest`; and every arcade pod is selected by a `NetworkPolicy`.
#[tokio::test(flavor = "multi_thread")]
async fn every_overlay_builds_validates_and_follows_the_container_rules() {
    let sandbox = crate::kube_sandbox().await;
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "content-check")
        .await
        .unwrap();
    let rendered = rendered_projects();
    let mut validated = 0;
    for project in &PROJECTS {
        for overlay in OVERLAYS {
            let namespace = format!("{}-{overlay}", project.name);
            kube.apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
                false,
            )
            .await
            .unwrap();
            let objects = kustomize(
                &rendered
                    .path()
                    .join(project.name)
                    .join("deploy/overlays")
                    .join(overlay),
            );
            let policies: Vec<&Value> = objects
                .iter()
                .filter(|o| o["kind"] == "NetworkPolicy")
                .collect();
            assert!(
                !policies.is_empty(),
                "{} {overlay}: a NetworkPolicy",
                project.name
            );
            for object in &objects {
                let what = format!(
                    "{} {overlay} {} {}",
                    project.name, object["kind"], object["metadata"]["name"]
                );
                assert!(
                    !object.to_string().contains(":latest"),
                    "{what}: a moving tag"
                );
                if object["kind"] == "PodDisruptionBudget" {
                    assert_eq!(
                        schema_errors(object, "poddisruptionbudget-policy-v1.json"),
                        None,
                        "{what}"
                    );
                } else {
                    let mut object = object.clone();
                    object["metadata"]["namespace"] = json!(namespace);
                    kube.apply(&object, true)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                }
                validated += 1;
                let Some(pod) = pod_spec(object) else {
                    continue;
                };
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
                assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
                let labels = &object["spec"]["template"]["metadata"]["labels"];
                assert_eq!(
                    labels["app.kubernetes.io/part-of"], "netops-arcade",
                    "{what}: selected by the policies"
                );
                for container in pod["containers"].as_array().unwrap() {
                    assert!(
                        container["resources"]["limits"]["cpu"].is_string(),
                        "{what}: cpu limit"
                    );
                    assert!(
                        container["resources"]["limits"]["memory"].is_string(),
                        "{what}: memory limit"
                    );
                    assert_eq!(
                        container["securityContext"]["readOnlyRootFilesystem"], true,
                        "{what}"
                    );
                    assert_eq!(
                        container["securityContext"]["allowPrivilegeEscalation"], false,
                        "{what}"
                    );
                    let image = container["image"].as_str().unwrap();
                    if overlay == "rke2-prod" {
                        assert_eq!(
                            image,
                            format!(
                                "harbor.example.com/platform-services/{}:v0.1.0",
                                project.name
                            ),
                            "{what}: the release tag"
                        );
                    }
                }
                let app = labels["app"].as_str().unwrap();
                assert!(
                    policies.iter().any(|p| {
                        let sel = &p["spec"]["podSelector"]["matchLabels"];
                        sel["app"] == app || sel["app.kubernetes.io/part-of"] == "netops-arcade"
                    }),
                    "{what}: no NetworkPolicy selects it"
                );
            }
        }
    }
    assert!(validated >= 40, "{validated} objects validated");
}

/// router-core's canary runs phase 15's `ClusterAnalysisTemplates` with `service-name` equal to
/// its `ROUTER_NAME` (the `service` label the relay's metrics carry, which the queries select),
/// the dashboard's blue-green runs `smoke-test` with the arguments that template declares, and
/// `routing-config.yaml` changes exactly router-core's `NEXT_HOPS`.
#[test]
fn rollouts_are_wired_to_the_analysis_templates_and_the_routing_config_patches_one_value() {
    let rendered = rendered_projects();
    // Phase 15's templates with its default settings.
    let env = common::config::Environment::load_from(
        None,
        [
            ("CICD_PLATFORM_DIR".to_owned(), "/nonexistent".to_owned()),
            ("DOMAIN".to_owned(), "example.com".to_owned()),
        ],
    )
    .unwrap();
    let cfg = common::config::PlatformConfig::from_env(&env).unwrap();
    let phase15 = argo_delivery::settings::Settings::load(&cfg).unwrap();
    let templates: BTreeMap<String, Value> = argo_delivery::desired::analysis_templates(&phase15)
        .into_iter()
        .map(|t| (t["metadata"]["name"].as_str().unwrap().to_owned(), t))
        .collect();
    let relay = rendered.path().join("packet-relay");
    let prod = kustomize(&relay.join("deploy/overlays/rke2-prod"));
    let core = prod
        .iter()
        .find(|o| o["kind"] == "Rollout" && o["metadata"]["name"] == "router-core")
        .expect("router-core Rollout");
    let container = &core["spec"]["template"]["spec"]["containers"][0];
    let env = env_of(container);
    assert_eq!(env["ROUTER_NAME"], "router-core");
    let mut analyses = 0;
    for step in core["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .unwrap()
    {
        let Some(step_analysis) = step.get("analysis") else {
            continue;
        };
        analyses += 1;
        assert_eq!(
            step_analysis["args"],
            json!([{"name": "service-name", "value": env["ROUTER_NAME"]}])
        );
        for t in step_analysis["templates"].as_array().unwrap() {
            let name = t["templateName"].as_str().unwrap();
            assert_eq!(t["clusterScope"], true);
            let template = templates
                .get(name)
                .unwrap_or_else(|| panic!("phase 15 has no {name}"));
            assert_eq!(template["spec"]["args"], json!([{"name": "service-name"}]));
        }
    }
    assert_eq!(analyses, 3, "an analysis after 5 %, 25 % and 50 %");
    let weights: Vec<u64> = core["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["setWeight"].as_u64())
        .collect();
    assert_eq!(
        weights,
        [5, 25, 50, 100],
        "plan scenario 2: 5% → 25% → 50% → 100%"
    );

    // The key file: a strategic merge patch that changes NEXT_HOPS and keeps the rest.
    let base = kustomize(&relay.join("deploy/base"));
    let base_core = base
        .iter()
        .find(|o| o["kind"] == "Rollout" && o["metadata"]["name"] == "router-core")
        .unwrap();
    let mut base_env = env_of(&base_core["spec"]["template"]["spec"]["containers"][0]);
    let routing =
        std::fs::read_to_string(relay.join("deploy/overlays/rke2-prod/routing-config.yaml"))
            .unwrap();
    assert_eq!(env["NEXT_HOPS"], next_hops_of(&routing).unwrap());
    base_env.insert("NEXT_HOPS".into(), env["NEXT_HOPS"].clone());
    assert_eq!(env, base_env, "only NEXT_HOPS differs from the base");
    assert!(
        container["image"].is_string() && container["readinessProbe"].is_object(),
        "the container is merged, not replaced"
    );
    // Scenario 2's edit, built the same way.
    let edited = routing.replace(
        "value: http://router-east:8080",
        "value: http://router-north:8080",
    );
    std::fs::write(
        relay.join("deploy/overlays/rke2-prod/routing-config.yaml"),
        edited,
    )
    .unwrap();
    let rerouted = kustomize(&relay.join("deploy/overlays/rke2-prod"));
    let core = rerouted
        .iter()
        .find(|o| o["kind"] == "Rollout" && o["metadata"]["name"] == "router-core")
        .unwrap();
    assert_eq!(
        env_of(&core["spec"]["template"]["spec"]["containers"][0])["NEXT_HOPS"],
        "http://router-north:8080"
    );

    // The dashboard: blue-green, manual promotion, smoke-test with its declared arguments.
    let dashboard = kustomize(
        &rendered
            .path()
            .join("netops-dashboard/deploy/overlays/rke2-prod"),
    );
    let rollout = dashboard.iter().find(|o| o["kind"] == "Rollout").unwrap();
    let blue_green = &rollout["spec"]["strategy"]["blueGreen"];
    assert_eq!(blue_green["autoPromotionEnabled"], false);
    assert_eq!(blue_green["activeService"], "netops-dashboard");
    assert_eq!(blue_green["previewService"], "netops-dashboard-preview");
    let pre_promotion = &blue_green["prePromotionAnalysis"];
    assert_eq!(pre_promotion["templates"][0]["templateName"], "smoke-test");
    let declared: Vec<&str> = templates["smoke-test"]["spec"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let given: Vec<&str> = pre_promotion["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(given, declared);
    let services: Vec<&str> = dashboard
        .iter()
        .filter(|o| o["kind"] == "Service")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["netops-dashboard", "netops-dashboard-preview"]);
    let hosts: Vec<String> = dashboard
        .iter()
        .filter(|o| o["kind"] == "HTTPRoute")
        .map(|o| o["spec"]["hostnames"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts, ["netops.example.com", "netops-preview.example.com"]);
    let env = env_of(&rollout["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!(
        (env["APP_VERSION"].as_str(), env["APP_COLOR"].as_str()),
        ("v1", "blue")
    );
}

/// Each project's `.gitlab-ci.yml` resolves against the template library (gitlab-ci-local,
/// GitLab's CI schema): Rust jobs plus the microservice pattern, with the image, signature,
/// ephemeral deployment and promotion on the default branch, and the strategy each demo shows.
#[test]
fn pipelines_resolve_against_the_template_library() {
    let rendered = rendered_projects();
    for project in &PROJECTS {
        let repo = ci_templates::local_run::LocalRepo::prepare(&rendered.path().join(project.name))
            .expect("scratch repository with the library");
        let jobs = repo.jobs(false).expect("gitlab-ci-local --list");
        for job in [
            "lint",
            "build",
            "unit-test",
            "dependency-scan",
            "build-image",
            "image-scan",
            "sign-image",
            "deploy-ephemeral",
            "promote-artifact",
        ] {
            assert!(
                jobs.contains(job),
                "{}: {job} missing from {jobs:?}",
                project.name
            );
        }
        // An MR pipeline builds the image its per-MR environment runs (ci-scratch) and nothing
        // after it: no signature, no deploy, no promotion.
        let mr_jobs = repo.jobs(true).expect("merge request pipeline");
        assert!(
            mr_jobs.contains("build-image") && mr_jobs.contains("dependency-scan"),
            "{mr_jobs:?}"
        );
        for job in [
            "sign-image",
            "release-tag",
            "deploy-ephemeral",
            "promote-artifact",
        ] {
            assert!(
                !mr_jobs.contains(job),
                "{}: {job} in an MR pipeline",
                project.name
            );
        }
        let ci = std::fs::read_to_string(rendered.path().join(project.name).join(".gitlab-ci.yml"))
            .unwrap();
        assert!(ci.contains(&format!("DEPLOY_STRATEGY: {}", project.strategy)));
        assert!(
            ci.contains(&format!("ref: v{}", ci_templates::library::VERSION)),
            "{}: includes the library's released version",
            project.name
        );
    }
}
