//! The golden path (issue 20): `onboard-service` on the converged platform, the hand-offs it depends
//! on and the ones it makes.
//! - It reads the service template phase 14 seeded (`platform_services/service-template` at its
//!   tag) and the Harbor project phase 14 made; it writes the catalog entry phase 15 reads.
//! - Phase 12's and phase 15's next runs find nothing to do for the new service: onboarding ran their
//!   code.
//! - The project is usable: its own pipeline runs green under gitlab-ci-local (MR and main, the
//!   local jobs), and its overlays build with `kubectl kustomize` and pass the sandbox
//!   kube-apiserver's server-side dry run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ci_templates::local_run::LocalRepo;
use serde_json::{Value, json};

use crate::world::{GROUP, World, documents, kustomize};

/// The two services of the issue: a Go canary and a Node blue-green.
pub const SERVICES: [(&str, &str, &str); 2] = [
    ("billing-api", "go", "canary"),
    ("web-shop", "node", "bluegreen"),
];

fn binary() -> PathBuf {
    sandbox::support::workspace_bin(
        "onboard-service",
        "onboard-service",
        env!("CARGO_TARGET_TMPDIR"),
    )
}

fn onboard(
    world: &World,
    name: &str,
    lang: &str,
    strategy: &str,
    args: &[&str],
) -> sandbox::PhaseRun {
    let mut all = vec![name, "--lang", lang, "--strategy", strategy];
    all.extend_from_slice(args);
    world.run_binary(&binary(), &all)
}

/// Every Kubernetes object onboarding may write for `name` (absent ones read as None).
pub fn objects_of(name: &str) -> Vec<Value> {
    let at = |api: &str, kind: &str, n: &str, ns: Option<&str>| {
        let mut o = json!({"apiVersion": api, "kind": kind, "metadata": {"name": n}});
        if let Some(ns) = ns {
            o["metadata"]["namespace"] = json!(ns);
        }
        o
    };
    let argo = "argoproj.io/v1alpha1";
    vec![
        at(
            "v1",
            "ConfigMap",
            common::contract::SERVICE_CATALOG,
            Some("argocd"),
        ),
        at("v1", "Namespace", &format!("staging-{name}"), None),
        at("v1", "Namespace", &format!("prod-{name}"), None),
        at(argo, "Application", name, Some("argocd")),
        at(
            argo,
            "Application",
            &format!("{name}-staging"),
            Some("argocd"),
        ),
        at(
            argo,
            "ApplicationSet",
            &format!("ephemeral-{name}"),
            Some("argocd"),
        ),
        at(argo, "AppProject", "production", Some("argocd")),
        at(argo, "AppProject", "staging", Some("argocd")),
        at(argo, "AppProject", "ephemeral", Some("argocd")),
    ]
}

/// Writes on every server: stand-ins, Vault, and the objects onboarding could write.
fn writes(world: &World, name: &str) -> (BTreeMap<&'static str, u64>, usize, Vec<Option<String>>) {
    let kube = world.kube();
    (
        world.standin_writes(),
        world.sandbox.vault_writes(),
        world.rt.block_on(sandbox::support::resource_versions(
            &kube,
            &objects_of(name),
        )),
    )
}

fn json_of(run: &sandbox::PhaseRun) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// From nothing to a delivered service, for a Go and a Node service: plan writes nothing, apply
/// creates everything (read back from each server), the rerun writes nothing, check exits 0, and
/// phases 12 and 15 agree.
pub fn go_and_node_services_are_onboarded_from_nothing(world: &World) {
    for (name, lang, strategy) in SERVICES {
        let path = format!("{GROUP}/{name}");
        let before = writes(world, name);
        let plan = onboard(world, name, lang, strategy, &["plan", "--output", "json"]);
        assert_eq!(plan.code, 0, "{name} plan:\n{}", plan.stderr);
        assert_eq!(writes(world, name), before, "{name}: plan wrote");
        let titles: Vec<String> = json_of(&plan)["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["resource"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        for expected in [
            format!(
                "service catalog entry {}: {name}",
                common::contract::SERVICE_CATALOG
            ),
            format!("gitlab project {path}"),
            format!("gitlab release protection {path}"),
            format!("gitlab promotion token {path}"),
            format!("gitlab commit {path}@main"),
            format!("gitlab tag {path}:v0.1.0"),
            format!("gitlab hardening (phase 12) {path}"),
            format!("vault policy feature-flags-{name}"),
            format!("vault kubernetes role auth/kubernetes/role/feature-flags-{name}"),
            format!("Namespace staging-{name}"),
            format!("Namespace prod-{name}"),
            format!("Application argocd/{name}"),
            format!("Application argocd/{name}-staging"),
            format!("ApplicationSet argocd/ephemeral-{name}"),
        ] {
            assert!(
                titles
                    .iter()
                    .any(|t| t.contains(&expected) || t == &expected),
                "{name}: the plan lacks {expected:?}: {titles:#?}"
            );
        }
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with("vault placeholder secret kv/services/")),
            "{titles:#?}"
        );

        let apply = onboard(world, name, lang, strategy, &["apply"]);
        assert_eq!(
            apply.code, 0,
            "{name} apply:\n{}\n{}",
            apply.stdout, apply.stderr
        );

        // Read back from each server.
        let files = world.project_files(&path, "main");
        assert!(files[".gitlab-ci.yml"].contains(&format!("SERVICE_NAME: {name}")));
        assert!(files[".gitlab-ci.yml"].contains(&format!("templates/languages/{lang}.yml")));
        assert!(
            files[".gitlab-ci.yml"].contains(&format!("ref: v{}", ci_templates::library::VERSION))
        );
        assert!(files[".gitlab-ci.yml"].contains("IMAGE_HARBOR_PROJECT: application-services"));
        for required in [
            "Dockerfile",
            "Makefile",
            "README.md",
            ".gitlab/CODEOWNERS",
            "deploy/base/rollout.yaml",
            "deploy/overlays/production/kustomization.yaml",
        ] {
            assert!(
                files.contains_key(required),
                "{name}: {required} missing: {:?}",
                files.keys()
            );
        }
        assert!(
            files.values().all(|t| !t.contains("example-service")),
            "{name}: placeholder left"
        );
        let id = world.project_id(&path);
        {
            let gl = world
                .sandbox
                .gitlab
                .as_ref()
                .expect("in-process GitLab")
                .lock();
            let project = gl.project_by_path(&path).expect("project");
            assert!(
                project.repository.tags.contains_key("v0.1.0"),
                "{name}: release tag"
            );
        }
        assert!(
            world
                .kv_field(&common::contract::kv_promote_token(id), "token")
                .is_some(),
            "{name}: promotion token in Vault"
        );
        // Hand-off 12 → 13: `main` was protected before anything was pushed, so the project's
        // main pipeline logs in as promote-artifact and reads its own promotion token only.
        let jwt = world.id_token(&path, &sandbox::keys::PipelineClaims::branch("main", true));
        let (status, answer) = world.vault_login(common::contract::ROLE_PROMOTE, &jwt);
        assert_eq!(status, 200, "{name}: promote-artifact's login: {answer}");
        let token = answer["auth"]["client_token"]
            .as_str()
            .expect("a token")
            .to_owned();
        let read = |kv: &str| {
            world.rt.block_on(async {
                reqwest::Client::new()
                    .get(format!("{}/v1/kv/data/{kv}", world.get("VAULT_ADDR")))
                    .header("X-Vault-Token", &token)
                    .send()
                    .await
                    .expect("OpenBao answers")
                    .status()
                    .as_u16()
            })
        };
        assert_eq!(
            read(&common::contract::kv_promote_token(id)),
            200,
            "{name}: its own promotion token"
        );
        let collector = world.project_id(&format!("{GROUP}/{}", common::contract::COLLECTOR));
        assert_eq!(
            read(&common::contract::kv_promote_token(collector)),
            403,
            "{name}: another project's token"
        );
        assert_eq!(
            world
                .kv_field(&common::contract::kv_service_secrets(id), "database-url")
                .as_deref(),
            Some(vault_cicd::desired::PLACEHOLDER),
            "{name}: service secrets placeholder"
        );
        let catalog = world
            .live(&objects_of(name)[0])
            .expect("the catalog ConfigMap");
        let entry: common::contract::CatalogEntry =
            serde_json::from_str(catalog["data"][name].as_str().expect("the service's key"))
                .unwrap();
        assert_eq!(entry.language, lang);
        for (object, namespace) in [
            (objects_of(name)[3].clone(), format!("prod-{name}")),
            (objects_of(name)[4].clone(), format!("staging-{name}")),
        ] {
            let app = world
                .live(&object)
                .unwrap_or_else(|| panic!("{name}: {object}"));
            assert_eq!(app["spec"]["destination"]["namespace"], json!(namespace));
            assert!(
                app["spec"]["source"]["repoURL"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&path),
                "{app}"
            );
        }
        assert!(
            world.live(&objects_of(name)[5]).is_some(),
            "{name}: per-MR ApplicationSet"
        );
        let staging = world.live(&objects_of(name)[1]).expect("staging namespace");
        assert_eq!(
            staging["metadata"]["labels"][common::contract::HARBOR_PULL_LABEL],
            json!("true")
        );
        // Harbor: the shared project, no robot of its own.
        {
            let harbor = world
                .sandbox
                .harbor
                .as_ref()
                .expect("in-process Harbor")
                .lock();
            assert!(
                harbor
                    .project_by_name(common::contract::APPLICATION_HARBOR_PROJECT)
                    .is_some()
            );
            assert!(
                harbor.robots.values().all(|r| !r.name.contains(name)),
                "{name}: a robot of its own"
            );
        }

        // The rerun writes nothing; check agrees; phases 12 and 15 have nothing left to do.
        let before = writes(world, name);
        let rerun = onboard(world, name, lang, strategy, &["apply", "--output", "json"]);
        assert_eq!(rerun.code, 0, "{name} rerun:\n{}", rerun.stderr);
        let doc = json_of(&rerun);
        assert_eq!(
            doc["changes"],
            json!([]),
            "{name}: the rerun planned changes"
        );
        assert_eq!(doc["applied"], 0);
        assert_eq!(writes(world, name), before, "{name}: the rerun wrote");
        let check = onboard(world, name, lang, strategy, &["check"]);
        assert_eq!(
            check.code, 0,
            "{name} check:\n{}\n{}",
            check.stdout, check.stderr
        );
        for (package, bin) in [
            ("argo-delivery", "argo-delivery"),
            ("gitlab-harden", "gitlab-harden"),
        ] {
            let run = world.run_phase(package, bin, &["plan", "--output", "json"]);
            assert_eq!(run.code, 0, "{bin}:\n{}", run.stderr);
            assert_eq!(
                json_of(&run)["changes"],
                json!([]),
                "{bin} after onboarding {name}"
            );
        }
        assert_eq!(
            writes(world, name),
            before,
            "{name}: the phases' plans wrote"
        );
    }
}

/// The bad names: one error line each, exit 1, no write anywhere.
pub fn bad_names_are_refused_without_a_write(world: &World) {
    let long = "a".repeat(64);
    for (name, rule) in [
        ("Bad_Name", "RFC 1123"),
        (long.as_str(), "at most 39"),
        ("-x", "start and end with a letter or digit"),
    ] {
        let before = writes(world, name.trim_start_matches('-'));
        let run = onboard(world, name, "go", "canary", &["apply"]);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{name}: one error line: {lines:?}");
        assert!(lines[0].contains(rule), "{name}: {}", lines[0]);
        assert_eq!(
            writes(world, name.trim_start_matches('-')),
            before,
            "{name}: wrote"
        );
    }
}

/// Writes the project's files into a scratch directory.
fn checkout(world: &World, name: &str) -> PathBuf {
    let dir = world.dir(&format!("onboarded-{name}"));
    world.checkout(&format!("{GROUP}/{name}"), "main", &dir);
    dir
}

/// What runs here for real in every language (as in ci-templates' `template_runs`).
const LOCAL_GATES: &[&str] = &[
    "lint",
    "build",
    "unit-test",
    "secret-detection",
    "sast",
    "config-scan",
    "sbom",
    "license-check",
];

/// The onboarded projects' own pipelines pass under gitlab-ci-local (MR and main), and their
/// overlays build and pass server-side dry run.
pub fn onboarded_projects_are_usable(world: &World) {
    let kube = world.kube();
    for (name, _, strategy) in SERVICES {
        let dir = checkout(world, name);
        let repo = LocalRepo::prepare(&dir).expect("a repository of the project");
        for merge_request in [true, false] {
            let run = repo
                .run(LOCAL_GATES, merge_request)
                .expect("gitlab-ci-local");
            for job in LOCAL_GATES {
                assert_eq!(
                    run.verdict(job),
                    "PASS",
                    "{name} ({}) {job}:\n{}",
                    if merge_request { "MR" } else { "main" },
                    run.output
                );
            }
            assert!(run.ok, "{}", run.output);
        }
        for overlay in ["ephemeral", "staging", "production"] {
            let objects = documents(&kustomize(&dir.join("deploy/overlays").join(overlay)));
            let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
            assert!(
                kinds.contains(&"Rollout") && kinds.contains(&"NetworkPolicy"),
                "{name} {overlay}: {kinds:?}"
            );
            if overlay == "production" {
                let rollout = objects.iter().find(|o| o["kind"] == "Rollout").unwrap();
                let blue_green = rollout["spec"]["strategy"].get("blueGreen").is_some();
                assert_eq!(
                    blue_green,
                    strategy == "bluegreen",
                    "{name}: production strategy"
                );
            }
            // Staging and production go where phase 15's Applications deploy them (namespaces
            // onboarding created); an ephemeral environment gets a namespace of its own.
            let namespace = match overlay {
                "staging" => format!("staging-{name}"),
                "production" => format!("prod-{name}"),
                _ => format!("ephemeral-{name}-mr-1"),
            };
            world
                .rt
                .block_on(kube.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}), false))
                .expect("the overlay's namespace");
            if overlay == "ephemeral" {
                // The main pipeline's tests call ACCEPTANCE_SERVICE:ACCEPTANCE_PORT there.
                let config = repo.merged_config().expect("the merged pipeline");
                let var = |n: &str| {
                    config["variables"][n]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                };
                let (service, port) = (var("ACCEPTANCE_SERVICE"), var("ACCEPTANCE_PORT"));
                assert!(
                    objects.iter().any(|o| o["kind"] == "Service"
                        && o["metadata"]["name"] == json!(service)
                        && o["spec"]["ports"].as_array().is_some_and(|p| p
                            .iter()
                            .any(|p| p["port"].as_u64().map(|n| n.to_string()).as_deref()
                                == Some(port.as_str())))),
                    "{name}: the ephemeral overlay has no Service {service}:{port} for acceptance-test"
                );
                assert!(
                    objects.iter().any(|o| o["kind"] == "NetworkPolicy"
                        && o["metadata"]["name"] == json!(common::contract::ALLOW_PIPELINE_TESTS)),
                    "{name}: the test runner pool cannot reach the ephemeral environment"
                );
            }
            for object in objects {
                let kind = object["kind"].as_str().unwrap_or_default().to_owned();
                assert!(
                    !object.to_string().contains(":latest"),
                    "{name} {overlay}: a moving tag"
                );
                // kube-apiserver 1.20 serves neither autoscaling/v2 nor policy/v1: their JSON
                // schemas (Kubernetes 1.32) check them instead.
                if let Some(schema) = match kind.as_str() {
                    "HorizontalPodAutoscaler" => {
                        Some("horizontalpodautoscaler-autoscaling-v2.json")
                    }
                    "PodDisruptionBudget" => Some("poddisruptionbudget-policy-v1.json"),
                    _ => None,
                } {
                    assert_eq!(
                        schema_errors(&object, schema),
                        None,
                        "{name} {overlay} {kind}"
                    );
                    continue;
                }
                let mut object = object;
                match object["metadata"]["namespace"].as_str() {
                    // The overlay names its namespace: it must be the Application's.
                    Some(own) => assert_eq!(own, namespace, "{name} {overlay} {kind}: namespace"),
                    None => object["metadata"]["namespace"] = json!(namespace),
                }
                world
                    .rt
                    .block_on(kube.apply(&object, true))
                    .unwrap_or_else(|e| {
                        panic!("{name} {overlay} {kind}: server-side dry run: {e}")
                    });
            }
        }
    }
}

fn schema_errors(object: &Value, schema: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let out = std::process::Command::new(common::config::tools_dir().join("venv/bin/python"))
        .args(["-c", "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))"])
        .arg(&file)
        .arg(format!("{}/../../argo-delivery/tests/k8s-schemas/{schema}", env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("python with jsonschema (run ./scripts/setup-test-env.sh)");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}
