#!/usr/bin/env bash
# Gateway (issue 6): the `openai` Python client used by the gateway's API-compatibility test, and nginx
# (Debian package) used only by the gateway benchmark as the reverse-proxy peer. Idempotent.
#   ~/.cache/anshin/pyenv-gateway/  (a venv holding `openai`; override: ANSHIN_GATEWAY_PYTHON)
set -euo pipefail
source "$(dirname "$0")/../env.sh"

step() { echo "  [gateway] $*"; }
fail() { echo "  [gateway] FAILED at step: $*" >&2; exit 1; }

venv="$ANSHIN_CACHE/pyenv-gateway"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import openai" 2>/dev/null; then
  step "openai Python client already in $venv"
else
  step "creating $venv with the openai Python client"
  python3 -m venv "$venv" || fail "python3 -m venv $venv"
  timeout 600 "$venv/bin/pip" install --quiet openai || fail "pip install openai into $venv"
  step "openai client ready: $("$venv/bin/python" -c 'import openai; print(openai.__version__)')"
fi

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
