#!/usr/bin/env bash
# Runs the template library's whole real-world corpus (ci-templates/corpus/corpus.toml, issue 19):
# each public project, fetched from its package registry at the pinned checksum, runs its merge
# request pipeline under gitlab-ci-local with only the plan's include file. Writes the verdict table
# to docs/ci-templates-corpus.md and exits 1 when a verdict differs from the recorded one.
#   scripts/corpus.sh [--only NAME]...   (the README's test command runs the `ci = true` projects)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-test-env.sh
cargo build --quiet -p ci-templates --bin template-corpus
commit="$(git rev-parse --short HEAD)"
git diff --quiet HEAD -- ci-templates || commit="$commit + uncommitted changes to ci-templates"
exec "${CARGO_TARGET_DIR:-target}/debug/template-corpus" --markdown docs/ci-templates-corpus.md --commit "$commit" "$@"
