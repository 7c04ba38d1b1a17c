#!/usr/bin/env bash
# Refreshes services/packet-relay/Cargo.lock and services/netops-dashboard/Cargo.lock: the lock
# file each demo project is pushed with (its pipeline and Dockerfile build with --locked). Seeded
# from the workspace's Cargo.lock, so a project pins the versions the workspace tests. Run it after
# changing a service's dependencies; the demo-apps tests fail while a lock file is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run --quiet -p demo-apps -- render --out "$out"
for project in packet-relay netops-dashboard; do
  cp Cargo.lock "$out/$project/Cargo.lock"
  # Resolving the standalone manifest drops what the project does not use, keeping the versions.
  (cd "$out/$project" && cargo metadata --offline --format-version 1 >/dev/null)
  cp "$out/$project/Cargo.lock" "services/$project/Cargo.lock"
  echo "services/$project/Cargo.lock: $(grep -c '^name = ' "services/$project/Cargo.lock") packages"
done
