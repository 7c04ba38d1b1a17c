//! The in-cluster run's own read-only credentials (docs/adr/0012 decision 8): with
//! `CICD_READINESS_VAULT_ROLE` set (phase 17 sets it in `cicd-readiness-env`), the report logs in
//! to Vault's Kubernetes auth with its service account token and reads
//! `kv/monitoring/cicd-readiness` (phase 17's: one `read_api` group access token per hardened
//! group; each group is then observed by phase 12 with that group's token alone) and
//! `kv/monitoring/cicd-readiness-harbor` (phase 14's robot, which lists immutable tag rules).
//!
//! Without the setting (the operator's run), the operator's own credentials are used as they are.

use std::collections::BTreeMap;

use common::config::PlatformConfig;
use common::contract::{
    KV_MOUNT, KV_READINESS_CREDENTIALS, KV_READINESS_HARBOR, READINESS_GITLAB_TOKENS_KEY,
};
use common::vault::VaultClient;
use common::{env, redact};
use serde_json::Value;

/// The pod's projected service account token (Kubernetes' default mount).
pub const POD_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How the report reaches GitLab for phase 12's observation.
pub enum GitLabAccess {
    /// The operator's token, every hardened group at once.
    Operator(Box<PlatformConfig>),
    /// The in-cluster run: one configuration per hardened group, each with that group's
    /// read-only token, and phase 12's group-wide parts (Keycloak sync, SSH route) off.
    Groups(Vec<(String, PlatformConfig)>),
    /// The in-cluster run could not get its tokens: why, for the rows' evidence.
    Unavailable(String),
}

/// The source of the evidence line naming how GitLab was read.
pub const SOURCE: &str = "the report's GitLab credentials";

/// How the report reaches Harbor for the immutability row.
pub enum HarborAccess {
    /// The operator's admin credentials, through phase 14's observation.
    Operator,
    /// The in-cluster run: phase 14's read-only robot.
    Robot(Box<common::harbor::HarborClient>),
    /// The in-cluster run could not get the robot: why.
    Unavailable(String),
}

/// Both, resolved once per run.
pub struct Access {
    pub gitlab: GitLabAccess,
    pub harbor: HarborAccess,
}

/// Resolves [`Access`] for this run: the operator's credentials, or the in-cluster run's own.
pub async fn access(cfg: &PlatformConfig) -> Access {
    let Some(role) = cfg.environment().get(env::CICD_READINESS_VAULT_ROLE) else {
        return Access {
            gitlab: GitLabAccess::Operator(Box::new(cfg.clone())),
            harbor: HarborAccess::Operator,
        };
    };
    let vault = match login(cfg, role).await {
        Ok(v) => v,
        Err(e) => {
            return Access {
                gitlab: GitLabAccess::Unavailable(e.clone()),
                harbor: HarborAccess::Unavailable(e),
            };
        }
    };
    Access {
        gitlab: gitlab_access(cfg, &vault).await,
        harbor: harbor_access(cfg, &vault).await,
    }
}

async fn gitlab_access(cfg: &PlatformConfig, vault: &VaultClient) -> GitLabAccess {
    match group_tokens(vault).await {
        Err(e) => GitLabAccess::Unavailable(e),
        Ok(tokens) if tokens.is_empty() => GitLabAccess::Unavailable(format!(
            "Vault {KV_MOUNT}/{KV_READINESS_CREDENTIALS} holds no GitLab token: run phase 17 (./scripts/deploy-cluster.sh --only 17), which mints one per group of {}",
            env::GITLAB_GROUPS
        )),
        Ok(tokens) => {
            // Every group phase 12 hardens, each with its own token: a group without one is not
            // skipped (its projects would go unchecked), and a group no longer hardened is not read.
            let wanted = common::contract::hardened_groups(cfg.environment());
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|g| !tokens.contains_key(*g))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return GitLabAccess::Unavailable(format!(
                    "Vault {KV_MOUNT}/{KV_READINESS_CREDENTIALS} holds no token for {} of {}: run phase 17 (./scripts/deploy-cluster.sh --only 17), which mints one per group",
                    missing.join(", "),
                    env::GITLAB_GROUPS
                ));
            }
            let mut groups = Vec::new();
            for (group, token) in tokens.into_iter().filter(|(g, _)| wanted.contains(g)) {
                let scoped = cfg.with_settings(&[
                    (env::GITLAB_API_TOKEN, token.as_str()),
                    (env::GITLAB_GROUPS, group.as_str()),
                    (env::GITLAB_KEYCLOAK_SYNC, "false"),
                    (env::GITLAB_SSH_ROUTE, "false"),
                ]);
                match scoped {
                    Ok(c) => groups.push((group, c)),
                    Err(e) => return GitLabAccess::Unavailable(e.one_line()),
                }
            }
            GitLabAccess::Groups(groups)
        }
    }
}

async fn harbor_access(cfg: &PlatformConfig, vault: &VaultClient) -> HarborAccess {
    let source = format!("Vault {KV_MOUNT}/{KV_READINESS_HARBOR}");
    let data = match vault.kv2_read(KV_MOUNT, KV_READINESS_HARBOR).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return HarborAccess::Unavailable(format!(
                "{source} does not exist: phase 14 (./scripts/deploy-cluster.sh --only 14) creates robot {} and stores it there",
                common::contract::READINESS_HARBOR_ROBOT
            ));
        }
        Err(e) => return HarborAccess::Unavailable(e.one_line()),
    };
    let field = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default();
    let (username, password) = (field("username"), field("password"));
    if username.is_empty() || password.is_empty() {
        return HarborAccess::Unavailable(format!(
            "{source} lacks username or password: rerun phase 14 (ci-templates rotate-robot {})",
            common::contract::READINESS_HARBOR_ROBOT
        ));
    }
    match common::harbor::HarborClient::connect_robot(cfg, username, password, &source) {
        Ok(client) => HarborAccess::Robot(Box::new(client)),
        Err(e) => HarborAccess::Unavailable(e.one_line()),
    }
}

/// Logs in as `role` with the service account token: a client acting with the login's token.
async fn login(cfg: &PlatformConfig, role: &str) -> Result<VaultClient, String> {
    let jwt_file = cfg
        .environment()
        .get(env::CICD_SERVICE_ACCOUNT_TOKEN_FILE)
        .unwrap_or(POD_TOKEN_FILE)
        .to_owned();
    let jwt = std::fs::read_to_string(&jwt_file).map_err(|e| {
        format!(
            "reading the service account token {jwt_file}: {e} (the pod mounts it unless automountServiceAccountToken is false; elsewhere set {})",
            env::CICD_SERVICE_ACCOUNT_TOKEN_FILE
        )
    })?;
    let jwt = jwt.trim();
    redact::register(jwt);
    let anonymous =
        VaultClient::connect_for_login(cfg, "cicd-readiness").map_err(|e| e.one_line())?;
    let login = anonymous
        .login(common::contract::K8S_AUTH_MOUNT, role, jwt)
        .await
        .map_err(|e| {
            format!(
                "{} (phase 17 writes Vault role {role}, bound to service account cicd-readiness in OBS_NAMESPACE: rerun it)",
                e.one_line()
            )
        })?;
    anonymous
        .with_token(&login.token, &format!("Vault role {role}"))
        .map_err(|e| e.one_line())
}

/// The group tokens (group path → token), registered for redaction.
async fn group_tokens(vault: &VaultClient) -> Result<BTreeMap<String, String>, String> {
    let data = vault
        .kv2_read(KV_MOUNT, KV_READINESS_CREDENTIALS)
        .await
        .map_err(|e| e.one_line())?
        .unwrap_or_default();
    let tokens: BTreeMap<String, String> = match data.get(READINESS_GITLAB_TOKENS_KEY) {
        None => BTreeMap::new(),
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|e| {
            format!(
                "Vault {KV_MOUNT}/{KV_READINESS_CREDENTIALS} key {READINESS_GITLAB_TOKENS_KEY} is not a JSON object of group → token ({e}): rerun phase 17"
            )
        })?,
        Some(_) => {
            return Err(format!(
                "Vault {KV_MOUNT}/{KV_READINESS_CREDENTIALS} key {READINESS_GITLAB_TOKENS_KEY} is not a string: rerun phase 17"
            ));
        }
    };
    for token in tokens.values() {
        redact::register(token);
    }
    Ok(tokens)
}
