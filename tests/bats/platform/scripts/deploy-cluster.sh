#!/usr/bin/env bash
# Model of the platform's scripts/deploy-cluster.sh (see ../README.md): its structure, with phase
# bodies that only record their call.
set -euo pipefail
# shellcheck source=tests/bats/platform/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SKIP_TERRAFORM=false
FROM_PHASE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --skip-tf) SKIP_TERRAFORM=true; shift ;;
    --from) FROM_PHASE="$2"; shift 2 ;;
    -h|--help) echo "Usage: deploy-cluster.sh [--skip-tf] [--from N]"; exit 0 ;;
    *) die "Unknown argument: $1" ;;
  esac
done

if [[ $FROM_PHASE -gt 0 || "$SKIP_TERRAFORM" == true ]]; then
  [[ -f "$CLUSTER_DIR/kubeconfig-rke2.yaml" ]] || die "resuming needs $CLUSTER_DIR/kubeconfig-rke2.yaml"
  export KUBECONFIG="$CLUSTER_DIR/kubeconfig-rke2.yaml"
fi

record() { echo "bash $1" >> "$CALLS"; }

check_prerequisites() { :; }
generate_or_load_env() { :; }
print_total_time() { echo "done"; }

phase_0_terraform() { record phase_0; }
phase_1_foundation() { record phase_1; }
phase_2_vault() { record phase_2; }
phase_3_monitoring() { record phase_3; }
phase_4_harbor() { record phase_4; }
phase_5_argocd() { record phase_5; }
phase_5b_dhi_builder() { record phase_5b; }
phase_6_keycloak() { record phase_6; }
phase_7_remaining() { record phase_7; }
phase_8_dns() { record phase_8; }
phase_9_validation() { record phase_9; }
phase_10_keycloak_setup() { record phase_10; }
phase_11_gitlab() { record phase_11; }
phase_12_gitlab_hardening() { record phase_12; }
phase_12b_sop_wiki() { record phase_12b; }
phase_13_vault_cicd() { record phase_13; }
phase_14_ci_templates() { record phase_14; }
phase_15_argocd_delivery() { record phase_15; }
phase_16_security() {
  if [[ "${DEPLOY_CICD_SECURITY_RUNNERS:-true}" != "true" ]]; then return 0; fi
  record phase_16
}
phase_17_observability() { record phase_17; }
phase_18_demo_apps() {
  if [[ "${DEPLOY_DEMO_APPS:-true}" != "true" ]]; then return 0; fi
  record phase_18
}

main() {
  check_prerequisites
  generate_or_load_env
  [[ "$SKIP_TERRAFORM" == false && $FROM_PHASE -le 0 ]] && phase_0_terraform
  [[ $FROM_PHASE -le 1 ]] && phase_1_foundation
  [[ $FROM_PHASE -le 2 ]] && phase_2_vault
  [[ $FROM_PHASE -le 3 ]] && phase_3_monitoring
  [[ $FROM_PHASE -le 4 ]] && phase_4_harbor
  [[ $FROM_PHASE -le 5 ]] && phase_5_argocd
  [[ $FROM_PHASE -le 5 ]] && phase_5b_dhi_builder
  [[ $FROM_PHASE -le 6 ]] && phase_6_keycloak
  [[ $FROM_PHASE -le 7 ]] && phase_7_remaining
  [[ $FROM_PHASE -le 8 ]] && phase_8_dns
  [[ $FROM_PHASE -le 9 ]] && phase_9_validation
  [[ $FROM_PHASE -le 10 ]] && phase_10_keycloak_setup
  [[ $FROM_PHASE -le 11 ]] && phase_11_gitlab
  [[ $FROM_PHASE -le 12 ]] && phase_12_gitlab_hardening
  [[ $FROM_PHASE -le 12 ]] && phase_12b_sop_wiki
  [[ $FROM_PHASE -le 13 ]] && phase_13_vault_cicd
  [[ $FROM_PHASE -le 14 ]] && phase_14_ci_templates
  [[ $FROM_PHASE -le 15 ]] && phase_15_argocd_delivery
  [[ $FROM_PHASE -le 16 ]] && phase_16_security
  [[ $FROM_PHASE -le 17 ]] && phase_17_observability
  [[ $FROM_PHASE -le 18 ]] && phase_18_demo_apps
  print_total_time
}

main "$@"
