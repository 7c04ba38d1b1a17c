# external-secrets: External Secrets Operator (kubernetes role external-secrets) syncs CI and
# service secrets into namespaces.
path "kv/data/ci/*" {
  capabilities = ["read"]
}

path "kv/data/services/*" {
  capabilities = ["read"]
}

path "kv/metadata/ci/*" {
  capabilities = ["read", "list"]
}

path "kv/metadata/services/*" {
  capabilities = ["read", "list"]
}
