# argocd-secrets: Argo CD (kubernetes role argocd) reads what lives under argocd/ (the Harbor pull
# robot). Nothing else: its GitLab token reaches it through External Secrets, service secrets
# through each service's ExternalSecret, and the admin token is in no KV path at all (issue 16).
path "kv/data/argocd/*" {
  capabilities = ["read"]
}
