# ci-promote: promote-artifact of protected main (role gitlab-ci-promote) reads the promotion token
# of its own project only. The path is templated on the id_token's project_id claim, which the role
# maps into its entity alias metadata; {{JWT_ACCESSOR}} is replaced with the accessor of jwt/gitlab
# when the policy is written (a project id, not a path: OpenBao refuses "/" in a templated segment).
path "kv/data/ci/projects/{{identity.entity.aliases.{{JWT_ACCESSOR}}.metadata.project_id}}/promote" {
  capabilities = ["read"]
}
