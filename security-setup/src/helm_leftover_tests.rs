//! The bash phase's Helm release, without servers: `helm uninstall`'s deletions (manifest
//! objects in uninstall order, then every revision Secret), each "left by the bash phase", and
//! the objects that stay (kept by policy, without Helm's annotations of the release, tracked by
//! Argo CD). The decoding itself is tested in `common::helm`.

use common::contract::LEFT_BY_BASH;
use common::helm::{StoredRevision, secret_name};
use common::plan::Plan;
use serde_json::{Value, json};

use crate::helm_leftover::{BASH_RELEASE, LiveRelease, ManifestObject, Op, diff};

const NS: &str = "gitlab-runners";

fn helm_annotations() -> Value {
    json!({"meta.helm.sh/release-name": BASH_RELEASE, "meta.helm.sh/release-namespace": NS})
}

/// An object of the manifest and its live copy (`annotations` on the live one).
fn object(kind: &str, name: &str, annotations: &Value) -> ManifestObject {
    let api_version = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    let manifest = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}});
    let mut live = manifest.clone();
    live["metadata"]["uid"] = json!(format!("uid-{kind}"));
    live["metadata"]["annotations"] = annotations.clone();
    ManifestObject {
        manifest,
        live: Some(live),
    }
}

fn revision(n: u64, status: &str) -> (StoredRevision, Value) {
    let name = secret_name(BASH_RELEASE, n);
    let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "uid": format!("uid-v{n}")}});
    (
        StoredRevision {
            secret_name: name,
            revision: n,
            status: status.into(),
        },
        live,
    )
}

fn release() -> LiveRelease {
    let mut argo_tracked = helm_annotations();
    argo_tracked["argocd.argoproj.io/tracking-id"] =
        json!("gitlab-runner-security:apps/Deployment:gitlab-runners/gitlab-runner-security");
    let mut keep = helm_annotations();
    keep["helm.sh/resource-policy"] = json!("keep");
    LiveRelease {
        revisions: vec![revision(1, "superseded"), revision(2, "deployed")],
        objects: vec![
            object(
                "ServiceAccount",
                "gitlab-runner-security",
                &helm_annotations(),
            ),
            object("Secret", "gitlab-runner-security", &helm_annotations()),
            object("ConfigMap", "gitlab-runner-security", &helm_annotations()),
            object("Deployment", "gitlab-runner-security", &helm_annotations()),
            // Since the bash run: re-created by someone else, tracked by Argo CD, or kept.
            object("Service", "gitlab-runner-security", &json!({})),
            object("Role", "gitlab-runner-security", &argo_tracked),
            object("ConfigMap", "gitlab-runner-security-keep", &keep),
            ManifestObject {
                live: None,
                ..object("RoleBinding", "gone-already", &json!({}))
            },
        ],
    }
}

#[test]
fn uninstall_deletes_the_manifest_objects_then_every_revision() {
    let mut plan: Plan<Op> = Plan::new("16 security-setup");
    diff(&mut plan, &release(), NS, |op| op);
    let titles: Vec<String> = plan
        .changes
        .iter()
        .map(common::plan::Change::title)
        .collect();
    assert_eq!(
        titles,
        [
            "kubernetes Deployment gitlab-runners/gitlab-runner-security",
            "kubernetes Secret gitlab-runners/gitlab-runner-security",
            "kubernetes ConfigMap gitlab-runners/gitlab-runner-security",
            "kubernetes ServiceAccount gitlab-runners/gitlab-runner-security",
            "kubernetes Secret gitlab-runners/sh.helm.release.v1.gitlab-runner-security.v1",
            "kubernetes Secret gitlab-runners/sh.helm.release.v1.gitlab-runner-security.v2",
        ]
    );
    for change in &plan.changes {
        assert_eq!(change.action, common::plan::Action::Delete);
        assert!(
            change.reason.as_deref().unwrap().starts_with(LEFT_BY_BASH),
            "{}",
            change.title()
        );
    }
    match &plan.changes[0].op {
        Op::Delete { target } => assert_eq!(
            target,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gitlab-runner-security", "namespace": NS, "uid": "uid-Deployment"}}),
            "deleted by name, guarded by the uid observed"
        ),
    }
    let warnings = plan.warnings.join("\n");
    for kept in [
        "Service gitlab-runners/gitlab-runner-security is in the manifest",
        "Role gitlab-runners/gitlab-runner-security of Helm release gitlab-runner-security in gitlab-runners is tracked by Argo CD",
        "ConfigMap gitlab-runners/gitlab-runner-security-keep of Helm release gitlab-runner-security in gitlab-runners is kept",
    ] {
        assert!(warnings.contains(kept), "{kept} in {warnings}");
    }
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn no_release_secret_no_change() {
    let mut plan: Plan<Op> = Plan::new("16 security-setup");
    // Objects with Helm's annotations but no release Secret: nothing says they are the bash
    // release's (our rule starts from its stored manifest, as helm uninstall does).
    let live = LiveRelease {
        revisions: Vec::new(),
        ..release()
    };
    diff(&mut plan, &live, NS, |op| op);
    assert!(plan.is_empty() && plan.warnings.is_empty(), "{plan}");
}

#[test]
fn another_release_namespace_in_the_annotation_is_not_this_release() {
    let mut other = helm_annotations();
    other["meta.helm.sh/release-namespace"] = json!("elsewhere");
    let live = LiveRelease {
        revisions: vec![revision(3, "deployed")],
        objects: vec![object("ConfigMap", "gitlab-runner-security", &other)],
    };
    let mut plan: Plan<Op> = Plan::new("16 security-setup");
    diff(&mut plan, &live, NS, |op| op);
    assert_eq!(
        plan.changes
            .iter()
            .map(common::plan::Change::title)
            .collect::<Vec<_>>(),
        ["kubernetes Secret gitlab-runners/sh.helm.release.v1.gitlab-runner-security.v3"],
        "only the release history goes"
    );
}
