#!/usr/bin/env bash
# One command for the inference benchmark: builds the release binary, then compares it with llama.cpp
# (llama-cpp-python, installed into ~/.cache/anshin/pyenv-inference from the wheel cached in
# ~/.cache/anshin/wheels, building it there first if absent — ≈35 min on 2 cores; and llama.cpp's
# llama-server, see build_llama_server.sh) and prints the comparison as JSON. Run it under
# `flock ~/.cache/anshin/bench.lock` so that no two benchmarks overlap.
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
py="${ANSHIN_INFERENCE_PYTHON:-$ANSHIN_CACHE/pyenv-inference/bin/python}"
[ -x "$py" ] || { echo "run scripts/setup.sh first ($py missing)" >&2; exit 1; }
if ! "$py" -c "import llama_cpp, uvicorn, fastapi, sse_starlette, starlette_context, pydantic_settings" 2>/dev/null; then
  ls "$ANSHIN_CACHE"/wheels/llama_cpp_python-*.whl >/dev/null 2>&1 || \
    nice -n 19 "$py" -m pip wheel --no-deps llama-cpp-python==0.3.36 -w "$ANSHIN_CACHE/wheels"
  "$py" -m pip install -q "$ANSHIN_CACHE"/wheels/llama_cpp_python-*.whl numpy uvicorn fastapi sse-starlette \
    starlette-context pydantic-settings
fi
(cd "$ANSHIN_ROOT" && cargo build --release -p anshin-inference)
# llama.cpp's own server with parallel slots, the fair peer for concurrent streams (built once, cached). If it
# cannot be built the benchmark stops: it never compares against another, unfair peer.
llama_server="$("$(dirname "$0")/build_llama_server.sh")" || {
  echo "bench.sh: llama-server could not be built (see above); no benchmark without the fair peer" >&2
  exit 1
}
exec "$py" "$(dirname "$0")/bench.py" --binary "$CARGO_TARGET_DIR/release/anshin-inference" \
  --llama-server "$llama_server" "$@"
