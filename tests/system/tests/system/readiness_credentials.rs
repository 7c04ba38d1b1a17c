//! The in-cluster readiness report's own credentials (docs/adr/0012 decision 8), tried as an
//! attacker holding them would: the Vault role, phase 17's GitLab group token and phase 14's
//! Harbor robot each read what the report needs and nothing else (OpenBao real; GitLab and Harbor
//! stand-ins per sandbox/fixtures/gitlab-docs/protected-refs-read.md, license.md and
//! sandbox/fixtures/harbor/robot-permissions.md).

use serde_json::{Value, json};

use crate::world::World;

/// The report's own credentials are what ADR 0012 decision 8 says and no more: its Vault role
/// logs in only as its service account and reads only its secret; the GitLab token there reads
/// its group and writes nothing (OpenBao real, GitLab stand-in per the vendored docs).
pub(crate) fn are_least_privilege(
    world: &World,
    ns: &str,
    sa_token: &secrecy::SecretString,
    outputs: &[&str],
) {
    use super::flags::vault;
    let role = common::contract::READINESS_VAULT_ROLE;
    let (status, login) = vault(
        world,
        reqwest::Method::POST,
        "auth/kubernetes/login",
        "",
        Some(json!({"role": role, "jwt": secrecy::ExposeSecret::expose_secret(sa_token)})),
    );
    assert_eq!(status, 200, "the report's login: {login}");
    assert_eq!(
        login["auth"]["token_policies"],
        json!([role]),
        "only its own policy, not even default"
    );
    let vault_token = login["auth"]["client_token"].as_str().expect("a token");
    let (status, secret) = vault(
        world,
        reqwest::Method::GET,
        &format!("kv/data/{}", common::contract::KV_READINESS_CREDENTIALS),
        vault_token,
        None,
    );
    assert_eq!(status, 200, "{secret}");
    let tokens: std::collections::BTreeMap<String, String> = serde_json::from_str(
        secret["data"]["data"][common::contract::READINESS_GITLAB_TOKENS_KEY]
            .as_str()
            .expect("gitlab-tokens"),
    )
    .expect("a JSON object of group → token");
    assert_eq!(
        tokens.keys().collect::<Vec<_>>(),
        ["platform_services"],
        "one token per group of GITLAB_GROUPS"
    );
    for other in [
        "kv/data/monitoring/dora-collector",
        "kv/data/ci/gitlab-api-token",
        "kv/metadata/monitoring/cicd-readiness",
    ] {
        let (status, _) = vault(world, reqwest::Method::GET, other, vault_token, None);
        assert_eq!(status, 403, "the report's Vault token reads {other}");
    }
    for (group, token) in &tokens {
        for text in outputs {
            assert!(
                !text.contains(token.as_str()),
                "{group}'s token in the run's output"
            );
        }
    }
    // Phase 14's robot for the report: its secret is readable with this token, and the robot
    // reads immutable tag rules of the release projects only.
    let (status, robot) = vault(
        world,
        reqwest::Method::GET,
        &format!("kv/data/{}", common::contract::KV_READINESS_HARBOR),
        vault_token,
        None,
    );
    assert_eq!(status, 200, "{robot}");
    let (user, secret) = (
        robot["data"]["data"]["username"]
            .as_str()
            .expect("username")
            .to_owned(),
        robot["data"]["data"]["password"]
            .as_str()
            .expect("password")
            .to_owned(),
    );
    for text in outputs {
        assert!(
            !text.contains(secret.as_str()),
            "the robot's secret in the run's output"
        );
    }
    let harbor = |method: reqwest::Method, path: &str| -> (u16, Value) {
        world.rt.block_on(async {
            let r = reqwest::Client::new()
                .request(
                    method,
                    format!("{}/api/v2.0/{path}", world.get("HARBOR_URL")),
                )
                .basic_auth(&user, Some(&secret))
                .json(&json!({"disabled": true}))
                .send()
                .await
                .expect("Harbor answers");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        })
    };
    let (status, projects) = harbor(reqwest::Method::GET, "projects?page_size=100");
    assert_eq!(status, 200);
    let mut names: Vec<&str> = projects
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["application-services", "platform-services"],
        "the robot sees the release projects only"
    );
    let release = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "platform-services")
        .and_then(|p| p["project_id"].as_u64())
        .expect("platform-services' id");
    let (status, rules) = harbor(
        reqwest::Method::GET,
        &format!("projects/{release}/immutabletagrules"),
    );
    assert_eq!(status, 200, "{rules}");
    let rule_id = rules[0]["id"].as_u64().expect("phase 14's rule");
    for (method, path) in [
        (
            reqwest::Method::PUT,
            format!("projects/{release}/immutabletagrules/{rule_id}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("projects/{release}/immutabletagrules/{rule_id}"),
        ),
        (reqwest::Method::GET, "robots".to_owned()),
        (reqwest::Method::GET, "projects/ci-cache".to_owned()),
        (reqwest::Method::GET, "system/CVEAllowlist".to_owned()),
    ] {
        let (status, _) = harbor(method.clone(), &path);
        assert_eq!(status, 403, "the report's robot: {method} {path}");
    }
    // Another account of the namespace gets no token from the role.
    let kube = world.kube();
    world
        .rt
        .block_on(kube.apply(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "not-the-report", "namespace": ns}}),
            false,
        ))
        .expect("a service account");
    let other = world
        .rt
        .block_on(kube.token_request(ns, "not-the-report", &[], 600))
        .expect("a TokenRequest token");
    let (refused, _) = vault(
        world,
        reqwest::Method::POST,
        "auth/kubernetes/login",
        "",
        Some(json!({"role": role, "jwt": secrecy::ExposeSecret::expose_secret(&other)})),
    );
    assert!(refused == 400 || refused == 403, "{refused}");

    // The GitLab token: reads its group's projects, their protection; writes nothing; sees no
    // other group; may not read the licence (administrators only).
    let gitlab_token = &tokens["platform_services"];
    let gitlab = |method: reqwest::Method, path: &str| -> u16 {
        world.rt.block_on(async {
            reqwest::Client::new()
                .request(method, format!("{}/api/v4/{path}", world.get("GITLAB_URL")))
                .header("PRIVATE-TOKEN", gitlab_token)
                .json(&json!({"description": "changed by the readiness token"}))
                .send()
                .await
                .expect("GitLab answers")
                .status()
                .as_u16()
        })
    };
    let project = "projects/platform_services%2Fdora-collector";
    assert_eq!(gitlab(reqwest::Method::GET, project), 200);
    assert_eq!(
        gitlab(
            reqwest::Method::GET,
            &format!("{project}/protected_branches/main")
        ),
        200
    );
    assert_eq!(gitlab(reqwest::Method::PUT, project), 403, "a write");
    assert_eq!(
        gitlab(
            reqwest::Method::DELETE,
            &format!("{project}/protected_branches/main")
        ),
        403,
        "unprotecting main"
    );
    assert_eq!(gitlab(reqwest::Method::GET, "license"), 403);
    assert_eq!(
        gitlab(
            reqwest::Method::GET,
            &format!(
                "groups/{}",
                common::codeowners::DEFAULT_APPROVER_PARENT.replace('/', "%2F")
            )
        ),
        404,
        "a group outside its reach"
    );
}
