//! What stops phase 16, as one error line that names the operation and the fix: no signing key
//! (phase 13 not run), no or an unhealthy scanner, Harbor refusing a write. Then the optional
//! objects: with the Cilium and Kyverno CRDs served, the egress policy and the verify-images
//! policy are applied too.

use std::time::Duration;

use sandbox::standins::Fault;
use sandbox::standins::harbor::TRIVY_SCANNER_UUID;
use serde_json::{Value, json};

use crate::support::{
    all_runners, api_writes, create_signing_key, error_line, kube, phase, runners, start,
};

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_one_line_errors_and_optional_crds_are_used_when_served() {
    let (sandbox, mattermost_url) = start(false).await;
    let before = api_writes(&sandbox);

    // No transit key: phase 13 has not run.
    let run = phase(&sandbox, &["plan"]).await;
    let line = error_line(&run);
    assert!(line.contains("transit/keys/ci-signing-key"), "{line}");
    assert!(line.contains("run phase 13 (vault-cicd apply)"), "{line}");
    create_signing_key(&sandbox).await;

    // The scanner: unhealthy, then none at all.
    let scanner = {
        let mut hb = sandbox.harbor.as_ref().unwrap().lock();
        hb.scanners.get_mut(TRIVY_SCANNER_UUID).unwrap().healthy = false;
        hb.scanners.clone()
    };
    let line = error_line(&phase(&sandbox, &["apply"]).await);
    assert!(
        line.contains("500 from Harbor checking the health of scanner Trivy"),
        "{line}"
    );
    assert!(line.contains("Trivy is unhealthy"), "{line}");
    assert!(line.contains("harbor-trivy"), "{line}");
    sandbox.harbor.as_ref().unwrap().lock().scanners.clear();
    let line = error_line(&phase(&sandbox, &["apply"]).await);
    assert!(line.contains("no default vulnerability scanner"), "{line}");
    assert!(line.contains("trivy.enabled=true"), "{line}");
    {
        let mut hb = sandbox.harbor.as_ref().unwrap().lock();
        hb.scanners = scanner;
        hb.scanners.get_mut(TRIVY_SCANNER_UUID).unwrap().healthy = true;
    }
    assert_eq!(
        api_writes(&sandbox).1,
        before.1,
        "nothing written to Harbor so far"
    );

    // 403 from Harbor on the project update names the operation and the fix.
    let harbor = sandbox.standin("harbor");
    harbor.control.add_fault(Fault {
        method: Some("PUT".into()),
        path_prefix: "/api/v2.0/projects".into(),
        status: 403,
        times: Some(1),
        ..Fault::default()
    });
    let run = phase(&sandbox, &["apply"]).await;
    let line = error_line(&run);
    assert!(line.contains("403 from Harbor updating project"), "{line}");
    assert!(line.contains("lacks system admin rights"), "{line}");
    assert!(!run.stderr.contains(sandbox.get("HARBOR_ADMIN_PASSWORD")));
    harbor.control.clear_faults();

    // With the Cilium and Kyverno CRDs served, both policies are applied as well.
    let kube = kube(&sandbox).await;
    for (group, plural, kind, scope, version) in [
        (
            "cilium.io",
            "ciliumnetworkpolicies",
            "CiliumNetworkPolicy",
            "Namespaced",
            "v2",
        ),
        (
            "kyverno.io",
            "clusterpolicies",
            "ClusterPolicy",
            "Cluster",
            "v1",
        ),
    ] {
        kube.apply(
            &json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{group}")},
                "spec": {"group": group, "scope": scope,
                         "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                         "versions": [{"name": version, "served": true, "storage": true,
                                       "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
            }),
            false,
        )
        .await
        .unwrap();
        kube.wait_crd_established(&format!("{plural}.{group}"), Duration::from_secs(20))
            .await
            .unwrap();
    }
    let apply = phase(&sandbox, &["--output", "json", "apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let doc: Value = serde_json::from_str(&apply.stdout).unwrap();
    let titles = sandbox::change_titles(&doc);
    assert!(
        titles.contains(
            &"kubernetes CiliumNetworkPolicy gitlab-runners/gitlab-runner-egress".to_owned()
        ),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"kubernetes ClusterPolicy verify-images".to_owned()),
        "{titles:?}"
    );
    assert_eq!(doc["warnings"], json!([]), "no CRD warning once served");
    let policy = kube
        .get(&json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "verify-images"}}))
        .await
        .unwrap()
        .unwrap();
    let key = crate::support::vault_get(&sandbox, "transit/keys/ci-signing-key")
        .await
        .unwrap();
    let verify = &policy["spec"]["rules"][0]["verifyImages"][0];
    assert_eq!(
        verify["attestors"][0]["entries"][0]["keys"]["publicKeys"],
        key["keys"]["1"]["public_key"]
    );
    let registry = sandbox
        .get("HARBOR_URL")
        .trim_start_matches("http://")
        .to_owned();
    assert_eq!(
        verify["imageReferences"],
        json!([
            format!("{registry}/platform-services/*"),
            format!("{registry}/application-services/*")
        ])
    );
    let cnp = kube
        .get(&json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "gitlab-runner-egress", "namespace": "gitlab-runners"}}))
        .await
        .unwrap()
        .unwrap();
    // The job pods of all four pools.
    assert_eq!(
        cnp["spec"]["endpointSelector"],
        json!({
            "matchLabels": {"app": "gitlab-runner"},
            "matchExpressions": [{"key": "cicd.platform/runner-pool", "operator": "In", "values": ["shared", "build", "security", "test"]}],
        })
    );
    let check = phase(&sandbox, &["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stdout);
    for description in [
        "shared-runners",
        "build-runners",
        "security-runners",
        "test-runners",
    ] {
        assert_eq!(
            runners(&sandbox, description).len(),
            1,
            "{description}: failed runs created no extra runner"
        );
    }
    assert_eq!(all_runners(&sandbox).len(), 4);
    assert!(!apply.stdout.contains(&mattermost_url));
}
