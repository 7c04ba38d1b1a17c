# ci-read-secrets: GitLab CI jobs on protected main (role gitlab-ci) read CI and service secrets.
path "kv/data/ci/*" {
  capabilities = ["read"]
}

path "kv/metadata/ci/*" {
  capabilities = ["read", "list"]
}

path "kv/data/services/*" {
  capabilities = ["read"]
}
