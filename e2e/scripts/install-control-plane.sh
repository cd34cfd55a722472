#!/usr/bin/env bash
# Installs the local cluster's control plane, idempotently:
#   etcd (Debian `etcd-server`) and kube-apiserver, kube-controller-manager, kube-scheduler built from
#   Debian bookworm's own `kubernetes` source package (upstream v1.20.2 with vendor/) with Debian's golang-1.19.
# Nothing is fetched except from the Debian package registry the machine already uses.
# Binaries land in $ANSHIN_CACHE/k8s/v1.20.2-<recipe>/bin (default ~/.cache/anshin/...); when that directory is
# complete the script only checks it and exits (seconds). Set ANSHIN_K8S_BIN to print the directory and exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ANSHIN_CACHE="${ANSHIN_CACHE:-$HOME/.cache/anshin}"
K8S_VERSION=1.20.2
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
GO_PKG=golang-1.19-go
GO_ROOT=/usr/lib/go-1.19
# Bump when the build recipe (patches, flags) changes, so stale caches are not reused.
RECIPE=1
KEY="v$K8S_VERSION-r$RECIPE"
BIN="$ANSHIN_CACHE/k8s/$KEY/bin"
WORK="$ANSHIN_CACHE/k8s/build-$KEY"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler)

current_step="start"
t0=$SECONDS
log() { printf '[install-control-plane %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
on_error() {
  echo "install-control-plane: FAILED at step '$current_step' (exit $1); see the output above." >&2
  echo "install-control-plane: build files are kept in $WORK; re-running resumes." >&2
}
trap 'on_error $?' ERR
step() { current_step=$1; log "step: $1"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

cache_complete() {
  [ -f "$BIN/.complete" ] || return 1
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

if cache_complete; then
  log "cached control plane v$K8S_VERSION found in $BIN"
  "$BIN/kube-apiserver" --version
  "$BIN/etcd" --version | sed -n 1p
  exit 0
fi

step "install Debian packages ($GO_PKG, etcd-server, openssl, python3)"
PKGS=("$GO_PKG" etcd-server openssl python3 ca-certificates)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  as_root apt-get install -y --no-install-recommends "${PKGS[@]}" >/dev/null 2>&1 || {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PKGS[@]}" >/dev/null
  }
fi
[ -x "$GO_ROOT/bin/go" ] || { echo "expected $GO_ROOT/bin/go after installing $GO_PKG" >&2; false; }
[ -x /usr/bin/etcd ] || { echo "expected /usr/bin/etcd after installing etcd-server" >&2; false; }

mkdir -p "$WORK" "$BIN"
TARBALL="$WORK/kubernetes_${DEB_VERSION%%-*}.orig.tar.gz"
if [ ! -f "$TARBALL" ]; then
  step "download Debian source package kubernetes=$DEB_VERSION"
  # A throw-away apt configuration adds deb-src lines for the mirrors already configured; /etc/apt is untouched.
  APT="$WORK/apt"; mkdir -p "$APT/lists/partial"
  : > "$APT/sources.list"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) print u, $i}' /etc/apt/sources.list.d/debian.sources
  else
    awk '$1=="deb"{print $2, $3}' /etc/apt/sources.list
  fi | sort -u | while read -r uri suite; do
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" >> "$APT/sources.list"
  done
  O=(-o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$APT/lists")
  # As root, apt would try to drop to the _apt user, who cannot write into our cache directory.
  [ "$(id -u)" = 0 ] && O+=(-o APT::Sandbox::User=root)
  apt-get "${O[@]}" update -qq
  (cd "$WORK" && apt-get "${O[@]}" source --download-only "kubernetes=$DEB_VERSION" >/dev/null)
  [ -f "$TARBALL" ] || { echo "source tarball $TARBALL missing after apt-get source" >&2; false; }
fi

export GOPATH="$WORK/gopath" GO111MODULE=off GOFLAGS= CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local
export GOCACHE="$WORK/gocache" PATH="$GO_ROOT/bin:$PATH"
SRC="$GOPATH/src/k8s.io/kubernetes"
if [ ! -f "$SRC/.unpacked" ]; then
  step "unpack source into a GOPATH"
  rm -rf "$SRC"; mkdir -p "$SRC"
  tar xzf "$TARBALL" -C "$SRC" --strip-components=1 || {
    rm -f "$TARBALL"; echo "the source tarball was damaged and is removed; re-run to download it again" >&2; false; }
  touch "$SRC/.unpacked"
fi
cd "$SRC"

step "patch vendored reflect2 for Go >= 1.18"
python3 "$HERE/patch-reflect2-go118.py" "$SRC"

if [ ! -s pkg/generated/openapi/zz_generated.openapi.go ]; then
  step "generate OpenAPI definitions (openapi-gen)"
  bash "$HERE/gen-openapi.sh"
fi

step "build kube-apiserver, kube-controller-manager, kube-scheduler (minutes on 2 cores)"
P=k8s.io/kubernetes/vendor
LD="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  LD+=" -X $P/$pkg.gitVersion=v$K8S_VERSION -X $P/$pkg.gitMajor=1 -X $P/$pkg.gitMinor=20 -X $P/$pkg.gitTreeState=clean"
done
# Progress: go build is silent for minutes, so report the growing build cache every 30 s.
( while sleep 30; do log "  still building… go cache $(du -sh "$GOCACHE" 2>/dev/null | cut -f1)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
nice -n 5 go build -tags providerless -ldflags "$LD" -o "$BIN/" \
  ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler
kill "$ticker" 2>/dev/null || true

step "install etcd and check the binaries"
install -m 0755 /usr/bin/etcd "$BIN/etcd"
"$BIN/kube-apiserver" --version
"$BIN/etcd" --version | sed -n 1p
printf 'kubernetes %s (Debian %s), %s, recipe %s\n' "$K8S_VERSION" "$DEB_VERSION" "$("$GO_ROOT/bin/go" version)" "$RECIPE" \
  > "$BIN/.complete"
log "control plane installed in $BIN"
