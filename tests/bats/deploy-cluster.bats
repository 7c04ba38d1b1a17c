#!/usr/bin/env bats
# The driver's contract, with fake phase binaries that record how they were called.

setup() {
  ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
  DRIVER="$ROOT/scripts/deploy-cluster.sh"
  export CICD_BIN_DIR="$BATS_TEST_TMPDIR/bin"
  export CALLS="$BATS_TEST_TMPDIR/calls.log"
  # A configured platform (otherwise the driver falls back to the local sandbox).
  export CICD_ENV_FILE="$BATS_TEST_TMPDIR/platform.env"
  : > "$CICD_ENV_FILE"
  mkdir -p "$CICD_BIN_DIR"
  : > "$CALLS"
  for crate in gitlab-harden sop-wiki vault-cicd ci-templates argo-delivery security-setup obs-setup demo-apps; do
    fake "$crate"
  done
  # The preflight logs its arguments apart (the phases' call log stays as it was).
  cat > "$CICD_BIN_DIR/cicd-preflight" <<'FAKE'
#!/usr/bin/env bash
echo "cicd-preflight $*" >> "$CALLS.preflight"
[[ "${FAIL_preflight:-0}" == 0 ]] || echo "Vault unsealed  13  FAIL  sealed"
exit "${FAIL_preflight:-0}"
FAKE
  chmod +x "$CICD_BIN_DIR/cicd-preflight"
}

# A fake phase binary: logs "<crate> <args>", exits with $FAIL_<crate> (dashes as underscores) or 0.
# A `check` that exits 2 prints its pending change as JSON, as the phases do.
fake() {
  cat > "$CICD_BIN_DIR/$1" <<FAKE
#!/usr/bin/env bash
echo "$1 \$*" >> "\$CALLS"
var="FAIL_\$(echo "$1" | tr - _)"
if [[ "\$1" == check && "\${!var:-0}" == 2 ]]; then
  echo '{"changes":[{"action":"update","name":"drifted-by-hand","resource":"$1 object"}],"phase":"$1"}'
fi
exit "\${!var:-0}"
FAKE
  chmod +x "$CICD_BIN_DIR/$1"
}

@test "-h lists the eight phases" {
  run "$DRIVER" -h
  [ "$status" -eq 0 ]
  for name in gitlab-hardening sop-wiki vault-cicd ci-templates argocd-delivery security observability demo-apps; do
    [[ "$output" == *"$name"* ]]
  done
}

@test "--from 13 runs 13 to 18 in order with apply" {
  run "$DRIVER" --from 13
  [ "$status" -eq 0 ]
  run cat "$CALLS"
  [ "$output" = "vault-cicd apply
ci-templates apply
argo-delivery apply
security-setup apply
obs-setup apply
demo-apps apply" ]
}

@test "no option runs every phase from 12" {
  run "$DRIVER"
  [ "$status" -eq 0 ]
  [ "$(wc -l < "$CALLS")" -eq 8 ]
  [ "$(head -n2 "$CALLS")" = "gitlab-harden apply
sop-wiki apply" ]
}

@test "12b runs after 12, alone or as the start of --from" {
  run "$DRIVER" --only 12b
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "sop-wiki apply" ]
  : > "$CALLS"
  run "$DRIVER" --from 12b --plan
  [ "$status" -eq 0 ]
  [ "$(head -n2 "$CALLS")" = "sop-wiki plan
vault-cicd plan" ]
  [ "$(wc -l < "$CALLS")" -eq 7 ]
}

@test "--adopt-report asks every phase for its report of the bash leftovers" {
  run "$DRIVER" --adopt-report --from 17
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "obs-setup plan --adopt-report
demo-apps plan --adopt-report" ]
}

@test "--only runs one phase" {
  run "$DRIVER" --only 15
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "argo-delivery apply" ]
}

@test "--plan asks every phase for a plan" {
  run "$DRIVER" --plan --from 17
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "obs-setup plan
demo-apps plan" ]
}

@test "an unknown option fails with usage" {
  run "$DRIVER" --frobnicate
  [ "$status" -eq 1 ]
  [[ "$output" == *"unknown option: --frobnicate"* ]]
  [[ "$output" == *"Usage:"* ]]
  [ ! -s "$CALLS" ]
}

@test "a failing phase stops the run with its exit code and a resume hint" {
  FAIL_argo_delivery=7 run "$DRIVER" --from 13
  [ "$status" -eq 7 ]
  [[ "$output" == *"phase 15 (argocd-delivery) failed with exit code 7"* ]]
  [[ "$output" == *"resume with: ./scripts/deploy-cluster.sh --from 15"* ]]
  [ "$(tail -n1 "$CALLS")" = "argo-delivery apply" ]
  ! grep -q security-setup "$CALLS"
}

@test "the resume hint keeps --plan" {
  FAIL_vault_cicd=1 run "$DRIVER" --from 13 --plan
  [ "$status" -eq 1 ]
  [[ "$output" == *"--from 13 --plan"* ]]
}

@test "a phase that is not implemented says so and the run fails after the others" {
  rm "$CICD_BIN_DIR/ci-templates"
  run "$DRIVER" --from 13
  [ "$status" -eq 3 ]
  [[ "$output" == *"phase 14 ci-templates: NOT IMPLEMENTED"* ]]
  [[ "$output" == *"not implemented yet: phase(s) 14"* ]]
  grep -q "vault-cicd apply" "$CALLS"
  grep -q "demo-apps apply" "$CALLS"
}

@test "phases below 12 belong to the base platform" {
  run "$DRIVER" --from 5
  [ "$status" -eq 1 ]
  [[ "$output" == *"phases 0–11 belong to the base platform"* ]]
  [[ "$output" == *"BASE_DEPLOY_SCRIPT"* ]]
  [ ! -s "$CALLS" ]
}

@test "a base script that still carries its bash phases 12–18 is refused before anything runs" {
  base="$BATS_TEST_TMPDIR/base-deploy.sh"
  printf '#!/usr/bin/env bash\necho "base $*" >> "$CALLS"\n' > "$base"
  chmod +x "$base"
  BASE_DEPLOY_SCRIPT="$base" run "$DRIVER" --from 9
  [ "$status" -eq 1 ]
  [[ "$output" == *"still runs its own bash phases 12–18"* ]]
  [[ "$output" == *"integrate-platform.sh"* ]]
  [ ! -s "$CALLS" ]
}

@test "a phase number out of range or not a number is refused" {
  run "$DRIVER" --from 19
  [ "$status" -eq 1 ]
  [[ "$output" == *"there is no phase 19"* ]]
  run "$DRIVER" --only x
  [ "$status" -eq 1 ]
  [[ "$output" == *"must be a number"* ]]
}

@test "feature switches skip phases 16 and 18 out loud" {
  DEPLOY_CICD_SECURITY_RUNNERS=false DEPLOY_DEMO_APPS=false run "$DRIVER" --from 15
  [ "$status" -eq 0 ]
  [[ "$output" == *"phase 16 security: skipped (DEPLOY_CICD_SECURITY_RUNNERS=false)"* ]]
  [[ "$output" == *"phase 18 demo-apps: skipped (DEPLOY_DEMO_APPS=false)"* ]]
  [ "$(cat "$CALLS")" = "argo-delivery apply
obs-setup apply" ]
}

@test "with no cluster configured the driver says it uses the sandbox" {
  unset CICD_ENV_FILE
  KUBECONFIG=/nonexistent run "$DRIVER" --only 13 --plan
  [[ "$output" == *"no cluster configured"* ]]
}

@test "--check runs every phase's check, writes nothing and prints one row per phase" {
  run "$DRIVER" --check
  [ "$status" -eq 0 ]
  [ "$(wc -l < "$CALLS")" -eq 8 ]
  ! grep -v ' check --output json --quiet$' "$CALLS"
  [ "$(grep -c 'in sync' <<< "$output")" -eq 8 ]
  for n in 12 12b 13 14 15 16 17 18; do
    grep -Eq "^$n +" <<< "$output"
  done
}

@test "--check with drift in three phases exits 2 and names exactly those three" {
  FAIL_gitlab_harden=2 FAIL_vault_cicd=2 FAIL_argo_delivery=2 run "$DRIVER" --check
  [ "$status" -eq 2 ]
  [ "$(wc -l < "$CALLS")" -eq 8 ]
  ! grep -v ' check --output json --quiet$' "$CALLS"
  [ "$(grep -c 'DRIFT' <<< "$output")" -eq 3 ]
  grep -Eq '^12 +gitlab-hardening +DRIFT +1$' <<< "$output"
  grep -Eq '^13 +vault-cicd +DRIFT +1$' <<< "$output"
  grep -Eq '^15 +argocd-delivery +DRIFT +1$' <<< "$output"
  [ "$(grep -c 'in sync' <<< "$output")" -eq 5 ]
  [[ "$output" == *"13: vault-cicd object drifted-by-hand"* ]]
  [[ "$output" == *"--from 12 converges it"* ]]
}

@test "--check reports a check that fails and exits 1" {
  FAIL_obs_setup=1 run "$DRIVER" --check
  [ "$status" -eq 1 ]
  grep -Eq '^17 +observability +ERROR \(exit 1\)' <<< "$output"
  [ "$(grep -c 'in sync' <<< "$output")" -eq 7 ]
}

@test "the preflight runs once before the phases, for exactly the phases about to run" {
  DEPLOY_DEMO_APPS=false run "$DRIVER" --from 15
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS.preflight")" = "cicd-preflight --phases 15,16,17" ]
  run "$DRIVER" --only 12b --plan
  [ "$status" -eq 0 ]
  [ "$(tail -n1 "$CALLS.preflight")" = "cicd-preflight --phases 12b" ]
}

@test "a missing prerequisite stops the run before any phase, exit 1" {
  FAIL_preflight=1 run "$DRIVER" --from 12
  [ "$status" -eq 1 ]
  [ ! -s "$CALLS" ]
  [[ "$output" == *"nothing was written"* ]]
  [[ "$output" == *"--skip-preflight"* ]]
}

@test "--skip-preflight runs the phases without it; --check never runs it" {
  FAIL_preflight=1 run "$DRIVER" --only 13 --skip-preflight
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "vault-cicd apply" ]
  FAIL_preflight=1 run "$DRIVER" --check
  [ "$status" -eq 0 ]
  [ ! -e "$CALLS.preflight" ]
}

@test "a missing preflight binary is an error naming the fix" {
  rm "$CICD_BIN_DIR/cicd-preflight"
  run "$DRIVER" --from 17
  [ "$status" -eq 1 ]
  [[ "$output" == *"cicd-preflight is missing"* ]]
  [ ! -s "$CALLS" ]
}

@test "--preflight-only runs the preflight of the selection and no phase" {
  run "$DRIVER" --from 16 --preflight-only
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS.preflight")" = "cicd-preflight --phases 16,17,18" ]
  [ ! -s "$CALLS" ]
  run "$DRIVER" --preflight-only --skip-preflight
  [ "$status" -eq 1 ]
  [[ "$output" == *"contradict"* ]]
}

@test "a preflight that crashes (not a missing prerequisite) says so" {
  FAIL_preflight=101 run "$DRIVER" --from 12
  [ "$status" -eq 1 ]
  [[ "$output" == *"the preflight itself failed (exit 101"* ]]
  [ ! -s "$CALLS" ]
}
