//! The leftovers of the bash phase 15, without servers: each is found by its exact bash identity
//! (research note section 3.1–3.4), every change says "left by the bash phase", and no rule matches what
//! this phase creates itself. The objects below are shaped as the API server returns what
//! `kubectl apply` made of the bash manifests (the integration test makes them with kubectl).

use common::contract::{ARGOCD_APP_PROJECT_CRD, LEFT_BY_BASH};
use common::kube::LAST_APPLIED_ANNOTATION;
use serde_json::{Value, json};

use crate::desired;
use crate::leftovers::{
    self, LiveLeftovers, Op as LeftoverOp, is_bash_app_project, is_bash_application_set,
    is_bash_cleaner, is_bash_token_secret,
};
use crate::reconcile::{FIELD_MANAGER, Observed, Op, diff};
use crate::settings::Settings;

const TOKEN: &str = "glpat-bash-literal-token-0001";
const TOKEN_B64: &str = "Z2xwYXQtYmFzaC1saXRlcmFsLXRva2VuLTAwMDE=";

fn settings() -> Settings {
    Settings::load(&common::config::PlatformConfig::example(&[]).unwrap()).unwrap()
}

fn kubectl_applied(mut object: Value, rv: &str) -> Value {
    let applied = object.to_string();
    object["metadata"]["resourceVersion"] = json!(rv);
    object["metadata"]["uid"] = json!(format!("uid-{rv}"));
    object["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: applied});
    object["metadata"]["managedFields"] = json!([
        {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": object["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": {}},
    ]);
    object
}

fn bash_cleaner() -> Value {
    kubectl_applied(
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "ephemeral-ns-cleaner", "namespace": "argocd"},
               "spec": {"schedule": "*/30 * * * *", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
                        "jobTemplate": {"spec": {"template": {"spec": {"serviceAccountName": "argocd-server", "restartPolicy": "Never",
                            "containers": [{"name": "cleaner", "image": "bitnami/kubectl:latest", "command": ["/bin/bash", "-c", "echo"]}]}}}}}}),
        "11",
    )
}

fn bash_application_set() -> Value {
    kubectl_applied(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "ephemeral-mr-envs", "namespace": "argocd"},
               "spec": {"generators": [{"pullRequest": {"gitlab": {"project": "platform_services", "api": "https://gitlab.example.com",
                            "tokenRef": {"secretName": "argocd-gitlab-token", "key": "token"}}, "requeueAfterSeconds": 60}}],
                        "template": {"metadata": {"name": "ephemeral-{{branch_slug}}"},
                                     "spec": {"project": "ephemeral", "source": {"repoURL": "{{clone_url}}", "targetRevision": "{{head_sha}}", "path": "deploy/overlays/rke2-prod"},
                                              "destination": {"server": "https://kubernetes.default.svc", "namespace": "ephemeral-{{number}}"}}}}}),
        "12",
    )
}

fn bash_token_secret() -> Value {
    let mut secret = kubectl_applied(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-gitlab-token", "namespace": "argocd"}, "data": {"token": TOKEN_B64}}),
        "13",
    );
    secret["type"] = json!("Opaque");
    secret
}

fn bash_app_project(name: &str, rv: &str) -> Value {
    let role = leftovers::bash_app_project_role(name).unwrap_or("admin");
    kubectl_applied(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": name, "namespace": "argocd"},
               "spec": {"description": format!("{name} (bash)"), "sourceRepos": ["*"],
                        "destinations": [{"server": "https://kubernetes.default.svc", "namespace": format!("{name}-*")}],
                        "roles": [{"name": role, "groups": ["developers"], "policies": [format!("p, proj:{name}:{role}, applications, *, {name}/*, allow")]}]}}),
        rv,
    )
}

fn with_leftovers(leftovers: LiveLeftovers) -> Observed {
    Observed {
        stored: None,
        listed: Vec::new(),
        now: 1_800_000_000,
        leftovers,
        generator: crate::generator_token::converged_for_tests(1_800_000_000 / 86_400),
    }
}

fn all_leftovers() -> LiveLeftovers {
    LiveLeftovers {
        cleaner: Some(bash_cleaner()),
        application_set: Some(bash_application_set()),
        token_secret: Some(bash_token_secret()),
        app_projects: vec![
            bash_app_project("production", "21"),
            bash_app_project("staging", "22"),
            bash_app_project("ephemeral", "23"),
        ],
    }
}

#[test]
fn adopt_every_leftover_of_the_bash_phase_before_the_token() {
    let plan = diff(&settings(), &with_leftovers(all_leftovers())).unwrap();
    let titles: Vec<String> = plan
        .changes
        .iter()
        .map(common::plan::Change::title)
        .collect();
    assert_eq!(
        titles,
        [
            "kubernetes CronJob argocd/ephemeral-ns-cleaner",
            "kubernetes ApplicationSet argocd/ephemeral-mr-envs",
            "kubernetes Secret argocd/argocd-gitlab-token",
            "kubernetes AppProject argocd/production",
            "kubernetes AppProject argocd/staging",
            "kubernetes AppProject argocd/ephemeral",
            "argocd project token proj:ephemeral:pipeline → kv/ci/argocd-token",
        ],
        "leftovers first: the token is minted for the adopted project"
    );
    for change in &plan.changes[..6] {
        assert!(change.is_bash_leftover(), "{}", change.title());
        assert!(change.reason.as_deref().unwrap().starts_with(LEFT_BY_BASH));
    }
    assert!(!plan.changes[6].is_bash_leftover());
    let text = plan.to_string();
    let json = plan.to_json().to_string();
    for secret in [TOKEN, TOKEN_B64] {
        assert!(
            !text.contains(secret) && !json.contains(secret),
            "the token leaked"
        );
    }
    insta::assert_snapshot!(text);
}

#[test]
fn the_secret_is_never_deleted_only_its_kubectl_copy_of_the_token() {
    let plan = diff(&settings(), &with_leftovers(all_leftovers())).unwrap();
    let secret = plan
        .changes
        .iter()
        .find(|c| c.resource == "kubernetes Secret")
        .unwrap();
    assert_eq!(secret.action, common::plan::Action::Update);
    match &secret.op {
        Op::Leftover(LeftoverOp::Patch { target, ops }) => {
            assert_eq!(
                target,
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-gitlab-token", "namespace": "argocd"}}),
                "the op carries no data"
            );
            assert_eq!(
                ops,
                &json!([
                    {"op": "test", "path": "/metadata/resourceVersion", "value": "13"},
                    {"op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"},
                ])
            );
        }
        other => panic!("a guarded patch, not {other:?}"),
    }
}

#[test]
fn an_app_project_reset_clears_ownership_and_only_what_bash_alone_set() {
    let s = settings();
    let desired = desired::app_projects(&s);
    let mut live = bash_app_project("staging", "22");
    live["spec"]["signatureKeys"] = json!([{"keyID": "ABC"}]);
    let ours = desired
        .iter()
        .find(|p| p["metadata"]["name"] == "staging")
        .unwrap();
    assert_eq!(
        leftovers::app_project_reset(&live, ours),
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "22"},
            {"op": "add", "path": "/metadata/managedFields", "value": [{}]},
            {"op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"},
            {"op": "remove", "path": "/spec/signatureKeys"},
        ]),
        "description, sourceRepos, destinations and roles are ours: our apply replaces them"
    );
    let plan = diff(
        &s,
        &with_leftovers(LiveLeftovers {
            app_projects: vec![live],
            ..LiveLeftovers::default()
        }),
    )
    .unwrap();
    match &plan.changes[0].op {
        Op::Leftover(LeftoverOp::Adopt { object, crd, .. }) => {
            assert_eq!(object, ours, "then exactly our AppProject is applied");
            assert_eq!(*crd, Some(ARGOCD_APP_PROJECT_CRD));
        }
        other => panic!("an adoption, not {other:?}"),
    }
    assert_eq!(
        leftovers::adopted_app_projects(&plan_input_projects(), "argocd"),
        ["production"]
    );
}

#[test]
fn after_our_apply_only_our_managed_fields_stay() {
    let applied = json!({"metadata": {"resourceVersion": "40", "managedFields": [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        {"manager": "before-first-apply", "operation": "Update", "fieldsV1": {"f:spec": {}}},
    ]}});
    assert_eq!(
        leftovers::keep_only_manager(&applied, FIELD_MANAGER),
        Some(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "40"},
            {"op": "add", "path": "/metadata/managedFields", "value": [
                {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
            ]},
        ]))
    );
    let mut ours_only = applied.clone();
    ours_only["metadata"]["managedFields"]
        .as_array_mut()
        .unwrap()
        .pop();
    assert_eq!(
        leftovers::keep_only_manager(&ours_only, FIELD_MANAGER),
        None,
        "nothing to drop: no write"
    );
}

/// A bash `production` and an `AppProject` only we ever wrote.
fn plan_input_projects() -> LiveLeftovers {
    let mut ours = desired::app_projects(&settings())[1].clone();
    ours["metadata"]["managedFields"] =
        json!([{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {}}]);
    LiveLeftovers {
        app_projects: vec![bash_app_project("production", "21"), ours],
        ..LiveLeftovers::default()
    }
}

#[test]
fn the_identity_rules_never_match_what_this_phase_creates() {
    let s = settings();
    // Our own cleaner, even if someone moved it to the bash name and namespace.
    let mut cleaner = desired::cleaner_cron_job();
    assert!(!is_bash_cleaner(&cleaner, "argocd"));
    cleaner["metadata"]["name"] = json!("ephemeral-ns-cleaner");
    cleaner["metadata"]["namespace"] = json!("argocd");
    assert!(
        !is_bash_cleaner(&cleaner, "argocd"),
        "labelled, pinned image, own service account"
    );
    for set in desired::ephemeral_application_sets(&s) {
        let mut renamed = set.clone();
        renamed["metadata"]["name"] = json!("ephemeral-mr-envs");
        assert!(!is_bash_application_set(&set, "argocd"));
        assert!(!is_bash_application_set(&renamed, "argocd"));
    }
    // The Secret ESO creates for our ExternalSecret: owned by it, no kubectl annotation.
    let eso = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": "argocd-gitlab-token", "namespace": "argocd",
                                  "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": "argocd-gitlab-token", "uid": "u", "controller": true}]},
                     "data": {"token": "eA=="}});
    assert!(!is_bash_token_secret(&eso, "argocd"));
    // Our AppProjects as our server-side apply leaves them.
    for mut project in desired::app_projects(&s) {
        project["metadata"]["managedFields"] =
            json!([{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {}}]);
        assert!(
            !is_bash_app_project(&project, "argocd"),
            "{}",
            project["metadata"]["name"]
        );
    }
    let plan = diff(&s, &with_leftovers(plan_input_projects())).unwrap();
    assert_eq!(
        plan.changes
            .iter()
            .filter(|c| c.is_bash_leftover())
            .map(common::plan::Change::title)
            .collect::<Vec<_>>(),
        ["kubernetes AppProject argocd/production"]
    );
}

/// One change to a bash object, which must make it no longer the bash phase's.
type Edit = fn(&mut Value);

#[test]
fn a_name_alone_is_never_enough() {
    let ns = "argocd";
    assert!(is_bash_cleaner(&bash_cleaner(), ns));
    let variants: [(&str, Edit); 4] = [
        ("another image", |c| {
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("bitnami/kubectl:1.32.0");
        }),
        ("another service account", |c| {
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] =
                json!("cleaner");
        }),
        ("a second container", |c| {
            let first =
                c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].clone();
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(first);
        }),
        ("our label", |c| {
            c["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "cicd-buildout"});
        }),
    ];
    for (what, change) in variants {
        let mut cleaner = bash_cleaner();
        change(&mut cleaner);
        assert!(!is_bash_cleaner(&cleaner, ns), "{what}");
    }
    assert!(
        !is_bash_cleaner(&bash_cleaner(), "argo"),
        "another namespace"
    );

    assert!(is_bash_application_set(&bash_application_set(), ns));
    let mut set = bash_application_set();
    set["spec"]["template"]["spec"]["source"]["path"] = json!("deploy/overlays/ephemeral");
    assert!(!is_bash_application_set(&set, ns), "another path");
    let mut set = bash_application_set();
    set["spec"]["generators"][0]["pullRequest"]["gitlab"]["tokenRef"]["secretName"] =
        json!("other");
    assert!(!is_bash_application_set(&set, ns), "another token Secret");

    assert!(is_bash_token_secret(&bash_token_secret(), ns));
    let mut secret = bash_token_secret();
    secret["data"]["extra"] = json!("eA==");
    assert!(!is_bash_token_secret(&secret, ns), "a second key");
    let mut secret = bash_token_secret();
    secret["metadata"]["ownerReferences"] =
        json!([{"kind": "Deployment", "name": "someone", "uid": "u"}]);
    assert!(!is_bash_token_secret(&secret, ns), "someone else's");
    let mut secret = bash_token_secret();
    secret["metadata"]["annotations"] = json!({});
    assert!(
        !is_bash_token_secret(&secret, ns),
        "nothing of kubectl left: done"
    );

    let mut project = bash_app_project("ephemeral", "1");
    project["metadata"]["managedFields"][0]["manager"] = json!("kubectl-edit");
    assert!(
        !is_bash_app_project(&project, ns),
        "a hand edit is not the bash apply"
    );
    assert!(!is_bash_app_project(&bash_app_project("platform", "1"), ns));
}

#[test]
fn a_kubectl_applied_project_of_someone_else_is_not_the_bash_phases() {
    // The same name and kubectl's manager, but a manifest without the bash phase's role: a
    // user's own `kubectl apply`, not a leftover.
    let mut mine = bash_app_project("production", "41");
    mine["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json!(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "production"},
               "spec": {"roles": [{"name": "ops"}]}})
        .to_string()
    );
    assert!(!is_bash_app_project(&mine, "argocd"));
    assert!(is_bash_app_project(
        &bash_app_project("production", "42"),
        "argocd"
    ));
}

#[test]
fn an_adoption_stopped_after_its_reset_is_finished_by_the_rerun() {
    // The reset patch went through, our apply or the last patch did not: no kubectl manager any
    // more, `before-first-apply` co-owns our fields.
    let mut project = bash_app_project("staging", "77");
    project["metadata"]["annotations"] = json!({});
    project["metadata"]["managedFields"] = json!([
        {"manager": leftovers::BEFORE_FIRST_APPLY, "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {}},
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}},
    ]);
    assert!(!is_bash_app_project(&project, "argocd"));
    let live = LiveLeftovers {
        cleaner: None,
        application_set: None,
        token_secret: None,
        app_projects: vec![project],
    };
    let plan = diff(&settings(), &with_leftovers(live)).unwrap();
    let finish: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.name == "argocd/staging" && c.is_bash_leftover())
        .collect();
    assert_eq!(finish.len(), 1, "{plan}");
    let Op::Leftover(LeftoverOp::Patch { ops, .. }) = &finish[0].op else {
        panic!("a managedFields patch: {:?}", finish[0].op);
    };
    assert_eq!(ops[0]["op"], "test", "guarded by the resourceVersion");
    assert_eq!(
        ops[1]["value"],
        json!([{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}}])
    );
}
