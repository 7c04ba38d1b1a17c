# ci-read-secrets: the image jobs of protected main and protected v* tags (roles gitlab-ci: build,
# scan, SBOM, signature upload; gitlab-ci-release: the release tag) read the Harbor robot ci-push. Nothing else: no CI role
# reads the GitLab admin token or another job's credentials (docs/adr/0008).
path "kv/data/ci/harbor-credentials" {
  capabilities = ["read"]
}
