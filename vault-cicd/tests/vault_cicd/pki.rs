//! Plan §3.2's `ci-server-cert` on the platform's PKI as its phase 2 leaves it (the sandbox makes
//! an offline root with `openssl` and `pki_int`, signed by it with `pathlen:0`): a certificate it
//! issues for a CI name verifies against the root with `openssl verify`; a name outside the CI
//! domains is refused by OpenBao; without the mount, one warning and nothing fails.

use std::process::Command;

use serde_json::{Value, json};

use super::{env_with, start, vault_cicd, vault_writes};

async fn issue(sandbox: &sandbox::Sandbox, common_name: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1/pki_int/issue/ci-server-cert",
            sandbox.get("VAULT_ADDR")
        ))
        .header("X-Vault-Token", sandbox.get("VAULT_TOKEN"))
        .json(&json!({"common_name": common_name, "ttl": "1h"}))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_server_cert_issues_for_ci_names_only_and_chains_to_the_offline_root() {
    let sandbox = start().await;
    let env_file = sandbox.env_file();
    let apply = vault_cicd(&env_file, &["apply"]).await;
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply
            .stdout
            .contains("vault pki role pki_int/ci-server-cert"),
        "{}",
        apply.stdout
    );
    let writes = vault_writes(&sandbox);
    let again = vault_cicd(&env_file, &["apply"]).await;
    assert!(again.stdout.contains("no changes"), "{}", again.stdout);
    assert_eq!(vault_writes(&sandbox), writes, "the rerun wrote to Vault");

    // A CI name (the sandbox's DOMAIN is sandbox.localhost: ci.sandbox.localhost and below).
    let (status, issued) = issue(&sandbox, "build-42.ci.sandbox.localhost").await;
    assert_eq!(status, 200, "{issued}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        issued["data"]["certificate"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("int.pem"),
        issued["data"]["issuing_ca"].as_str().unwrap(),
    )
    .unwrap();
    let root = sandbox.dir().join("pki-root.pem");
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(dir.path().join("int.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success() && String::from_utf8_lossy(&verify.stdout).contains(": OK"),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // The intermediate is pathlen:0 (it cannot make another CA) and the leaf is no CA.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("int.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("pathlen:0"));

    // Names outside the CI domains: another domain, a platform service, the bare CI domain.
    for name in [
        "evil.example.com",
        "gitlab.sandbox.localhost",
        "ci.sandbox.localhost",
    ] {
        let (status, answer) = issue(&sandbox, name).await;
        assert_eq!(status, 400, "{name}: {answer}");
    }

    // Without the mount: one warning naming it, exit 0, nothing written.
    let missing = env_with(
        &sandbox,
        dir.path(),
        "missing.env",
        &[("VAULT_CI_PKI_MOUNT", Some("pki_missing"))],
    );
    let before = vault_writes(&sandbox);
    for mode in ["plan", "apply"] {
        let run = vault_cicd(&missing, &[mode]).await;
        assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
        assert_eq!(
            run.stdout
                .matches("PKI mount pki_missing/ does not exist")
                .count(),
            1,
            "{mode}: {}",
            run.stdout
        );
    }
    assert_eq!(
        vault_writes(&sandbox),
        before,
        "nothing to write without the mount"
    );
}
