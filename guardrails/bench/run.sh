#!/usr/bin/env bash
# The guardrails benchmark (not part of CI): Anshin and the Presidio + ja_ginza peer on the same data in
# the same run. Prints one JSON document on stdout. Usage: bash guardrails/bench/run.sh [DATA.jsonl]
# Needs scripts/setup.sh to have built the dictionary. Installs the peer (PyPI: presidio-analyzer,
# ja-ginza) into ~/.cache/anshin/pyenv-guardrails-peer on first use.
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$ANSHIN_ROOT"
data="${1:-/work/shared/data/pii-dev.jsonl}"
venv="$ANSHIN_CACHE/pyenv-guardrails-peer"
log() { echo "  [guardrails-bench] $*" >&2; }

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import presidio_analyzer, ja_ginza" 2>/dev/null; then
  log "installing presidio-analyzer and ja-ginza into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q presidio-analyzer ja-ginza >&2 || { log "FAILED: pip install presidio-analyzer ja-ginza"; exit 1; }
fi
log "building anshin-guardrails (release)"
cargo build --release -q -p anshin-guardrails >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "running the Presidio peer"
"$venv/bin/python" guardrails/bench/presidio_peer.py --data "$data" --out "$tmp/peer.json" >&2
log "running anshin-guardrails bench"
"$CARGO_TARGET_DIR/release/anshin-guardrails" bench --data "$data" --peer "$tmp/peer.json"
