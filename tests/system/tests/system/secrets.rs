//! Who can read which secret, after phases 12–18 ran (issue 16): every KV path the phases created,
//! tried by every subject that logs in to the real `OpenBao`, printed as a table.
//!
//! Subjects log in as they do on the platform: pipelines with `id_tokens` signed by the GitLab
//! stand-in's key (claims of `Gitlab::Ci::JwtV2`), service accounts with kube-apiserver
//! `TokenRequest` tokens, people with an ID token from the Keycloak stand-in (password grant of
//! the public client `vault`; sandbox/fixtures/keycloak-docs/oidc-endpoints.md).
//!
//! The expected grants are written out below, path pattern by path pattern: a read the table does
//! not allow must be 403, and one it allows must be 200. On top: no CI subject reads any admin
//! credential of the platform (every value of the settings file whose name says TOKEN, PASSWORD or
//! SECRET), and no KV value anywhere is such a credential.

use std::collections::BTreeSet;

use sandbox::keys::PipelineClaims;
use serde_json::{Value, json};

use crate::world::{GROUP, World};

/// The two projects whose main pipelines are compared (delivered services, seeded by phase 18).
const PROJECT_A: &str = "packet-relay";
const PROJECT_B: &str = "netops-dashboard";

/// Every KV v2 path under `kv/` (recursive LIST of the metadata), read with the root token.
fn kv_paths(world: &World) -> Vec<String> {
    world.rt.block_on(async {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        let mut folders = vec![String::new()];
        while let Some(folder) = folders.pop() {
            let listed: Value = http
                .request(
                    reqwest::Method::from_bytes(b"LIST").expect("LIST"),
                    format!("{}/v1/kv/metadata/{folder}", world.get("VAULT_ADDR")),
                )
                .header("X-Vault-Token", world.get("VAULT_TOKEN"))
                .send()
                .await
                .expect("OpenBao")
                .json()
                .await
                .unwrap_or(Value::Null);
            for key in listed["data"]["keys"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if key.ends_with('/') {
                    folders.push(format!("{folder}{key}"));
                } else {
                    out.push(format!("{folder}{key}"));
                }
            }
        }
        out.sort();
        out
    })
}

/// `*` matches within one path segment; `**` matches the rest.
fn matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("**") {
        return path.starts_with(prefix);
    }
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == t.len() && p.iter().zip(&t).all(|(a, b)| *a == "*" || a == b)
}

struct Subject {
    name: String,
    /// Vault token, or `None` when the login was refused (a failure reported below).
    token: String,
    /// Path patterns the subject may read; everything else must be 403.
    allowed: Vec<String>,
    ci: bool,
}

fn vault_json(
    world: &World,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    world.rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/v1/{path}", world.get("VAULT_ADDR")))
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("OpenBao");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

fn login(world: &World, mount: &str, role: &str, jwt: &str) -> String {
    let (status, answer) = world.rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/auth/{mount}/login", world.get("VAULT_ADDR")))
            .json(&json!({"role": role, "jwt": jwt}))
            .send()
            .await
            .expect("OpenBao");
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    });
    assert_eq!(status, 200, "login {mount} role {role} refused: {answer}");
    answer["auth"]["client_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

fn service_account_login(world: &World, namespace: &str, name: &str, role: &str) -> String {
    let kube = world.kube();
    world
        .rt
        .block_on(kube.apply(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}),
            false,
        ))
        .ok();
    let token = world
        .rt
        .block_on(kube.token_request(namespace, name, &[], 600))
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    login(
        world,
        "kubernetes",
        role,
        secrecy::ExposeSecret::expose_secret(&token),
    )
}

fn person_login(world: &World, user: &str) -> String {
    let password = format!("pw-{user}-{}", sandbox::keys::random_token(8));
    world
        .sandbox
        .keycloak
        .as_ref()
        .expect("in-process Keycloak")
        .lock()
        .passwords
        .insert(user.to_owned(), password.clone());
    let answer: Value = world.rt.block_on(async {
        reqwest::Client::new()
            .post(format!(
                "{}/realms/{}/protocol/openid-connect/token",
                world.get("KEYCLOAK_URL"),
                world.get("KC_REALM")
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "vault"),
                ("username", user),
                ("password", password.as_str()),
                ("scope", "openid"),
            ])
            .send()
            .await
            .expect("Keycloak")
            .json()
            .await
            .expect("JSON")
    });
    let jwt = answer["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    login(world, "jwt/keycloak", "cicd-human", jwt)
}

/// The platform's admin credentials: each value of the settings file named like a credential.
fn admin_credentials(world: &World) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(world.sandbox.env_file()).expect("the env file");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| {
            ["TOKEN", "PASSWORD", "SECRET"]
                .iter()
                .any(|w| k.contains(w))
                && v.len() >= 8
        })
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

pub fn every_subject_reads_exactly_its_paths(world: &World) {
    let a_path = format!("{GROUP}/{PROJECT_A}");
    let b_path = format!("{GROUP}/{PROJECT_B}");
    let (a, b) = (world.project_id(&a_path), world.project_id(&b_path));
    // The teams' own service secrets, in the per-project layout (onboarding writes these; here
    // the test does, with the root token).
    for (id, value) in [(a, "postgres://a@db/a"), (b, "postgres://b@db/b")] {
        let (status, _) = vault_json(
            world,
            reqwest::Method::POST,
            &format!("kv/data/services/{id}"),
            world.get("VAULT_TOKEN"),
            Some(json!({"data": {"database-url": value}})),
        );
        assert_eq!(status, 200);
    }
    let paths = kv_paths(world);
    let ci = |name: String,
              role: &str,
              project: &str,
              pipeline: PipelineClaims,
              allowed: Vec<String>| Subject {
        token: login(
            world,
            common::contract::JWT_MOUNT,
            role,
            &world.id_token(project, &pipeline),
        ),
        name,
        allowed,
        ci: true,
    };
    let own = |id: u64| {
        vec![
            "ci/harbor-credentials".to_owned(),
            format!("services/{id}"),
            format!("services/{id}/**"),
        ]
    };
    let subjects = vec![
        ci(
            format!("main pipeline {PROJECT_A}"),
            "gitlab-ci",
            &a_path,
            PipelineClaims::branch("main", true),
            own(a),
        ),
        ci(
            format!("main pipeline {PROJECT_B}"),
            "gitlab-ci",
            &b_path,
            PipelineClaims::branch("main", true),
            own(b),
        ),
        ci(
            format!("release tag v9.9.9 {PROJECT_A}"),
            "gitlab-ci-release",
            &a_path,
            PipelineClaims::tag("v9.9.9", true),
            vec!["ci/harbor-credentials".into()],
        ),
        ci(
            format!("MR pipeline {PROJECT_A}"),
            "gitlab-ci-mr",
            &a_path,
            PipelineClaims::merge_request("feature/x"),
            vec!["ci/harbor-scratch-credentials".into()],
        ),
        ci(
            format!("deploy-ephemeral {PROJECT_A}"),
            "gitlab-ci-deploy",
            &a_path,
            PipelineClaims::branch("main", true),
            vec!["ci/argocd-token".into()],
        ),
        ci(
            format!("promote {PROJECT_A}"),
            "gitlab-ci-promote",
            &a_path,
            PipelineClaims::branch("main", true),
            vec![format!("ci/projects/{a}/promote")],
        ),
        Subject {
            name: "ESO (external-secrets)".into(),
            token: service_account_login(
                world,
                "external-secrets",
                "external-secrets",
                "external-secrets",
            ),
            allowed: vec![
                "ci/gitlab-api-token".into(),
                "ci/runners/**".into(),
                "monitoring/dora-collector".into(),
                "services/**".into(),
            ],
            ci: false,
        },
        Subject {
            name: "ESO (harbor pull store)".into(),
            token: service_account_login(
                world,
                "external-secrets",
                "external-secrets",
                common::contract::PULL_STORE_VAULT_ROLE,
            ),
            allowed: vec![common::contract::KV_HARBOR_PULL.into()],
            ci: false,
        },
        Subject {
            name: "Argo CD (argocd-server)".into(),
            token: service_account_login(world, "argocd", "argocd-server", "argocd"),
            allowed: vec!["argocd/**".into()],
            ci: false,
        },
        Subject {
            name: "alice (cicd-admins)".into(),
            token: person_login(world, "alice"),
            allowed: vec!["ci/**".into(), "services/**".into()],
            ci: false,
        },
        Subject {
            name: "carol (cicd-security)".into(),
            token: person_login(world, "carol"),
            allowed: vec![],
            ci: false,
        },
        Subject {
            name: "dave (cicd-developers)".into(),
            token: person_login(world, "dave"),
            allowed: vec![],
            ci: false,
        },
    ];

    // Read every path as every subject.
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for subject in &subjects {
        let mut cells = Vec::new();
        for path in &paths {
            let (status, _) = vault_json(
                world,
                reqwest::Method::GET,
                &format!("kv/data/{path}"),
                &subject.token,
                None,
            );
            let allowed = subject.allowed.iter().any(|p| matches(p, path));
            let ok = if allowed {
                status == 200
            } else {
                status == 403
            };
            if !ok {
                failures.push(format!(
                    "{} reading kv/{path}: {status}, expected {}",
                    subject.name,
                    if allowed { 200 } else { 403 }
                ));
            }
            cells.push(match (status, ok) {
                (200, true) => "read",
                (403, true) => "-",
                _ => "WRONG",
            });
        }
        rows.push((subject.name.clone(), cells));
    }
    print_matrix(&paths, &rows);

    // The two projects never see each other's secrets (the table says so too; stated plainly).
    for (name, other) in [(&subjects[0], b), (&subjects[1], a)] {
        let (status, _) = vault_json(
            world,
            reqwest::Method::GET,
            &format!("kv/data/services/{other}"),
            &name.token,
            None,
        );
        assert_eq!(status, 403, "{} reads project {other}'s secrets", name.name);
    }
    // No admin credential anywhere in KV, so no CI subject can read one.
    let admin = admin_credentials(world);
    assert!(
        admin.iter().any(|(k, _)| k == "GITLAB_API_TOKEN"),
        "{:?}",
        admin.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let mut holding = BTreeSet::new();
    for path in &paths {
        let (_, secret) = vault_json(
            world,
            reqwest::Method::GET,
            &format!("kv/data/{path}"),
            world.get("VAULT_TOKEN"),
            None,
        );
        for (key, value) in &admin {
            if secret["data"]["data"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, v)| v.as_str() == Some(value.as_str()))
            {
                holding.insert(format!("kv/{path} holds {key}"));
            }
        }
    }
    assert!(
        holding.is_empty(),
        "admin credentials stored in KV: {holding:?}"
    );
    assert!(subjects.iter().filter(|s| s.ci).count() >= 4);
    // The security runner's token: no CI subject reads it.
    for s in subjects.iter().filter(|s| s.ci) {
        for path in paths.iter().filter(|p| p.starts_with("ci/runners/")) {
            let (status, _) = vault_json(
                world,
                reqwest::Method::GET,
                &format!("kv/data/{path}"),
                &s.token,
                None,
            );
            assert_eq!(status, 403, "{} reads runner token kv/{path}", s.name);
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong reads:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The table on stderr and in `target/test-artifacts/system/secret-access.txt`, which
/// `scripts/test.sh` prints after the run.
fn print_matrix(paths: &[String], rows: &[(String, Vec<&str>)]) {
    use std::fmt::Write as _;
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(10);
    let mut out = format!(
        "Secret-access matrix: {} KV paths x {} subjects (read = 200, - = 403)\n",
        paths.len(),
        rows.len()
    );
    for (i, path) in paths.iter().enumerate() {
        let _ = writeln!(out, "  [{i:>2}] kv/{path}");
    }
    let header: String = (0..paths.len()).map(|i| format!("{i:>5}")).collect();
    let _ = writeln!(out, "  {:width$} {header}", "subject");
    for (name, cells) in rows {
        let cells: String = cells.iter().map(|c| format!("{c:>5}")).collect();
        let _ = writeln!(out, "  {name:width$} {cells}");
    }
    eprint!("{out}");
    let artifacts =
        sandbox::support::target_dir(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts/system");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    std::fs::write(artifacts.join("secret-access.txt"), out).expect("secret-access.txt");
}
