//! Every image reference the phases apply or push has a producer (docs/adr/0008, decision 9):
//! collected from the cluster (what phases 13–18 applied, and Helm values of their Applications),
//! phase 15's `CronJob` (kube-apiserver 1.20 does not serve it), every overlay of every seeded
//! project (this repository's too: the readiness report's `CronJob` and exporter), and the CI
//! library's jobs. Each is either a pinned public image (a tag other than
//! `latest`, or a digest) or the output of a seeded project's pipeline:
//! - `<harbor>/<project>/<name>:vX.Y.Z`: the project `<name>` has that tag, protected, and its
//!   release pipeline, run here (stubbed tools, see jobs.rs), pushes exactly that reference;
//! - `<harbor>/<project>/<name>@sha256:…`: pinned by promotion; the project's main pipeline builds
//!   and promotes;
//! - `<harbor>/ci-scratch/<name>:{{ .head_sha }}`: a merge request pipeline's image (journey).

use std::collections::{BTreeMap, BTreeSet};

use ci_templates::local_run::PipelineKind;
use common::contract;
use sandbox::keys::PipelineClaims;
use serde_json::{Value, json};

use crate::jobs::JobRunner;
use crate::world::{GROUP, World, documents, kustomize};

/// Every `image` string in a JSON document, and Argo CD `kustomize.images` overrides.
fn collect(value: &Value, origin: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("image", Value::String(s)) => {
                        out.entry(s.clone()).or_default().insert(origin.to_owned());
                    }
                    // Helm values' {repository, tag} / job `image: {name}`.
                    ("image", Value::Object(o)) if o.contains_key("name") => {
                        if let Some(s) = o["name"].as_str() {
                            out.entry(s.to_owned())
                                .or_default()
                                .insert(origin.to_owned());
                        }
                    }
                    ("images", Value::Array(items)) if map.contains_key("images") => {
                        for item in items.iter().filter_map(Value::as_str) {
                            if let Some((_, reference)) = item.split_once('=') {
                                out.entry(reference.to_owned())
                                    .or_default()
                                    .insert(origin.to_owned());
                            }
                        }
                    }
                    _ => collect(v, origin, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, origin, out)),
        _ => {}
    }
}

/// `kubectl get <kinds> -A -o json`: the live objects.
fn live(world: &World, kinds: &str) -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .args(["get", kinds, "-A", "-o", "json"])
        .env("KUBECONFIG", world.sandbox.kubeconfig())
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn is_pinned_public(reference: &str) -> bool {
    if reference.contains("{{") {
        return false;
    }
    if reference.contains("@sha256:") {
        return true;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

pub fn every_deployed_image_has_a_producer(world: &World) {
    let mut images: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for object in live(
        world,
        "deployments,statefulsets,daemonsets,jobs,rollouts.argoproj.io,clusteranalysistemplates.argoproj.io,applications.argoproj.io,applicationsets.argoproj.io",
    ) {
        let origin = format!(
            "live {} {}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        collect(&object, &origin, &mut images);
    }
    collect(
        &argo_delivery::desired::cleaner_cron_job(),
        "phase 15 CronJob namespace-cleaner",
        &mut images,
    );
    // The seeded services, and this repository (the readiness report's CronJob and exporter).
    let seeded_names: Vec<&str> = seeded_projects::ALL
        .iter()
        .map(|s| s.name)
        .chain([seeded_projects::this_repository::NAME])
        .collect();
    for name in &seeded_names {
        let path = format!("{GROUP}/{name}");
        let dir = world.dir(&format!("images-{name}"));
        world.checkout(&path, "main", &dir);
        for overlay in std::fs::read_dir(dir.join("deploy/overlays")).expect("overlays") {
            let overlay = overlay.expect("entry").path();
            let origin = format!("{path} {}", overlay.file_name().unwrap().to_string_lossy());
            for doc in documents(&kustomize(&overlay)) {
                collect(&doc, &origin, &mut images);
            }
        }
    }
    for file in ci_templates::library::FILES.iter().filter(|f| {
        std::path::Path::new(f.path)
            .extension()
            .is_some_and(|e| e == "yml")
    }) {
        for doc in file.contents.split("\n---\n") {
            if let Ok(parsed) = serde_saphyr::from_str::<Value>(doc) {
                collect(&parsed, &format!("library {}", file.path), &mut images);
            }
        }
    }
    assert!(images.len() > 10, "{images:?}");

    let harbor = world.harbor_registry();
    let mut table = Vec::new();
    let mut release_tags: BTreeMap<(String, String), String> = BTreeMap::new();
    for (reference, origins) in &images {
        let producer = if let Some(rest) = reference.strip_prefix(&format!("{harbor}/")) {
            // The ephemeral overlays name the image without a version: both kinds of ephemeral
            // Application override it with their pipeline's image (checked by the journey).
            if !rest.contains(':') && !rest.contains('@') {
                let name = rest.rsplit('/').next().unwrap_or(rest);
                assert!(
                    origins.iter().all(|o| o.ends_with(" ephemeral")),
                    "{reference} has no version outside an ephemeral overlay: {origins:?}"
                );
                let appset = world
                    .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": format!("ephemeral-{name}"), "namespace": "argocd"}}))
                    .unwrap_or_else(|| panic!("no ApplicationSet overrides {reference}"));
                let overrides =
                    appset["spec"]["template"]["spec"]["source"]["kustomize"]["images"].to_string();
                assert!(overrides.contains(&format!("\"{name}=")), "{overrides}");
                table.push(format!("{reference} <- overridden by the ephemeral Applications with the pipeline's own image [{}]", origins.iter().cloned().collect::<Vec<_>>().join(", ")));
                continue;
            }
            let (repository, pin) = if let Some((r, d)) = rest.split_once('@') {
                (r, format!("@{d}"))
            } else {
                let (r, t) = rest
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("{reference}: no tag ({origins:?})"));
                (r, format!(":{t}"))
            };
            let (project, name) = repository
                .split_once('/')
                .unwrap_or_else(|| panic!("{reference}: not <project>/<name>"));
            let seeded = seeded_names.contains(&name);
            assert!(
                seeded,
                "{reference} ({origins:?}): no seeded project builds {name}"
            );
            if project == contract::HARBOR_SCRATCH_PROJECT {
                assert_eq!(pin, ":{{ .head_sha }}", "{reference}");
                "its merge request pipelines' build-image (journey)".to_owned()
            } else if let Some(tag) = pin.strip_prefix(':') {
                release_tags.insert((name.to_owned(), tag.to_owned()), reference.clone());
                format!("release pipeline of {GROUP}/{name} on {tag}")
            } else {
                format!("main pipeline of {GROUP}/{name} (build-image, promote-artifact)")
            }
        } else {
            assert!(
                is_pinned_public(reference),
                "{reference} ({origins:?}) is neither pinned nor built by a seeded project"
            );
            "pinned public image".to_owned()
        };
        table.push(format!(
            "{reference} <- {producer} [{}]",
            origins.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    // Each release reference: the project is tagged (protected, so its pipeline gets Vault) and
    // its release pipeline pushes exactly that reference.
    for ((name, tag), reference) in &release_tags {
        let path = format!("{GROUP}/{name}");
        {
            let gl = world.sandbox.gitlab.as_ref().unwrap().lock();
            let project = gl.project_by_path(&path).unwrap();
            assert!(
                project.repository.tags.contains_key(tag),
                "{path} has no tag {tag}"
            );
        }
        let runner = JobRunner::new(world, name, true, &[]);
        let kind = PipelineKind::ReleaseTag(tag.clone());
        let jobs = runner.repo.jobs_of(&kind, &[]).expect("jobs");
        assert!(
            jobs.contains("build-image") && jobs.contains("release-tag"),
            "{path}@{tag}: {jobs:?}"
        );
        let claims = PipelineClaims::tag(tag, true);
        let (build, _) = runner.run(world, "build-image", &kind, &claims, &[]);
        assert_eq!(build.verdict("build-image"), "PASS", "{}", build.output);
        let digest = runner
            .repo
            .artifact("build-image", "image.digest")
            .expect("digest");
        let (release, evidence) = runner.run(
            world,
            "release-tag",
            &kind,
            &claims,
            &[("IMAGE_DIGEST", digest)],
        );
        assert_eq!(release.verdict("release-tag"), "PASS", "{}", release.output);
        assert!(
            evidence.lines().any(|l| l
                .trim_end()
                .ends_with(&format!("destination=docker://{reference}"))),
            "{path}@{tag} releases {reference}? {evidence}"
        );
    }
    eprintln!("    {} image references:", images.len());
    for row in &table {
        eprintln!("      {row}");
    }
}
