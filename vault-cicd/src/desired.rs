//! Phase 13's desired state as plain data, built from configuration with no I/O.

use std::collections::BTreeMap;

use common::contract::{
    self, ARGOCD_APPLICATION_CRD, CLUSTER_SECRET_STORE_CRD, EXTERNAL_SECRET_CRD,
};
use common::kube::owned_labels;
use serde_json::{Value, json};

use crate::settings::{
    JWT_MOUNT, K8S_MOUNT, KV_MOUNT, SIGNING_KEY, Settings, TRANSIT_MOUNT, TokenReviewer, list,
};

pub const PHASE: &str = "13";
/// What a placeholder secret value says; `custom_metadata.placeholder=true` marks it too, so
/// phase 14 (Harbor robots) knows it may replace it.
pub const PLACEHOLDER: &str = "PLACEHOLDER: set me (created by cicd-buildout phase 13)";

/// The ACL policies, kept as `.hcl` files in the crate.
pub const POLICIES: &[(&str, &str)] = &[
    (
        "ci-read-secrets",
        include_str!("../policies/ci-read-secrets.hcl"),
    ),
    (
        "ci-sign-images",
        include_str!("../policies/ci-sign-images.hcl"),
    ),
    (
        "ci-deploy-ephemeral",
        include_str!("../policies/ci-deploy-ephemeral.hcl"),
    ),
    (
        "ci-mr-scratch",
        include_str!("../policies/ci-mr-scratch.hcl"),
    ),
    (
        "argocd-secrets",
        include_str!("../policies/argocd-secrets.hcl"),
    ),
    ("ci-admin", include_str!("../policies/ci-admin.hcl")),
    (
        "security-audit",
        include_str!("../policies/security-audit.hcl"),
    ),
    (
        "external-secrets",
        include_str!("../policies/external-secrets.hcl"),
    ),
    (
        "external-secrets-harbor-pull",
        include_str!("../policies/external-secrets-harbor-pull.hcl"),
    ),
];

/// Policies templated on an auth mount's accessor: `(name, text, mount)`, where the text holds
/// [`ACCESSOR_MARKER`] in place of the accessor, known only once the mount exists.
pub const TEMPLATED_POLICIES: &[(&str, &str, &str)] = &[
    (
        "ci-promote",
        include_str!("../policies/ci-promote.hcl"),
        JWT_MOUNT,
    ),
    (
        PROJECT_SECRETS_POLICY,
        include_str!("../policies/ci-project-secrets.hcl"),
        JWT_MOUNT,
    ),
];
/// Each project's own `services/<project id>` secrets, for its main and release pipelines.
pub const PROJECT_SECRETS_POLICY: &str = "ci-project-secrets";
/// Where humans log in with their Keycloak ID token (an OIDC-validated JWT method).
pub const HUMAN_MOUNT: &str = "jwt/keycloak";
/// The role humans log in with on [`HUMAN_MOUNT`].
pub const HUMAN_ROLE: &str = "cicd-human";

/// A Vault external identity group mirroring a Keycloak group: its members get `policies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanGroup {
    /// The Keycloak group's name, as the `groups` claim carries it; also the Vault group's name.
    pub name: String,
    pub policies: Vec<String>,
    /// The auth mount whose logins carry the claim.
    pub mount: String,
}
/// Stands for the mount accessor in a templated policy's text.
pub const ACCESSOR_MARKER: &str = "{{JWT_ACCESSOR}}";

/// The policy text for a mount accessor.
pub fn render_templated_policy(text: &str, accessor: &str) -> String {
    text.replace(ACCESSOR_MARKER, accessor)
}

/// The `pipeline_source` claims of the pipelines the protected roles serve (GitLab's
/// `Ci::PipelineEnums` sources): never `merge_request_event`, `trigger` (a trigger token's holder
/// sets the variables) or downstream pipelines.
pub const PROTECTED_PIPELINE_SOURCES: &[&str] = &["push", "web", "schedule", "api"];

/// A secrets engine or auth method to mount.
#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    pub path: String,
    pub kind: String,
    pub options: BTreeMap<String, String>,
    pub description: String,
}

/// A config or role document written with one POST (fields we own only).
#[derive(Debug, Clone, PartialEq)]
pub struct VaultDocument {
    /// e.g. `auth/jwt/gitlab/role/gitlab-ci`.
    pub path: String,
    pub resource: &'static str,
    pub name: String,
    pub body: Value,
}

/// A KV v2 secret to create when absent (never overwritten).
#[derive(Debug, Clone, PartialEq)]
pub struct KvSeed {
    pub path: String,
    pub data: BTreeMap<String, String>,
    pub placeholder: bool,
    /// An `ExternalSecret` of the platform reads it, so External Secrets' policy must allow it
    /// (`doctor` checks exactly these).
    pub eso_reads: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditSpec {
    pub path: String,
    pub kind: String,
    pub file_path: String,
}

/// Everything phase 13 wants to exist.
#[derive(Debug, Clone)]
pub struct Desired {
    pub secret_engines: Vec<MountSpec>,
    pub auth_methods: Vec<MountSpec>,
    pub policies: Vec<(String, String)>,
    /// `(name, template, auth mount)`: written after the mount, with its accessor filled in.
    pub templated_policies: Vec<(String, String, String)>,
    /// JWT config, JWT roles, Kubernetes config, Kubernetes roles, in that order.
    pub documents: Vec<VaultDocument>,
    pub signing_key: (String, String),
    pub kv_seeds: Vec<KvSeed>,
    pub audit: AuditSpec,
    /// Kubernetes objects, applied in order. `(object, CRD that must be Established first)`.
    pub kube_objects: Vec<(Value, Option<&'static str>)>,
    /// The role `ci-server-cert` (plan §3.2) on the platform's intermediate PKI mount, and that
    /// mount; `None` when no domain is known (no `DOMAIN`, no `VAULT_CI_CERT_DOMAINS`).
    pub ci_cert_role: Option<(String, VaultDocument)>,
    /// `VAULT_CI_SERVICES`: each gets `services/<project id>` ([`crate::service_paths`]).
    pub services: Vec<String>,
    /// The groups a service name is looked up in (`<group>/<name>`): the `<group>/*` globs of
    /// `VAULT_CI_PROJECT_PATHS`.
    pub service_groups: Vec<String>,
    /// Keycloak groups mapped to policies (empty when Keycloak is unknown).
    pub human_groups: Vec<HumanGroup>,
    /// Why humans get no Vault login, when they do not.
    pub human_auth_missing: Option<String>,
}

/// Name of the PKI role of short-lived CI server certificates (plan §3.2).
pub const CI_CERT_ROLE: &str = "ci-server-cert";

/// `ci-server-cert`: server certificates for CI-only names, at most 24 h (plan §3.2: `max_ttl:
/// 24h`, `allow_subdomains: true`), not stored by Vault (short-lived, many). The platform keeps
/// its root key offline and gives Vault only `pki_int` with `pathlen:0`, which can issue leaf
/// certificates but no CA: so the plan's `ci-intermediate` is this role on that mount, limited to
/// the CI domains, not a second intermediate.
pub fn ci_cert_role(mount: &str, domains: &[String]) -> VaultDocument {
    doc(
        &format!("{mount}/roles/{CI_CERT_ROLE}"),
        "vault pki role",
        &format!("{mount}/{CI_CERT_ROLE}"),
        json!({
            "allowed_domains": domains,
            "allow_subdomains": true,
            "allow_bare_domains": false,
            "allow_glob_domains": false,
            "allow_wildcard_certificates": false,
            "allow_localhost": false,
            "allow_ip_sans": false,
            "server_flag": true,
            "client_flag": false,
            "key_type": "ec",
            "key_bits": 256,
            "ttl": 3600,
            "max_ttl": 86400,
            "no_store": true,
        }),
    )
}

/// Inputs that come from the platform configuration.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    /// `DOMAIN`: the default CI certificate domain is `ci.$DOMAIN`.
    pub domain: Option<&'a str>,
    pub gitlab_url: &'a str,
    pub vault_addr: &'a str,
    /// The realm's issuer (`KEYCLOAK_URL/realms/KC_REALM`) humans' ID tokens come from.
    pub keycloak_issuer: Option<&'a str>,
    /// PEM of the Kubernetes API CA (Vault outside the cluster).
    pub k8s_ca_pem: Option<&'a str>,
    /// PEM of the platform CA (for Vault's JWKS fetch and ESO's connection to Vault).
    pub platform_ca_pem: Option<&'a str>,
}

fn mount(path: &str, kind: &str, options: &[(&str, &str)], description: &str) -> MountSpec {
    MountSpec {
        path: path.into(),
        kind: kind.into(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        description: description.into(),
    }
}

pub fn desired(inputs: &Inputs<'_>) -> Desired {
    let s = inputs.settings;
    let project_paths = list(&s.vault_ci_project_paths);
    let refs = list(&s.vault_ci_refs);
    let audience = s
        .vault_jwt_audience
        .clone()
        .unwrap_or_else(|| inputs.vault_addr.to_owned());
    let services = list(&s.vault_ci_services);

    let mut jwt_config = json!({
        "jwks_url": format!("{}/-/jwks", inputs.gitlab_url),
        "bound_issuer": inputs.gitlab_url,
    });
    if let Some(ca) = inputs.platform_ca_pem {
        jwt_config["jwks_ca_pem"] = json!(ca.trim());
    }
    // Claims copied into token metadata: the audit log then says which project, ref, pipeline
    // and user each CI login came from (plan §5.3); `project_id` also keys the templated policy
    // ci-promote (each project reads only its own promotion token).
    let claim_mappings = json!({
        "project_path": "project_path", "project_id": "project_id", "ref": "ref", "ref_path": "ref_path",
        "pipeline_source": "pipeline_source", "pipeline_id": "pipeline_id", "job_id": "job_id", "user_login": "user_login",
    });
    let jwt_role = |bound_claims: Value, policy: &str, ttl_secs: u64| {
        json!({
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": [audience],
            "bound_claims_type": "glob",
            "bound_claims": bound_claims,
            "claim_mappings": claim_mappings,
            "token_policies": [policy],
            "token_ttl": ttl_secs,
            "token_max_ttl": ttl_secs,
        })
    };
    // Pipeline kinds by the claims GitLab sends (`Gitlab::Ci::JwtV2`): `ref_path` is
    // refs/heads/<branch> or refs/tags/<tag>, `ref_protected` the string "true" on a protected ref.
    let branch_paths: Vec<String> = refs.iter().map(|r| format!("refs/heads/{r}")).collect();
    let mut release_paths = branch_paths.clone();
    release_paths.push(format!("refs/tags/{}", crate::settings::RELEASE_TAGS));
    // And the pipeline's source: a merge request pipeline whose source branch is protected (an MR
    // from `main`, or its merged result) says `ref_protected: "true"` too, while it runs the
    // target branch's unreviewed content. Pushes, the UI, schedules and the API only.
    let protected = |ref_paths: &[String]| {
        json!({"project_path": project_paths, "ref_path": ref_paths, "ref_protected": ["true"],
               "pipeline_source": PROTECTED_PIPELINE_SOURCES})
    };
    let mut gitlab_ci = jwt_role(protected(&release_paths), "ci-read-secrets", 3600);
    gitlab_ci["token_policies"] = json!(["ci-read-secrets", PROJECT_SECRETS_POLICY]);
    // release-tag runs on protected release tags only: the same robot, no other pipeline kind.
    let gitlab_ci_release = jwt_role(
        protected(&[format!("refs/tags/{}", crate::settings::RELEASE_TAGS)]),
        "ci-read-secrets",
        900,
    );
    // Signing takes seconds, so the token is short-lived.
    let gitlab_ci_sign = jwt_role(protected(&release_paths), "ci-sign-images", 900);
    let gitlab_ci_deploy = jwt_role(protected(&branch_paths), "ci-deploy-ephemeral", 3600);
    let gitlab_ci_promote = jwt_role(protected(&branch_paths), "ci-promote", 900);
    // Merge request pipelines of the group's projects (any source branch): scratch images only.
    let gitlab_ci_mr = jwt_role(
        json!({"project_path": project_paths, "pipeline_source": ["merge_request_event"]}),
        "ci-mr-scratch",
        3600,
    );
    let mut k8s_config = json!({"kubernetes_host": s.vault_k8s_host});
    if s.vault_k8s_token_reviewer == TokenReviewer::Client {
        // No reviewer JWT is stored: Vault presents the client's own token to TokenReview.
        k8s_config["disable_local_ca_jwt"] = json!(true);
    }
    if let Some(ca) = inputs.k8s_ca_pem {
        k8s_config["kubernetes_ca_cert"] = json!(ca.trim());
    }
    let k8s_role = |names: &[&str], namespaces: &[&str], policy: &str| {
        json!({
            "bound_service_account_names": names,
            "bound_service_account_namespaces": namespaces,
            "token_policies": [policy],
            "token_ttl": 3600,
            "token_max_ttl": 3600,
        })
    };
    let eso_role = k8s_role(
        &[s.eso_service_account.as_str()],
        &[s.eso_namespace.as_str()],
        "external-secrets",
    );
    let eso_pull_role = k8s_role(
        &[s.eso_service_account.as_str()],
        &[s.eso_namespace.as_str()],
        "external-secrets-harbor-pull",
    );
    let argocd_role = k8s_role(
        &["argocd-server", "argocd-repo-server"],
        &["argocd"],
        "argocd-secrets",
    );
    let mut documents = vec![
        doc(
            &format!("auth/{JWT_MOUNT}/config"),
            "vault jwt config",
            JWT_MOUNT,
            jwt_config,
        ),
        doc(
            &format!("auth/{JWT_MOUNT}/role/gitlab-ci"),
            "vault jwt role",
            "gitlab-ci",
            gitlab_ci,
        ),
        doc(
            &format!("auth/{JWT_MOUNT}/role/gitlab-ci-sign"),
            "vault jwt role",
            "gitlab-ci-sign",
            gitlab_ci_sign,
        ),
        doc(
            &format!("auth/{JWT_MOUNT}/role/{}", contract::ROLE_RELEASE),
            "vault jwt role",
            contract::ROLE_RELEASE,
            gitlab_ci_release,
        ),
        doc(
            &format!("auth/{JWT_MOUNT}/role/{}", contract::ROLE_DEPLOY),
            "vault jwt role",
            contract::ROLE_DEPLOY,
            gitlab_ci_deploy,
        ),
        doc(
            &format!("auth/{JWT_MOUNT}/role/{}", contract::ROLE_PROMOTE),
            "vault jwt role",
            contract::ROLE_PROMOTE,
            gitlab_ci_promote,
        ),
        doc(
            &format!("auth/{JWT_MOUNT}/role/{}", contract::ROLE_MERGE_REQUEST),
            "vault jwt role",
            contract::ROLE_MERGE_REQUEST,
            gitlab_ci_mr,
        ),
        doc(
            &format!("auth/{K8S_MOUNT}/config"),
            "vault kubernetes config",
            K8S_MOUNT,
            k8s_config,
        ),
        doc(
            &format!("auth/{K8S_MOUNT}/role/external-secrets"),
            "vault kubernetes role",
            "external-secrets",
            eso_role,
        ),
        doc(
            &format!("auth/{K8S_MOUNT}/role/{}", contract::PULL_STORE_VAULT_ROLE),
            "vault kubernetes role",
            contract::PULL_STORE_VAULT_ROLE,
            eso_pull_role,
        ),
        doc(
            &format!("auth/{K8S_MOUNT}/role/argocd"),
            "vault kubernetes role",
            "argocd",
            argocd_role,
        ),
    ];

    let placeholder = |keys: &[&str]| -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| ((*k).to_owned(), PLACEHOLDER.to_owned()))
            .collect()
    };
    let seed =
        |path: &str, data: BTreeMap<String, String>, placeholder: bool, eso_reads: bool| KvSeed {
            path: path.to_owned(),
            data,
            placeholder,
            eso_reads,
        };
    let kv_seeds = vec![
        // Robots of phase 14 replace these placeholders.
        seed(
            contract::KV_HARBOR_PUSH,
            placeholder(&["username", "password"]),
            true,
            false,
        ),
        seed(
            contract::KV_HARBOR_SCRATCH,
            placeholder(&["username", "password"]),
            true,
            false,
        ),
        // Argo CD's pull-request generator reads it through External Secrets; phase 15 puts its
        // own read_api group token here. Never the admin token the phases run with.
        seed(
            contract::KV_GITLAB_GENERATOR_TOKEN,
            placeholder(&["token"]),
            true,
            true,
        ),
        seed("ci/sonarqube-token", placeholder(&["token"]), true, false),
        // The Argo CD project-role token of deploy-ephemeral/cleanup-ephemeral: phase 15 mints
        // it and replaces this placeholder.
        seed(
            contract::KV_ARGOCD_TOKEN,
            placeholder(&["token"]),
            true,
            false,
        ),
        // Not a secret: where the signing key lives (the key itself never leaves transit).
        seed(
            "ci/signing-key",
            [
                (
                    "cosign_key".to_owned(),
                    format!("hashivault://{SIGNING_KEY}"),
                ),
                ("transit_mount".to_owned(), TRANSIT_MOUNT.to_owned()),
                ("key_name".to_owned(), SIGNING_KEY.to_owned()),
            ]
            .into(),
            false,
            false,
        ),
    ];
    let mut auth_methods = vec![
        mount(JWT_MOUNT, "jwt", &[], "GitLab CI id_tokens (cicd-buildout)"),
        mount(
            K8S_MOUNT,
            "kubernetes",
            &[],
            "Kubernetes service accounts (cicd-buildout)",
        ),
    ];
    let (human_groups, human_auth_missing) = match inputs.keycloak_issuer {
        Some(issuer) => {
            auth_methods.push(mount(
                HUMAN_MOUNT,
                "jwt",
                &[],
                "People, with their Keycloak ID token (cicd-buildout)",
            ));
            documents.extend(human_documents(s, issuer));
            (human_groups(s), None)
        }
        None => (
            Vec::new(),
            Some(format!(
                "Keycloak is unknown (set {} and {}): no Vault login for people, so cicd-admins and cicd-security get no Vault policy",
                common::env::KEYCLOAK_URL,
                common::env::KC_REALM
            )),
        ),
    };

    Desired {
        secret_engines: vec![
            mount(
                KV_MOUNT,
                "kv",
                &[("version", "2")],
                "CI/CD and service secrets (cicd-buildout)",
            ),
            mount(
                TRANSIT_MOUNT,
                "transit",
                &[],
                "Image signing keys (cicd-buildout)",
            ),
        ],
        auth_methods,
        policies: POLICIES
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
        templated_policies: TEMPLATED_POLICIES
            .iter()
            .map(|(n, t, m)| ((*n).to_owned(), (*t).to_owned(), (*m).to_owned()))
            .collect(),
        documents,
        signing_key: (TRANSIT_MOUNT.to_owned(), SIGNING_KEY.to_owned()),
        kv_seeds,
        audit: AuditSpec {
            path: "cicd".into(),
            kind: "file".into(),
            file_path: s.vault_audit_file_path.clone(),
        },
        kube_objects: kube_objects(inputs),
        ci_cert_role: {
            let domains = match &s.vault_ci_cert_domains {
                Some(list_setting) => list(list_setting),
                None => inputs
                    .domain
                    .map(|d| vec![format!("ci.{d}")])
                    .unwrap_or_default(),
            };
            (!domains.is_empty()).then(|| {
                (
                    s.vault_ci_pki_mount.clone(),
                    ci_cert_role(&s.vault_ci_pki_mount, &domains),
                )
            })
        },
        services,
        service_groups: project_paths
            .iter()
            .filter_map(|glob| glob.strip_suffix("/*"))
            .filter(|group| !group.contains('*'))
            .map(str::to_owned)
            .collect(),
        human_groups,
        human_auth_missing,
    }
}

/// The human login: Vault validates Keycloak ID tokens against the realm's discovery document
/// and keys, takes the `groups` claim into group aliases, and the external groups of
/// [`human_groups`] attach the policies. The role itself grants only `default`.
fn human_documents(s: &Settings, issuer: &str) -> Vec<VaultDocument> {
    vec![
        doc(
            &format!("auth/{HUMAN_MOUNT}/config"),
            "vault jwt config",
            HUMAN_MOUNT,
            json!({
                "oidc_discovery_url": issuer,
                "bound_issuer": issuer,
                // Keycloak signs with RS256 by default; ES256 where the realm has an EC key.
                "jwt_supported_algs": ["RS256", "ES256"],
                "default_role": HUMAN_ROLE,
            }),
        ),
        doc(
            &format!("auth/{HUMAN_MOUNT}/role/{HUMAN_ROLE}"),
            "vault jwt role",
            HUMAN_ROLE,
            json!({
                "role_type": "jwt",
                "bound_audiences": [s.vault_human_oidc_client_id],
                "user_claim": "preferred_username",
                "groups_claim": "groups",
                "claim_mappings": {"preferred_username": "username"},
                "token_policies": ["default"],
                "token_ttl": 3600,
                "token_max_ttl": 28_800,
            }),
        ),
    ]
}

/// `VAULT_HUMAN_GROUP_POLICIES` as groups (plan §5.4: cicd-admins → ci-admin, cicd-security →
/// security-audit).
fn human_groups(s: &Settings) -> Vec<HumanGroup> {
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in list(&s.vault_human_group_policies) {
        if let Some((group, policy)) = pair.split_once('=') {
            by_group
                .entry(group.trim().to_owned())
                .or_default()
                .push(policy.trim().to_owned());
        }
    }
    by_group
        .into_iter()
        .map(|(name, mut policies)| {
            policies.sort();
            policies.dedup();
            HumanGroup {
                name,
                policies,
                mount: HUMAN_MOUNT.to_owned(),
            }
        })
        .collect()
}

fn doc(path: &str, resource: &'static str, name: &str, body: Value) -> VaultDocument {
    VaultDocument {
        path: path.into(),
        resource,
        name: name.into(),
        body,
    }
}

fn kube_objects(inputs: &Inputs<'_>) -> Vec<(Value, Option<&'static str>)> {
    let s = inputs.settings;
    let labels = owned_labels(PHASE);
    let reviewers: Vec<Value> = match s.vault_k8s_token_reviewer {
        TokenReviewer::Vault => vec![
            json!({"kind": "ServiceAccount", "name": s.vault_k8s_service_account, "namespace": s.vault_k8s_namespace}),
        ],
        TokenReviewer::Client => vec![
            json!({"kind": "ServiceAccount", "name": s.eso_service_account, "namespace": s.eso_namespace}),
            json!({"kind": "ServiceAccount", "name": "argocd-server", "namespace": "argocd"}),
            json!({"kind": "ServiceAccount", "name": "argocd-repo-server", "namespace": "argocd"}),
        ],
    };
    let mut objects = vec![
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.eso_namespace, "labels": labels}}),
            None,
        ),
        (
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "vault-cicd-token-reviewer", "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
                "subjects": reviewers,
            }),
            None,
        ),
        (eso_application(s, &labels), Some(ARGOCD_APPLICATION_CRD)),
    ];
    let mut vault_provider = json!({
        "server": s.eso_vault_server.clone().unwrap_or_else(|| inputs.vault_addr.to_owned()),
        "path": KV_MOUNT,
        "version": "v2",
        "auth": {"kubernetes": {
            "mountPath": K8S_MOUNT,
            "role": "external-secrets",
            // Explicit namespace: on a ClusterSecretStore it otherwise defaults to the namespace of
            // each ExternalSecret, where ESO's service account does not exist ("serviceaccount not found").
            "serviceAccountRef": {"name": s.eso_service_account, "namespace": s.eso_namespace},
        }},
    });
    if let Some(ca) = inputs.platform_ca_pem {
        objects.push((
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vault-ca", "namespace": s.eso_namespace, "labels": labels}, "data": {"ca.crt": ca}}),
            None,
        ));
        vault_provider["caProvider"] = json!({"type": "ConfigMap", "name": "vault-ca", "namespace": s.eso_namespace, "key": "ca.crt"});
    }
    let mut pull_provider = vault_provider.clone();
    pull_provider["auth"]["kubernetes"]["role"] = json!(contract::PULL_STORE_VAULT_ROLE);
    objects.push((
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": contract::SECRET_STORE, "labels": labels},
            "spec": {
                "provider": {"vault": vault_provider},
                // Defence in depth: the control is the `ephemeral` AppProject, which refuses every
                // External Secrets kind, since the label comes from the merge request's own
                // Application (ADR 0008).
                "conditions": [{"namespaceSelector": {"matchExpressions": [
                    {"key": contract::EPHEMERAL_LABEL, "operator": "DoesNotExist"},
                ]}}],
            },
        }),
        Some(CLUSTER_SECRET_STORE_CRD),
    ));
    objects.push((
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": contract::PULL_SECRET_STORE, "labels": labels},
            "spec": {"provider": {"vault": pull_provider}},
        }),
        Some(CLUSTER_SECRET_STORE_CRD),
    ));

    objects
}

/// The plan's per-service `ExternalSecret` (§3.2), for the first service of `VAULT_CI_SERVICES` once
/// its project is known: it reads `services/<project id>` (the per-project layout).
pub fn example_external_secret(s: &Settings, project_id: u64) -> (Value, Option<&'static str>) {
    (
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "vault-backend-example", "namespace": s.eso_namespace, "labels": owned_labels(PHASE)},
            "spec": {
                "refreshInterval": "5m",
                "secretStoreRef": {"name": contract::SECRET_STORE, "kind": "ClusterSecretStore"},
                "target": {"name": "vault-backend-example", "creationPolicy": "Owner"},
                "data": [{"secretKey": "DATABASE_URL", "remoteRef": {"key": contract::kv_service_secrets(project_id), "property": "database-url"}}],
            },
        }),
        Some(EXTERNAL_SECRET_CRD),
    )
}

/// ESO is installed by Argo CD from its Helm chart (docs/adr/0005): the pipeline is the only
/// deploy path, no helm CLI is needed, and Argo CD keeps it in sync.
fn eso_application(s: &Settings, labels: &Value) -> Value {
    let limits = |cpu: &str, mem: &str| json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": cpu, "memory": mem}});
    let pod_security = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    let container_security = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}});
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "external-secrets", "namespace": "argocd", "labels": labels},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://charts.external-secrets.io",
                "chart": "external-secrets",
                "targetRevision": s.eso_chart_version,
                "helm": {"releaseName": "external-secrets", "valuesObject": {
                    "installCRDs": true,
                    "serviceAccount": {"create": true, "name": s.eso_service_account},
                    "resources": limits("200m", "256Mi"),
                    "podSecurityContext": pod_security,
                    "securityContext": container_security,
                    "webhook": {"resources": limits("100m", "128Mi"), "podSecurityContext": pod_security, "securityContext": container_security},
                    "certController": {"resources": limits("100m", "128Mi"), "podSecurityContext": pod_security, "securityContext": container_security},
                }},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": s.eso_namespace},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        serde_json::from_value(json!({})).unwrap()
    }

    fn inputs(s: &Settings) -> Inputs<'_> {
        Inputs {
            settings: s,
            domain: Some("example.org"),
            gitlab_url: "https://gitlab.example.org",
            vault_addr: "https://vault.example.org",
            keycloak_issuer: None,
            k8s_ca_pem: None,
            platform_ca_pem: None,
        }
    }

    fn role<'a>(d: &'a Desired, name: &str) -> &'a Value {
        &d.documents.iter().find(|d| d.name == name).unwrap().body
    }

    #[test]
    fn each_role_binds_exactly_its_pipeline_kinds() {
        let s = settings();
        let d = desired(&inputs(&s));
        let image = role(&d, "gitlab-ci");
        assert_eq!(
            image["bound_claims"]["project_path"],
            json!(["platform_services/*"])
        );
        assert_eq!(
            image["bound_claims"]["ref_path"],
            json!(["refs/heads/main", "refs/tags/v*"])
        );
        assert_eq!(image["bound_claims"]["ref_protected"], json!(["true"]));
        // A merge request pipeline is never one of them, even from a protected branch.
        assert_eq!(
            image["bound_claims"]["pipeline_source"],
            json!(["push", "web", "schedule", "api"])
        );
        assert_eq!(
            image["bound_audiences"],
            json!(["https://vault.example.org"])
        );
        assert_eq!(image["token_ttl"], json!(3600));
        assert_eq!(
            image["token_policies"],
            json!(["ci-read-secrets", "ci-project-secrets"])
        );
        assert_eq!(
            role(&d, "gitlab-ci-release")["token_policies"],
            json!(["ci-read-secrets"])
        );
        assert_eq!(
            role(&d, "gitlab-ci-sign")["bound_claims"],
            image["bound_claims"]
        );
        assert_eq!(
            role(&d, "gitlab-ci-release")["bound_claims"]["ref_path"],
            json!(["refs/tags/v*"])
        );
        for main_only in ["gitlab-ci-deploy", "gitlab-ci-promote"] {
            assert_eq!(
                role(&d, main_only)["bound_claims"]["ref_path"],
                json!(["refs/heads/main"]),
                "{main_only}"
            );
        }
        let mr = role(&d, "gitlab-ci-mr");
        assert_eq!(
            mr["bound_claims"],
            json!({"project_path": ["platform_services/*"], "pipeline_source": ["merge_request_event"]})
        );
        assert_eq!(mr["token_policies"], json!(["ci-mr-scratch"]));
        // The templated policy needs project_id in the alias metadata.
        assert_eq!(
            role(&d, "gitlab-ci-promote")["claim_mappings"]["project_id"],
            "project_id"
        );
        let config = d
            .documents
            .iter()
            .find(|d| d.resource == "vault jwt config")
            .unwrap();
        assert_eq!(
            config.body["jwks_url"],
            json!("https://gitlab.example.org/-/jwks")
        );
    }

    #[test]
    fn policies_name_the_shared_delivery_paths() {
        let policy = |name: &str| POLICIES.iter().find(|(n, _)| *n == name).unwrap().1;
        let path = |kv: &str| format!("path \"kv/data/{kv}\"");
        assert!(policy("ci-read-secrets").contains(&path(contract::KV_HARBOR_PUSH)));
        assert_eq!(policy("ci-read-secrets").matches("path \"").count(), 1);
        assert!(policy("ci-mr-scratch").contains(&path(contract::KV_HARBOR_SCRATCH)));
        assert!(policy("ci-deploy-ephemeral").contains(&path(contract::KV_ARGOCD_TOKEN)));
        // The pull robot: its own policy, which reads nothing else (every namespace may use it).
        assert_eq!(
            policy("external-secrets-harbor-pull")
                .matches("path \"")
                .count(),
            1
        );
        assert!(policy("external-secrets-harbor-pull").contains(&path(contract::KV_HARBOR_PULL)));
        assert!(!policy("external-secrets").contains(contract::KV_HARBOR_PULL));
        for credential in [
            contract::KV_HARBOR_PUSH,
            contract::KV_ARGOCD_TOKEN,
            "ci/signing-key",
        ] {
            assert!(
                !policy("external-secrets").contains(credential),
                "{credential}"
            );
        }
        let promote = render_templated_policy(TEMPLATED_POLICIES[0].1, "auth_jwt_0123");
        let templated = contract::kv_promote_token(0).replace(
            "/0/",
            "/{{identity.entity.aliases.auth_jwt_0123.metadata.project_id}}/",
        );
        assert!(promote.contains(&path(&templated)), "{promote}");
    }

    #[test]
    fn every_policy_is_present_and_non_empty() {
        let names: Vec<&str> = POLICIES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "ci-read-secrets",
                "ci-sign-images",
                "ci-deploy-ephemeral",
                "ci-mr-scratch",
                "argocd-secrets",
                "ci-admin",
                "security-audit",
                "external-secrets",
                "external-secrets-harbor-pull"
            ]
        );
        assert!(POLICIES.iter().all(|(_, t)| t.contains("path \"")));
    }

    #[test]
    fn placeholders_are_marked_and_the_admin_token_is_never_stored() {
        let s = settings();
        let d = desired(&inputs(&s));
        // Phase 15 puts its read_api group token there; phase 13 only marks the path.
        let token = d
            .kv_seeds
            .iter()
            .find(|k| k.path == "ci/gitlab-api-token")
            .unwrap();
        assert!(token.placeholder && token.data.values().all(|v| v == PLACEHOLDER));
        let harbor = d
            .kv_seeds
            .iter()
            .find(|k| k.path == "ci/harbor-credentials")
            .unwrap();
        assert!(harbor.placeholder && harbor.data.values().all(|v| v == PLACEHOLDER));
        // Service secrets are per project (`services/<project id>`), seeded once GitLab is read.
        assert!(d.kv_seeds.iter().all(|k| !k.path.starts_with("services/")));
        assert_eq!(d.services, ["example-service"]);
        assert_eq!(d.service_groups, ["platform_services"]);
    }

    #[test]
    fn cluster_secret_store_names_the_service_account_namespace() {
        let s = settings();
        let d = desired(&inputs(&s));
        let css = d
            .kube_objects
            .iter()
            .find(|(o, _)| o["kind"] == "ClusterSecretStore")
            .unwrap();
        assert_eq!(
            css.0["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]["namespace"],
            json!("external-secrets")
        );
        assert!(d.kube_objects.iter().all(
            |(o, _)| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cicd-buildout"
        ));
    }
}
