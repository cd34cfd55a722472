#!/usr/bin/env bash
# Gateway (issue 6): nginx (Debian package), used only by the gateway benchmark as the reverse-proxy peer.
# Idempotent. The `openai` Python client its API test uses is the venv of 30-inference.sh
# (~/.cache/anshin/pyenv-inference; override: ANSHIN_GATEWAY_PYTHON).
set -euo pipefail
source "$(dirname "$0")/../env.sh"

step() { echo "  [gateway] $*"; }
fail() { echo "  [gateway] FAILED at step: $*" >&2; exit 1; }

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  step "nginx already installed (benchmark peer)"
else
  step "installing nginx (Debian package; used only by gateway/bench)"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=""; else sudo_cmd="sudo"; fi
  timeout 600 $sudo_cmd apt-get install -y -q nginx-light >/dev/null 2>&1 \
    || { timeout 300 $sudo_cmd apt-get update -q >/dev/null 2>&1 && timeout 600 $sudo_cmd apt-get install -y -q nginx-light >/dev/null 2>&1; } \
    || fail "apt-get install nginx-light"
  step "nginx installed: $(/usr/sbin/nginx -v 2>&1)"
fi
