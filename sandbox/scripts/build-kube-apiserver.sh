#!/usr/bin/env bash
# Builds kube-apiserver v1.20.2 from Debian bookworm's `kubernetes` source package and caches the
# binary outside the repository, so each machine builds it once (~3 min on 2 cores).
# Needs: a deb-src entry and golang-go, rsync, golang-github-modern-go-reflect2-dev (setup-test-env.sh).
# Prints the binary's path on stdout.
set -euo pipefail

cache_dir="${CICD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cicd-buildout}"
binary="$cache_dir/bin/kube-apiserver-v1.20.2"
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

mkdir -p "$cache_dir/bin"
work="$(mktemp -d "$cache_dir/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "building kube-apiserver from Debian's kubernetes source package in $work (once per machine)" >&2
apt-get source --download-only kubernetes >&2
origs=(kubernetes_*.orig.tar.*)
orig="${origs[0]}"
mkdir tree
tar -xf "$orig" -C tree --strip-components=1
debian_tars=(kubernetes_*.debian.tar.*)
debian_tar="${debian_tars[0]}"
tar -xf "$debian_tar" -C tree
(
  cd tree
  if [[ -f debian/patches/series ]]; then
    while read -r patch; do
      [[ -z "$patch" || "$patch" == \#* ]] && continue
      patch -p1 --forward --quiet < "debian/patches/$patch" >&2
    done < debian/patches/series
  fi
  # The vendored reflect2 1.0.1 segfaults under Go >= 1.18 on the first custom-resource write
  # (UnsafeMapType.UnsafeIterate): use Debian's fixed copy.
  reflect2=vendor/github.com/modern-go/reflect2
  rm -f "$reflect2"/*.go "$reflect2"/*.s
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$reflect2"/
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$reflect2"/ 2>/dev/null || true
)
mkdir -p .go/src/k8s.io
ln -s "$work/tree" .go/src/k8s.io/kubernetes
(
  cd .go/src/k8s.io/kubernetes
  # Debian's Go 1.19 builds this tree; a newer Go earlier on PATH does not.
  if [[ -x /usr/lib/go-1.19/bin/go ]]; then
    export PATH="/usr/lib/go-1.19/bin:$PATH" GOTOOLCHAIN=local
  fi
  GOPATH="$work/.go" CGO_ENABLED=0 \
    make WHAT=cmd/kube-apiserver >&2
)
built="$(find "$work/tree/_output" -type f -name kube-apiserver -perm -u+x | head -n1)"
[[ -n "$built" ]] || { echo "kube-apiserver build produced no binary (see output above)" >&2; exit 1; }
install -m 0755 "$built" "$binary.tmp"
mv "$binary.tmp" "$binary"
echo "$binary"
