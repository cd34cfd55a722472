#!/usr/bin/env python3
"""Records llama.cpp's greedy tokens and top logits for SmolLM2 into tests/golden/smollm2_llama_cpp.json.

llama.cpp (PyPI llama-cpp-python, built from its bundled source) is the reference implementation we did not
write; the CI test `smollm2::greedy_matches_llama_cpp_golden` compares our engine against this file, so CI
never needs to build llama.cpp. Run with a Python that has llama_cpp installed:

    ~/.cache/anshin/pyenv-inference/bin/python inference/scripts/record_golden.py [MODEL.gguf]
"""
import hashlib, json, os, sys

import numpy as np
from llama_cpp import Llama

STEPS = 32
TOP = 5
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chat(q):
    return SYSTEM + f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = {
    "chat_capital_of_france": chat("What is the capital of France?"),
    "chat_hypertension": chat("Explain what hypertension is in one sentence."),
    "raw_patient_admitted": "The patient was admitted to the hospital with",
    "raw_japanese": "日本の首都は",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    default = os.path.expanduser("~/.cache/anshin/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
    model = sys.argv[1] if len(sys.argv) > 1 else default
    llm = Llama(model_path=model, n_ctx=512, n_threads=2, n_batch=512, logits_all=True,
                type_k=0, type_v=0, verbose=False)  # F32 KV cache, as ours
    out = {"model_file": os.path.basename(model), "model_sha256": "sha256:" + sha256(model),
           "reference": "llama.cpp via llama-cpp-python " + __import__("llama_cpp").__version__,
           "steps": STEPS, "prompts": []}
    for name, text in PROMPTS.items():
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        generated, tops = [], []
        for _ in range(STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits)[:TOP]
            tops.append([[int(i), round(float(logits[i]), 4)] for i in order])
            tok = int(order[0])
            generated.append(tok)
            llm.eval([tok])
        text_out = llm.detokenize(generated).decode("utf-8", "replace")
        print(f"{name}: {text_out!r}", flush=True)
        out["prompts"].append({"name": name, "text": text, "prompt_tokens": tokens, "tokens": generated,
                               "top_logits": tops, "output_text": text_out})
    dest = os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "smollm2_llama_cpp.json")
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print("wrote", os.path.normpath(dest))


if __name__ == "__main__":
    main()
