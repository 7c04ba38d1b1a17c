//! The pull-request generator's GitLab token, across the hand-off GitLab → phase 15 → Vault →
//! External Secrets: a `read_api` group access token (GitLab stand-in,
//! sandbox/fixtures/gitlab-docs/group-access-tokens.md), never the admin token, rotated with
//! `--rotate` (the old one revoked at GitLab, the older Vault versions destroyed), and no token
//! value in any output.

use sandbox::Sandbox;
use serde_json::{Value, json};

use super::phase;

const PATH: &str = "ci/gitlab-api-token";

async fn vault_get(sandbox: &Sandbox, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/{path}", sandbox.get("VAULT_ADDR")))
        .header("X-Vault-Token", sandbox.get("VAULT_TOKEN"))
        .send()
        .await
        .expect("OpenBao")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// The stored token and its version.
async fn stored(sandbox: &Sandbox) -> (String, u64) {
    let v = vault_get(sandbox, &format!("kv/data/{PATH}")).await;
    (
        v["data"]["data"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        v["data"]["metadata"]["version"]
            .as_u64()
            .unwrap_or_default(),
    )
}

async fn gitlab(sandbox: &Sandbox, method: reqwest::Method, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .request(
            method,
            format!("{}/api/v4/{path}", sandbox.get("GITLAB_URL")),
        )
        .header("PRIVATE-TOKEN", token)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("GitLab stand-in")
        .status()
        .as_u16()
}

/// Before phase 15 runs: what an older phase 13 left at the path, the admin token itself.
pub async fn plant_the_admin_token(sandbox: &Sandbox) {
    let status = reqwest::Client::new()
        .post(format!("{}/v1/kv/data/{PATH}", sandbox.get("VAULT_ADDR")))
        .header("X-Vault-Token", sandbox.get("VAULT_TOKEN"))
        .json(&json!({"data": {"token": sandbox.get("GITLAB_API_TOKEN")}}))
        .send()
        .await
        .expect("OpenBao")
        .status();
    assert!(status.is_success(), "{status}");
}

/// After the first apply.
pub async fn check(sandbox: &Sandbox, outputs: &mut Vec<String>) {
    let admin = sandbox.get("GITLAB_API_TOKEN").to_owned();
    let (token, version) = stored(sandbox).await;
    assert!(
        token.starts_with("glpat-") && token != admin,
        "a token of its own"
    );
    // The admin token an older phase 13 stored is gone for good, not only superseded.
    for old in 1..version {
        let v = vault_get(sandbox, &format!("kv/data/{PATH}?version={old}")).await;
        assert!(
            v["data"]["data"].is_null() && v["data"]["metadata"]["destroyed"] == true,
            "version {old} still readable: {v}"
        );
    }
    let (group_id, listed) = {
        let gl = sandbox.gitlab.as_ref().expect("in-process GitLab").lock();
        let group = gl.group_by_path("platform_services").expect("the group");
        let listed: Vec<(String, Vec<String>, u8, bool)> = group
            .access_tokens
            .iter()
            .map(|t| (t.name.clone(), t.scopes.clone(), t.access_level, t.active))
            .collect();
        (group.id, listed)
    };
    assert_eq!(
        listed,
        [(
            "argocd-pr-generator".to_owned(),
            vec!["read_api".to_owned()],
            20,
            true
        )]
    );
    // What the generator does works; nothing else does.
    assert_eq!(
        gitlab(
            sandbox,
            reqwest::Method::GET,
            &format!("groups/{group_id}/projects"),
            &token
        )
        .await,
        200
    );
    assert_eq!(
        gitlab(
            sandbox,
            reqwest::Method::POST,
            &format!("groups/{group_id}/variables"),
            &token
        )
        .await,
        403,
        "read_api writes nothing"
    );
    let elsewhere = {
        let mut gl = sandbox.gitlab.as_ref().expect("in-process GitLab").lock();
        let other = gl.add_group("elsewhere", None, None);
        gl.add_project("secret-app", other, &[])
    };
    assert_eq!(
        gitlab(
            sandbox,
            reqwest::Method::GET,
            &format!("projects/{elsewhere}"),
            &token
        )
        .await,
        404,
        "outside its group"
    );

    // --rotate: planned as a rotation, applied; the old token is revoked at GitLab.
    let plan = phase(sandbox, &["--rotate", "--output", "json", "plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: Value = serde_json::from_str(&plan.stdout).expect("JSON");
    let titles = sandbox::change_titles(&doc);
    assert_eq!(
        titles,
        [
            "gitlab group access token rotate group access token argocd-pr-generator of platform_services (rotation asked for (--rotate)) → kv/ci/gitlab-api-token"
        ],
        "{titles:?}"
    );
    let rotate = phase(sandbox, &["--rotate", "apply"]).await;
    assert_eq!(rotate.code, 0, "{}\n{}", rotate.stdout, rotate.stderr);
    let (new_token, new_version) = stored(sandbox).await;
    assert_ne!(new_token, token);
    assert_eq!(new_version, version + 1);
    assert_eq!(
        gitlab(
            sandbox,
            reqwest::Method::GET,
            &format!("groups/{group_id}/projects"),
            &token
        )
        .await,
        401,
        "the old token is revoked"
    );
    assert_eq!(
        gitlab(
            sandbox,
            reqwest::Method::GET,
            &format!("groups/{group_id}/projects"),
            &new_token
        )
        .await,
        200
    );
    let v = vault_get(sandbox, &format!("kv/data/{PATH}?version={version}")).await;
    assert_eq!(v["data"]["metadata"]["destroyed"], true, "{v}");
    // Without --rotate, the fresh token stays.
    let rerun = phase(sandbox, &["apply"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stdout.contains("no changes"), "{}", rerun.stdout);
    for run in [&plan, &rotate, &rerun] {
        outputs.push(run.stdout.clone());
        outputs.push(run.stderr.clone());
    }
    sandbox::support::assert_not_printed(
        outputs.iter().map(String::as_str),
        &[&admin, &token, &new_token],
    );
}
