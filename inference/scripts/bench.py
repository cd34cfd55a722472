#!/usr/bin/env python3
"""Benchmark: anshin-inference vs llama.cpp on the same GGUF, same thread count, same run.

Prints one JSON object: our figures, llama.cpp's, their ratios, and whether each target of the issue is met.
Not a test. Single-stream prefill/decode for llama.cpp use its Python API (llama-cpp-python, no HTTP); ours go
through HTTP streaming (so they include HTTP overhead). Concurrent streams go through HTTP for both: against
llama.cpp's own `llama-server` with as many parallel slots as streams (`--llama-server`, built by
build_llama_server.sh from the same vendored llama.cpp). Without that binary it stops with an error: it never
swaps in another peer (llama-cpp-python's bundled server has no parallel slots, an unfair comparison).
Run through inference/scripts/bench.sh, which builds the release binary first. `--no-peer` runs ours alone
(no llama.cpp needed: the GPU machine, see docs/inference.md "GPU"); no targets are judged then.
"""
import argparse, json, os, socket, statistics, subprocess, sys, threading, time, urllib.request

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


def prompt_tokens(base, text):
    """Our server's own count of the prompt's tokens (the usage of a one-token completion)."""
    body = dict(prompt=text, max_tokens=1, temperature=0)
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["usage"]["prompt_tokens"]


def ours_single(base, long_prompt, decode_tokens, reps):
    prefill, decode = [], []
    n_prompt = len(long_prompt["ids"]) if long_prompt["ids"] else prompt_tokens(base, long_prompt["text"])
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


def llama_server_conc(binary, model, threads, runs, max_tokens):
    """llama.cpp's own server, restarted per run with as many slots as streams (`--parallel N`)."""
    out = []
    for n, shared in runs:
        port = free_port()
        srv = subprocess.Popen([binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
                                "-tb", str(threads), "--parallel", str(n), "-c", str(512 * n), "-b", "512",
                                ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/health")
            out.append(concurrent(base, n, max_tokens, {"ignore_eos": True}, shared))
        finally:
            srv.terminate(); srv.wait(timeout=60)
    return out


# Concurrent runs: (streams, whether the prompts share a prefix). Shared: the same clinical note, then
# "Case i." — the common ≈36 tokens are what a server with prefix sharing computes once. Distinct: "Case i."
# first, so no two prompts share more than one token and every prompt is computed in full.
RUNS = [(4, True), (16, True), (16, False)]


def concurrent(base, streams, max_tokens, extra, shared=True):
    results = [None] * streams

    def run(i):
        prompt = PROMPT + f"Case {i}." if shared else f"Case {i}. " + PROMPT
        results[i] = stream_completion(base, prompt, max_tokens, extra)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.perf_counter() - start
    ttfts = sorted(r[0] for r in results)
    # Count what arrived (text chunks ≈ tokens), not what was asked: a server may stop early at EOS.
    tokens = sum(len(r[2]) for r in results)
    pct = lambda p: ttfts[min(len(ttfts) - 1, int(round(p * (len(ttfts) - 1))))]
    # The decode phase, measured as the single-stream decode figure is (chunks after the first, from the
    # first chunk on): from the earliest first chunk to the latest last one, so a late stream's prefill
    # still counts against it.
    firsts = [start + r[2][0] for r in results if r[2]]
    lasts = [start + r[2][-1] for r in results if r[2]]
    after_first = sum(max(len(r[2]) - 1, 0) for r in results)
    phase = (max(lasts) - min(firsts)) if firsts else 0.0
    # Where that window goes (informative, not judged): until the last stream's first chunk, the server is
    # still prefilling late prompts; from then until the first stream ends, every stream is decoding.
    prefill_in_window = (max(firsts) - min(firsts)) if firsts else 0.0
    all_decoding = (min(lasts) - max(firsts)) if firsts else 0.0
    lo, hi = (max(firsts) - start, min(lasts) - start) if firsts else (0.0, 0.0)
    chunks_all_decoding = sum(sum(1 for t in r[2] if lo < t <= hi) for r in results)
    return {"streams": streams, "prompts": "shared prefix" if shared else "distinct", "tokens_received": tokens, "aggregate_decode_tok_s": round(tokens / wall, 1),
            "decode_phase_tok_s": round(after_first / phase, 1) if phase > 0 else None,
            "decode_window_s": round(phase, 3), "window_until_last_first_chunk_s": round(prefill_in_window, 3),
            "tok_s_while_all_streams_decode": round(chunks_all_decoding / all_decoding, 1) if all_decoding > 0 else None,
            "ttft_p50_s": round(pct(0.5), 3), "ttft_p99_s": round(pct(0.99), 3), "wall_s": round(wall, 2)}


def run_ours(args, long_prompt):
    """Our server: single-stream prefill and decode, then 4 and 16 concurrent streams."""
    port = free_port()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), RUST_LOG="warn")
    ours = subprocess.Popen([args.binary, "serve", "--model", args.model, "--listen", f"127.0.0.1:{port}",
                             "--max-batch", "16", "--max-waiting", "64", "--prefill-chunk", "512",
                             # Every figure here is of computing prompts: the single-stream prefill repeats
                             # one prompt, which a kept cache would answer without computing it (llama.cpp's
                             # API is reset before each repeat and its server restarted for each run).
                             "--no-prefix-cache"],
                            env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz")
        op, od = ours_single(base, long_prompt, args.decode_tokens, args.reps)
        return op, od, [concurrent(base, n, args.stream_tokens, {"ignore_eos": True}, shared) for n, shared in RUNS]
    finally:
        ours.terminate(); ours.wait(timeout=60)


def own_16_vs_single(conc, single_decode):
    """The 16-stream figures over our single-stream decode, for each kind of prompts. That figure leaves out
    its time to first token, so the like-for-like 16-stream figure is the decode phase; the wall-clock
    aggregate (16 prompts' prefill included) is given too."""
    out = {}
    for c in conc:
        if c["streams"] == 16:
            out[c["prompts"]] = {"decode_phase": round((c["decode_phase_tok_s"] or 0.0) / single_decode, 2),
                                 "wall_clock_incl_prefill": round(c["aggregate_decode_tok_s"] / single_decode, 2)}
    return out


def ours_alone(args):
    """`--no-peer`: our figures only, with the same prompts and the same 16-vs-single ratios."""
    op, od, conc = run_ours(args, {"text": PROMPT * 12, "ids": None})
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "threads": args.threads},
                      "model": os.path.basename(args.model), "device_env": os.environ.get("ANSHIN_DEVICE", "default"),
                      "single_stream": {"anshin_prefill_tok_s_http": round(op, 1), "anshin_decode_tok_s_http": round(od, 1)},
                      "concurrent_http": conc,
                      "anshin_16_vs_own_single": own_16_vs_single(conc, od)}, indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/anshin/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--binary", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--stream-tokens", type=int, default=64)
    ap.add_argument("--llama-server", default=os.path.expanduser("~/.cache/anshin/llama-server/bin/llama-server"),
                    help="llama.cpp's llama-server binary (required unless --no-peer)")
    ap.add_argument("--no-peer", action="store_true", help="run ours alone, without llama.cpp (e.g. on a GPU)")
    args = ap.parse_args()
    if args.no_peer:
        return ours_alone(args)
    if not (args.llama_server and os.access(args.llama_server, os.X_OK)):
        sys.exit(f"bench.py: llama-server not found at {args.llama_server!r}: build it with "
                 "inference/scripts/build_llama_server.sh (the concurrent-streams peer is never replaced "
                 "by another server)")
    import llama_cpp

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                          n_batch=512, verbose=False)
    long_text = PROMPT * 12
    long_ids = llm.tokenize(long_text.encode(), add_bos=False)
    out = {"machine": {"cpus": os.cpu_count(), "threads": args.threads, "loadavg_before": os.getloadavg(),
                       "note": "same thread count for both: RAYON_NUM_THREADS for ours, -t/n_threads for llama.cpp"},
           "model": os.path.basename(args.model), "prompt_tokens_for_prefill": len(long_ids)}
    lp, ld = llama_single(llm, long_ids, args.decode_tokens, args.reps)
    del llm

    op, od, ours_conc = run_ours(args, {"text": long_text, "ids": long_ids})

    peer = "llama-server (llama.cpp, same vendored source), --parallel N slots, -t/-tb threads"
    llama_conc = llama_server_conc(args.llama_server, args.model, args.threads, RUNS, args.stream_tokens)

    single = {
        "anshin_prefill_tok_s_http": round(op, 1), "llama_cpp_prefill_tok_s_api": round(lp, 1),
        "anshin_decode_tok_s_http": round(od, 1), "llama_cpp_decode_tok_s_api": round(ld, 1),
        "prefill_ratio": round(op / lp, 2), "decode_ratio": round(od / ld, 2)}
    conc = []
    for ours_n, peer_n in zip(ours_conc, llama_conc):
        conc.append({"streams": ours_n["streams"], "prompts": ours_n["prompts"], "anshin": ours_n, "llama_cpp": peer_n,
                     "aggregate_ratio": round(ours_n["aggregate_decode_tok_s"] / peer_n["aggregate_decode_tok_s"], 2)})
    own16 = own_16_vs_single(ours_conc, od)
    out["single_stream"] = single
    out["concurrent_http"] = {"peer": peer, "results": conc}
    out["anshin_16_vs_own_single"] = own16
    out["targets_met"] = {
        "prefill_ge_0.8x_llama_cpp": single["prefill_ratio"] >= 0.8,
        "decode_ge_0.8x_llama_cpp": single["decode_ratio"] >= 0.8,
        **{f"aggregate_{c['streams']}_streams_{c['prompts'].replace(' ', '_')}_ge_llama_cpp": c["aggregate_ratio"] >= 1.0
           for c in conc},
        **{f"decode_phase_16_streams_{k.replace(' ', '_')}_ge_3x_own_single": v["decode_phase"] >= 3.0
           for k, v in own16.items()},
    }
    out["machine"]["loadavg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))

if __name__ == "__main__":
    main()
