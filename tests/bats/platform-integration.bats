#!/usr/bin/env bats
# The platform's own deploy-cluster.sh with this project integrated (docs/adr/0010), on a model of
# its structure (tests/bats/platform/README.md): every phase runs exactly once, in the platform's
# order, and its old bash bodies of 12–18 never run — from either entry point.

setup() {
  ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
  DRIVER="$ROOT/scripts/deploy-cluster.sh"
  INTEGRATE="$ROOT/scripts/integrate-platform.sh"
  PLATFORM="$BATS_TEST_TMPDIR/platform"
  cp -r "$BATS_TEST_DIRNAME/platform" "$PLATFORM"
  ORIGINAL="$BATS_TEST_TMPDIR/deploy-cluster.sh.orig"
  cp "$PLATFORM/scripts/deploy-cluster.sh" "$ORIGINAL"
  mkdir -p "$PLATFORM/cluster"
  : > "$PLATFORM/cluster/kubeconfig-rke2.yaml"
  : > "$PLATFORM/scripts/.env"
  export CALLS="$BATS_TEST_TMPDIR/calls.log"
  export CICD_BIN_DIR="$BATS_TEST_TMPDIR/bin"
  : > "$CALLS"
  mkdir -p "$CICD_BIN_DIR"
  for bin in gitlab-harden sop-wiki vault-cicd ci-templates argo-delivery security-setup obs-setup demo-apps; do
    cat > "$CICD_BIN_DIR/$bin" <<FAKE
#!/usr/bin/env bash
echo "ours $bin \$*" >> "\$CALLS"
echo "\$CICD_PLATFORM_DIR \$CICD_ENV_FILE" > "\$CALLS.env"
var="FAIL_\$(echo "$bin" | tr - _)"
exit "\${!var:-0}"
FAKE
    chmod +x "$CICD_BIN_DIR/$bin"
  done
  printf '#!/usr/bin/env bash\necho "preflight $*" >> "$CALLS.preflight"\n' > "$CICD_BIN_DIR/cicd-preflight"
  chmod +x "$CICD_BIN_DIR/cicd-preflight"
}

# Phases 5, 5b and 6–11 of the platform, then ours 12, 12b and 13–18, each once.
FROM_5="bash phase_5
bash phase_5b
bash phase_6
bash phase_7
bash phase_8
bash phase_9
bash phase_10
bash phase_11
ours gitlab-harden apply
ours sop-wiki apply
ours vault-cicd apply
ours ci-templates apply
ours argo-delivery apply
ours security-setup apply
ours obs-setup apply
ours demo-apps apply"

@test "integrating twice changes nothing the second time; --check and --remove" {
  run "$INTEGRATE" "$PLATFORM"
  [ "$status" -eq 0 ]
  [[ "$output" == *"now runs cicd-buildout's phases"* ]]
  # One line, just before the final main "$@".
  [ "$(tail -n1 "$PLATFORM/scripts/deploy-cluster.sh")" = 'main "$@"' ]
  printf -v sourced 'source %q ' "$ROOT/integration/platform-phases.sh"
  [[ "$(tail -n2 "$PLATFORM/scripts/deploy-cluster.sh" | head -n1)" == "$sourced"* ]]
  [ "$(diff "$ORIGINAL" "$PLATFORM/scripts/deploy-cluster.sh" | grep -c '^[<>]')" -eq 1 ]
  first="$(sha256sum < "$PLATFORM/scripts/deploy-cluster.sh")"
  [ -x "$PLATFORM/scripts/deploy-cluster.sh" ]

  run "$INTEGRATE" "$PLATFORM"
  [ "$status" -eq 0 ]
  [[ "$output" == *"already integrated: nothing to change"* ]]
  [ "$(sha256sum < "$PLATFORM/scripts/deploy-cluster.sh")" = "$first" ]

  run "$INTEGRATE" "$PLATFORM" --check
  [ "$status" -eq 0 ]

  run "$INTEGRATE" "$PLATFORM" --remove
  [ "$status" -eq 0 ]
  cmp "$ORIGINAL" "$PLATFORM/scripts/deploy-cluster.sh"
  run "$INTEGRATE" "$PLATFORM" --check
  [ "$status" -eq 2 ]
}

@test "the platform's --from 5 runs its 5, 5b, 6–11, then our 12, 12b, 13–18 once each, never a bash body of 12–18" {
  "$INTEGRATE" "$PLATFORM"
  run "$PLATFORM/scripts/deploy-cluster.sh" --from 5
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "$FROM_5" ]
  # Our phases get the platform's checkout and settings file.
  [ "$(cat "$CALLS.env")" = "$PLATFORM $PLATFORM/scripts/.env" ]
  # One preflight, before our first phase, for all of them (not one per phase after writes).
  [ "$(cat "$CALLS.preflight")" = "preflight --phases 12,12b,13,14,15,16,17,18" ]
}

@test "our driver's --from 5 with BASE_DEPLOY_SCRIPT runs the same, and nothing twice" {
  "$INTEGRATE" "$PLATFORM"
  BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" run "$DRIVER" --from 5
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "$FROM_5" ]
}

@test "--from 14 starts at our 14, from either entry point" {
  "$INTEGRATE" "$PLATFORM"
  expected="ours ci-templates apply
ours argo-delivery apply
ours security-setup apply
ours obs-setup apply
ours demo-apps apply"
  run "$PLATFORM/scripts/deploy-cluster.sh" --from 14
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "$expected" ]
  [ "$(cat "$CALLS.preflight")" = "preflight --phases 14,15,16,17,18" ]
  : > "$CALLS"
  # (our driver sends N >= 12 to its own phases: the platform's 0–11 are not involved)
  CICD_ENV_FILE="$PLATFORM/scripts/.env" run "$DRIVER" --from 14
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "$expected" ]
}

@test "the switches still skip 16 and 18, from either entry point" {
  "$INTEGRATE" "$PLATFORM"
  expected="ours gitlab-harden apply
ours sop-wiki apply
ours vault-cicd apply
ours ci-templates apply
ours argo-delivery apply
ours obs-setup apply"
  DEPLOY_CICD_SECURITY_RUNNERS=false DEPLOY_DEMO_APPS=false run "$PLATFORM/scripts/deploy-cluster.sh" --from 12
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "$expected" ]
  [[ "$output" == *"platform phase 16: skipped (DEPLOY_CICD_SECURITY_RUNNERS=false)"* ]]
  [[ "$output" == *"platform phase 18: skipped (DEPLOY_DEMO_APPS=false)"* ]]
  : > "$CALLS"
  DEPLOY_CICD_SECURITY_RUNNERS=false DEPLOY_DEMO_APPS=false BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" \
    run "$DRIVER" --from 11
  [ "$status" -eq 0 ]
  [ "$(cat "$CALLS")" = "bash phase_11
$expected" ]
}

@test "a failing phase of ours stops the platform's script with its exit code" {
  "$INTEGRATE" "$PLATFORM"
  FAIL_argo_delivery=7 run "$PLATFORM/scripts/deploy-cluster.sh" --from 12
  [ "$status" -eq 7 ]
  [ "$(tail -n1 "$CALLS")" = "ours argo-delivery apply" ]
  ! grep -q security-setup "$CALLS"
}

@test "the base platform has no plan mode: --from 5 --plan is refused before anything runs" {
  "$INTEGRATE" "$PLATFORM"
  BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" run "$DRIVER" --from 5 --plan
  [ "$status" -eq 1 ]
  [[ "$output" == *"has no --plan"* ]]
  [ ! -s "$CALLS" ]
}

@test "a platform script whose structure changed is left untouched" {
  printf '\necho trailing\n' >> "$PLATFORM/scripts/deploy-cluster.sh"
  cp "$PLATFORM/scripts/deploy-cluster.sh" "$ORIGINAL"
  run "$INTEGRATE" "$PLATFORM"
  [ "$status" -eq 1 ]
  [[ "$output" == *'does not end with main "$@"'* ]]
  cmp "$ORIGINAL" "$PLATFORM/scripts/deploy-cluster.sh"
  run "$INTEGRATE" "$BATS_TEST_TMPDIR/nowhere"
  [ "$status" -eq 1 ]
  [[ "$output" == *"must be a checkout of the platform"* ]]
}

@test "a platform checkout whose path has spaces, quotes and \$, driven through our driver" {
  odd="$BATS_TEST_TMPDIR/plat form \"q\" \$x"
  mv "$PLATFORM" "$odd"
  PLATFORM="$odd"
  run "$INTEGRATE" "$PLATFORM"
  [ "$status" -eq 0 ]
  bash -n "$PLATFORM/scripts/deploy-cluster.sh"
  BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" run "$DRIVER" --from 08
  [ "$status" -eq 0 ]
  [ "$(head -n1 "$CALLS")" = "bash phase_8" ]
  [ "$(grep -c '^ours ' "$CALLS")" -eq 8 ]
  ! grep -q 'bash phase_1[2-8]' "$CALLS"
  [ "$(cat "$CALLS.env")" = "$PLATFORM $PLATFORM/scripts/.env" ]
}

@test "--remove restores every byte, also without a final newline; another checkout's line is replaced" {
  printf '%s' "$(cat "$PLATFORM/scripts/deploy-cluster.sh")" > "$ORIGINAL"
  cp "$ORIGINAL" "$PLATFORM/scripts/deploy-cluster.sh"
  "$INTEGRATE" "$PLATFORM"
  "$INTEGRATE" "$PLATFORM" --remove
  cmp "$ORIGINAL" "$PLATFORM/scripts/deploy-cluster.sh"
  # An integration line of another checkout of this project.
  sed -i 's|^main "\$@"|source /elsewhere/integration/platform-phases.sh  # cicd-buildout integration (undo: …)\nmain "$@"|' \
    "$PLATFORM/scripts/deploy-cluster.sh"
  run "$INTEGRATE" "$PLATFORM" --check
  [ "$status" -eq 2 ]
  BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" run "$DRIVER" --from 5
  [ "$status" -eq 1 ]
  [[ "$output" == *"another checkout"* ]]
  [ ! -s "$CALLS" ]
  "$INTEGRATE" "$PLATFORM"
  [ "$(grep -c 'cicd-buildout integration' "$PLATFORM/scripts/deploy-cluster.sh")" -eq 1 ]
  "$INTEGRATE" "$PLATFORM" --check
}

@test "--sandbox cannot run the base platform's phases; a failing phase stops our driver's entry too" {
  "$INTEGRATE" "$PLATFORM"
  BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" run "$DRIVER" --from 5 --sandbox
  [ "$status" -eq 1 ]
  [[ "$output" == *"need a real cluster"* ]]
  [ ! -s "$CALLS" ]
  FAIL_vault_cicd=4 BASE_DEPLOY_SCRIPT="$PLATFORM/scripts/deploy-cluster.sh" run "$DRIVER" --from 11
  [ "$status" -eq 4 ]
  [ "$(tail -n1 "$CALLS")" = "ours vault-cicd apply" ]
  [ "$(grep -c . "$CALLS")" -eq 4 ]
}
