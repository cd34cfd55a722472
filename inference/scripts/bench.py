#!/usr/bin/env python3
"""Benchmark: anshin-inference vs llama.cpp (llama-cpp-python) on the same GGUF, same thread count, same run.

Prints one JSON object. Not a test. Single-stream prefill/decode for llama.cpp use its Python API (no HTTP);
ours go through HTTP streaming (so they include HTTP overhead). Concurrent streams go through HTTP for both;
llama-cpp-python's bundled server has no parallel slots (it serves one request at a time), which the JSON
notes. Run through inference/scripts/bench.sh, which builds the release binary first.
"""
import argparse, json, os, socket, statistics, subprocess, sys, threading, time, urllib.request

import llama_cpp

ROOT = os.path.dirname(os.path.abspath(__file__))
PROMPT = ("The patient is a 65-year-old man with a three-day history of fever and productive cough. "
          "He has hypertension and type 2 diabetes, treated with amlodipine and metformin. ")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} never became ready")


def stream_completion(base, prompt, max_tokens, extra):
    """Streams /v1/completions; returns (ttft_s, total_s, chunk_times)."""
    body = dict(prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True, **extra)
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    times = []
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    times.append(time.perf_counter() - start)
    total = time.perf_counter() - start
    return (times[0] if times else total), total, times


def ours_single(base, long_prompt, decode_tokens, reps):
    prefill, decode = [], []
    n_prompt = len(long_prompt["ids"])
    for _ in range(reps):
        ttft, _, _ = stream_completion(base, long_prompt["text"], 1, {"ignore_eos": True})
        prefill.append(n_prompt / ttft)
        _, _, times = stream_completion(base, "Once upon a time", decode_tokens, {"ignore_eos": True})
        # Chunks may carry more than one token when text is held back; use chunk count as a lower bound.
        decode.append((len(times) - 1) / (times[-1] - times[0]))
    return statistics.median(prefill), statistics.median(decode)


def llama_single(llm, ids, decode_tokens, reps):
    prefill, decode = [], []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter(); llm.eval(ids); prefill.append(len(ids) / (time.perf_counter() - t))
        llm.reset(); llm.eval(llm.tokenize(b"Once upon a time", add_bos=False))
        t = time.perf_counter()
        for _ in range(decode_tokens):  # one token per step, as in decoding (the token's value is irrelevant)
            llm.eval([198])
        decode.append(decode_tokens / (time.perf_counter() - t))
    return statistics.median(prefill), statistics.median(decode)


def concurrent(base, streams, max_tokens, extra):
    results = [None] * streams

    def run(i):
        results[i] = stream_completion(base, PROMPT + f"Case {i}.", max_tokens, extra)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.perf_counter() - start
    ttfts = sorted(r[0] for r in results)
    # Count what arrived (text chunks ≈ tokens), not what was asked: a server may stop early at EOS.
    tokens = sum(len(r[2]) for r in results)
    pct = lambda p: ttfts[min(len(ttfts) - 1, int(round(p * (len(ttfts) - 1))))]
    return {"streams": streams, "tokens_received": tokens, "aggregate_decode_tok_s": round(tokens / wall, 1),
            "ttft_p50_s": round(pct(0.5), 3), "ttft_p99_s": round(pct(0.99), 3), "wall_s": round(wall, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/anshin/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--binary", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--stream-tokens", type=int, default=64)
    args = ap.parse_args()

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                          n_batch=512, verbose=False)
    long_text = PROMPT * 12
    long_ids = llm.tokenize(long_text.encode(), add_bos=False)
    out = {"machine": {"cpus": os.cpu_count(), "threads": args.threads, "loadavg_before": os.getloadavg()},
           "model": os.path.basename(args.model), "prompt_tokens_for_prefill": len(long_ids)}
    lp, ld = llama_single(llm, long_ids, args.decode_tokens, args.reps)
    del llm

    port = free_port()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), RUST_LOG="warn")
    ours = subprocess.Popen([args.binary, "serve", "--model", args.model, "--listen", f"127.0.0.1:{port}",
                             "--max-batch", "16", "--max-waiting", "64", "--prefill-chunk", "512"],
                            env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz")
        op, od = ours_single(base, {"text": long_text, "ids": long_ids}, args.decode_tokens, args.reps)
        ours_conc = [concurrent(base, n, args.stream_tokens, {"ignore_eos": True}) for n in (4, 16)]
    finally:
        ours.terminate(); ours.wait(timeout=60)

    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--port", str(port),
                            "--host", "127.0.0.1", "--n_threads", str(args.threads), "--n_ctx", "4096"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/v1/models")
        llama_conc = [concurrent(base, n, args.stream_tokens, {}) for n in (4, 16)]
    finally:
        srv.terminate(); srv.wait(timeout=60)

    out["single_stream"] = {
        "anshin_prefill_tok_s_http": round(op, 1), "llama_cpp_prefill_tok_s_api": round(lp, 1),
        "anshin_decode_tok_s_http": round(od, 1), "llama_cpp_decode_tok_s_api": round(ld, 1),
        "prefill_ratio": round(op / lp, 2), "decode_ratio": round(od / ld, 2)}
    out["concurrent_http"] = {"anshin": ours_conc, "llama_cpp_python_server": llama_conc,
                              "note": "llama-cpp-python's server has no parallel slots: requests run one at a time; "
                                      "its streams may stop early at EOS (it has no ignore_eos)"}
    out["anshin_16_vs_own_single"] = round(ours_conc[1]["aggregate_decode_tok_s"] / od, 2)
    out["machine"]["loadavg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
