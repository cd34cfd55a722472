#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (parallel slots) from the llama.cpp sources vendored in the
# llama-cpp-python 0.3.36 sdist, so the concurrent-streams benchmark compares against the same llama.cpp
# that the Python API runs. Caches the binary at $ANSHIN_CACHE/llama-server/bin/llama-server; ≈20–35 min on
# 2 cores the first time (run niced), nothing afterwards. Installs what it needs on a fresh machine: cmake
# (Debian package) and scikit-build-core (the sdist's build backend: pip prepares the sdist's metadata with
# it, and that needs cmake ≥ 3.21). Exits non-zero, saying why, when it cannot build.
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
dir="$ANSHIN_CACHE/llama-server"
bin="$dir/bin/llama-server"
[ -x "$bin" ] && { echo "$bin"; exit 0; }
py="${ANSHIN_INFERENCE_PYTHON:-$ANSHIN_CACHE/pyenv-inference/bin/python}"
sdist="$dir/src/llama_cpp_python-0.3.36.tar.gz"
if ! command -v cmake >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "cmake missing: run 'apt-get install -y cmake' as root" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake >&2
fi
if [ ! -f "$sdist" ]; then
  mkdir -p "$dir/src"
  "$py" -c "import scikit_build_core" 2>/dev/null || "$py" -m pip install -q scikit-build-core >&2
  # --no-build-isolation: only the archive is wanted, not a build of its build dependencies.
  "$py" -m pip download --no-binary :all: --no-deps --no-build-isolation llama-cpp-python==0.3.36 -d "$dir/src" >&2
fi
[ -d "$dir/src/llama_cpp_python-0.3.36" ] || tar xzf "$sdist" -C "$dir/src"
src="$dir/src/llama_cpp_python-0.3.36/vendor/llama.cpp"
# The same CPU build as the wheel: native ISA (GGML_NATIVE), OpenMP, weight repacking; no HTTPS.
nice -n 19 cmake -S "$src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
nice -n 19 cmake --build "$dir/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$dir/bin"
cp "$dir/build/bin/llama-server" "$bin"
echo "$bin"
