#!/usr/bin/env bash
# Operator: Prometheus (Debian package `prometheus`), started by operator/tests/promql_window.rs on
# loopback to prove the PromQL path of canary analysis against the real program. Idempotent; nothing
# is started here (the package's systemd unit does not run on these machines).
set -euo pipefail
source "$(dirname "$0")/../env.sh"

step() { echo "  [operator] $*"; }
fail() { echo "  [operator] FAILED at step: $*" >&2; exit 1; }

if command -v prometheus >/dev/null 2>&1; then
  step "prometheus already installed ($(prometheus --version 2>&1 | head -1))"
else
  step "installing prometheus (Debian package; used by the operator's PromQL test)"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=""; else sudo_cmd="sudo"; fi
  timeout 600 $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
    || { timeout 300 $sudo_cmd apt-get update -q >/dev/null 2>&1 && timeout 600 $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; } \
    || fail "apt-get install prometheus"
  step "prometheus installed: $(prometheus --version 2>&1 | head -1)"
fi
