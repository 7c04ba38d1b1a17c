//! The bash phase 15's leftovers on the real kube-apiserver, made the way the bash phase makes
//! them: real `kubectl apply` (client-side) of manifests written from the research note
//! (docs/research/upstream-bash-phases.md section 3.1–3.4, in our words) and the literal token Secret
//! piped from `kubectl create secret … --dry-run=client -o yaml` into `kubectl apply -f -`.
//! `plan` lists every adoption "left by the bash phase" and writes nothing; `apply` converges;
//! a second `apply` changes and writes nothing; the token is never printed.

use argo_delivery::desired;
use argo_delivery::reconcile::FIELD_MANAGER;
use argo_delivery::settings::Settings;
use common::config::{Environment, PlatformConfig};
use common::kube::KubeClient;
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

use super::{index_of, phase, refs};

/// The GitLab token the bash phase put in the literal Secret (its `GITLAB_API_TOKEN`).
const BASH_TOKEN: &str = "glpat-bash-phase-literal-4711";

fn at(api_version: &str, kind: &str, name: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "argocd"}})
}

fn cleaner_ref() -> Value {
    at("batch/v1beta1", "CronJob", "ephemeral-ns-cleaner")
}
fn application_set_ref() -> Value {
    at(
        "argoproj.io/v1alpha1",
        "ApplicationSet",
        "ephemeral-mr-envs",
    )
}
fn token_secret_ref() -> Value {
    at("v1", "Secret", "argocd-gitlab-token")
}

fn settings(sandbox: &Sandbox) -> Settings {
    let environment =
        Environment::load_from(Some(&sandbox.env_file()), std::iter::empty()).unwrap();
    Settings::load(&PlatformConfig::from_env(&environment).unwrap()).unwrap()
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bash_phases_leftovers_are_planned_then_adopted_once() {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        prometheus: false,
        ..Options::default()
    })
    .await
    .unwrap();
    sandbox::support::mount_kv(&sandbox).await;
    let kube = KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test")
        .await
        .unwrap();

    // The bash phase 15, as it runs: kubectl apply of its heredocs, the token piped through.
    sandbox::bash_phases::phase_15(&sandbox, BASH_TOKEN);
    let bash_secret = kube.get(&token_secret_ref()).await.unwrap().unwrap();
    assert!(
        bash_secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap()
            .contains("Z2xwYXQtYmFzaC1waGFzZS1saXRlcmFsLTQ3MTE="),
        "kubectl's annotation holds the token again (base64): what the adoption removes"
    );
    let production = kube.get(&refs()[1]).await.unwrap().unwrap();
    assert!(
        managers(&production).contains(&"kubectl-client-side-apply".to_owned()),
        "{:?}",
        managers(&production)
    );

    let mut watched = refs();
    watched.extend([cleaner_ref(), application_set_ref(), token_secret_ref()]);
    let before = versions_of(&kube, &watched).await;
    let vault_writes = sandbox.vault_writes();

    // plan: every leftover with its reason, nothing written.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let leftovers = [
        "kubernetes CronJob argocd/ephemeral-ns-cleaner",
        "kubernetes ApplicationSet argocd/ephemeral-mr-envs",
        "kubernetes Secret argocd/argocd-gitlab-token",
        "kubernetes AppProject argocd/production",
        "kubernetes AppProject argocd/staging",
        "kubernetes AppProject argocd/ephemeral",
    ];
    let changes = doc["changes"].as_array().unwrap();
    for title in leftovers {
        let change = changes
            .iter()
            .find(|c| {
                format!(
                    "{} {}",
                    c["resource"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ) == title
            })
            .unwrap_or_else(|| panic!("{title} not planned: {doc}"));
        assert!(
            change["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("left by the bash phase: ")),
            "{title}: {change}"
        );
    }
    assert_eq!(
        changes.iter().filter(|c| c["reason"].is_string()).count(),
        6,
        "exactly the six leftovers carry a reason"
    );
    // Every object of the phase, CI's Argo CD token, the generator's GitLab token, and the three
    // deletions/patches beyond the objects.
    assert_eq!(changes.len(), refs().len() + 2 + 3, "{doc}");
    let report = phase(&sandbox, &["--adopt-report", "--output", "json"]).await;
    assert_eq!(report.code, 0, "{}", report.stderr);
    let report_doc: Value = serde_json::from_str(&report.stdout).unwrap();
    let listed: Vec<String> = sandbox::support::bash_leftover_rows(&report_doc["leftovers"])
        .into_iter()
        .map(|(_, object)| object)
        .collect();
    assert_eq!(listed, leftovers, "{report_doc}");
    assert_eq!(
        versions_of(&kube, &watched).await,
        before,
        "plan and the report: 0 Kubernetes writes"
    );
    assert_eq!(sandbox.vault_writes(), vault_writes, "and 0 Vault writes");

    // apply converges.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert_eq!(kube.get_if_served(&cleaner_ref()).await.unwrap(), None);
    assert_eq!(
        kube.get_if_served(&application_set_ref()).await.unwrap(),
        None
    );
    // The Secret: the same object (never deleted), its data as it was (no ESO controller runs
    // here), kubectl's copy of the token gone. When ESO runs, `creationPolicy: Owner` adopts this
    // existing Secret without ownerReference by adding its ownerReference and updating it in
    // place; none of ESO's documented paths deletes and recreates it, so there is no window
    // without the Secret (sandbox/fixtures/eso-docs/ownership-deletion-policy.md, "Owner" and its
    // note "Secrets with ownerReference field not found"); `deletionPolicy: Retain` keeps it if
    // Vault has no token yet ("Deletion Policy → Retain (default)").
    let secret = kube.get(&token_secret_ref()).await.unwrap().unwrap();
    assert_eq!(secret["metadata"]["uid"], bash_secret["metadata"]["uid"]);
    assert_eq!(secret["data"], bash_secret["data"]);
    assert!(
        secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_null(),
        "{}",
        secret["metadata"]
    );
    let external = kube
        .get(&refs()[index_of("ExternalSecret", "argocd-gitlab-token")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        external["spec"]["target"],
        json!({"name": "argocd-gitlab-token", "creationPolicy": "Owner", "deletionPolicy": "Retain"})
    );
    // The AppProjects: exactly ours, no field owned by kubectl any more. Our forced apply alone
    // would take only the fields we set and leave kubectl's entry (and its annotation); the reset
    // writes `managedFields: [{}]`, which strips every entry (Kubernetes docs, "Server-Side Apply →
    // Clearing managedFields"), and the apply onto an object without entries credits what it finds
    // to `before-first-apply`, which the phase drops afterwards.
    let s = settings(&sandbox);
    for desired in desired::app_projects(&s) {
        let live = kube.get(&desired).await.unwrap().unwrap();
        let name = &desired["metadata"]["name"];
        assert_eq!(live["spec"], desired["spec"], "{name}");
        assert!(
            managers(&live).iter().all(|m| !m.starts_with("kubectl")),
            "{name}: {:?}",
            managers(&live)
        );
        // Not even the `before-first-apply` entry of the apply after the reset: only our manager.
        assert_eq!(managers(&live), [FIELD_MANAGER], "{name}");
        assert!(
            live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .is_null(),
            "{name}"
        );
    }
    // CI's token was minted for the adopted project's pipeline role.
    assert!(
        sandbox::support::vault_read(&sandbox, "kv/data/ci/argocd-token")
            .await
            .is_some()
    );

    // A second apply: 0 changes, 0 writes; nothing is left to report.
    let converged = versions_of(&kube, &watched).await;
    let vault_writes = sandbox.vault_writes();
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(
        rerun.stdout.contains("applied 0 change(s)") && rerun.stdout.contains("no changes"),
        "{}",
        rerun.stdout
    );
    assert_eq!(versions_of(&kube, &watched).await, converged);
    assert_eq!(sandbox.vault_writes(), vault_writes);
    let report_after = phase(&sandbox, &["--adopt-report"]).await;
    assert!(
        report_after
            .stdout
            .contains("0 leftover(s) of the bash phases"),
        "{}",
        report_after.stdout
    );
    sandbox::support::assert_not_printed(
        [&plan, &report, &apply, &rerun, &report_after]
            .iter()
            .flat_map(|r| [r.stdout.as_str(), r.stderr.as_str()]),
        &[BASH_TOKEN, "Z2xwYXQtYmFzaC1waGFzZS1saXRlcmFsLTQ3MTE="],
    );
}

async fn versions_of(kube: &KubeClient, watched: &[Value]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for object in watched {
        out.push(kube.get_if_served(object).await.unwrap().map(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    out
}
