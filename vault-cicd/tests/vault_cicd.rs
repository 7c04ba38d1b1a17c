//! Phase 13 against real servers: `OpenBao` (dev) and kube-apiserver v1.20 started by the sandbox.
//! GitLab is the sandbox stand-in serving `/-/jwks` (GitLab docs: `ci/secrets/id_token_authentication`).
//! Writes are counted from `OpenBao`'s audit log and from Kubernetes resourceVersions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sandbox::keys::{PipelineClaims, ci_id_token_claims, gitlab_id_token_claims};
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

use sandbox::PhaseRun as Run;

#[path = "vault_cicd/people_and_projects.rs"]
mod people_and_projects;
#[path = "vault_cicd/pki.rs"]
mod pki;

/// Runs the vault-cicd binary with only the given env file (no inherited settings).
async fn vault_cicd(env_file: &Path, args: &[&str]) -> Run {
    sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_vault-cicd"),
        env_file,
        args,
        &[("CICD_HTTP_RETRIES", "1")],
    )
    .await
}

async fn start() -> Sandbox {
    Sandbox::start(Options {
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("sandbox starts")
}

/// Write requests `OpenBao` served (the sandbox counts them from the audit log).
fn vault_writes(sandbox: &Sandbox) -> usize {
    sandbox.vault_writes()
}

struct Vault {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl Vault {
    fn of(sandbox: &Sandbox) -> Self {
        Self {
            http: reqwest::Client::new(),
            addr: sandbox.get("VAULT_ADDR").into(),
            token: sandbox.get("VAULT_TOKEN").into(),
        }
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/{path}", self.addr))
            .json(body);
        req = req.header("X-Vault-Token", token.unwrap_or(&self.token));
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
    async fn login(&self, mount: &str, role: &str, jwt: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/auth/{mount}/login", self.addr))
            .json(&json!({"role": role, "jwt": jwt}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

async fn kube(sandbox: &Sandbox) -> common::kube::KubeClient {
    common::kube::KubeClient::from_kubeconfig(&sandbox.kubeconfig(), "test-reader")
        .await
        .unwrap()
}

const OURS: &[(&str, &str, Option<&str>, &str)] = &[
    ("v1", "Namespace", None, "external-secrets"),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        None,
        "vault-cicd-token-reviewer",
    ),
    (
        "argoproj.io/v1alpha1",
        "Application",
        Some("argocd"),
        "external-secrets",
    ),
    (
        "external-secrets.io/v1",
        "ClusterSecretStore",
        None,
        "vault-backend",
    ),
    (
        "external-secrets.io/v1",
        "ClusterSecretStore",
        None,
        "vault-harbor-pull",
    ),
    (
        "external-secrets.io/v1",
        "ExternalSecret",
        Some("external-secrets"),
        "vault-backend-example",
    ),
];

async fn live_objects(kube: &common::kube::KubeClient) -> BTreeMap<String, Option<Value>> {
    let mut out = BTreeMap::new();
    for (api_version, kind, ns, name) in OURS {
        let mut probe =
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = ns {
            probe["metadata"]["namespace"] = json!(ns);
        }
        out.insert(format!("{kind}/{name}"), kube.get(&probe).await.unwrap());
    }
    out
}

fn resource_versions(objects: &BTreeMap<String, Option<Value>>) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_ref().map_or(String::new(), |o| {
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                }),
            )
        })
        .collect()
}

fn assert_no_secret(sandbox: &Sandbox, runs: &[&Run]) {
    let secrets = [sandbox.get("VAULT_TOKEN"), sandbox.get("GITLAB_API_TOKEN")];
    assert!(secrets.iter().all(|s| s.len() > 10));
    sandbox::support::assert_not_printed(
        runs.iter()
            .flat_map(|r| [r.stdout.as_str(), r.stderr.as_str()]),
        &secrets,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_rerun_and_logins_on_fresh_servers() {
    let sandbox = start().await;
    let env_file = sandbox.env_file();
    let vault = Vault::of(&sandbox);
    let kube = kube(&sandbox).await;
    // VAULT_CI_SERVICES' default service is a project of the group: it gets services/<id>.
    let example_id = people_and_projects::add_project(&sandbox, "example-service");
    let example_secret = format!("vault kv secret kv/services/{example_id}");
    let ns_version_before =
        resource_versions(&live_objects(&kube).await)["Namespace/external-secrets"].clone();

    // plan on fresh servers: every change listed, zero writes.
    let writes0 = vault_writes(&sandbox);
    let plan = vault_cicd(&env_file, &["plan", "--output", "json"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let titles = sandbox::change_titles(&doc);
    for expected in [
        "vault secrets engine kv",
        "vault secrets engine transit",
        "vault auth method jwt/gitlab",
        "vault auth method kubernetes",
        "vault policy ci-read-secrets",
        "vault policy ci-sign-images",
        "vault policy argocd-secrets",
        "vault policy ci-admin",
        "vault policy security-audit",
        "vault policy external-secrets",
        "vault jwt config jwt/gitlab",
        "vault jwt role gitlab-ci",
        "vault jwt role gitlab-ci-sign",
        "vault jwt role gitlab-ci-deploy",
        "vault jwt role gitlab-ci-release",
        "vault jwt role gitlab-ci-promote",
        "vault jwt role gitlab-ci-mr",
        "vault policy ci-promote",
        "vault policy ci-mr-scratch",
        "vault policy ci-deploy-ephemeral",
        "vault kubernetes config kubernetes",
        "vault kubernetes role external-secrets",
        "vault kubernetes role external-secrets-harbor-pull",
        "vault kubernetes role argocd",
        "vault transit key ci-signing-key",
        "vault kv secret kv/ci/harbor-credentials",
        "vault kv secret kv/ci/gitlab-api-token",
        example_secret.as_str(),
        "vault auth method jwt/keycloak",
        "vault jwt config jwt/keycloak",
        "vault jwt role cicd-human",
        "vault identity group cicd-admins",
        "vault identity group cicd-security",
        "vault policy ci-project-secrets",
        "kubernetes ClusterSecretStore vault-backend",
        "kubernetes ClusterSecretStore vault-harbor-pull",
        "kubernetes ExternalSecret external-secrets/vault-backend-example",
        "kubernetes Application argocd/external-secrets",
        "kubernetes ClusterRoleBinding vault-cicd-token-reviewer",
    ] {
        assert!(
            titles.iter().any(|t| t == expected),
            "plan misses {expected}: {titles:?}"
        );
    }
    assert_eq!(vault_writes(&sandbox), writes0, "plan wrote to Vault");
    let after_plan = live_objects(&kube).await;
    assert!(
        after_plan["ClusterSecretStore/vault-backend"].is_none(),
        "plan created an object"
    );
    assert_eq!(
        resource_versions(&after_plan)["Namespace/external-secrets"],
        ns_version_before,
        "plan changed the namespace"
    );

    // check: drift → 2.
    let check = vault_cicd(&env_file, &["check"]).await;
    assert_eq!(check.code, 2, "{}", check.stderr);

    // apply.
    let apply = vault_cicd(&env_file, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(vault_writes(&sandbox) > writes0);

    // Read back from the servers.
    for (name, text) in vault_cicd::desired::POLICIES {
        let (status, body) = vault.get(&format!("sys/policies/acl/{name}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["data"]["policy"].as_str().unwrap().trim(),
            text.trim(),
            "policy {name}"
        );
    }
    let (_, role) = vault.get("auth/jwt/gitlab/role/gitlab-ci").await;
    assert_eq!(
        role["data"]["bound_claims"]["project_path"],
        json!(["platform_services/*"])
    );
    assert_eq!(
        role["data"]["bound_claims"]["ref_path"],
        json!(["refs/heads/main", "refs/tags/v*"])
    );
    assert_eq!(role["data"]["bound_claims_type"], "glob");
    assert_eq!(role["data"]["token_ttl"], 3600);
    assert_eq!(
        role["data"]["token_policies"],
        json!(["ci-read-secrets", "ci-project-secrets"])
    );
    let (_, config) = vault.get("auth/jwt/gitlab/config").await;
    assert_eq!(
        config["data"]["jwks_url"],
        json!(format!("{}/-/jwks", sandbox.get("GITLAB_URL")))
    );
    assert_eq!(
        config["data"]["bound_issuer"],
        json!(sandbox.get("GITLAB_URL"))
    );
    let (_, eso_role) = vault.get("auth/kubernetes/role/external-secrets").await;
    assert_eq!(
        eso_role["data"]["bound_service_account_namespaces"],
        json!(["external-secrets"])
    );
    let (_, key) = vault.get("transit/keys/ci-signing-key").await;
    assert_eq!(key["data"]["type"], "ecdsa-p256");
    assert_eq!(key["data"]["exportable"], false);
    let (_, meta) = vault.get("kv/metadata/ci/harbor-credentials").await;
    assert_eq!(meta["data"]["custom_metadata"]["placeholder"], "true");
    // The admin token is in no KV path: phase 15 puts its read_api token here.
    let (_, gitlab_token) = vault.get("kv/data/ci/gitlab-api-token").await;
    assert_eq!(
        gitlab_token["data"]["data"]["token"],
        json!(vault_cicd::desired::PLACEHOLDER),
    );
    let (_, example) = vault
        .get(&format!("kv/metadata/services/{example_id}"))
        .await;
    assert_eq!(
        example["data"]["custom_metadata"]["project"],
        "platform_services/example-service"
    );
    let objects = live_objects(&kube).await;
    let css = objects["ClusterSecretStore/vault-backend"]
        .clone()
        .expect("ClusterSecretStore exists");
    assert_eq!(
        css["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"],
        json!({"name": "external-secrets", "namespace": "external-secrets"})
    );
    assert_eq!(css["metadata"]["labels"]["cicd-buildout/phase"], "13");
    assert!(objects.values().all(Option::is_some), "{objects:?}");
    let app = objects["Application/external-secrets"].clone().unwrap();
    assert!(
        !app["spec"]["source"]["targetRevision"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // Second apply: empty plan, zero writes (audit log and resourceVersions).
    let writes1 = vault_writes(&sandbox);
    let versions1 = resource_versions(&objects);
    let again = vault_cicd(&env_file, &["apply", "--output", "json"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again_doc: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        again_doc["changes"],
        json!([]),
        "second apply planned changes"
    );
    assert_eq!(again_doc["applied"], 0);
    assert_eq!(
        vault_writes(&sandbox),
        writes1,
        "second apply wrote to Vault"
    );
    assert_eq!(
        resource_versions(&live_objects(&kube).await),
        versions1,
        "second apply wrote to Kubernetes"
    );
    assert_eq!(vault_cicd(&env_file, &["check"]).await.code, 0);

    // GitLab-style id_tokens signed by the stand-in's key (its JWKS is what Vault was configured with).
    let key = sandbox.gitlab_signing_key();
    let issuer = sandbox.get("GITLAB_URL");
    let audience = sandbox.get("VAULT_ADDR");
    let token = |project: &str, git_ref: &str, protected: bool| {
        key.sign_jwt(&gitlab_id_token_claims(
            issuer, audience, project, git_ref, protected,
        ))
        .unwrap()
    };
    let (status, ok) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci",
            &token("platform_services/x", "main", true),
        )
        .await;
    assert_eq!(status, 200, "{ok}");
    assert!(
        ok["auth"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("ci-read-secrets"))
    );
    assert_eq!(ok["auth"]["lease_duration"], 3600);
    let ci_token = ok["auth"]["client_token"].as_str().unwrap().to_owned();
    let (read_status, _) = vault
        .post(
            "sys/capabilities-self",
            &json!({"paths": ["kv/data/ci/harbor-credentials"]}),
            Some(&ci_token),
        )
        .await;
    assert_eq!(read_status, 200);
    let (status, refused) = vault
        .login("jwt/gitlab", "gitlab-ci", &token("other/x", "main", true))
        .await;
    assert_eq!(status, 400, "another group must be refused: {refused}");
    let (status, refused) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci",
            &token("platform_services/x", "main", false),
        )
        .await;
    assert_eq!(status, 400, "an unprotected ref must be refused: {refused}");
    let (status, refused) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci",
            &token("platform_services/x", "feature/y", true),
        )
        .await;
    assert_eq!(
        status, 400,
        "a ref other than main must be refused: {refused}"
    );
    let mut wrong_aud = gitlab_id_token_claims(
        issuer,
        "https://elsewhere.example",
        "platform_services/x",
        "main",
        true,
    );
    wrong_aud["aud"] = json!("https://elsewhere.example");
    let (status, _) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci",
            &key.sign_jwt(&wrong_aud).unwrap(),
        )
        .await;
    assert_eq!(status, 400, "a token for another audience must be refused");
    let pipeline_token = |project_id: u64, pipeline: &PipelineClaims| {
        key.sign_jwt(&ci_id_token_claims(
            issuer,
            audience,
            "platform_services/x",
            project_id,
            pipeline,
        ))
        .unwrap()
    };
    let (status, refused) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-sign",
            &token("platform_services/x", "release/1.2", true),
        )
        .await;
    assert_eq!(
        status, 400,
        "a protected branch other than main does not sign: {refused}"
    );
    let (status, sign) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-sign",
            &pipeline_token(4242, &PipelineClaims::tag("v1.2.0", true)),
        )
        .await;
    assert_eq!(status, 200, "a protected release tag signs: {sign}");
    assert!(
        sign["auth"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("ci-sign-images"))
    );
    let (status, _) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-sign",
            &token("platform_services/x", "feature/z", false),
        )
        .await;
    assert_eq!(status, 400, "unprotected refs may not sign");
    let (status, _) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-sign",
            &pipeline_token(4242, &PipelineClaims::tag("v1.2.0", false)),
        )
        .await;
    assert_eq!(status, 400, "an unprotected release tag may not sign");

    // Merge request pipelines get the scratch robot's role only.
    let mr = pipeline_token(4242, &PipelineClaims::merge_request("feature/z"));
    let (status, mr_login) = vault.login("jwt/gitlab", "gitlab-ci-mr", &mr).await;
    assert_eq!(status, 200, "{mr_login}");
    assert_eq!(
        mr_login["auth"]["policies"],
        json!(["ci-mr-scratch", "default"])
    );
    for role in [
        "gitlab-ci",
        "gitlab-ci-sign",
        "gitlab-ci-deploy",
        "gitlab-ci-promote",
    ] {
        let (status, _) = vault.login("jwt/gitlab", role, &mr).await;
        assert_eq!(status, 400, "an MR pipeline logs in as {role}");
    }
    let (status, _) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-mr",
            &token("platform_services/x", "main", true),
        )
        .await;
    assert_eq!(status, 400, "a branch pipeline is not an MR pipeline");

    // Each project's pipeline reads its own promotion token, never another project's: the
    // policy is templated on the id_token's project_id (through the role's claim mappings).
    for (id, token_value) in [(4242_u64, "glpat-own"), (4243, "glpat-other")] {
        let (status, _) = vault
            .post(
                &format!("kv/data/{}", common::contract::kv_promote_token(id)),
                &json!({"data": {"token": token_value}}),
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, promote) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-promote",
            &pipeline_token(4242, &PipelineClaims::branch("main", true)),
        )
        .await;
    assert_eq!(status, 200, "{promote}");
    let promote_token = promote["auth"]["client_token"].as_str().unwrap();
    let read = |id: u64| {
        vault
            .http
            .get(format!(
                "{}/v1/kv/data/{}",
                vault.addr,
                common::contract::kv_promote_token(id)
            ))
            .header("X-Vault-Token", promote_token)
            .send()
    };
    let own = read(4242).await.unwrap();
    assert_eq!(own.status(), 200);
    let own: Value = own.json().await.unwrap();
    assert_eq!(own["data"]["data"]["token"], "glpat-own");
    assert_eq!(
        read(4243).await.unwrap().status(),
        403,
        "another project's token"
    );
    let (status, _) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci-promote",
            &pipeline_token(4242, &PipelineClaims::tag("v1.2.0", true)),
        )
        .await;
    assert_eq!(status, 400, "promotion runs on main only");

    // A real service-account token from kube-apiserver logs in through Kubernetes auth and reads kv/data/ci/….
    let sa_token = kube
        .token_request("external-secrets", "external-secrets", &[], 600)
        .await
        .unwrap();
    let (status, eso) = vault
        .login(
            "kubernetes",
            "external-secrets",
            secrecy::ExposeSecret::expose_secret(&sa_token),
        )
        .await;
    assert_eq!(status, 200, "{eso}");
    let eso_token = eso["auth"]["client_token"].as_str().unwrap();
    let read = vault
        .http
        .get(format!("{}/v1/kv/data/ci/gitlab-api-token", vault.addr))
        .header("X-Vault-Token", eso_token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "the pull-request generator's token");
    for ci_credential in [
        "ci/harbor-credentials",
        "ci/argocd-token",
        "ci/projects/4242/promote",
    ] {
        let denied = vault
            .http
            .get(format!("{}/v1/kv/data/{ci_credential}", vault.addr))
            .header("X-Vault-Token", eso_token)
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 403, "ESO must not read {ci_credential}");
    }
    let denied = vault
        .http
        .get(format!("{}/v1/sys/policies/acl/ci-admin", vault.addr))
        .header("X-Vault-Token", eso_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        denied.status(),
        403,
        "ESO must not read Vault's configuration"
    );

    // The doctor agrees.
    let doctor = vault_cicd(&env_file, &["doctor"]).await;
    assert_eq!(doctor.code, 0, "{}\n{}", doctor.stdout, doctor.stderr);
    assert!(!doctor.stdout.contains("FAIL"));

    // A policy edited by hand: the plan shows exactly that diff, apply restores it.
    let original = vault_cicd::desired::POLICIES
        .iter()
        .find(|(n, _)| *n == "ci-admin")
        .unwrap()
        .1;
    let edited = original.replace(
        "path \"sys/audit\" {\n  capabilities = [\"read\", \"sudo\"]\n}",
        "path \"sys/audit\" {\n  capabilities = [\"read\", \"sudo\", \"update\"]\n}",
    );
    assert_ne!(edited, original);
    vault
        .post(
            "sys/policies/acl/ci-admin",
            &json!({"policy": edited}),
            None,
        )
        .await;
    let drift = vault_cicd(&env_file, &["plan"]).await;
    assert!(
        drift
            .stdout
            .contains("1 change(s): 0 to create, 1 to update"),
        "{}",
        drift.stdout
    );
    assert!(drift.stdout.contains("~ vault policy ci-admin"));
    assert!(
        drift
            .stdout
            .contains("-   capabilities = [\"read\", \"sudo\", \"update\"]"),
        "{}",
        drift.stdout
    );
    assert!(
        drift
            .stdout
            .contains("+   capabilities = [\"read\", \"sudo\"]"),
        "{}",
        drift.stdout
    );
    let diff_lines = drift
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("- ") || l.trim_start().starts_with("+ "))
        .count();
    assert_eq!(
        diff_lines, 2,
        "only the edited line differs:\n{}",
        drift.stdout
    );
    assert_eq!(vault_cicd(&env_file, &["check"]).await.code, 2);
    assert_eq!(vault_cicd(&env_file, &["apply"]).await.code, 0);
    let (_, restored) = vault.get("sys/policies/acl/ci-admin").await;
    assert_eq!(
        restored["data"]["policy"].as_str().unwrap().trim(),
        original.trim()
    );

    // A secret set by an operator is never overwritten.
    vault
        .post(
            "kv/data/ci/harbor-credentials",
            &json!({"data": {"username": "robot$ci-push", "password": "operator-set-value"}}),
            None,
        )
        .await;
    assert_eq!(vault_cicd(&env_file, &["apply"]).await.code, 0);
    let (_, kept) = vault.get("kv/data/ci/harbor-credentials").await;
    assert_eq!(kept["data"]["data"]["password"], "operator-set-value");

    people_and_projects::check(&sandbox, &env_file, &vault, example_id).await;

    assert_no_secret(&sandbox, &[&plan, &check, &apply, &again, &doctor, &drift]);
}

fn env_with(
    sandbox: &Sandbox,
    dir: &Path,
    name: &str,
    changes: &[(&str, Option<&str>)],
) -> PathBuf {
    let mut vars: BTreeMap<String, String> = sandbox.env.clone();
    for (key, value) in changes {
        match value {
            Some(v) => vars.insert((*key).to_owned(), (*v).to_owned()),
            None => vars.remove(*key),
        };
    }
    let path = dir.join(name);
    std::fs::write(
        &path,
        vars.iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_1_with_one_line_and_writes_nothing() {
    let sandbox = start().await;
    let dir = tempfile::tempdir().unwrap();
    let kube = kube(&sandbox).await;
    let writes = vault_writes(&sandbox);
    let missing_init = dir.path().join("no-vault-init.json");
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "missing token",
            env_with(
                &sandbox,
                dir.path(),
                "a.env",
                &[
                    ("VAULT_TOKEN", None),
                    ("VAULT_INIT_FILE", Some(missing_init.to_str().unwrap())),
                ],
            ),
            "no Vault token: set VAULT_TOKEN",
        ),
        (
            "wrong token",
            env_with(
                &sandbox,
                dir.path(),
                "b.env",
                &[("VAULT_TOKEN", Some("not-the-root-token-123"))],
            ),
            "403 from Vault",
        ),
        (
            "unreachable Vault",
            env_with(
                &sandbox,
                dir.path(),
                "c.env",
                &[("VAULT_ADDR", Some("http://127.0.0.1:1"))],
            ),
            "could not reach Vault",
        ),
        (
            "missing kubeconfig",
            env_with(
                &sandbox,
                dir.path(),
                "d.env",
                &[("KUBECONFIG", Some("/nonexistent/kubeconfig.yaml"))],
            ),
            "kubeconfig /nonexistent/kubeconfig.yaml not found",
        ),
    ];
    let malformed = dir.path().join("e.env");
    std::fs::write(&malformed, "DOMAIN=x\nthis is not an assignment\n").unwrap();
    let mut all = cases;
    all.push(("malformed .env", malformed, "malformed env file"));
    for (what, env_file, expected) in &all {
        let run = vault_cicd(env_file, &["apply"]).await;
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        let error_lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(
            error_lines.len(),
            1,
            "{what}: one error line expected:\n{}",
            run.stderr
        );
        assert!(
            error_lines[0].contains(expected),
            "{what}: {}",
            error_lines[0]
        );
        assert!(
            run.stdout.is_empty(),
            "{what}: nothing planned or applied: {}",
            run.stdout
        );
        assert!(!run.stderr.contains(sandbox.get("VAULT_TOKEN")));
    }
    // The wrong-token message names the fix.
    let wrong = vault_cicd(&all[1].1, &["plan"]).await;
    assert!(
        wrong.stderr.contains("use the root token"),
        "{}",
        wrong.stderr
    );
    assert_eq!(vault_writes(&sandbox), writes, "bad input wrote to Vault");
    assert!(live_objects(&kube).await["ClusterSecretStore/vault-backend"].is_none());
}
