#!/usr/bin/env bash
# Installs everything the tests and the demo need, idempotently: runs scripts/setup.d/*.sh in name order.
# Each step caches its heavy artefacts under ~/.cache/anshin/ and is a no-op when they are already there.
set -euo pipefail
source "$(dirname "$0")/env.sh"
for step in "$ANSHIN_ROOT"/scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  name=$(basename "$step")
  echo "==> setup: $name"
  start=$SECONDS
  if ! bash "$step"; then
    echo "setup step $name FAILED — see the lines above for the step that failed" >&2
    exit 1
  fi
  echo "==> setup: $name done in $((SECONDS - start)) s"
done
