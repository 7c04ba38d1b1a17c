#!/usr/bin/env bash
# Every test: installs what they need (idempotent), lints the shell, runs the driver's bats tests
# and the Rust tests (unit tests, and integration tests against real OpenBao and kube-apiserver
# started by the sandbox on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-test-env.sh
# Every reference to a plan section in code and docs names one docs/plan/cicd-buildout-plan.md has.
./scripts/check-plan-refs.sh
# The seeded projects' own lock files match the workspace's (their images build --locked).
echo "==> seeded projects' lock files"
./scripts/demo-lockfiles.sh --check
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> shellcheck"
shellcheck -x scripts/*.sh integration/*.sh tests/bats/platform/scripts/*.sh sandbox/scripts/*.sh argo-delivery/cleaner/*.sh .ci/run
echo "==> cargo clippy (pedantic, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> bats (driver)"
bats tests/bats
echo "==> cargo test"
# Plan snapshots (insta) are compared, never written: review a change with `cargo insta review`
# or `INSTA_UPDATE=always cargo test -p <crate> --lib` and commit the .snap files.
rm -f target/test-artifacts/system/secret-access.txt
INSTA_UPDATE=no cargo test --workspace --no-fail-fast 2>&1 | tee target/cargo-test.log
# Who can read which secret, as the system test measured it (issue 16).
if [[ -f target/test-artifacts/system/secret-access.txt ]]; then
  cat target/test-artifacts/system/secret-access.txt
fi
# One closing line for the whole Rust run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "rust: %d passed, %d failed\n", p, f; exit (f > 0) }' target/cargo-test.log
