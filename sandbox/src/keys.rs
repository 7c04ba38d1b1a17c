//! Keys the sandbox makes for itself: the kube-apiserver's service-account signing key and the
//! GitLab stand-in's `id_tokens` signing key (served as a JWKS at `/-/jwks`, as GitLab does).
//! ECDSA P-256 through ring: ring cannot generate RSA keys, and both kube-apiserver and Vault's
//! JWT auth accept ES256 exactly as they accept GitLab's RS256.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ECDSA P-256 signing key.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
    pub kid: String,
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating an ECDSA key failed"))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    pub fn from_pkcs8(der: &[u8]) -> anyhow::Result<Self> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(Self {
            pkcs8: der.to_vec(),
            pair,
            kid,
        })
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn private_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    pub fn public_pem(&self) -> String {
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(self.pair.public_key().as_ref());
        pem("PUBLIC KEY", &spki)
    }

    /// The public key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
    }

    /// A signed JWT (compact JWS, ES256) with these claims.
    pub fn sign_jwt(&self, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A random URL-safe token of `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut buf).expect("system randomness");
    URL_SAFE_NO_PAD.encode(buf)
}

/// The pipeline an `id_token` is minted for: what GitLab puts in `ref`, `ref_type`, `ref_path`,
/// `ref_protected` and `pipeline_source` (`Gitlab::Ci::JwtV2`: an MR pipeline carries its source
/// branch as `ref`, `refs/heads/<branch>` as `ref_path`, and `merge_request_event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineClaims {
    pub git_ref: String,
    /// `branch` or `tag`.
    pub ref_type: &'static str,
    pub protected: bool,
    pub source: &'static str,
}

impl PipelineClaims {
    pub fn branch(name: &str, protected: bool) -> Self {
        Self {
            git_ref: name.into(),
            ref_type: "branch",
            protected,
            source: "push",
        }
    }
    pub fn tag(name: &str, protected: bool) -> Self {
        Self {
            git_ref: name.into(),
            ref_type: "tag",
            protected,
            source: "push",
        }
    }
    pub fn merge_request(source_branch: &str) -> Self {
        Self {
            git_ref: source_branch.into(),
            ref_type: "branch",
            protected: false,
            source: "merge_request_event",
        }
    }
    fn ref_path(&self) -> String {
        let prefix = if self.ref_type == "tag" {
            "tags"
        } else {
            "heads"
        };
        format!("refs/{prefix}/{}", self.git_ref)
    }
}

/// Claims of a GitLab CI `id_tokens` JWT of a job of `project_path` (id `project_id`) in a
/// `pipeline` (GitLab docs: `ci/secrets/id_token_authentication`, "Token payload"; the ids and
/// `ref_protected` are strings).
pub fn ci_id_token_claims(
    issuer: &str,
    audience: &str,
    project_path: &str,
    project_id: u64,
    pipeline: &PipelineClaims,
) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let namespace = project_path
        .rsplit_once('/')
        .map_or(project_path, |(ns, _)| ns);
    json!({
        "iss": issuer,
        "aud": audience,
        "sub": format!("project_path:{project_path}:ref_type:{}:ref:{}", pipeline.ref_type, pipeline.git_ref),
        "iat": now, "nbf": now - 5, "exp": now + 300,
        "jti": random_token(12),
        "namespace_id": "42", "namespace_path": namespace,
        "project_id": project_id.to_string(), "project_path": project_path,
        "user_id": "7", "user_login": "ci-bot", "user_email": "ci-bot@example.invalid",
        "pipeline_id": "1001", "pipeline_source": pipeline.source, "job_id": "5001",
        "ref": pipeline.git_ref, "ref_type": pipeline.ref_type, "ref_path": pipeline.ref_path(),
        "ref_protected": if pipeline.protected { "true" } else { "false" },
        "runner_id": 1, "runner_environment": "self-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
    })
}

/// Claims of a branch pipeline of `project_path` on `git_ref` (project id 4242).
pub fn gitlab_id_token_claims(
    issuer: &str,
    audience: &str,
    project_path: &str,
    git_ref: &str,
    ref_protected: bool,
) -> Value {
    ci_id_token_claims(
        issuer,
        audience,
        project_path,
        4242,
        &PipelineClaims::branch(git_ref, ref_protected),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_verifies_with_the_published_key() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign_jwt(&json!({"sub": "x"})).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let point = key.pair.public_key().as_ref().to_vec();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            point,
        );
        public
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        assert_eq!(key.jwks()["keys"][0]["kid"], json!(key.kid));
    }

    #[test]
    fn pkcs8_round_trips() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(key.pkcs8_der()).unwrap();
        assert_eq!(key.kid, again.kid);
        assert!(
            key.public_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
        );
    }
}
