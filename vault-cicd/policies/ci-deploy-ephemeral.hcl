# ci-deploy-ephemeral: deploy-ephemeral and cleanup-ephemeral of protected main (role
# gitlab-ci-deploy) read the Argo CD project-role token of project ephemeral, minted by phase 15.
path "kv/data/ci/argocd-token" {
  capabilities = ["read"]
}
