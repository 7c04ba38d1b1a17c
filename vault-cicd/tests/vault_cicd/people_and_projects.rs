//! Per-project service secrets and people's access, on the sandbox of the main test (phase 13
//! applied once already):
//! - an old-layout `services/<name>` is copied to `services/<project id>` with check-and-set 0,
//!   listed in the plan, never over an existing secret, and a rerun writes nothing;
//! - a main pipeline reads its own project's secrets and not another project's (real `OpenBao`,
//!   `id_tokens` signed by the GitLab stand-in's key);
//! - people log in with an ID token from the Keycloak stand-in (password grant of the public client
//!   `vault`, sandbox/fixtures/keycloak-docs/oidc-endpoints.md); their `groups` claim puts them in
//!   the external identity groups: cicd-admins get `ci-admin`, cicd-security `security-audit`.

use std::path::Path;

use sandbox::Sandbox;
use sandbox::keys::{PipelineClaims, ci_id_token_claims};
use serde_json::{Value, json};

use super::{Vault, vault_cicd, vault_writes};

const GROUP: &str = "platform_services";

pub fn add_project(sandbox: &Sandbox, name: &str) -> u64 {
    let mut gl = sandbox.gitlab.as_ref().expect("in-process GitLab").lock();
    let group = gl.group_by_path(GROUP).expect("the platform group").id;
    gl.add_project(name, group, &[])
}

/// An ID token of a realm user (Keycloak's direct access grant, scope `openid`).
pub async fn keycloak_id_token(sandbox: &Sandbox, user: &str, password: &str) -> String {
    let url = format!(
        "{}/realms/{}/protocol/openid-connect/token",
        sandbox.get("KEYCLOAK_URL"),
        sandbox.get("KC_REALM")
    );
    let answer: Value = reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "vault"),
            ("username", user),
            ("password", password),
            ("scope", "openid"),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .json()
        .await
        .expect("JSON");
    answer["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token for {user}: {answer}"))
        .to_owned()
}

/// Gives the demo realm's users a password (the stand-in's realm has none by default).
pub fn set_passwords(sandbox: &Sandbox) -> Vec<(String, String)> {
    let mut kc = sandbox
        .keycloak
        .as_ref()
        .expect("in-process Keycloak")
        .lock();
    let users: Vec<(String, String)> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| {
            (
                (*u).to_owned(),
                format!("pw-{u}-{}", sandbox::keys::random_token(8)),
            )
        })
        .collect();
    for (user, password) in &users {
        kc.passwords.insert(user.clone(), password.clone());
    }
    users
}

async fn read(vault: &Vault, token: &str, path: &str) -> u16 {
    vault
        .http
        .get(format!("{}/v1/{path}", vault.addr))
        .header("X-Vault-Token", token)
        .send()
        .await
        .expect("OpenBao")
        .status()
        .as_u16()
}

/// `example_id`: the project of `example-service` (`VAULT_CI_SERVICES`), seeded by the first apply.
pub async fn check(sandbox: &Sandbox, env_file: &Path, vault: &Vault, example_id: u64) {
    // A second project of the group, with a secret in the old layout.
    let legacy_id = add_project(sandbox, "legacy-svc");
    // What an older phase 13 (or a person) left in the old layout.
    let (status, _) = vault
        .post(
            "kv/data/services/legacy-svc",
            &json!({"data": {"database-url": "postgres://legacy@db/legacy"}}),
            None,
        )
        .await;
    assert_eq!(status, 200);

    let writes0 = vault_writes(sandbox);
    let plan = vault_cicd(env_file, &["plan", "--output", "json"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(vault_writes(sandbox), writes0, "plan wrote to Vault");
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let titles = sandbox::change_titles(&doc);
    assert!(
        titles.contains(&format!("vault kv secret kv/services/{legacy_id}")),
        "the migration is listed: {titles:?}"
    );
    assert_eq!(titles.len(), 1, "only the migration: {titles:?}");
    assert!(
        plan.stdout.contains("kv/services/legacy-svc"),
        "the plan names the source"
    );
    let apply = vault_cicd(env_file, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let (_, copied) = vault.get(&format!("kv/data/services/{legacy_id}")).await;
    assert_eq!(
        copied["data"]["data"]["database-url"], "postgres://legacy@db/legacy",
        "{copied}"
    );
    assert_eq!(
        copied["data"]["metadata"]["custom_metadata"]["migrated-from"],
        "kv/services/legacy-svc"
    );
    let (status, _) = vault.get("kv/data/services/legacy-svc").await;
    assert_eq!(status, 200, "the old secret stays where it was");
    // Rerun: nothing to do, nothing written, even with the old one still there.
    let writes1 = vault_writes(sandbox);
    let again = vault_cicd(env_file, &["apply", "--output", "json"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again_doc: Value = serde_json::from_str(&again.stdout).expect("JSON");
    assert_eq!(again_doc["changes"], json!([]), "{}", again.stdout);
    assert_eq!(vault_writes(sandbox), writes1, "rerun wrote to Vault");
    // Never over an existing secret: a person's own value at the target survives a new old one.
    let (status, _) = vault
        .post(
            "kv/data/services/legacy-svc",
            &json!({"data": {"database-url": "postgres://changed-later"}}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let third = vault_cicd(env_file, &["apply", "--output", "json"]).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    let (_, kept) = vault.get(&format!("kv/data/services/{legacy_id}")).await;
    assert_eq!(
        kept["data"]["data"]["database-url"],
        "postgres://legacy@db/legacy"
    );

    // Main pipelines: their own project's secrets only.
    let login_main = |project: &str, id: u64| {
        let claims = ci_id_token_claims(
            sandbox.get("GITLAB_URL"),
            sandbox.get("VAULT_ADDR"),
            &format!("{GROUP}/{project}"),
            id,
            &PipelineClaims::branch("main", true),
        );
        sandbox
            .gitlab_signing_key()
            .sign_jwt(&claims)
            .expect("signing")
    };
    let (status, a) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci",
            &login_main("example-service", example_id),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let a = a["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, b) = vault
        .login(
            "jwt/gitlab",
            "gitlab-ci",
            &login_main("legacy-svc", legacy_id),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let b = b["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(
        read(vault, &a, &format!("kv/data/services/{example_id}")).await,
        200
    );
    assert_eq!(
        read(vault, &a, &format!("kv/data/services/{legacy_id}")).await,
        403,
        "A reads B"
    );
    assert_eq!(
        read(vault, &b, &format!("kv/data/services/{legacy_id}")).await,
        200
    );
    assert_eq!(
        read(vault, &b, &format!("kv/data/services/{example_id}")).await,
        403,
        "B reads A"
    );
    assert_eq!(
        read(vault, &b, "kv/data/services/legacy-svc").await,
        403,
        "the old layout is nobody's"
    );

    // People: Keycloak ID token → jwt/keycloak → identity groups.
    let passwords = set_passwords(sandbox);
    let password = |u: &str| {
        passwords
            .iter()
            .find(|(n, _)| n == u)
            .map(|(_, p)| p.clone())
            .expect("user")
    };
    let mut people = Vec::new();
    for user in ["alice", "carol", "dave"] {
        let jwt = keycloak_id_token(sandbox, user, &password(user)).await;
        let (status, login) = vault.login("jwt/keycloak", "cicd-human", &jwt).await;
        assert_eq!(status, 200, "{user}: {login}");
        let mut identity: Vec<String> = login["auth"]["identity_policies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        identity.sort();
        people.push((
            user,
            login["auth"]["client_token"]
                .as_str()
                .expect("token")
                .to_owned(),
            identity,
        ));
    }
    assert_eq!(people[0].2, ["ci-admin"], "alice is in cicd-admins");
    assert_eq!(people[1].2, ["security-audit"], "carol is in cicd-security");
    assert!(
        people[2].2.is_empty(),
        "dave (cicd-developers) gets no policy: {:?}",
        people[2].2
    );
    let (alice, carol, dave) = (&people[0].1, &people[1].1, &people[2].1);
    assert_eq!(
        read(vault, alice, "kv/data/ci/harbor-credentials").await,
        200
    );
    assert_eq!(
        read(vault, carol, "kv/data/ci/harbor-credentials").await,
        403,
        "audit reads no values"
    );
    assert_eq!(
        read(vault, carol, "kv/metadata/ci/harbor-credentials").await,
        200
    );
    assert_eq!(read(vault, carol, "sys/policies/acl/ci-admin").await, 200);
    assert_eq!(
        read(vault, dave, "kv/metadata/ci/harbor-credentials").await,
        403
    );
    // A token for another audience (a client that is not Vault's) is refused.
    let foreign = {
        sandbox
            .keycloak
            .as_ref()
            .expect("Keycloak")
            .lock()
            .public_clients
            .insert("grafana".into());
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            sandbox.get("KEYCLOAK_URL"),
            sandbox.get("KC_REALM")
        );
        let answer: Value = reqwest::Client::new()
            .post(url)
            .form(&[
                ("grant_type", "password"),
                ("client_id", "grafana"),
                ("username", "alice"),
                ("password", &password("alice")),
                ("scope", "openid"),
            ])
            .send()
            .await
            .expect("Keycloak")
            .json()
            .await
            .expect("JSON");
        answer["id_token"].as_str().expect("id_token").to_owned()
    };
    let (status, refused) = vault.login("jwt/keycloak", "cicd-human", &foreign).await;
    assert_eq!(status, 400, "another client's token: {refused}");
}
