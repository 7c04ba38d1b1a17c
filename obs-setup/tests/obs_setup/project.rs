//! The collector's GitLab project as pushed (rendered with the example settings): every overlay
//! built by `kubectl kustomize` as Argo CD builds it, the kinds kube-apiserver 1.20 serves validated
//! by its server-side dry run (`ExternalSecret` with its real CRD; core kinds), the policy/v1
//! `PodDisruptionBudget` (which 1.20 lacks) by the Kubernetes 1.32 strict schema; the container
//! rules of the plan for every pod; production equal to the workload phase 17 used to apply.

use std::collections::BTreeMap;
use std::path::Path;

use common::kube::KubeClient;
use obs_setup::desired;
use obs_setup::project::PLACEHOLDER_DIGEST;
use obs_setup::settings::{Settings, Store};
use serde_json::{Value, json};

use crate::{kustomize, rendered_project, schema_errors, specs_dir};

const REPOSITORY: &str = "harbor.example.com/platform-services/dora-collector";

/// The sandbox with kube-apiserver (and the External Secrets CRDs) only.
async fn kube_sandbox() -> sandbox::Sandbox {
    common::cli::install_crypto_provider();
    sandbox::Sandbox::start(sandbox::Options {
        vault: false,
        prometheus: false,
        ..sandbox::Options::default()
    })
    .await
    .expect("sandbox starts")
}

fn settings(store: Store) -> Settings {
    let mut s = Settings::example();
    s.store = store;
    s
}

/// `overlay` of a copy of `project`, with its images entry set the way Argo CD's
/// `kustomize.images` (`kustomize edit set image`) sets it for a merge request's environment.
fn with_scratch_image(project: &Path, image: &str, tag: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(project.join("deploy"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let file = copy
        .path()
        .join("deploy/overlays/ephemeral/kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replace(
        &format!("    newName: {REPOSITORY}\n"),
        &format!("    newName: {image}\n    newTag: {tag}\n"),
    );
    assert_ne!(edited, text, "the images entry of the ephemeral overlay");
    std::fs::write(&file, edited).unwrap();
    copy
}

/// The object as production ran it when phase 17 applied it: namespace and image set.
fn as_applied(object: &Value, namespace: &str) -> Value {
    let mut out = object.clone();
    out["metadata"]["namespace"] = json!(namespace);
    if out["kind"] == "Deployment" {
        out["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!(format!("{REPOSITORY}:v0.1.0"));
    }
    out
}

fn by_kind(objects: &[Value]) -> BTreeMap<String, Value> {
    objects
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().to_owned(), o.clone()))
        .collect()
}

/// Every overlay, for `SQLite` and `PostgreSQL`, builds and validates; every pod is non-root, has
/// a read-only root filesystem, limits and the `harbor-pull` Secret, and no image is `:latest`;
/// each environment pins the image its way; production is the workload of earlier phase 17 runs.
#[tokio::test(flavor = "multi_thread")]
async fn every_overlay_builds_validates_and_follows_the_container_rules() {
    let sandbox = kube_sandbox().await;
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "content-check")
        .await
        .unwrap();
    let strict = specs_dir().join("k8s-jsonschema/v1.32/standalone-strict");
    let mut validated = 0;
    for store in [Store::Sqlite, Store::Postgres] {
        let s = settings(store);
        let rendered = rendered_project(&s);
        let project = rendered.path().join("dora-collector");
        let scratch = format!("harbor.example.com/ci-scratch/{}", desired::COLLECTOR);
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let mr = with_scratch_image(&project, &scratch, sha);
        let overlays = [
            (
                "production",
                project.join("deploy/overlays/production"),
                Some("monitoring"),
            ),
            (
                "staging",
                project.join("deploy/overlays/staging"),
                Some("staging-dora-collector"),
            ),
            ("ephemeral", project.join("deploy/overlays/ephemeral"), None),
            (
                "merge request",
                mr.path().join("deploy/overlays/ephemeral"),
                None,
            ),
        ];
        for (overlay, dir, namespace) in overlays {
            let objects = kustomize(&dir);
            // Where the dry run puts objects without a namespace (Argo CD's destination).
            let target = namespace.map_or_else(
                || format!("ephemeral-dora-collector-{}", overlay.replace(' ', "-")),
                str::to_owned,
            );
            kube.apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}}),
                false,
            )
            .await
            .unwrap();
            let kinds = by_kind(&objects);
            let mut expected = vec![
                "Deployment",
                "NetworkPolicy",
                "PodDisruptionBudget",
                "Service",
            ];
            if overlay == "production" {
                expected.extend(["ExternalSecret", "Ingress"]);
            } else {
                // No Vault secret outside production: the webhook secret is the pod's own UID,
                // and nothing references the collector's Secret.
                let deployment = &kinds["Deployment"];
                let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
                let webhook = env
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == "GITLAB_WEBHOOK_SECRET")
                    .unwrap();
                assert_eq!(
                    webhook["valueFrom"],
                    json!({"fieldRef": {"fieldPath": "metadata.uid"}}),
                    "{store:?} {overlay}"
                );
                assert!(
                    !deployment.to_string().contains(desired::SECRET_NAME),
                    "{store:?} {overlay}: {deployment}"
                );
            }
            if overlay != "production" || store == Store::Sqlite {
                expected.push("PersistentVolumeClaim");
            }
            expected.sort_unstable();
            assert_eq!(
                kinds.keys().collect::<Vec<_>>(),
                expected,
                "{store:?} {overlay}"
            );
            for object in &objects {
                let what = format!(
                    "{store:?} {overlay} {} {}",
                    object["kind"], object["metadata"]["name"]
                );
                assert_eq!(
                    object["metadata"]["namespace"].as_str(),
                    namespace,
                    "{what}: the overlay's namespace"
                );
                assert!(
                    !object.to_string().contains(":latest"),
                    "{what}: a moving tag"
                );
                if object["kind"] == "PodDisruptionBudget" {
                    assert_eq!(
                        schema_errors(
                            object,
                            &strict.join("poddisruptionbudget-policy-v1.json"),
                            None
                        ),
                        None,
                        "{what}"
                    );
                } else {
                    let mut object = object.clone();
                    object["metadata"]["namespace"] = json!(target);
                    kube.apply(&object, true)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                }
                validated += 1;
            }

            let deployment = &kinds["Deployment"];
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
            assert_eq!(pod["automountServiceAccountToken"], false, "{overlay}");
            assert_eq!(
                pod["imagePullSecrets"],
                json!([{"name": "harbor-pull"}]),
                "{overlay}: phase 15's pull Secret"
            );
            for container in pod["containers"].as_array().unwrap() {
                for limit in ["cpu", "memory"] {
                    assert!(
                        container["resources"]["limits"][limit].is_string(),
                        "{overlay}: {limit} limit"
                    );
                }
                assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
                assert_eq!(
                    container["securityContext"]["allowPrivilegeEscalation"],
                    false
                );
                assert_eq!(container["securityContext"]["runAsNonRoot"], true);
            }
            let image = pod["containers"][0]["image"].as_str().unwrap();
            let (expected_image, replicas) = match overlay {
                "production" => (
                    format!("{REPOSITORY}:v0.1.0"),
                    if store == Store::Sqlite { 1 } else { 2 },
                ),
                "staging" => (format!("{REPOSITORY}@{PLACEHOLDER_DIGEST}"), 1),
                // Argo CD always sets the ephemeral image; the overlay alone names the repository.
                "ephemeral" => (REPOSITORY.to_owned(), 1),
                _ => (format!("{scratch}:{sha}"), 1),
            };
            assert_eq!(image, expected_image, "{store:?} {overlay}");
            assert_eq!(
                deployment["spec"]["replicas"], replicas,
                "{store:?} {overlay}"
            );
            let store_url = pod["containers"][0]["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "DORA_STORE_URL")
                .unwrap();
            assert_eq!(
                store_url.get("value").is_some(),
                overlay != "production" || store == Store::Sqlite,
                "{store:?} {overlay}: SQLite unless production runs PostgreSQL: {store_url}"
            );

            // Prometheus (in OBS_NAMESPACE) may scrape every environment; the Service carries the
            // labels the ServiceMonitor selects.
            let policy_named = |name: &str| {
                objects
                    .iter()
                    .find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == name)
            };
            let policy = policy_named("dora-collector").expect("the collector's NetworkPolicy");
            // The main pipeline's tests reach the ephemeral environments, and only those.
            let admits_tests = policy_named(common::contract::ALLOW_PIPELINE_TESTS);
            assert_eq!(
                admits_tests.is_some(),
                namespace.is_none(),
                "{store:?} {overlay}: allow-pipeline-tests only in the ephemeral overlay"
            );
            if let Some(admit) = admits_tests {
                let mut expected = common::contract::allow_pipeline_tests(&s.runner_namespace);
                expected["metadata"]["labels"] = admit["metadata"]["labels"].clone();
                assert_eq!(admit["spec"], expected["spec"], "{overlay}");
            }
            assert_eq!(
                policy["spec"]["podSelector"]["matchLabels"],
                json!({"app.kubernetes.io/name": "dora-collector"})
            );
            assert!(
                policy["spec"]["ingress"][0]["from"].as_array().unwrap().contains(&json!({
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                })),
                "{overlay}: {policy}"
            );
            let monitor = desired::service_monitor(&s);
            for (key, value) in monitor["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap()
            {
                assert_eq!(
                    &kinds["Service"]["metadata"]["labels"][key], value,
                    "{overlay}"
                );
            }

            if overlay == "production" {
                // Exactly the objects phase 17 applied before, in the same namespace.
                let mut before: Vec<Value> = desired::workload(&s);
                before.push(desired::ingress(&s));
                let before = by_kind(
                    &before
                        .iter()
                        .map(|o| as_applied(o, "monitoring"))
                        .collect::<Vec<_>>(),
                );
                assert_eq!(
                    kinds, before,
                    "{store:?}: production is the workload as it was"
                );
                assert_eq!(
                    monitor["spec"]["namespaceSelector"]["matchNames"],
                    json!(["monitoring"])
                );
                assert_eq!(
                    kinds["Ingress"]["spec"]["rules"][0]["host"],
                    "dora.example.com"
                );
            }
        }
    }
    // Per store: production 7 (its ExternalSecret and Ingress included), staging 5 (no Vault
    // secret), each ephemeral overlay 6 (no Vault secret, plus allow-pipeline-tests); PostgreSQL
    // drops production's volume claim.
    assert_eq!(validated, 2 * (7 + 5 + 6 + 6) - 1, "objects validated");
}

/// The pipeline is the template library's at the version phase 14 tags, and builds the image
/// phase 17 pins: the project's name and Harbor project are the service list's.
#[test]
fn the_pipeline_pins_the_library_and_names_the_image() {
    let s = Settings::example();
    let files = obs_setup::project::files(&s).unwrap();
    let ci = &files[".gitlab-ci.yml"];
    let version = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci-templates/library/VERSION"),
    )
    .unwrap();
    assert!(
        ci.contains(&format!("ref: v{}", version.trim())),
        "the library version its tests ran against: {ci}"
    );
    assert!(ci.contains(&format!("SERVICE_NAME: {}", s.delivery.name)));
    assert!(ci.contains(&format!(
        "IMAGE_HARBOR_PROJECT: {}",
        s.delivery.harbor_project
    )));
    assert_eq!(
        s.delivery.project_path,
        format!("platform_services/{}", desired::COLLECTOR)
    );
    for (overlay, path) in [
        ("production", &s.delivery.production.overlay),
        ("staging", &s.delivery.staging.overlay),
        ("ephemeral", &s.delivery.ephemeral_overlay),
    ] {
        assert!(
            files.contains_key(&format!("{path}/kustomization.yaml")),
            "phase 15 deploys {path} ({overlay})"
        );
    }
    obs_setup::project::SOURCE
        .require_lockfile()
        .expect("services/dora-collector/Cargo.lock");
    assert!(files["Dockerfile"].contains("COPY common ./common"));
    assert!(files[".dockerignore"].lines().any(|l| l == "deploy"));
}
