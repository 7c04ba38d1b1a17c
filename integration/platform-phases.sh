# shellcheck shell=bash
# cicd-buildout in the platform's scripts/deploy-cluster.sh (docs/adr/0010).
#
# scripts/integrate-platform.sh adds one line sourcing this file just before the platform script's
# final `main "$@"`. Bash keeps the last definition of a function, so the definitions below replace
# the platform's bash phases 12, 12b and 13–18: main() still calls them by the same names, in the
# same order and under the same `--from` guards, and each now runs this project's phase once
# through its driver (`--only N`). The old bash bodies never run.

# This project's checkout: the directory above this file.
CICD_BUILDOUT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Runs one phase of this project with the platform's settings: its scripts/.env, its
# cluster/ files and its docs/engineering (phase 12b) are found from the platform's checkout.
cicd_buildout_phase() {
  local phase="$1" platform_dir
  # REPO_ROOT comes from the platform's lib.sh; else the directory above the platform script
  # (the outermost file of the call stack).
  platform_dir="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[-1]}")/.." && pwd)}"
  echo "==> platform phase $phase: cicd-buildout ($CICD_BUILDOUT_ROOT)"
  # One preflight, before the first of our phases in this run, for it and every later one:
  # each phase then runs with --skip-preflight (a preflight after earlier phases wrote could
  # no longer stop the run before any write).
  if [[ -z "${CICD_BUILDOUT_PREFLIGHT_DONE:-}" ]]; then
    CICD_PLATFORM_DIR="${CICD_PLATFORM_DIR:-$platform_dir}" \
      CICD_ENV_FILE="${CICD_ENV_FILE:-$platform_dir/scripts/.env}" \
      "$CICD_BUILDOUT_ROOT/scripts/deploy-cluster.sh" --from "$phase" --preflight-only || return $?
    CICD_BUILDOUT_PREFLIGHT_DONE=1
  fi
  CICD_PLATFORM_DIR="${CICD_PLATFORM_DIR:-$platform_dir}" \
    CICD_ENV_FILE="${CICD_ENV_FILE:-$platform_dir/scripts/.env}" \
    "$CICD_BUILDOUT_ROOT/scripts/deploy-cluster.sh" --only "$phase" --skip-preflight
}

# The platform checks its feature switches inside these two phase bodies (only the exact value
# `true` runs them), not in main(): the replacements check them the same way.
cicd_buildout_switch_on() {
  local name="$1" value="${!1:-true}"
  [[ "$value" == true ]] && return 0
  echo "==> platform phase $2: skipped ($name=$value)"
  return 1
}

phase_12_gitlab_hardening() { cicd_buildout_phase 12; }
phase_12b_sop_wiki() { cicd_buildout_phase 12b; }
phase_13_vault_cicd() { cicd_buildout_phase 13; }
phase_14_ci_templates() { cicd_buildout_phase 14; }
phase_15_argocd_delivery() { cicd_buildout_phase 15; }
phase_16_security() {
  cicd_buildout_switch_on DEPLOY_CICD_SECURITY_RUNNERS 16 || return 0
  cicd_buildout_phase 16
}
phase_17_observability() { cicd_buildout_phase 17; }
phase_18_demo_apps() {
  cicd_buildout_switch_on DEPLOY_DEMO_APPS 18 || return 0
  cicd_buildout_phase 18
}
