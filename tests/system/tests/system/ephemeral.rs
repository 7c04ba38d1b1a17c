//! Ephemeral environments of both kinds end: namespaces labelled exactly as their producers label
//! them (the per-MR `ApplicationSet` of phase 15, live in the cluster; the main pipeline's
//! deploy-ephemeral, whose Application the journey left) are deleted by phase 15's cleaner once
//! their TTL is over, and a namespace without the label never is. The TTL is 4 h, so the cleaner
//! runs with a clock 5 h ahead (a `date` on its PATH that adds 5 h to "now").

use std::path::Path;
use std::process::Command;

use common::contract;
use serde_json::{Value, json};

use crate::world::{GROUP, World, documents, kustomize};

/// The labels the journey's deploy-ephemeral gave its namespace (written by the journey).
pub const MAIN_LABELS_FILE: &str = "main-ephemeral-labels.json";

fn later_clock(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("clock");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let date = bin.join("date");
    std::fs::write(
        &date,
        "#!/bin/sh\n# `date -u +%s` five hours from now; anything else is the real date.\nif [ \"$*\" = \"-u +%s\" ]; then echo $(( $(/usr/bin/date -u +%s) + 18000 )); else exec /usr/bin/date \"$@\"; fi\n",
    )
    .expect("write");
    let mut perms = std::fs::metadata(&date).expect("date").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&date, perms).expect("chmod");
    bin
}

pub fn environments_run_their_own_image_and_get_cleaned(world: &World) {
    let appset = world
        .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "ephemeral-packet-relay", "namespace": "argocd"}}))
        .expect("phase 15's ApplicationSet");
    let mr_labels =
        appset["spec"]["template"]["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
            .clone();
    let main_labels: Value = serde_json::from_str(
        &std::fs::read_to_string(world.scratch.path().join(MAIN_LABELS_FILE))
            .expect("the journey ran deploy-ephemeral"),
    )
    .expect("JSON");
    assert_eq!(mr_labels[contract::TTL_LABEL], contract::EPHEMERAL_TTL);
    assert_eq!(main_labels[contract::TTL_LABEL], contract::EPHEMERAL_TTL);
    let mut long_lived = main_labels.clone();
    long_lived[contract::TTL_LABEL] = json!("30d");
    let cases: [(&str, Value, bool); 4] = [
        ("ephemeral-packet-relay-mr-7", mr_labels, true),
        ("ephemeral-packet-relay-main-1a2b3c4d", main_labels, true),
        ("ephemeral-packet-relay-main-feedbeef", long_lived, false),
        // Looks ephemeral by name, carries no label: never touched.
        ("ephemeral-lookalike", json!({"team": "platform"}), false),
    ];
    let kube = world.kube();
    for (name, labels, _) in &cases {
        world
            .rt
            .block_on(kube.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}), false))
            .expect("namespace");
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../argo-delivery/cleaner/clean-ephemeral-namespaces.sh"
    );
    let clock = later_clock(&world.dir("cleaner"));
    let path = format!(
        "{}:{}",
        clock.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(script)
        .env("KUBECONFIG", world.sandbox.kubeconfig())
        .env("PATH", path)
        .output()
        .expect("bash and kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, _, expired) in &cases {
        let ns = world
            .live(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .expect("namespace exists");
        assert_eq!(
            !ns["metadata"]["deletionTimestamp"].is_null(),
            *expired,
            "{name}: {text}"
        );
    }
    eprintln!("    cleaner: {}", text.trim());
}

/// Whether `selector` selects `labels`: `matchLabels` only, as every policy here uses; a
/// selector with `matchExpressions` stops the test rather than being read as "everything".
fn matches(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions are not evaluated here: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .is_none_or(|wanted| wanted.iter().all(|(k, v)| &labels[k] == v))
}

/// The main pipeline's acceptance-test and k6-performance find what deploy-ephemeral left: for
/// every seeded project, the Service and port its pipeline calls (`ACCEPTANCE_SERVICE`,
/// `ACCEPTANCE_PORT`, as the merged pipeline resolves them) exist in its ephemeral overlay (as the
/// GitLab stand-in holds it); a `NetworkPolicy` there admits the job pods of the pool the jobs
/// are tagged for (the labels that pool's runner values give them, in phase 16's runner
/// namespace); and phase 16's egress policy lets those pods reach namespaces labelled as
/// deploy-ephemeral labels its namespace.
pub fn pipeline_tests_reach_the_main_environment(world: &World) {
    let main_labels: Value = serde_json::from_str(
        &std::fs::read_to_string(world.scratch.path().join(MAIN_LABELS_FILE))
            .expect("the journey ran deploy-ephemeral"),
    )
    .expect("labels JSON");
    // Phase 16's policies as it applies them here (its settings from the sandbox's environment).
    let environment = common::config::Environment::load(Some(&world.sandbox.env_file()))
        .expect("the sandbox's environment");
    let platform = common::config::PlatformConfig::from_env(&environment).expect("platform config");
    let settings =
        security_setup::settings::Settings::load(&platform).expect("phase 16's settings");
    let egress = security_setup::desired::runner_delivery_egress_policies(&settings, "argocd");
    for service in seeded_projects::ALL {
        let path = format!("{GROUP}/{}", service.name);
        let dir = world.dir(&format!("acceptance-{}", service.name));
        world.checkout(&path, "main", &dir);
        let repo = ci_templates::local_run::LocalRepo::prepare(&dir).expect("a scratch repository");
        let config = repo.merged_config().expect("the merged pipeline");
        // The operator pattern (feature-flags) has no ephemeral environment, so nothing to reach.
        if config.get("acceptance-test").is_none() {
            continue;
        }
        let variables = |job: &str| -> (String, String) {
            let var = |name: &str| {
                config[job]["variables"][name]
                    .as_str()
                    .or_else(|| config["variables"][name].as_str())
                    .unwrap_or_else(|| panic!("{path}: {job} has no {name}"))
                    .to_owned()
            };
            let service_var = var("ACCEPTANCE_SERVICE");
            let name = if service_var == "${SERVICE_NAME}" {
                var("SERVICE_NAME")
            } else {
                service_var
            };
            (name, var("ACCEPTANCE_PORT"))
        };
        for job in ["acceptance-test", "k6-performance"] {
            let tags: Vec<&str> = config[job]["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: {job} has no tags"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let pool = security_setup::desired::pool_serving(&tags)
                .unwrap_or_else(|| panic!("{path}: no pool serves {job} {tags:?}"));
            let values: Value = serde_saphyr::from_str(pool.values).expect("pool values");
            let runner: toml::Value =
                toml::from_str(values["runners"]["config"].as_str().expect("config"))
                    .expect("runner config");
            let pod_labels =
                serde_json::to_value(&runner["runners"][0]["kubernetes"]["pod_labels"])
                    .expect("labels");
            let runner_namespace = runner["runners"][0]["kubernetes"]["namespace"]
                .as_str()
                .unwrap_or(contract::RUNNER_NAMESPACE)
                .to_owned();

            // Phase 16 lets this pool out to the namespace deploy-ephemeral labels.
            let namespace_labels: serde_json::Map<String, Value> = main_labels
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (format!("k8s:io.cilium.k8s.namespace.labels.{k}"), v.clone()))
                .collect();
            assert!(
                egress.iter().any(|policy| {
                    matches(&policy["spec"]["endpointSelector"], &pod_labels)
                        && policy["spec"]["egress"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|rule| {
                                rule["toEndpoints"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|to| matches(to, &Value::Object(namespace_labels.clone())))
                            })
                }),
                "{path}: {job} on pool {} may not reach the ephemeral namespace {main_labels}",
                pool.name
            );

            // The Service it calls, and a policy admitting it to that Service's pods.
            let (name, port) = variables(job);
            let overlay = config["variables"]["EPHEMERAL_OVERLAY"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: no EPHEMERAL_OVERLAY"));
            let objects = documents(&kustomize(&dir.join(overlay)));
            let svc = objects
                .iter()
                .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == name.as_str())
                .unwrap_or_else(|| {
                    panic!("{path}: {job} calls Service {name}, which the ephemeral overlay lacks")
                });
            assert!(
                svc["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(
                        |p| p["port"].as_u64().is_some() && p["port"].as_u64() == port.parse().ok()
                    ),
                "{path}: Service {name} has no port {port}: {}",
                svc["spec"]["ports"]
            );
            let backend = &svc["spec"]["selector"];
            let runner_namespace_labels = json!({"kubernetes.io/metadata.name": runner_namespace});
            let admitted = objects
                .iter()
                .filter(|o| o["kind"] == "NetworkPolicy")
                .any(|policy| {
                    let selected = policy["spec"]["podSelector"]["matchLabels"]
                        .as_object()
                        .is_none_or(|want| want.iter().all(|(k, v)| &backend[k] == v));
                    selected
                        && policy["spec"]["ingress"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|rule| {
                                rule["from"].as_array().into_iter().flatten().any(|peer| {
                                    peer.get("namespaceSelector").is_some()
                                        && matches(
                                            &peer["namespaceSelector"],
                                            &runner_namespace_labels,
                                        )
                                        && matches(&peer["podSelector"], &pod_labels)
                                })
                            })
                });
            assert!(
                admitted,
                "{path}: no NetworkPolicy of the ephemeral overlay admits {job}'s pods ({pod_labels}) to Service {name}"
            );
            eprintln!(
                "    {path}: {job} (pool {}) → Service {name}:{port}, admitted",
                pool.name
            );
        }
    }
}
