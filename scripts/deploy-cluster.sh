#!/usr/bin/env bash
# deploy-cluster.sh — phases 12–18 of the RKE2 platform: the CI/CD layer.
# A thin driver: each phase is its own binary (plan/apply/check); this script orders them,
# builds what is missing, stops at the first failure and says how to resume.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The platform's numbering: 12b (the SOP wiki) runs after 12, as in the platform's own main().
PHASES=(12 12b 13 14 15 16 17 18)
declare -A PHASE_NAME=([12]=gitlab-hardening [12b]=sop-wiki [13]=vault-cicd [14]=ci-templates [15]=argocd-delivery [16]=security [17]=observability [18]=demo-apps)
declare -A PHASE_CRATE=([12]=gitlab-harden [12b]=gitlab-harden [13]=vault-cicd [14]=ci-templates [15]=argo-delivery [16]=security-setup [17]=obs-setup [18]=demo-apps)
# The binary of a phase, when it is not named like its crate.
declare -A PHASE_BIN=([12b]=sop-wiki)
EXIT_NOT_IMPLEMENTED=3

usage() {
  cat <<USAGE
Usage: ./scripts/deploy-cluster.sh [--from N | --only N] [--plan | --check | --adopt-report | --preflight-only] [--sandbox] [--skip-preflight] [-h]

Runs the CI/CD phases 12, 12b and 13–18 in order (default: --from 12). Phases 0–11 (cluster, Vault,
Harbor, Argo CD, Keycloak, GitLab, monitoring…) belong to the base platform's deploy script.

  --from N        run phase N and every later phase (12, 12b, 13–18)
  --only N        run phase N alone
  --plan          show what each phase would change; write nothing
  --check         run every phase's check and print one table (phase, state, pending changes);
                  write nothing; exit 2 when any phase has drifted, 1 when a check failed
  --adopt-report  list what the platform's old bash phases left behind and what apply does with it
  --sandbox       run against the local sandbox (started if needed) instead of a cluster
  --skip-preflight  run the phases without the preflight (cicd-preflight: one table of every
                  prerequisite of the selected phases, read before the first runs; a missing
                  one stops apply and plan with exit 1 before any write)
  --preflight-only  run only the preflight of the selected phases
  -h, --help      this help

Phases:
  12  gitlab-hardening  protected branches, MR approval rules, registry off, SSH route, Keycloak groups
  12b sop-wiki          the platform's docs/engineering as the wiki of platform_services/sop-wiki
  13  vault-cicd        JWT auth for GitLab CI, CI/CD policies, KV v2, ESO + ClusterSecretStore
  14  ci-templates      template library, Harbor projects and robots, group CI/CD variables
  15  argocd-delivery   Argo CD RBAC, AppProjects, AnalysisTemplates, ephemeral MR environments
  16  security          security runners, Harbor scanning, image signing
  17  observability     DORA dashboard, CI/CD alerts, DORA collector, live summary
  18  demo-apps         NetOps Arcade: packet-relay (canary), netops-dashboard (blue-green)

Settings: scripts/.env (or CICD_ENV_FILE), cluster/kubeconfig-rke2.yaml, cluster/vault-init.json,
GITLAB_API_TOKEN or scripts/.gitlab-api-token. Switches: DEPLOY_CICD_SECURITY_RUNNERS=false skips 16,
DEPLOY_DEMO_APPS=false skips 18. BASE_DEPLOY_SCRIPT: the base platform's script, run for N < 12; it
must be integrated first (scripts/integrate-platform.sh PLATFORM_REPO), so that its main() runs
these phases in place of its old bash phases 12–18, each exactly once.
Exit codes: 0 done; 1 when the preflight finds a missing prerequisite; the failing phase's code when one fails; 3 when a requested phase is not
implemented in this workspace yet (every implemented phase still ran); with --check 2 on drift.
USAGE
}

die() { echo "deploy-cluster: $*" >&2; exit 1; }

from=12 only="" verb=apply sandbox=false skip_preflight=false
while (($#)); do
  case "$1" in
    --from) [[ $# -ge 2 ]] || die "--from needs a phase number (12–18)"; from="$2"; shift 2 ;;
    --from=*) from="${1#*=}"; shift ;;
    --only) [[ $# -ge 2 ]] || die "--only needs a phase number (12–18)"; only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --plan) verb=plan; shift ;;
    --check) verb=check; shift ;;
    --adopt-report) verb=adopt-report; shift ;;
    --sandbox) sandbox=true; shift ;;
    --skip-preflight) skip_preflight=true; shift ;;
    --preflight-only) verb=preflight; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy-cluster: unknown option: $1" >&2; usage >&2; exit 1 ;;
  esac
done

[[ "$verb" == preflight && "$skip_preflight" == true ]] && die "--preflight-only and --skip-preflight contradict each other"

# The position of a phase in PHASES, or nothing for a phase this driver does not run.
phase_index() {
  local i
  for i in "${!PHASES[@]}"; do [[ "${PHASES[$i]}" == "$1" ]] && { echo "$i"; return 0; }; done
  return 0
}
start="${only:-$from}"
[[ "$start" =~ ^[0-9]+b?$ ]] || die "phase must be a number (or 12b), got '$start'"
if [[ "$start" =~ ^[0-9]+$ ]] && ((10#$start < 12)); then
  echo "deploy-cluster: phases 0–11 belong to the base platform (cluster, Vault, Harbor, Argo CD, Keycloak, GitLab…)." >&2
  [[ -n "${BASE_DEPLOY_SCRIPT:-}" ]] \
    || die "set BASE_DEPLOY_SCRIPT to the base platform's deploy-cluster.sh to run them from here, or use --from 12"
  [[ -n "$only" ]] && die "--only $only is a base-platform phase: run $BASE_DEPLOY_SCRIPT --from $only"
  [[ "$verb" == apply ]] \
    || die "the base platform's script has no --$verb: it would deploy phases $start–11; use --from 12 --$verb for phases 12–18"
  [[ "$sandbox" == false ]] \
    || die "--sandbox runs phases 12–18 only: the base platform's phases 0–11 need a real cluster; use --from 12 --sandbox"
  [[ -f "$BASE_DEPLOY_SCRIPT" ]] || die "BASE_DEPLOY_SCRIPT=$BASE_DEPLOY_SCRIPT does not exist"
  base="$(cd "$(dirname "$BASE_DEPLOY_SCRIPT")" && pwd)/$(basename "$BASE_DEPLOY_SCRIPT")"
  [[ -x "$base" ]] || die "BASE_DEPLOY_SCRIPT=$base is not executable: chmod +x it"
  platform="$(cd "$(dirname "$base")/.." && pwd)"
  # Not integrated (with this checkout), its main() would run its old bash phases 12–18, or
  # another checkout's phases, before ours run on top.
  if ! "$ROOT/scripts/integrate-platform.sh" "$platform" --check > /dev/null 2>&1; then
    printf -v fix '%q %q' "$ROOT/scripts/integrate-platform.sh" "$platform"
    die "$base still runs its own bash phases 12–18 after phase 11 (or another checkout's): integrate it with this one first: $fix"
  fi
  echo "deploy-cluster: running $base --from $((10#$start)): its phases up to 11, then phases 12, 12b and 13–18 of this project in its main()" >&2
  # The integrated script calls this driver back (--only N) for 12–18: they run there, once.
  exec "$base" --from "$((10#$start))"
fi
first="$(phase_index "$start")"
[[ -n "$first" ]] || die "there is no phase $start: phases run 12, 12b and 13–18"

selected=()
for i in "${!PHASES[@]}"; do
  if [[ -n "$only" ]]; then ((i == first)) && selected+=("${PHASES[$i]}"); else ((i >= first)) && selected+=("${PHASES[$i]}"); fi
done

profile="${CICD_CARGO_PROFILE:-release}"
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}/$([[ "$profile" == dev ]] && echo debug || echo "$profile")"

# Where a phase's binary is: a prebuilt directory, or built here from its crate.
binary_for() {
  local crate="$1" bin="${2:-$1}"
  if [[ -n "${CICD_BIN_DIR:-}" ]]; then
    [[ -x "$CICD_BIN_DIR/$bin" ]] && echo "$CICD_BIN_DIR/$bin"
    return 0
  fi
  [[ -f "$ROOT/$crate/Cargo.toml" ]] || return 0
  (cd "$ROOT" && cargo build --quiet --profile "$profile" -p "$crate" --bin "$bin") >&2 || die "building $bin ($crate) failed (see above)"
  echo "$target_dir/$bin"
}

resume_flags() {
  local flags=""
  [[ "$verb" == plan ]] && flags+=" --plan"
  [[ "$verb" == check ]] && flags+=" --check"
  [[ "$verb" == adopt-report ]] && flags+=" --adopt-report"
  [[ "$sandbox" == true ]] && flags+=" --sandbox"
  echo "$flags"
}

# No cluster configured at all: a first run on a fresh machine uses the local sandbox.
if [[ "$sandbox" == false && -z "${CICD_ENV_FILE:-}" && ! -f "$ROOT/scripts/.env" \
      && ! -f "${KUBECONFIG:-$ROOT/cluster/kubeconfig-rke2.yaml}" ]]; then
  echo "deploy-cluster: no cluster configured (no scripts/.env, no cluster/kubeconfig-rke2.yaml): using the local sandbox" >&2
  sandbox=true
fi

if [[ "$sandbox" == true ]]; then
  if [[ -z "${CICD_BIN_DIR:-}" ]]; then
    "$ROOT/scripts/setup-test-env.sh"
  fi
  sandbox_bin="$(binary_for sandbox)"
  [[ -n "$sandbox_bin" ]] || die "the sandbox binary is missing (CICD_BIN_DIR=${CICD_BIN_DIR:-})"
  export CICD_SANDBOX_DIR="${CICD_SANDBOX_DIR:-$ROOT/.sandbox}"
  eval "$("$sandbox_bin" up | grep '^export CICD_ENV_FILE=')"
  echo "deploy-cluster: using the local sandbox ($CICD_ENV_FILE); stop it with: $sandbox_bin down" >&2
fi

# The preflight (apply and plan): every prerequisite of the phases about to run, read before the
# first of them starts; a missing one stops the run here, before any write.
if [[ "$skip_preflight" == false && ( "$verb" == apply || "$verb" == plan || "$verb" == preflight ) ]]; then
  to_run=()
  for n in "${selected[@]}"; do
    [[ "$n" == 16 && "${DEPLOY_CICD_SECURITY_RUNNERS:-true}" == false ]] && continue
    [[ "$n" == 18 && "${DEPLOY_DEMO_APPS:-true}" == false ]] && continue
    to_run+=("$n")
  done
  if ((${#to_run[@]})); then
    preflight_bin="$(binary_for operate cicd-preflight)"
    [[ -n "$preflight_bin" ]] \
      || die "the preflight binary cicd-preflight is missing (CICD_BIN_DIR=${CICD_BIN_DIR:-}): build it (cargo build -p operate), or pass --skip-preflight"
    echo "==> preflight of phase(s) ${to_run[*]}"
    set +e
    "$preflight_bin" --phases "$(IFS=,; echo "${to_run[*]}")"
    rc=$?
    set -e
    if ((rc == 1)); then
      echo "deploy-cluster: the preflight found a missing prerequisite (the FAIL rows above, each with its fix); nothing was written." >&2
      die "fix it and rerun the same command, or pass --skip-preflight to run the phases anyway"
    elif ((rc != 0)); then
      die "the preflight itself failed (exit $rc, see above); nothing was written; pass --skip-preflight to run the phases without it"
    fi
  fi
  [[ "$verb" == preflight ]] && exit 0
fi

not_implemented=()
ran=()
# --check: the table's rows, and the phases that drifted or failed.
check_rows=() drifted=() failed_checks=()
check_dir="$(mktemp -d)"
trap 'rm -rf "$check_dir"' EXIT
: > "$check_dir/pending"
for n in "${selected[@]}"; do
  name="${PHASE_NAME[$n]}" crate="${PHASE_CRATE[$n]}" bin_name="${PHASE_BIN[$n]:-${PHASE_CRATE[$n]}}"
  if [[ "$n" == 16 && "${DEPLOY_CICD_SECURITY_RUNNERS:-true}" == false ]]; then
    echo "==> phase 16 $name: skipped (DEPLOY_CICD_SECURITY_RUNNERS=false)"; continue
  fi
  if [[ "$n" == 18 && "${DEPLOY_DEMO_APPS:-true}" == false ]]; then
    echo "==> phase 18 $name: skipped (DEPLOY_DEMO_APPS=false)"; continue
  fi
  bin="$(binary_for "$crate" "$bin_name")"
  if [[ -z "$bin" ]]; then
    echo "==> phase $n $name: NOT IMPLEMENTED in this workspace yet (no $bin_name binary) — it did not run" >&2
    not_implemented+=("$n")
    continue
  fi
  if [[ "$verb" == check ]]; then
    # Every phase is checked (a drift does not stop the others); the table comes at the end.
    set +e
    report="$("$bin" check --output json --quiet 2> "$check_dir/$n.err")"
    rc=$?
    set -e
    pending="$(printf '%s' "$report" | { grep -o '"action":' || true; } | wc -l | tr -d ' ')"
    case "$rc" in
      0) state="in sync" ;;
      2) state="DRIFT"; drifted+=("$n") ;;
      *) state="ERROR (exit $rc)"; failed_checks+=("$n"); pending="-" ;;
    esac
    check_rows+=("$(printf '%-4s %-17s %-16s %s' "$n" "$name" "$state" "$pending")")
    if ((rc == 2)); then
      printf '%s' "$report" | { grep -o '"resource":"[^"]*","name":"[^"]*"\|"name":"[^"]*","resource":"[^"]*"' || true; } \
        | sed -e 's/"resource":"\([^"]*\)","name":"\([^"]*\)"/\1 \2/' -e 's/"name":"\([^"]*\)","resource":"\([^"]*\)"/\2 \1/' \
        | sed "s/^/     $n: /" >> "$check_dir/pending"
    elif ((rc != 0)); then
      tail -n 3 "$check_dir/$n.err" | sed "s/^/     $n: /" >> "$check_dir/pending"
    fi
    ran+=("$n")
    continue
  fi
  echo "==> phase $n $name: $bin_name $verb"
  set +e
  if [[ "$verb" == adopt-report ]]; then "$bin" plan --adopt-report; else "$bin" "$verb"; fi
  rc=$?
  set -e
  if ((rc != 0)); then
    echo "deploy-cluster: phase $n ($name) failed with exit code $rc." >&2
    echo "deploy-cluster: fix the cause above, then resume with: ./scripts/deploy-cluster.sh --from $n$(resume_flags)" >&2
    exit "$rc"
  fi
  ran+=("$n")
done

# On the sandbox, phase 18 also starts the NetOps Arcade on localhost (`demo-apps local`):
# the routers, the traffic generator and the dashboard, in the background until `sandbox down`.
if [[ "$sandbox" == true && "$verb" == apply && " ${ran[*]} " == *" 18 "* ]]; then
  arcade_dir="$CICD_SANDBOX_DIR/arcade"
  arcade_url="http://127.0.0.1:${CICD_ARCADE_PORT:-18080}"
  if [[ -f "$arcade_dir/arcade.pid" ]] && kill -0 "$(cat "$arcade_dir/arcade.pid")" 2>/dev/null; then
    echo "deploy-cluster: the NetOps Arcade already runs (pid $(cat "$arcade_dir/arcade.pid")): $arcade_url"
  else
    if [[ -n "${CICD_BIN_DIR:-}" ]]; then
      arcade_bins="$CICD_BIN_DIR"
    else
      (cd "$ROOT" && cargo build --quiet --profile "$profile" -p packet-relay -p netops-dashboard) >&2 \
        || die "building packet-relay and netops-dashboard failed (see above)"
      arcade_bins="$target_dir"
    fi
    mkdir -p "$arcade_dir"
    nohup "$(binary_for demo-apps)" local --dir "$arcade_dir" --bin-dir "$arcade_bins" \
      --port-base "${CICD_ARCADE_PORT:-18080}" > "$arcade_dir/arcade.log" 2>&1 < /dev/null &
    arcade_pid=$!
    for _ in $(seq 1 60); do
      grep -q '^Ctrl-C stops' "$arcade_dir/arcade.log" 2>/dev/null && break
      kill -0 "$arcade_pid" 2>/dev/null || break
      sleep 0.5
    done
    if grep -q '^Ctrl-C stops' "$arcade_dir/arcade.log" 2>/dev/null; then
      echo "deploy-cluster: NetOps Arcade on localhost: $arcade_url (re-route by editing $arcade_dir/routing-config.yaml; it stops with the sandbox)"
    else
      echo "deploy-cluster: the NetOps Arcade did not start: see $arcade_dir/arcade.log" >&2
    fi
  fi
fi

if [[ "$verb" == check ]]; then
  printf '%-4s %-17s %-16s %s\n' "PHASE" "NAME" "STATE" "PENDING"
  printf '%s\n' "${check_rows[@]}"
  if [[ -s "$check_dir/pending" ]]; then
    echo "pending:"
    cat "$check_dir/pending"
  fi
  if ((${#failed_checks[@]})); then
    echo "deploy-cluster: check failed for phase(s) ${failed_checks[*]} (see above); nothing was written" >&2
    exit 1
  fi
  if ((${#drifted[@]})); then
    echo "deploy-cluster: drift in phase(s) ${drifted[*]}: ./scripts/deploy-cluster.sh --from ${drifted[0]}$( [[ "$sandbox" == true ]] && echo " --sandbox") converges it; nothing was written" >&2
    exit 2
  fi
  echo "deploy-cluster: every phase is as desired (${ran[*]:-none}); nothing was written"
  exit 0
fi

echo "deploy-cluster: ran phase(s) ${ran[*]:-none} ($verb)"
if ((${#not_implemented[@]})); then
  echo "deploy-cluster: not implemented yet: phase(s) ${not_implemented[*]}" >&2
  exit "$EXIT_NOT_IMPLEMENTED"
fi
