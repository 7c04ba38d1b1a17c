#!/usr/bin/env bash
# Refreshes the lock file each seeded project is pushed with (its pipeline and Dockerfile build
# with --locked): services/packet-relay/Cargo.lock and services/netops-dashboard/Cargo.lock (phase
# 18's arcade) and services/dora-collector/Cargo.lock (phase 17's collector, which carries the
# `common` crate) and services/feature-flags/Cargo.lock (phase 17's flag auditor, carrying it too). Seeded from the workspace's Cargo.lock, so a project pins the versions the
# workspace tests. Run it after changing a service's (or common's) dependencies; the demo-apps and
# obs-setup tests fail while a lock file is stale.
#   --check  writes nothing; exits 1 naming each stale lock file (run early by scripts/test.sh).
set -euo pipefail
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 1 ;;
esac
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run --quiet -p demo-apps -- render --out "$out"
# The collector's files do not depend on the platform's settings except deploy/ (not resolved
# here): any DOMAIN renders them.
DOMAIN="${DOMAIN:-example.com}" cargo run --quiet -p obs-setup -- --quiet render --out "$out"
for project in packet-relay netops-dashboard dora-collector feature-flags; do
  cp Cargo.lock "$out/$project/Cargo.lock"
  # Resolving the standalone manifest drops what the project does not use, keeping the versions.
  # (`cargo tree`, not `cargo metadata`: it needs no sources of other platforms' crates offline.)
  (cd "$out/$project" && cargo tree --offline >/dev/null)
  if $check; then
    if ! cmp -s "$out/$project/Cargo.lock" "services/$project/Cargo.lock"; then
      echo "services/$project/Cargo.lock is stale (the project's Dockerfile builds --locked): run scripts/demo-lockfiles.sh and commit it" >&2
      stale=1
    fi
    continue
  fi
  cp "$out/$project/Cargo.lock" "services/$project/Cargo.lock"
  echo "services/$project/Cargo.lock: $(grep -c '^name = ' "services/$project/Cargo.lock") packages"
done
exit "${stale:-0}"
