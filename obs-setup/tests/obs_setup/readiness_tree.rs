//! This repository's `deploy/` tree (issue 21): the daily readiness `CronJob` and the exporter of
//! its gauges, as phase 17 seeds them in `platform_services/cicd-buildout` and Argo CD deploys
//! them. Every overlay builds with kustomize, every object validates against the Kubernetes 1.32
//! strict schemas (the `CronJob` too, which the sandbox's 1.20 API server does not serve), and the
//! plan's container rules hold: pinned images, non-root, limits, a `NetworkPolicy` per pod.

use std::collections::BTreeMap;

use obs_setup::readiness;
use obs_setup::settings::Settings;
use serde_json::{Value, json};

use crate::{kustomize, schema_errors, specs_dir};

fn schema_file(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap().to_lowercase();
    let api = object["apiVersion"].as_str().unwrap();
    match api.split_once('/') {
        None => format!("{kind}-{api}.json"),
        Some((group, version)) => {
            format!("{kind}-{}-{version}.json", group.split('.').next().unwrap())
        }
    }
}

fn pod_spec(object: &Value) -> Option<&Value> {
    match object["kind"].as_str() {
        Some("CronJob") => Some(&object["spec"]["jobTemplate"]["spec"]["template"]),
        Some("Deployment") => Some(&object["spec"]["template"]),
        _ => None,
    }
}

#[test]
fn the_readiness_tree_builds_validates_and_follows_the_container_rules() {
    let s = Settings::example();
    let files = readiness::files(&s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files.iter().filter(|(p, _)| p.starts_with("deploy/")) {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    let strict = specs_dir().join("k8s-jsonschema/v1.32/standalone-strict");
    let tag = seeded_projects::this_repository::release_tag();
    for (overlay, image) in [
        (
            "production",
            format!("harbor.example.com/platform-services/cicd-buildout:{tag}"),
        ),
        (
            "staging",
            format!(
                "harbor.example.com/platform-services/cicd-buildout@{}",
                obs_setup::project::PLACEHOLDER_DIGEST
            ),
        ),
    ] {
        let objects = kustomize(&dir.path().join("deploy/overlays").join(overlay));
        let mut kinds: BTreeMap<String, &Value> = BTreeMap::new();
        for object in &objects {
            let what = format!(
                "{overlay} {} {}",
                object["kind"], object["metadata"]["name"]
            );
            assert_eq!(
                schema_errors(object, &strict.join(schema_file(object)), None),
                None,
                "{what}"
            );
            assert!(!object.to_string().contains(":latest"), "{what}");
            kinds.insert(
                format!(
                    "{} {}",
                    object["kind"].as_str().unwrap(),
                    object["metadata"]["name"].as_str().unwrap()
                ),
                object,
            );
        }
        let policies: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy")
            .collect();
        for object in objects.iter().filter_map(|o| pod_spec(o).map(|p| (o, p))) {
            let (owner, template) = object;
            let what = format!("{overlay} {}", owner["metadata"]["name"]);
            let pod = &template["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            assert_eq!(
                pod["imagePullSecrets"],
                json!([{"name": "harbor-pull"}]),
                "{what}"
            );
            for container in pod["containers"].as_array().unwrap() {
                assert_eq!(container["image"], json!(image), "{what}");
                for limit in ["cpu", "memory"] {
                    assert!(
                        container["resources"]["limits"][limit].is_string(),
                        "{what}: {limit}"
                    );
                }
                let sc = &container["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
            }
            // A NetworkPolicy selects the pod, with both directions declared.
            let labels = &template["metadata"]["labels"];
            assert!(
                policies.iter().any(|p| {
                    let select = p["spec"]["podSelector"]["matchLabels"].as_object().unwrap();
                    select.iter().all(|(k, v)| labels[k] == *v)
                        && p["spec"]["policyTypes"] == json!(["Ingress", "Egress"])
                }),
                "{what}: no NetworkPolicy selects {labels}"
            );
        }
        // The hand-offs the tree relies on, by name: phase 17's settings and CA ConfigMaps, the
        // report ConfigMap the Role may patch and the exporter mounts, the service account phase
        // 17's grants bind.
        let cronjob = kinds["CronJob cicd-readiness"];
        let job_pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(job_pod["serviceAccountName"], readiness::REPORT);
        assert_eq!(
            job_pod["containers"][0]["envFrom"],
            json!([{"configMapRef": {"name": readiness::ENV_CONFIGMAP}}])
        );
        let args: Vec<&str> = job_pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--write-configmap", readiness::REPORT_CONFIGMAP]),
            "{args:?}"
        );
        let ca = job_pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["configMap"]["name"] == readiness::CA_CONFIGMAP)
            .expect("the CA volume");
        let mount = job_pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == ca["name"])
            .expect("the CA mount");
        assert_eq!(mount["mountPath"], readiness::CA_MOUNT);
        let role = kinds["Role cicd-readiness-report"];
        assert_eq!(
            role["rules"][0]["resourceNames"],
            json!([readiness::REPORT_CONFIGMAP])
        );
        let exporter = kinds["Deployment cicd-readiness-exporter"];
        assert_eq!(
            exporter["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
            readiness::REPORT_CONFIGMAP
        );
        let monitor = readiness::service_monitor(&s);
        let service = kinds["Service cicd-readiness-exporter"];
        for (k, v) in monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(
                service["metadata"]["labels"][k], *v,
                "the ServiceMonitor selects the Service"
            );
        }
        assert_eq!(
            service["spec"]["ports"][0]["name"],
            monitor["spec"]["endpoints"][0]["port"]
        );
    }
}

/// The image's Dockerfile as the project's release pipeline builds it: hadolint finds nothing (the
/// build itself compiles the whole workspace in `rust:…`, which cannot be pulled here; the
/// collector's image test builds its scratch stage with buildah).
#[test]
fn the_readiness_image_dockerfile_passes_hadolint_and_runs_as_non_root() {
    let files = readiness::files(&Settings::example()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, &files["Dockerfile"]).unwrap();
    let hadolint = common::config::tools_dir().join("venv/bin/hadolint");
    let out = std::process::Command::new(&hadolint)
        .arg(&dockerfile)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", hadolint.display()));
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = &files["Dockerfile"];
    assert!(text.contains("\nFROM scratch\n") && text.contains("\nUSER 65532:65532\n"));
    assert!(text.contains("--locked") && text.contains("--bin cicd-readiness"));
    // Pinned build image, never a moving tag.
    assert!(text.contains("FROM docker.io/library/rust:1.") && !text.contains(":latest"));
    // What the build context leaves out.
    let ignore = &files[".dockerignore"];
    for path in ["target/", ".sandbox/", ".git/"] {
        assert!(ignore.lines().any(|l| l == path), "{path}");
    }
}
