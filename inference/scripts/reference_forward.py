#!/usr/bin/env python3
"""An independent numpy forward pass of a Llama GGUF (weights dequantized to f32 by the `gguf` package).

Used to check the model math apart from quantization: with CANDLE_DEQUANTIZE_ALL=1 our first-step
logits for the SmolLM2 capital-of-France chat prompt matched this script's to ~1e-5 (25.243279 vs
25.2432785 for token 60). Slow (no KV cache); for checks, not tests.

    python reference_forward.py MODEL.gguf 1,9690,198,... STEPS
Needs: pip install numpy gguf. Hyper-parameters below are SmolLM2-135M's.
"""
import numpy as np, gguf, sys
r = gguf.GGUFReader(sys.argv[1])
T = {}
for t in r.tensors:
    a = gguf.quants.dequantize(t.data, t.tensor_type)
    T[t.name] = a.reshape([int(x) for x in reversed(t.shape)]) if a.ndim == 1 and len(t.shape) > 1 else a
    T[t.name] = np.asarray(T[t.name], dtype=np.float32)
H, KV, hd, L, eps, theta = 9, 3, 64, 30, 1e-5, 100000.0
ids = [int(x) for x in sys.argv[2].split(',')]
E = T['token_embd.weight']
def rms(x, w): return x / np.sqrt((x*x).mean(-1, keepdims=True) + eps) * w
inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
def rope_i(x, pos):  # x [n, heads, hd], interleaved pairs
    f = np.outer(pos, inv)  # n, hd/2
    c, s = np.cos(f)[:, None, :], np.sin(f)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x); out[..., 0::2] = x0*c - x1*s; out[..., 1::2] = x0*s + x1*c
    return out
out_tokens = []
seq = list(ids)
for step in range(int(sys.argv[3])):
    n = len(seq); pos = np.arange(n)
    x = E[seq]
    for l in range(L):
        g = lambda nm: T[f'blk.{l}.{nm}.weight']
        h = rms(x, g('attn_norm'))
        q = (h @ g('attn_q').T).reshape(n, H, hd); k = (h @ g('attn_k').T).reshape(n, KV, hd); v = (h @ g('attn_v').T).reshape(n, KV, hd)
        q, k = rope_i(q, pos), rope_i(k, pos)
        o = np.zeros((n, H, hd), np.float32)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        for hh in range(H):
            kv = hh // (H // KV)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
            o[:, hh] = s @ v[:, kv]
        x = x + o.reshape(n, H*hd) @ g('attn_output').T
        h = rms(x, g('ffn_norm'))
        a = h @ g('ffn_gate').T
        x = x + ((a / (1 + np.exp(-a))) * (h @ g('ffn_up').T)) @ g('ffn_down').T
    logits = rms(x[-1], T['output_norm.weight']) @ E.T
    t = int(np.argmax(logits)); out_tokens.append(t); seq.append(t)
    print(t, sorted(((float(logits[i]), int(i)) for i in np.argsort(-logits)[:3])), flush=True)
print(out_tokens)
