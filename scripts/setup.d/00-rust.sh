#!/usr/bin/env bash
# Rust toolchain check and crate download (the only registry Cargo reaches is crates.io).
set -euo pipefail
source "$(dirname "$0")/../env.sh"
for tool in cargo rustc; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is missing: install Rust (rustup) first" >&2; exit 1; }
done
for component in fmt clippy; do
  cargo "$component" --version >/dev/null 2>&1 || { echo "setup: cargo $component is missing: rustup component add ${component/fmt/rustfmt}" >&2; exit 1; }
done
cd "$ANSHIN_ROOT"
echo "fetching crates (cached in ~/.cargo/registry) ..."
cargo fetch --locked
