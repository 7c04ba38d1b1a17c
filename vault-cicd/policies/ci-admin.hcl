# ci-admin: cicd-admins (plan §5.4) manage CI/CD secrets, roles and the signing key, but not
# Vault itself (no sys/ writes beyond reading policies and audit devices).
path "kv/data/ci/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "kv/metadata/ci/*" {
  capabilities = ["read", "list", "update", "delete"]
}

path "kv/data/services/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "kv/metadata/services/*" {
  capabilities = ["read", "list", "update", "delete"]
}

path "auth/jwt/gitlab/role/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "auth/kubernetes/role/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "transit/keys/ci-signing-key" {
  capabilities = ["read"]
}

path "transit/keys/ci-signing-key/rotate" {
  capabilities = ["update"]
}

path "sys/policies/acl/*" {
  capabilities = ["read", "list"]
}

path "sys/audit" {
  capabilities = ["read", "sudo"]
}
