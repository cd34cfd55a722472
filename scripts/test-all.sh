#!/usr/bin/env bash
# The whole test suite: setup (idempotent), formatting, lints, every test. Ends with one summary line.
set -uo pipefail
source "$(dirname "$0")/env.sh"
cd "$ANSHIN_ROOT"
results=()
failed=0
step() {
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name: $*"
  if "$@"; then results+=("$name ok ($((SECONDS - start)) s)")
  else results+=("$name FAILED ($((SECONDS - start)) s)"); failed=1; fi
}
step setup bash scripts/setup.sh
[ "$failed" = 0 ] || { echo "SUMMARY: FAILED — setup failed"; exit 1; }
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
step test cargo test --workspace --locked
# Old test executables pile up in the shared target dir (tens of GB over weeks); prune after the run.
bash scripts/prune-target.sh || echo "prune-target failed (ignored: it only frees disk)"
echo
printf '  %s\n' "${results[@]}"
if [ "$failed" = 0 ]; then echo "SUMMARY: PASSED — ${results[*]}"; else echo "SUMMARY: FAILED — ${results[*]}"; exit 1; fi
