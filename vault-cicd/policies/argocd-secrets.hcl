# argocd-secrets: Argo CD (kubernetes role argocd) reads its GitLab token and service secrets.
path "kv/data/ci/gitlab-api-token" {
  capabilities = ["read"]
}

path "kv/data/argocd/*" {
  capabilities = ["read"]
}

path "kv/data/services/*" {
  capabilities = ["read"]
}
