//! The platform's PKI as its phase 2 leaves it: a root CA whose key stays outside Vault (here a
//! file made by `openssl`, in the sandbox directory) and one intermediate mount `pki_int` in Vault,
//! signed by that root with `pathlen:0`, so it issues leaf certificates but cannot sign another CA
//! (the upstream contract: "Phase 2 keeps the root CA key offline"; the plan's §3.2 role goes on it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde_json::{Value, json};

/// The intermediate's mount, as the platform names it.
pub const INTERMEDIATE_MOUNT: &str = "pki_int";

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn vault(addr: &str, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = reqwest::Client::new()
        .post(format!("{addr}/v1/{path}"))
        .header("X-Vault-Token", token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates the offline root (`dir/pki-root.pem`, key beside it) and the `pathlen:0` intermediate
/// mount signed by it. Returns the root certificate's path.
pub async fn platform_pki(dir: &Path, addr: &str, token: &str) -> anyhow::Result<PathBuf> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "pki-root.key",
            "-out",
            "pki-root.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=Sandbox Platform Root CA",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    vault(
        addr,
        token,
        &format!("sys/mounts/{INTERMEDIATE_MOUNT}"),
        &json!({"type": "pki", "config": {"max_lease_ttl": "43800h"}}),
    )
    .await?;
    let csr = vault(
        addr,
        token,
        &format!("{INTERMEDIATE_MOUNT}/intermediate/generate/internal"),
        &json!({"common_name": "Sandbox Platform Intermediate CA", "key_type": "ec", "key_bits": 256}),
    )
    .await?;
    let csr = csr["data"]["csr"]
        .as_str()
        .context("the intermediate's CSR")?;
    std::fs::write(dir.join("pki-int.csr"), csr)?;
    std::fs::write(
        dir.join("pki-int.ext"),
        "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "pki-int.csr",
            "-CA",
            "pki-root.pem",
            "-CAkey",
            "pki-root.key",
            "-CAcreateserial",
            "-days",
            "1825",
            "-extfile",
            "pki-int.ext",
            "-out",
            "pki-int.pem",
        ],
    )?;
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("pki-int.pem"))?,
        std::fs::read_to_string(dir.join("pki-root.pem"))?
    );
    vault(
        addr,
        token,
        &format!("{INTERMEDIATE_MOUNT}/intermediate/set-signed"),
        &json!({"certificate": chain}),
    )
    .await?;
    Ok(dir.join("pki-root.pem"))
}
