# Shared environment for the project's scripts: caches live under ~/.cache/anshin/ so a second run is warm.
# Source it; it only exports variables.
export ANSHIN_CACHE="${ANSHIN_CACHE:-$HOME/.cache/anshin}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ANSHIN_CACHE/target}"
export ANSHIN_ROOT="${ANSHIN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
mkdir -p "$ANSHIN_CACHE"
