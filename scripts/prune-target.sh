#!/usr/bin/env bash
# Keeps the shared cargo target directory (~/.cache/anshin/target) from growing without bound.
#
# Every rebuild of a test or binary crate leaves its old executable behind in `debug/deps` (hundreds of MB
# each; `cargo test -p X` and `cargo test --workspace` build different feature sets, hence different
# hashes). This keeps the newest KEEP executables per crate name and deletes older ones, and drops
# incremental state when it exceeds a size. Cargo rebuilds anything deleted here when it is needed, so the
# only cost of pruning too much is a relink. Dry run: PRUNE_DRY_RUN=1.
set -euo pipefail
source "$(dirname "$0")/env.sh"
keep="${PRUNE_KEEP:-3}"
max_incremental_gb="${PRUNE_MAX_INCREMENTAL_GB:-4}"
dry="${PRUNE_DRY_RUN:-0}"
freed=0

remove() {
  local size
  size=$(du -sk "$1" | cut -f1)
  freed=$((freed + size))
  if [ "$dry" = 1 ]; then echo "would remove $1"; else rm -rf "$1"; fi
}

for profile in debug release production; do
  deps="$CARGO_TARGET_DIR/$profile/deps"
  [ -d "$deps" ] || continue
  # Executables are the files without an extension, named <crate>-<16 hex digits>.
  declare -A seen=()
  while IFS= read -r path; do
    name=$(basename "$path")
    crate=${name%-*}
    seen[$crate]=$(( ${seen[$crate]:-0} + 1 ))
    if [ "${seen[$crate]}" -gt "$keep" ]; then
      remove "$path"
      [ -e "$path.d" ] && remove "$path.d"
    fi
  done < <(find "$deps" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[a-z0-9_]+-[0-9a-f]{16}' \
             -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
  unset seen
  inc="$CARGO_TARGET_DIR/$profile/incremental"
  if [ -d "$inc" ] && [ "$(du -sk "$inc" | cut -f1)" -gt $((max_incremental_gb * 1024 * 1024)) ]; then
    remove "$inc"
  fi
done
echo "prune-target: freed $((freed / 1024)) MiB in $CARGO_TARGET_DIR (kept the newest $keep executables per crate)"
