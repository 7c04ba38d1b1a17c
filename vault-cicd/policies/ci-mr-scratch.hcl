# ci-mr-scratch: build-image of merge request pipelines (role gitlab-ci-mr) reads the Harbor robot
# ci-scratch-push, which may push and pull in project ci-scratch only (per-MR environments).
path "kv/data/ci/harbor-scratch-credentials" {
  capabilities = ["read"]
}
