//! The bash phase 16's Helm release `gitlab-runner-security` (research note section 3.5) on the real
//! kube-apiserver. The chart cannot be fetched here, so the test lays out what `helm install` and
//! one `helm upgrade` leave (helm/helm `pkg/storage/driver/secrets.go`: one Secret per revision,
//! type `helm.sh/release.v1`, labels `owner`, `name`, `status`, `version`, `data.release` = the
//! release JSON gzipped and base64-encoded — made here with the real `gzip` and `base64` tools —
//! and `pkg/action/install.go`: every applied object annotated `meta.helm.sh/release-name` and
//! `meta.helm.sh/release-namespace`, labelled `app.kubernetes.io/managed-by=Helm`), with the
//! chart's own labels (`app`, `chart`, `release`, `heritage`). Then: `plan` lists the removal as
//! `helm uninstall` would do it (helm/helm `pkg/action/uninstall.go`: the latest revision's
//! manifest objects, then every revision Secret), each "left by the bash phase", and writes
//! nothing; `apply` removes exactly that; a second `apply` changes and writes nothing.

use sandbox::bash_phases::{
    HELM_NAMESPACE as NS, HELM_RELEASE as RELEASE, HELM_RUNNER_TOKEN as RUNNER_TOKEN,
    helm_release_leftovers,
};
use serde_json::{Value, json};

use crate::support::{api_writes, assert_no_secret, kube, object_refs, phase, start, versions};

fn at(kind: &str, name: &str, namespace: &str) -> Value {
    let api_version = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bash_helm_release_is_uninstalled_without_helm() {
    let (sandbox, _) = start(true).await;
    let kube = kube(&sandbox).await;
    let helm = common::kube::KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "helm")
        .await
        .unwrap();
    // v1 installed an older manifest (superseded), v2 the current one (deployed), and its objects.
    for object in helm_release_leftovers() {
        helm.apply(&object, false).await.unwrap();
    }
    // The same name elsewhere, never Helm's: untouched.
    helm.apply(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": RELEASE, "namespace": "gitlab"}, "data": {"a": "b"}}),
        false,
    )
    .await
    .unwrap();

    let removed = [
        at("Deployment", RELEASE, NS),
        at("Secret", RELEASE, NS),
        at("ConfigMap", RELEASE, NS),
        at("ServiceAccount", RELEASE, NS),
        at("Secret", &format!("sh.helm.release.v1.{RELEASE}.v1"), NS),
        at("Secret", &format!("sh.helm.release.v1.{RELEASE}.v2"), NS),
    ];
    let kept = [
        at("Service", RELEASE, NS),
        at("ConfigMap", RELEASE, "gitlab"),
    ];
    let mut watched: Vec<Value> = removed.iter().chain(&kept).cloned().collect();
    watched.extend(object_refs());
    let before = versions(&kube, &watched).await;
    assert!(before[..8].iter().all(Option::is_some));
    let writes = api_writes(&sandbox);

    // plan and the report: the uninstall, each change with its reason; 0 writes.
    let plan = phase(&sandbox, &["--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let leftovers: Vec<(String, String)> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["reason"].is_string())
        .map(|c| {
            assert_eq!(c["action"], "delete", "{c}");
            assert!(
                c["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("left by the bash phase: "),
                "{c}"
            );
            (
                c["resource"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = removed
        .iter()
        .map(|r| {
            (
                format!("kubernetes {}", r["kind"].as_str().unwrap()),
                format!("{NS}/{}", r["metadata"]["name"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        leftovers, expected,
        "workloads first, then what they use, then the history"
    );
    assert!(
        doc["warnings"].to_string().contains(
            "Service gitlab-runners/gitlab-runner-security is in the manifest of Helm release gitlab-runner-security in gitlab-runners but lacks Helm's annotations"
        ),
        "{}",
        doc["warnings"]
    );
    let report = phase(&sandbox, &["--adopt-report", "--output", "json"]).await;
    assert_eq!(report.code, 0, "{}", report.stderr);
    let report_doc: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(
        report_doc["leftovers"].as_array().unwrap().len(),
        6,
        "{report_doc}"
    );
    assert_eq!(api_writes(&sandbox), writes, "plan: 0 API writes");
    assert_eq!(
        versions(&kube, &watched).await,
        before,
        "plan: 0 Kubernetes writes"
    );

    // apply: exactly the release goes.
    let apply = phase(&sandbox, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let after = versions(&kube, &watched).await;
    assert_eq!(
        after[..6],
        [None, None, None, None, None, None],
        "{after:?}"
    );
    assert_eq!(
        after[6..8],
        before[6..8],
        "the Service another owner has, and the same name in another namespace, stay unchanged"
    );
    let history = kube
        .list("v1", "Secret", NS, &format!("owner=helm,name={RELEASE}"))
        .await
        .unwrap();
    assert!(history.is_empty(), "no release Secret left: {history:?}");

    // A second apply: 0 changes, 0 writes.
    let converged = versions(&kube, &watched).await;
    let writes = api_writes(&sandbox);
    let rerun = phase(&sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(
        rerun.stdout.contains("no changes") && rerun.stdout.contains("applied 0 change(s)"),
        "{}",
        rerun.stdout
    );
    assert_eq!(api_writes(&sandbox), writes, "second apply: 0 API writes");
    assert_eq!(
        versions(&kube, &watched).await,
        converged,
        "second apply: 0 Kubernetes writes"
    );
    assert_no_secret(
        &[&plan, &report, &apply, &rerun],
        &[
            RUNNER_TOKEN.to_owned(),
            "Z2xydC1iYXNoLXNlY3VyaXR5LXJ1bm5lci0wMDQy".to_owned(),
        ],
    );
}
