#!/usr/bin/env bash
# integrate-platform.sh PLATFORM_REPO [--remove] [--check]
#
# Makes the platform's scripts/deploy-cluster.sh run this project's phases 12, 12b and 13–18 in
# place of its own bash phases (docs/adr/0010): one marked line, added just before the script's
# final `main "$@"`, sources integration/platform-phases.sh. Run it again and nothing changes;
# --remove takes the line out again; --check exits 2 when the script is not integrated (or
# points at another checkout of this project). Nothing else in the platform repository changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MARKER="# cicd-buildout integration"

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
die() { echo "integrate-platform: $*" >&2; exit 1; }

repo="" mode=add
while (($#)); do
  case "$1" in
    --remove) mode=remove; shift ;;
    --check) mode=check; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) [[ -z "$repo" ]] || die "one platform repository only, got '$repo' and '$1'"; repo="$1"; shift ;;
  esac
done
[[ -n "$repo" ]] || die "give the platform repository's checkout: integrate-platform.sh PLATFORM_REPO"
script="$repo/scripts/deploy-cluster.sh"
[[ -f "$script" ]] || die "$script does not exist: PLATFORM_REPO must be a checkout of the platform (harvester-rke2-platform)"

[[ "$ROOT" != *$'\n'* ]] || die "this checkout's path contains a newline: move it"
# %q quotes the path for bash, whatever it contains (spaces, quotes, \, $).
printf -v line 'source %q  %s (undo: scripts/integrate-platform.sh --remove)' \
  "$ROOT/integration/platform-phases.sh" "$MARKER"
present="$(grep -cF "$MARKER" "$script" || true)"

case "$mode" in
  check)
    if [[ "$present" -eq 1 ]] && grep -qxF "$line" "$script"; then
      echo "integrate-platform: $script runs cicd-buildout's phases 12–18 ($ROOT)"; exit 0
    fi
    echo "integrate-platform: $script is not integrated with $ROOT" >&2; exit 2 ;;
  remove)
    if [[ "$present" -eq 0 ]]; then echo "integrate-platform: $script is not integrated: nothing to remove"; exit 0; fi
    tmp="$(mktemp "$script.XXXXXX")"
    # Only the marked line goes; every other byte stays as it was.
    MARKER="$MARKER" perl -0777 -pe 's/^[^\n]*\Q$ENV{MARKER}\E[^\n]*\n//mg' "$script" > "$tmp"
    chmod --reference="$script" "$tmp"
    mv "$tmp" "$script"
    echo "integrate-platform: removed the integration line from $script"; exit 0 ;;
esac

if [[ "$present" -eq 1 ]] && grep -qxF "$line" "$script"; then
  echo "integrate-platform: $script is already integrated: nothing to change"; exit 0
fi
# The platform's structure this relies on: the phase functions, and `main "$@"` as the last line
# that is not blank. Anything else means the script changed: refuse rather than guess.
last="$(grep -v '^[[:space:]]*$' "$script" | tail -n1)"
[[ "$last" == 'main "$@"' ]] || die "$script does not end with main \"\$@\" (last line: $last): its structure changed, so the integration cannot be placed safely; see docs/adr/0010"
for fn in phase_11_gitlab phase_12_gitlab_hardening phase_12b_sop_wiki phase_13_vault_cicd phase_14_ci_templates \
          phase_15_argocd_delivery phase_16_security phase_17_observability phase_18_demo_apps; do
  grep -qE "^${fn}\(\)" "$script" || die "$script defines no $fn(): its phases changed, so the integration would not replace them; see docs/adr/0010"
done
# Written to a temporary file next to the script, checked with bash -n and renamed: the script
# is never half-written. The line goes just before the final `main "$@"`; an integration of another
# checkout is replaced; every other byte stays as it was.
tmp="$(mktemp "$script.XXXXXX")"
LINE="$line" MARKER="$MARKER" perl -0777 -pe '
  s/^[^\n]*\Q$ENV{MARKER}\E[^\n]*\n//mg;
  s/^(main "\$\@"[ \t]*\n?\s*)\z/$ENV{LINE}\n$1/m or die "no final main\n";
' "$script" > "$tmp" || { rm -f "$tmp"; die "could not place the line in $script"; }
if ! bash -n "$tmp"; then
  rm -f "$tmp"
  die "the integrated script would not parse (bash -n): $script is unchanged"
fi
chmod --reference="$script" "$tmp"
mv "$tmp" "$script"
echo "integrate-platform: $script now runs cicd-buildout's phases 12, 12b and 13–18 ($ROOT)"
