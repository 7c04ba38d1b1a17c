//! Every environment variable (and `scripts/.env` key) the project reads, as documented constants.
//!
//! Settings come from the platform's `scripts/.env` first and the process environment second (the
//! environment wins), so one name works in both places. `config::tests` checks that each settings
//! struct reads exactly these names.

// --- Files and locations -------------------------------------------------------------------------
/// Path of the platform's settings file (default `scripts/.env`, relative to `CICD_PLATFORM_DIR`).
pub const CICD_ENV_FILE: &str = "CICD_ENV_FILE";
/// Root of the platform checkout holding `scripts/.env` and `cluster/` (default: current directory).
pub const CICD_PLATFORM_DIR: &str = "CICD_PLATFORM_DIR";
/// Kubeconfig of the RKE2 cluster (default `cluster/kubeconfig-rke2.yaml`).
pub const KUBECONFIG: &str = "KUBECONFIG";
/// The Vault init output holding `.root_token` (default `cluster/vault-init.json`).
pub const VAULT_INIT_FILE: &str = "VAULT_INIT_FILE";
/// File holding the GitLab API token when `GITLAB_API_TOKEN` is unset (default `scripts/.gitlab-api-token`).
pub const GITLAB_API_TOKEN_FILE: &str = "GITLAB_API_TOKEN_FILE";
/// PEM bundle of the platform's private CA, trusted in addition to the system roots.
pub const CICD_CA_BUNDLE: &str = "CICD_CA_BUNDLE";

/// Directory of the local sandbox's state, logs and env file (default `.sandbox`).
pub const CICD_SANDBOX_DIR: &str = "CICD_SANDBOX_DIR";
/// `true` in the local sandbox's env file: the preflight and the readiness report say "not in
/// the sandbox" for servers it does not run (Grafana) instead of failing.
pub const CICD_SANDBOX: &str = "CICD_SANDBOX";
/// The readiness report's attestation file (YAML): what no API proves, such as runbooks reviewed
/// and rollback drills (`cicd-readiness --attestations`).
pub const CICD_READINESS_ATTESTATIONS: &str = "CICD_READINESS_ATTESTATIONS";
/// `true` accepts a Free-tier GitLab in the preflight (a warning instead of a stop): phases 12 and
/// 17 then skip approval rules, code-owner approvals and group webhooks with a warning.
pub const CICD_ACCEPT_FREE_TIER: &str = "CICD_ACCEPT_FREE_TIER";
/// The checkout of cicd-buildout that phase 17 seeds as `platform_services/cicd-buildout` (the
/// producer of the readiness report's image): its `HEAD` commit. Default: the checkout
/// the binaries were built from.
pub const CICD_SOURCE_DIR: &str = "CICD_SOURCE_DIR";
/// `free`, `premium` or `ultimate`: the GitLab tier to assume when the token may not read the
/// licence (an administrator-only endpoint), as the in-cluster readiness report's read-only group
/// tokens may not. Phase 17 writes the tier it read into `ConfigMap` `cicd-readiness-env`. Ignored
/// whenever the licence can be read.
pub const CICD_GITLAB_TIER: &str = "CICD_GITLAB_TIER";
/// The Vault Kubernetes auth role the in-cluster readiness report logs in with, to read its own
/// read-only credentials: its GitLab group tokens at `kv/monitoring/cicd-readiness` (phase 17)
/// and its Harbor robot at `kv/monitoring/cicd-readiness-harbor` (phase 14). Phase 17 sets it in
/// `cicd-readiness-env`. Unset: the report uses the operator's credentials.
pub const CICD_READINESS_VAULT_ROLE: &str = "CICD_READINESS_VAULT_ROLE";
/// The service account token presented to Vault's Kubernetes auth with
/// `CICD_READINESS_VAULT_ROLE` (default: the pod's own,
/// `/var/run/secrets/kubernetes.io/serviceaccount/token`).
pub const CICD_SERVICE_ACCOUNT_TOKEN_FILE: &str = "CICD_SERVICE_ACCOUNT_TOKEN_FILE";

// --- Platform identity and service URLs -----------------------------------------------------------
/// Base domain of the platform; every service URL is derived from it unless overridden.
pub const DOMAIN: &str = "DOMAIN";
/// GitLab URL (default `https://gitlab.$DOMAIN`).
pub const GITLAB_URL: &str = "GITLAB_URL";
/// Vault URL (default `https://vault.$DOMAIN`).
pub const VAULT_ADDR: &str = "VAULT_ADDR";
/// Harbor URL (default `https://harbor.$DOMAIN`).
pub const HARBOR_URL: &str = "HARBOR_URL";
/// Keycloak URL (default `https://keycloak.$DOMAIN`).
pub const KEYCLOAK_URL: &str = "KEYCLOAK_URL";
/// Argo CD URL (default `https://argo.$DOMAIN`).
pub const ARGOCD_URL: &str = "ARGOCD_URL";
/// Prometheus URL (default `https://prometheus.$DOMAIN`), for phases that query it.
pub const PROMETHEUS_URL: &str = "PROMETHEUS_URL";

// --- Credentials (secrets: never logged, never on a command line) ---------------------------------
/// Vault token; when unset, `.root_token` of `VAULT_INIT_FILE` is used.
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
/// GitLab API token (else read from `GITLAB_API_TOKEN_FILE`).
pub const GITLAB_API_TOKEN: &str = "GITLAB_API_TOKEN";
/// Argo CD's admin password, with which phase 15 mints CI's project-role token (default: Secret
/// `argocd-initial-admin-secret` in `ARGOCD_NAMESPACE`).
pub const ARGOCD_ADMIN_PASSWORD: &str = "ARGOCD_ADMIN_PASSWORD";

// --- HTTP behaviour -------------------------------------------------------------------------------
/// Per-request timeout in seconds (default 30).
pub const CICD_HTTP_TIMEOUT_SECS: &str = "CICD_HTTP_TIMEOUT_SECS";
/// Retries of idempotent requests on 429/5xx/connection errors (default 4).
pub const CICD_HTTP_RETRIES: &str = "CICD_HTTP_RETRIES";
/// `true` lets the phases talk plain `http://` to a non-loopback GitLab, Vault, Harbor, Keycloak
/// or Argo CD (default: refused, because tokens would cross the network unencrypted; loopback
/// addresses, such as the sandbox's, are always allowed).
pub const CICD_ALLOW_INSECURE_HTTP: &str = "CICD_ALLOW_INSECURE_HTTP";

// --- Phase 13 (vault-cicd) ----------------------------------------------------------------------------
/// Audience GitLab `id_tokens` must carry (`aud:`), bound on every JWT role (default: `VAULT_ADDR`).
pub const VAULT_JWT_AUDIENCE: &str = "VAULT_JWT_AUDIENCE";
/// Comma-separated `project_path` globs allowed to log in (default `platform_services/*`).
pub const VAULT_CI_PROJECT_PATHS: &str = "VAULT_CI_PROJECT_PATHS";
/// Comma-separated protected branches the CI roles treat as the default branch (default `main`).
pub const VAULT_CI_REFS: &str = "VAULT_CI_REFS";
/// Comma-separated service names whose `services/<project id>` KV entries get placeholders; each is
/// looked up as `<group>/<name>` in the groups of `VAULT_CI_PROJECT_PATHS` (default `example-service`).
pub const VAULT_CI_SERVICES: &str = "VAULT_CI_SERVICES";
/// Audience of the Keycloak ID tokens humans log in to Vault with (`jwt/keycloak`): the client id
/// of the realm's Vault client (default `vault`).
pub const VAULT_HUMAN_OIDC_CLIENT_ID: &str = "VAULT_HUMAN_OIDC_CLIENT_ID";
/// Comma-separated `keycloak-group=policy` pairs: Vault external identity groups that give the
/// members of each Keycloak group a policy (default `cicd-admins=ci-admin,cicd-security=security-audit`).
pub const VAULT_HUMAN_GROUP_POLICIES: &str = "VAULT_HUMAN_GROUP_POLICIES";
/// Kubernetes API URL as Vault reaches it (default `https://kubernetes.default.svc:443`, Vault in-cluster).
pub const VAULT_K8S_HOST: &str = "VAULT_K8S_HOST";
/// PEM file of the CA that signs the Kubernetes API's certificate, for Vault outside the cluster
/// (unset in-cluster: Vault uses its pod's CA).
pub const VAULT_K8S_CA_CERT: &str = "VAULT_K8S_CA_CERT";
/// Who calls the `TokenReview` API for Kubernetes logins: `vault` (Vault's own service account,
/// in-cluster; default) or `client` (the logging-in service account's own token, Vault outside the cluster).
pub const VAULT_K8S_TOKEN_REVIEWER: &str = "VAULT_K8S_TOKEN_REVIEWER";
/// Namespace and service account of the Vault server (defaults `vault` / `vault`).
pub const VAULT_K8S_NAMESPACE: &str = "VAULT_K8S_NAMESPACE";
/// Service account the Vault server runs as (default `vault`).
pub const VAULT_K8S_SERVICE_ACCOUNT: &str = "VAULT_K8S_SERVICE_ACCOUNT";
/// File path of the CI/CD audit device (default `/vault/audit/cicd-audit.log`).
pub const VAULT_AUDIT_FILE_PATH: &str = "VAULT_AUDIT_FILE_PATH";
/// The platform's intermediate PKI mount (its phase 2: `pki_int`, `pathlen:0`) on which phase 13
/// creates the role `ci-server-cert` (default `pki_int`).
pub const VAULT_CI_PKI_MOUNT: &str = "VAULT_CI_PKI_MOUNT";
/// Comma-separated domains `ci-server-cert` may issue for, subdomains included (default
/// `ci.$DOMAIN`): CI-only names, never the platform's own services.
pub const VAULT_CI_CERT_DOMAINS: &str = "VAULT_CI_CERT_DOMAINS";
/// Namespace and service account of External Secrets Operator (defaults `external-secrets`).
pub const ESO_NAMESPACE: &str = "ESO_NAMESPACE";
/// Service account of External Secrets Operator (default `external-secrets`).
pub const ESO_SERVICE_ACCOUNT: &str = "ESO_SERVICE_ACCOUNT";
/// Vault URL as ESO reaches it (default: `VAULT_ADDR`).
pub const ESO_VAULT_SERVER: &str = "ESO_VAULT_SERVER";
/// ESO Helm chart version installed through the Argo CD Application (default: the version pinned in vault-cicd).
pub const ESO_CHART_VERSION: &str = "ESO_CHART_VERSION";
/// Seconds to wait for CRDs to become Established (default 300).
pub const CICD_CRD_WAIT_SECS: &str = "CICD_CRD_WAIT_SECS";

// --- Keycloak (phase 12 reads group members) ---
/// Keycloak realm of the platform's users (the base platform's setting).
pub const KC_REALM: &str = "KC_REALM";
/// Confidential client whose service account may view users and query groups.
pub const KEYCLOAK_ADMIN_CLIENT_ID: &str = "KEYCLOAK_ADMIN_CLIENT_ID";
/// Secret of `KEYCLOAK_ADMIN_CLIENT_ID`.
pub const KEYCLOAK_ADMIN_CLIENT_SECRET: &str = "KEYCLOAK_ADMIN_CLIENT_SECRET";
/// Master-realm admin user, when no client is configured (default `admin`).
pub const KEYCLOAK_ADMIN_USER: &str = "KEYCLOAK_ADMIN_USER";
/// Password of `KEYCLOAK_ADMIN_USER`.
pub const KEYCLOAK_ADMIN_PASSWORD: &str = "KEYCLOAK_ADMIN_PASSWORD";

// --- Phase 12 (gitlab-harden) ---
/// Comma-separated GitLab groups whose projects are hardened, subgroups included (default `platform_services`).
pub const GITLAB_GROUPS: &str = "GITLAB_GROUPS";
/// Comma-separated globs of project paths that hold production manifests (default `*-manifests,*-gitops,*/production-*`).
pub const GITLAB_PRODUCTION_REPOS: &str = "GITLAB_PRODUCTION_REPOS";
/// Comma-separated globs of project paths of infrastructure code (Terraform), which need two
/// platform-admins (default `*/infrastructure/*,*-terraform`; topic `infrastructure` too).
pub const GITLAB_INFRASTRUCTURE_REPOS: &str = "GITLAB_INFRASTRUCTURE_REPOS";
/// Comma-separated globs of project paths of security policies and RBAC, which need two
/// platform-admins and a SEC-1 (cicd-security) review (default
/// `*/security-policies,*/security-policies-*,*-rbac,*/rbac-*`; topic `security-policies` too).
pub const GITLAB_SECURITY_REPOS: &str = "GITLAB_SECURITY_REPOS";
/// Merge method that keeps branches up to date: `rebase_merge` (default) or `ff`.
pub const GITLAB_MERGE_METHOD: &str = "GITLAB_MERGE_METHOD";
/// Group that holds the approver groups mirrored from Keycloak (default `keycloak-groups`).
pub const GITLAB_APPROVER_GROUP_PARENT: &str = "GITLAB_APPROVER_GROUP_PARENT";
/// GitLab's `OmniAuth` provider name for Keycloak (default `openid_connect`).
pub const GITLAB_OIDC_PROVIDER: &str = "GITLAB_OIDC_PROVIDER";
/// Keycloak group → GitLab role, e.g. `platform-admins=50,developers=30` (default: the plan's table).
pub const GITLAB_KEYCLOAK_GROUP_LEVELS: &str = "GITLAB_KEYCLOAK_GROUP_LEVELS";
/// `false` skips the Keycloak → GitLab membership sync (default `true`).
pub const GITLAB_KEYCLOAK_SYNC: &str = "GITLAB_KEYCLOAK_SYNC";
/// Parallel GitLab requests (default 8).
pub const GITLAB_CONCURRENCY: &str = "GITLAB_CONCURRENCY";
/// `false` skips the Traefik SSH route (default `true`).
pub const GITLAB_SSH_ROUTE: &str = "GITLAB_SSH_ROUTE";
/// Namespace of the GitLab Helm release (default `gitlab`).
pub const GITLAB_NAMESPACE: &str = "GITLAB_NAMESPACE";
/// gitlab-shell Service the SSH route targets (default `gitlab-gitlab-shell`).
pub const GITLAB_SHELL_SERVICE: &str = "GITLAB_SHELL_SERVICE";
/// Traefik entry point for SSH (default `ssh`).
pub const TRAEFIK_SSH_ENTRYPOINT: &str = "TRAEFIK_SSH_ENTRYPOINT";
/// Where the CI tools live (gitlab-ci-local, scanners; default `~/.cache/cicd-buildout/tools`).
pub const CICD_TOOLS_DIR: &str = "CICD_TOOLS_DIR";

// --- Phase 12b (sop-wiki) ---
/// Folder whose `*.md` files phase 12b publishes as the SOP wiki (default `docs/engineering`,
/// relative to `CICD_PLATFORM_DIR`); when it does not exist the phase publishes nothing and says so.
pub const SOP_WIKI_DOCS_DIR: &str = "SOP_WIKI_DOCS_DIR";

// --- Harbor and phase 14 (ci-templates) ---
/// Password of Harbor's `admin` user (the base platform's setting).
pub const HARBOR_ADMIN_PASSWORD: &str = "HARBOR_ADMIN_PASSWORD";
/// GitLab project the template library is committed to (default `platform_services/gitlab-ci-templates`).
pub const CI_TEMPLATES_PROJECT: &str = "CI_TEMPLATES_PROJECT";
/// GitLab group whose CI/CD variables phase 14 sets (default `platform_services`).
pub const CI_VARIABLES_GROUP: &str = "CI_VARIABLES_GROUP";
/// Group variable `COVERAGE_THRESHOLD` (default 80).
pub const CI_COVERAGE_THRESHOLD: &str = "CI_COVERAGE_THRESHOLD";
/// Group variable `TRIVY_SEVERITY` (default `CRITICAL,HIGH`).
pub const CI_TRIVY_SEVERITY: &str = "CI_TRIVY_SEVERITY";

// --- Phase 15 (argo-delivery) ---
/// Namespace of Argo CD (default `argocd`).
pub const ARGOCD_NAMESPACE: &str = "ARGOCD_NAMESPACE";
/// Prometheus as Argo Rollouts reaches it in the cluster (default `http://prometheus-server.monitoring.svc:9090`).
pub const ANALYSIS_PROMETHEUS_URL: &str = "ANALYSIS_PROMETHEUS_URL";
/// Success rate a canary must reach to pass (default 0.98).
pub const ANALYSIS_SUCCESS_RATE_TARGET: &str = "ANALYSIS_SUCCESS_RATE_TARGET";
/// Success rate under which a canary fails (default 0.95).
pub const ANALYSIS_SUCCESS_RATE_MIN: &str = "ANALYSIS_SUCCESS_RATE_MIN";
/// p99 latency in seconds a canary must stay under to pass (default 0.5).
pub const ANALYSIS_P99_TARGET_SECONDS: &str = "ANALYSIS_P99_TARGET_SECONDS";
/// p99 latency in seconds over which a canary fails (default 1.0).
pub const ANALYSIS_P99_MAX_SECONDS: &str = "ANALYSIS_P99_MAX_SECONDS";
/// 5xx ratio a canary must stay under to pass (default 0.02).
pub const ANALYSIS_ERROR_RATE_TARGET: &str = "ANALYSIS_ERROR_RATE_TARGET";
/// 5xx ratio over which a canary fails (default 0.05).
pub const ANALYSIS_ERROR_RATE_MAX: &str = "ANALYSIS_ERROR_RATE_MAX";
/// Lifetime of an ephemeral environment, `<n>[smhd]` (default `4h`).
pub const EPHEMERAL_TTL: &str = "EPHEMERAL_TTL";

// --- Phase 16 security-setup ---------------------------------------------------------------------
/// GitLab group the four runner pools' runners are registered to (default `platform_services`).
pub const SECURITY_RUNNER_GROUP: &str = "SECURITY_RUNNER_GROUP";
/// Description that identifies the security pool's runner in GitLab (default `security-runners`;
/// the other pools' runners are `<pool>-runners`).
pub const SECURITY_RUNNER_DESCRIPTION: &str = "SECURITY_RUNNER_DESCRIPTION";
/// Namespace of the runner pools (default `gitlab-runners`).
pub const RUNNER_NAMESPACE: &str = "RUNNER_NAMESPACE";
/// gitlab-runner Helm chart version the Argo CD Application pins (default `0.71.0`).
pub const GITLAB_RUNNER_CHART_VERSION: &str = "GITLAB_RUNNER_CHART_VERSION";
/// Comma-separated Harbor projects that get scanning, the severity gate and alerts (default `platform-services,application-services`).
pub const HARBOR_SCAN_PROJECTS: &str = "HARBOR_SCAN_PROJECTS";
/// Scan-all schedule: `hourly`, `daily` (default), `weekly`, `none` or a 6-field cron.
pub const HARBOR_SCAN_ALL_SCHEDULE: &str = "HARBOR_SCAN_ALL_SCHEDULE";
/// `false` lets vulnerable images be pulled (default `true`: Harbor's `prevent_vul`).
pub const HARBOR_PREVENT_VULNERABLE: &str = "HARBOR_PREVENT_VULNERABLE";
/// Lowest severity that blocks a pull: `low`, `medium`, `high`, `critical` (default).
pub const HARBOR_SEVERITY_GATE: &str = "HARBOR_SEVERITY_GATE";
/// Comma-separated CVE ids of the system CVE allowlist (default empty).
pub const HARBOR_CVE_ALLOWLIST: &str = "HARBOR_CVE_ALLOWLIST";
/// Mattermost incoming-webhook URL for scan alerts (a secret; default: read from Vault).
pub const MATTERMOST_WEBHOOK_URL: &str = "MATTERMOST_WEBHOOK_URL";
/// KV v2 path (mount `kv`) holding key `url` when `MATTERMOST_WEBHOOK_URL` is unset (default `ci/mattermost-webhook`).
pub const MATTERMOST_WEBHOOK_VAULT_PATH: &str = "MATTERMOST_WEBHOOK_VAULT_PATH";
/// Namespace of the `ConfigMap` `cosign-public-key` (default `gitlab-runners`).
pub const COSIGN_PUBLIC_KEY_NAMESPACE: &str = "COSIGN_PUBLIC_KEY_NAMESPACE";

// --- Phase 17 obs-setup --------------------------------------------------------------------------
/// Namespace of the DORA collector, its dashboard, rules and monitor (default `monitoring`).
pub const OBS_NAMESPACE: &str = "OBS_NAMESPACE";
/// GitLab group whose webhook feeds the DORA collector (default `platform_services`).
pub const OBS_WEBHOOK_GROUP: &str = "OBS_WEBHOOK_GROUP";
/// Public URL GitLab posts webhooks to (default `https://dora.$DOMAIN/webhooks/gitlab`).
pub const OBS_WEBHOOK_URL: &str = "OBS_WEBHOOK_URL";
/// How long without an accepted GitLab webhook before `DoraWebhooksStale` fires (default `6h`).
pub const OBS_WEBHOOK_STALE_AFTER: &str = "OBS_WEBHOOK_STALE_AFTER";
/// `true` when Vault's `kv/monitoring/dora-collector` holds `database-url` (a `PostgreSQL` URL): 2 replicas (default `false`: `SQLite`, 1 replica).
pub const OBS_DORA_POSTGRES: &str = "OBS_DORA_POSTGRES";
/// With `OBS_DORA_POSTGRES`: `true` uses an external database at Vault `database-url` instead of
/// the collector's own `CloudNativePG` cluster (the default).
pub const OBS_DORA_POSTGRES_EXTERNAL: &str = "OBS_DORA_POSTGRES_EXTERNAL";
/// Labels the Prometheus Operator selects rules and monitors by, `k=v,…` (default `release=kube-prometheus-stack`).
pub const OBS_MONITOR_LABELS: &str = "OBS_MONITOR_LABELS";
/// Ingress class of the collector's public route (default `traefik`).
pub const OBS_INGRESS_CLASS: &str = "OBS_INGRESS_CLASS";
/// Namespace of the ingress controller, allowed to reach the collector (default `traefik`).
pub const OBS_INGRESS_NAMESPACE: &str = "OBS_INGRESS_NAMESPACE";
/// GitLab as the collector reaches it in the cluster (default `http://gitlab-webservice-default.$GITLAB_NAMESPACE.svc:8181`).
pub const OBS_GITLAB_INTERNAL_URL: &str = "OBS_GITLAB_INTERNAL_URL";
/// Namespace of Grafana Alloy, where the runner-log config goes (default `monitoring`).
pub const OBS_ALLOY_NAMESPACE: &str = "OBS_ALLOY_NAMESPACE";
/// Namespace of the Argo Rollouts controller, where phase 17 puts the notification `ConfigMap` and
/// Secret that send rollout events to the collector (default `argo-rollouts`).
pub const OBS_ROLLOUTS_NAMESPACE: &str = "OBS_ROLLOUTS_NAMESPACE";
/// Grafana URL the summary probes (default `https://grafana.$DOMAIN`).
pub const GRAFANA_URL: &str = "GRAFANA_URL";
/// The collector's base URL the summary probes `/readyz` at (default: the origin of `OBS_WEBHOOK_URL`).
pub const DORA_COLLECTOR_URL: &str = "DORA_COLLECTOR_URL";

// --- services/dora-collector ---------------------------------------------------------------------
/// The GitLab webhook's secret token (plan §4.1 name; from Secret `dora-collector-secrets`,
/// key `webhook-secret`). GitLab's only: each source has its own secret.
pub const GITLAB_WEBHOOK_SECRET: &str = "GITLAB_WEBHOOK_SECRET";
/// Bearer token of Argo Rollouts notifications (key `rollouts-webhook-secret`; unset: refused).
pub const DORA_ROLLOUTS_WEBHOOK_SECRET: &str = "DORA_ROLLOUTS_WEBHOOK_SECRET";
/// Bearer token of Harbor's scan webhooks (key `harbor-webhook-secret`; unset: refused).
pub const DORA_HARBOR_WEBHOOK_SECRET: &str = "DORA_HARBOR_WEBHOOK_SECRET";
/// Seconds between checkpoints of the collector's aggregates when facts arrive slowly (default
/// 60; also every 100,000 facts): a restart reads the checkpoint and the facts after it.
pub const DORA_CHECKPOINT_INTERVAL_SECS: &str = "DORA_CHECKPOINT_INTERVAL_SECS";
/// Distinct services with series of their own (default 500); later ones are `other`.
pub const DORA_MAX_SERVICES: &str = "DORA_MAX_SERVICES";
/// Distinct stage names beyond the library's with series of their own (default 30).
pub const DORA_MAX_STAGES: &str = "DORA_MAX_STAGES";
/// Where facts are stored: `sqlite://<path>` (default `sqlite:///var/lib/dora-collector/dora.db`,
/// one replica) or `postgres://user:pass@host/db` (replicas > 1).
pub const DORA_STORE_URL: &str = "DORA_STORE_URL";
/// Address the collector listens on (default `0.0.0.0:8080`).
pub const DORA_LISTEN_ADDR: &str = "DORA_LISTEN_ADDR";
/// Largest webhook body accepted, in bytes (default 4 MiB); larger ones get 413.
pub const DORA_MAX_BODY_BYTES: &str = "DORA_MAX_BODY_BYTES";
/// Webhooks waiting for the store at most (default 8192); beyond it the collector answers 503.
pub const DORA_QUEUE_CAPACITY: &str = "DORA_QUEUE_CAPACITY";
/// Window of `cicd_change_failure_rate`, in seconds (default 30 days).
pub const DORA_CHANGE_FAILURE_WINDOW_SECS: &str = "DORA_CHANGE_FAILURE_WINDOW_SECS";
/// Window of `cicd_pipeline_success_rate`, in seconds (default 7 days).
pub const DORA_SUCCESS_RATE_WINDOW_SECS: &str = "DORA_SUCCESS_RATE_WINDOW_SECS";
/// GitLab URL the collector heals missed webhooks from (unset: no healing).
pub const DORA_GITLAB_URL: &str = "DORA_GITLAB_URL";
/// Read-only GitLab token (`read_api`) for healing.
pub const DORA_GITLAB_TOKEN: &str = "DORA_GITLAB_TOKEN";
/// Group whose projects are healed (default `platform_services`).
pub const DORA_GITLAB_GROUP: &str = "DORA_GITLAB_GROUP";
/// Seconds between heal passes (default 900).
pub const DORA_HEAL_INTERVAL_SECS: &str = "DORA_HEAL_INTERVAL_SECS";
/// How far back the first heal pass reads, in seconds (default 7 days).
pub const DORA_HEAL_LOOKBACK_SECS: &str = "DORA_HEAL_LOOKBACK_SECS";

// --- Phase 18 (demo-apps) ---------------------------------------------------------------------------
/// `false` skips phase 18 in `deploy-cluster.sh` (default `true`).
pub const DEPLOY_DEMO_APPS: &str = "DEPLOY_DEMO_APPS";
/// Namespace of the NetOps Arcade (default `demo-apps`).
pub const DEMO_NAMESPACE: &str = "DEMO_NAMESPACE";
/// GitLab group holding the `packet-relay` and `netops-dashboard` projects (default `platform_services`).
pub const DEMO_GITLAB_GROUP: &str = "DEMO_GITLAB_GROUP";
/// Harbor project the demo images are pushed to (default `platform-services`).
pub const DEMO_HARBOR_PROJECT: &str = "DEMO_HARBOR_PROJECT";
/// Argo CD project of the demo Applications (default `production`, which allows `demo-apps`).
pub const DEMO_ARGOCD_PROJECT: &str = "DEMO_ARGOCD_PROJECT";
/// Release tag of the demo images (default `v0.1.0`): phase 18 tags both projects with it, the release
/// pipeline gives the image the same immutable tag, and the routers, dashboard and traffic generator run it (never `latest`).
pub const DEMO_IMAGE_TAG: &str = "DEMO_IMAGE_TAG";
/// Packets per second the traffic generator sends to router-west (default 0.5: one every 2 s).
pub const DEMO_GENERATOR_RATE: &str = "DEMO_GENERATOR_RATE";

// --- services/packet-relay -----------------------------------------------------------------------
/// This router's name: the hop it appends to packets and the `service` label of its metrics
/// (`router-west`, `router-core`, `router-east`, `router-north`; default `packet-relay`).
pub const ROUTER_NAME: &str = "ROUTER_NAME";
/// Where packets go next: comma-separated `http://host:port` or `name=http://host:port`; empty
/// for a terminal router (it delivers). Several hops share packets round-robin.
pub const NEXT_HOPS: &str = "NEXT_HOPS";
/// Address the relay (or the generator's metrics) listens on (default `0.0.0.0:8080`).
pub const RELAY_LISTEN_ADDR: &str = "RELAY_LISTEN_ADDR";
/// Per-hop timeout in milliseconds: connect plus answer of the next hop (default 2000).
pub const RELAY_HOP_TIMEOUT_MS: &str = "RELAY_HOP_TIMEOUT_MS";
/// Largest packet body accepted, in bytes (default 65536); larger ones get 413.
pub const RELAY_MAX_BODY_BYTES: &str = "RELAY_MAX_BODY_BYTES";
/// Connections a router serves at once (default 1024, at most 65,536); past it new ones wait in
/// the kernel's backlog and idle keep-alive connections are closed to make room.
pub const RELAY_MAX_CONNECTIONS: &str = "RELAY_MAX_CONNECTIONS";
/// Milliseconds a request head gets from its first byte, a body from the end of its head, and an
/// answer to be written (default 10000; 408 when over).
pub const RELAY_READ_TIMEOUT_MS: &str = "RELAY_READ_TIMEOUT_MS";
/// Milliseconds a relay connection may wait for its next request (default 60000).
pub const RELAY_IDLE_TIMEOUT_MS: &str = "RELAY_IDLE_TIMEOUT_MS";
/// Seconds in-flight packets get to finish after SIGTERM (default 10).
pub const RELAY_SHUTDOWN_GRACE_SECS: &str = "RELAY_SHUTDOWN_GRACE_SECS";
/// Version shown by the relay and the dashboard (default: the crate version; the image tag in a cluster).
pub const APP_VERSION: &str = "APP_VERSION";
/// Traffic generator: where packets go, `http://host:port/relay` or `name=http://…/relay` (default `http://router-west:8080/relay`).
pub const GENERATOR_TARGET: &str = "GENERATOR_TARGET";
/// Traffic generator: packets per second (default 10; fractions allowed).
pub const GENERATOR_RATE: &str = "GENERATOR_RATE";
/// Traffic generator: TTL of each packet (default 8).
pub const GENERATOR_TTL: &str = "GENERATOR_TTL";
/// Traffic generator: packets in flight at most (default 64).
pub const GENERATOR_CONCURRENCY: &str = "GENERATOR_CONCURRENCY";

// --- services/netops-dashboard -------------------------------------------------------------------
/// Address the dashboard listens on (default `0.0.0.0:8080`).
pub const DASHBOARD_LISTEN_ADDR: &str = "DASHBOARD_LISTEN_ADDR";
/// Routers scraped directly, `name=http://host:port,…` (the local arcade); unset in a cluster.
pub const DASHBOARD_ROUTERS: &str = "DASHBOARD_ROUTERS";
/// Prometheus the dashboard queries for link rates in a cluster (used when `DASHBOARD_ROUTERS` is unset).
pub const DASHBOARD_PROMETHEUS_URL: &str = "DASHBOARD_PROMETHEUS_URL";
/// Milliseconds between two reads of the routers' counters (default 1000).
pub const DASHBOARD_POLL_MS: &str = "DASHBOARD_POLL_MS";
/// Colour of this dashboard release in a blue-green switch, `blue` or `green` (default `blue`).
pub const APP_COLOR: &str = "APP_COLOR";

/// Every name above, for the configuration reference and the consistency test.
pub const ALL: &[&str] = &[
    CICD_ENV_FILE,
    CICD_PLATFORM_DIR,
    KUBECONFIG,
    VAULT_INIT_FILE,
    GITLAB_API_TOKEN_FILE,
    CICD_CA_BUNDLE,
    CICD_SANDBOX_DIR,
    CICD_SANDBOX,
    CICD_READINESS_ATTESTATIONS,
    CICD_ACCEPT_FREE_TIER,
    CICD_SOURCE_DIR,
    CICD_GITLAB_TIER,
    CICD_READINESS_VAULT_ROLE,
    CICD_SERVICE_ACCOUNT_TOKEN_FILE,
    DOMAIN,
    GITLAB_URL,
    VAULT_ADDR,
    HARBOR_URL,
    KEYCLOAK_URL,
    ARGOCD_URL,
    PROMETHEUS_URL,
    VAULT_TOKEN,
    GITLAB_API_TOKEN,
    CICD_HTTP_TIMEOUT_SECS,
    CICD_ALLOW_INSECURE_HTTP,
    CICD_HTTP_RETRIES,
    VAULT_JWT_AUDIENCE,
    VAULT_CI_PROJECT_PATHS,
    VAULT_CI_REFS,
    VAULT_CI_SERVICES,
    VAULT_K8S_HOST,
    VAULT_K8S_CA_CERT,
    VAULT_K8S_TOKEN_REVIEWER,
    VAULT_K8S_NAMESPACE,
    VAULT_K8S_SERVICE_ACCOUNT,
    VAULT_AUDIT_FILE_PATH,
    VAULT_CI_PKI_MOUNT,
    VAULT_HUMAN_OIDC_CLIENT_ID,
    VAULT_HUMAN_GROUP_POLICIES,
    VAULT_CI_CERT_DOMAINS,
    ESO_NAMESPACE,
    ESO_SERVICE_ACCOUNT,
    ESO_VAULT_SERVER,
    ESO_CHART_VERSION,
    CICD_CRD_WAIT_SECS,
    KC_REALM,
    KEYCLOAK_ADMIN_CLIENT_ID,
    KEYCLOAK_ADMIN_CLIENT_SECRET,
    KEYCLOAK_ADMIN_USER,
    KEYCLOAK_ADMIN_PASSWORD,
    GITLAB_GROUPS,
    GITLAB_PRODUCTION_REPOS,
    GITLAB_INFRASTRUCTURE_REPOS,
    GITLAB_SECURITY_REPOS,
    GITLAB_MERGE_METHOD,
    GITLAB_APPROVER_GROUP_PARENT,
    GITLAB_OIDC_PROVIDER,
    GITLAB_KEYCLOAK_GROUP_LEVELS,
    GITLAB_KEYCLOAK_SYNC,
    GITLAB_CONCURRENCY,
    GITLAB_SSH_ROUTE,
    GITLAB_NAMESPACE,
    GITLAB_SHELL_SERVICE,
    TRAEFIK_SSH_ENTRYPOINT,
    CICD_TOOLS_DIR,
    SOP_WIKI_DOCS_DIR,
    HARBOR_ADMIN_PASSWORD,
    CI_TEMPLATES_PROJECT,
    CI_VARIABLES_GROUP,
    CI_COVERAGE_THRESHOLD,
    CI_TRIVY_SEVERITY,
    ARGOCD_NAMESPACE,
    ANALYSIS_PROMETHEUS_URL,
    ANALYSIS_SUCCESS_RATE_TARGET,
    ANALYSIS_SUCCESS_RATE_MIN,
    ANALYSIS_P99_TARGET_SECONDS,
    ANALYSIS_P99_MAX_SECONDS,
    ANALYSIS_ERROR_RATE_TARGET,
    ANALYSIS_ERROR_RATE_MAX,
    ARGOCD_ADMIN_PASSWORD,
    EPHEMERAL_TTL,
    // phase 16 security-setup
    SECURITY_RUNNER_GROUP,
    SECURITY_RUNNER_DESCRIPTION,
    RUNNER_NAMESPACE,
    GITLAB_RUNNER_CHART_VERSION,
    HARBOR_SCAN_PROJECTS,
    HARBOR_SCAN_ALL_SCHEDULE,
    HARBOR_PREVENT_VULNERABLE,
    HARBOR_SEVERITY_GATE,
    HARBOR_CVE_ALLOWLIST,
    MATTERMOST_WEBHOOK_URL,
    MATTERMOST_WEBHOOK_VAULT_PATH,
    COSIGN_PUBLIC_KEY_NAMESPACE,
    // phase 17 obs-setup
    OBS_NAMESPACE,
    OBS_WEBHOOK_GROUP,
    OBS_WEBHOOK_URL,
    OBS_WEBHOOK_STALE_AFTER,
    OBS_DORA_POSTGRES,
    OBS_DORA_POSTGRES_EXTERNAL,
    OBS_MONITOR_LABELS,
    OBS_INGRESS_CLASS,
    OBS_INGRESS_NAMESPACE,
    OBS_GITLAB_INTERNAL_URL,
    OBS_ALLOY_NAMESPACE,
    OBS_ROLLOUTS_NAMESPACE,
    GRAFANA_URL,
    DORA_COLLECTOR_URL,
    // services/dora-collector
    GITLAB_WEBHOOK_SECRET,
    DORA_ROLLOUTS_WEBHOOK_SECRET,
    DORA_HARBOR_WEBHOOK_SECRET,
    DORA_CHECKPOINT_INTERVAL_SECS,
    DORA_MAX_SERVICES,
    DORA_MAX_STAGES,
    DORA_STORE_URL,
    DORA_LISTEN_ADDR,
    DORA_MAX_BODY_BYTES,
    DORA_QUEUE_CAPACITY,
    DORA_CHANGE_FAILURE_WINDOW_SECS,
    DORA_SUCCESS_RATE_WINDOW_SECS,
    DORA_GITLAB_URL,
    DORA_GITLAB_TOKEN,
    DORA_GITLAB_GROUP,
    DORA_HEAL_INTERVAL_SECS,
    DORA_HEAL_LOOKBACK_SECS,
    DEPLOY_DEMO_APPS,
    DEMO_NAMESPACE,
    DEMO_GITLAB_GROUP,
    DEMO_HARBOR_PROJECT,
    DEMO_ARGOCD_PROJECT,
    DEMO_IMAGE_TAG,
    DEMO_GENERATOR_RATE,
    ROUTER_NAME,
    NEXT_HOPS,
    RELAY_LISTEN_ADDR,
    RELAY_HOP_TIMEOUT_MS,
    RELAY_MAX_BODY_BYTES,
    RELAY_MAX_CONNECTIONS,
    RELAY_READ_TIMEOUT_MS,
    RELAY_IDLE_TIMEOUT_MS,
    RELAY_SHUTDOWN_GRACE_SECS,
    APP_VERSION,
    GENERATOR_TARGET,
    GENERATOR_RATE,
    GENERATOR_TTL,
    GENERATOR_CONCURRENCY,
    DASHBOARD_LISTEN_ADDR,
    DASHBOARD_ROUTERS,
    DASHBOARD_PROMETHEUS_URL,
    DASHBOARD_POLL_MS,
    APP_COLOR,
];
