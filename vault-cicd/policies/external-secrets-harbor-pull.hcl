# external-secrets-harbor-pull: External Secrets Operator (kubernetes role
# external-secrets-harbor-pull, ClusterSecretStore vault-harbor-pull) reads the Harbor pull robot
# and nothing else. This store is the one every namespace may use, ephemeral merge request
# namespaces included, so it must not reach any other secret (docs/adr/0008).
path "kv/data/argocd/harbor-pull" {
  capabilities = ["read"]
}
