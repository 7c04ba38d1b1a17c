# security-audit: cicd-security (plan §5.4) reviews configuration read-only: policies, roles,
# audit devices, secret metadata (never secret values).
path "sys/policies/acl" {
  capabilities = ["list"]
}

path "sys/policies/acl/*" {
  capabilities = ["read"]
}

path "sys/audit" {
  capabilities = ["read", "sudo"]
}

path "sys/auth" {
  capabilities = ["read"]
}

path "auth/jwt/gitlab/role/*" {
  capabilities = ["read", "list"]
}

path "auth/kubernetes/role/*" {
  capabilities = ["read", "list"]
}

path "kv/metadata/*" {
  capabilities = ["read", "list"]
}

path "transit/keys/ci-signing-key" {
  capabilities = ["read"]
}
