# external-secrets: External Secrets Operator (kubernetes role external-secrets, ClusterSecretStore
# vault-backend) reads exactly the paths the platform's ExternalSecrets reference: the pull-request
# generator's read_api group token (phase 15; never the admin token), the runner tokens (16), the DORA collector's secrets (17)
# and per-service secrets. The Harbor pull robot has its own role and store
# (external-secrets-harbor-pull). CI credentials (robots that push, signing, the Argo CD and
# promotion tokens) stay out of reach of every namespace.
path "kv/data/ci/gitlab-api-token" {
  capabilities = ["read"]
}

path "kv/data/ci/runners/*" {
  capabilities = ["read"]
}

path "kv/data/monitoring/dora-collector" {
  capabilities = ["read"]
}

path "kv/data/services/*" {
  capabilities = ["read"]
}

path "kv/metadata/services/*" {
  capabilities = ["read", "list"]
}
