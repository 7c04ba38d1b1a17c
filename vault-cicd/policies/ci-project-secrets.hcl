# ci-project-secrets: main and release pipelines (role gitlab-ci) read their own project's service
# secrets, and no other project's. Keyed by the id_token's project_id claim (mapped into the entity
# alias metadata), because OpenBao refuses a "/" in a templated path segment, so project_path
# cannot key it ("template substitution contains forbidden value"). {{JWT_ACCESSOR}} is the
# accessor of jwt/gitlab, filled in when the policy is written.
path "kv/data/services/{{identity.entity.aliases.{{JWT_ACCESSOR}}.metadata.project_id}}" {
  capabilities = ["read"]
}

path "kv/data/services/{{identity.entity.aliases.{{JWT_ACCESSOR}}.metadata.project_id}}/*" {
  capabilities = ["read"]
}
