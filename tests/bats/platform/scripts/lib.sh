# shellcheck shell=bash
# Model of the platform's scripts/lib.sh: the locations its deploy script relies on.
set -euo pipefail
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPTS_DIR/.." && pwd)"
CLUSTER_DIR="$REPO_ROOT/cluster"
export SCRIPTS_DIR REPO_ROOT CLUSTER_DIR
die() { echo "FATAL: $*" >&2; exit 1; }
