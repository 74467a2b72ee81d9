"""The Llama forward pass in NumPy, in llama2.c's vocabulary (``run.c``: rmsnorm, matmul,
RoPE, attention with a KV cache, SwiGLU, ``forward(tokens, pos)``), matching llama.cpp.

One layer (pre-norm residual block), for T new tokens at positions pos … pos+T-1::

    xb  = rmsnorm(x) * attn_norm                 # (T, dim)
    q, k, v = xb @ wqᵀ, xb @ wkᵀ, xb @ wvᵀ       # (T, n_heads*hd), (T, kv_dim), (T, kv_dim)
    q, k = rope(q, pos), rope(k, pos)            # rotate pairs (2i, 2i+1) by pos·θ_i
    cache[pos:pos+T] = k, v
    x  += attention(q, cache) @ woᵀ              # causal, GQA: query head h reads KV head h // kv_mul
    xb  = rmsnorm(x) * ffn_norm
    x  += (silu(xb @ w1ᵀ) * (xb @ w3ᵀ)) @ w2ᵀ    # SwiGLU: w1 = ffn_gate, w3 = ffn_up, w2 = ffn_down

and at the end ``logits = (rmsnorm(x) * output_norm) @ outputᵀ`` (``output`` = the token
embedding when the model ties them, as SmolLM2 does).

Everything is float32, as llama.cpp runs an F32 model; sums of squares (RMSNorm) and softmax
denominators are accumulated in float64 like ggml's ``ggml_float`` accumulators.

RoPE and the GGUF permutation.  Hugging Face Llama rotates the pair (i, i + hd/2) of each head
("rotate_half", llama.cpp's NEOX mode).  ``convert_hf_to_gguf.py`` permutes the rows of
``attn_q``/``attn_k`` so that the same rotation becomes the pair (2i, 2i+1) — llama.cpp's
"normal" mode (``LLAMA_ROPE_TYPE_NORM`` for ``llama``), also llama2.c's.  So on GGUF weights
we rotate *adjacent* pairs; rotating halves instead still "works" but badly (PPL ~256 instead
of ~16.5 on 256 tokens of the default text: the model sees scrambled positions).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backend
from ..errors import InputError, ModelError
from .config import Config
from .weights import Linear, TransformerWeights

__all__ = ["rmsnorm", "rope_cos_sin", "rope", "softmax", "attention", "silu", "KVCache",
           "Llama"]


# ----------------------------------------------------------------------------- primitives
def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x²) + eps) * weight`` along the last axis (ggml_rms_norm then ggml_mul)."""
    xp = backend.xp(x)                                    # NumPy, or CuPy for CuPy arrays
    ms = xp.mean(xp.square(x, dtype=np.float64), axis=-1, keepdims=True)   # (T, 1), double like ggml
    scale = (1.0 / xp.sqrt(ms + eps)).astype(np.float32)
    return (x * scale) * weight


def rope_cos_sin(positions: np.ndarray, n_rot: int, theta: float,
                 freq_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rotation tables for ``positions``: angle[p, i] = p · freq_scale · θ^(-2i/n_rot), i < n_rot/2."""
    inv_freq = theta ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)      # (n_rot/2,)
    angle = np.outer(np.asarray(positions, dtype=np.float64) * freq_scale, inv_freq)
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)   # (T, n_rot/2)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of every head ("normal" mode, GGUF-permuted Q/K).

    x (T, heads, hd); cos, sin (T, n_rot/2).  Dimensions past n_rot are left as they are.
        x'[2i]   = x[2i]·cos − x[2i+1]·sin
        x'[2i+1] = x[2i]·sin + x[2i+1]·cos
    """
    n_rot = 2 * cos.shape[-1]
    out = x.copy()
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]          # (T, heads, n_rot/2)
    c, s = cos[:, None, :], sin[:, None, :]                # broadcast over heads
    out[..., 0:n_rot:2] = x0 * c - x1 * s
    out[..., 1:n_rot:2] = x0 * s + x1 * c
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically safe softmax: subtract the max, exponentiate, divide by a float64 sum
    (ggml's ``ggml_vec_soft_max_f32`` accumulates in double too)."""
    xp = backend.xp(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True, dtype=np.float64).astype(np.float32)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, pos: int) -> np.ndarray:
    """Causal grouped-query attention of T new queries over the S = pos+T cached keys.

    q (T, n_heads, hd); k, v (S, n_kv_heads, hd) -> (T, n_heads*hd).
        att = softmax(q·kᵀ / sqrt(hd) + mask) · v,   mask = −inf where key position > query position
    Query head h reads KV head h // kv_mul (kv_mul = n_heads // n_kv_heads), the mapping of
    llama2.c (``h / kv_mul``) and of ggml's broadcasting mul_mat.
    """
    T, n_heads, hd = q.shape
    S, n_kv_heads, _ = k.shape
    kv_mul = n_heads // n_kv_heads
    # group the kv_mul query heads of each KV head: (n_kv, kv_mul*T, hd).  Scaling q instead of
    # the scores is exact when 1/sqrt(hd) is a power of two (hd = 64, 256) and cheaper.
    qg = (q * np.float32(1.0 / np.sqrt(hd))).transpose(1, 0, 2).reshape(n_kv_heads, kv_mul * T, hd)
    xp = backend.xp(q, k, v)
    kt = xp.ascontiguousarray(k.transpose(1, 2, 0))        # (n_kv, hd, S), contiguous for BLAS
    scores = (qg @ kt).reshape(n_heads, T, S)              # (n_heads, T, S)
    # query t sits at position pos+t and may see keys 0 … pos+t
    future = xp.arange(S)[None, :] > (pos + xp.arange(T))[:, None]          # (T, S)
    scores[:, future] = -np.inf
    att = softmax(scores)                                  # (n_heads, T, S)
    vh = xp.ascontiguousarray(v.transpose(1, 0, 2))        # (n_kv, S, hd)
    out = att.reshape(n_kv_heads, kv_mul * T, S) @ vh      # (n_kv, kv_mul*T, hd)
    return out.reshape(n_heads, T, hd).transpose(1, 0, 2).reshape(T, n_heads * hd)


def silu(x: np.ndarray) -> np.ndarray:
    """``x · σ(x)``"""
    return x / (np.float32(1.0) + backend.xp(x).exp(-x))


# ----------------------------------------------------------------------------- KV cache
@dataclass
class KVCache:
    """Keys and values of every position seen so far, per layer (llama2.c's RunState caches)."""

    key: np.ndarray      # (n_layers, n_ctx, n_kv_heads, head_dim)
    value: np.ndarray    # (n_layers, n_ctx, n_kv_heads, head_dim)
    pos: int = 0         # positions filled

    @classmethod
    def empty(cls, cfg: Config, n_ctx: int) -> "KVCache":
        shape = (cfg.n_layers, n_ctx, cfg.n_kv_heads, cfg.head_dim)
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32))

    @property
    def n_ctx(self) -> int:
        return self.key.shape[1]


# ----------------------------------------------------------------------------- the model
class Llama:
    """Config + weights + ``forward``.  See the module docstring for the math."""

    def __init__(self, config: Config, weights: TransformerWeights):
        self.config = config
        self.weights = weights

    def new_cache(self, n_ctx: int | None = None) -> KVCache:
        """An empty KV cache for ``n_ctx`` positions (default: the trained context)."""
        return KVCache.empty(self.config, int(n_ctx or self.config.seq_len))

    def forward(self, tokens, pos: int, cache: KVCache, logits_from: int = 0) -> np.ndarray:
        """Run ``tokens`` at positions pos … pos+T-1, appending their K/V to ``cache``.

        Returns the logits (T - logits_from, vocab) of the tokens from index ``logits_from``
        on (perplexity needs only the second half of a chunk; generation only the last row).
        """
        T = np.shape(tokens)[0] if np.ndim(tokens) == 1 else 0
        if T > 1 and not any(lin.uses_blas(T) for lin in self.linears()):
            with backend.blas_on_one_thread():      # every big product is an OpenMP kernel
                return self._forward(tokens, pos, cache, logits_from)
        return self._forward(tokens, pos, cache, logits_from)

    def _forward(self, tokens, pos: int, cache: KVCache, logits_from: int) -> np.ndarray:
        p = self.config
        tokens = np.asarray(tokens)
        T = tokens.shape[0]
        if tokens.ndim != 1 or T == 0:
            raise InputError(f"forward needs a non-empty 1-D sequence of token ids, got shape {tokens.shape}")
        if pos != cache.pos:
            raise InputError(f"forward at pos {pos} but the cache holds {cache.pos} positions")
        if pos + T > cache.n_ctx:
            raise ModelError(f"{pos + T} positions do not fit the context of {cache.n_ctx} tokens")
        if tokens.min() < 0 or tokens.max() >= p.vocab_size:
            raise InputError(f"token ids must be in [0, {p.vocab_size}), got {tokens.min()}…{tokens.max()}")
        w = self.weights
        hd, n_rot = p.head_dim, p.n_rot or p.head_dim
        cos, sin = rope_cos_sin(np.arange(pos, pos + T), n_rot, p.rope_theta, p.rope_freq_scale)

        x = w.token_embedding[tokens]                          # (T, dim)
        for l, layer in enumerate(w.layers):
            # attention: pre-norm, project, rotate, cache, attend, project back
            xb = rmsnorm(x, layer.attn_norm, p.norm_eps)       # (T, dim)
            q = layer.wq(xb).reshape(T, p.n_heads, hd)         # (T, n_heads, hd)
            k = layer.wk(xb).reshape(T, p.n_kv_heads, hd)      # (T, n_kv_heads, hd)
            v = layer.wv(xb).reshape(T, p.n_kv_heads, hd)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            cache.key[l, pos:pos + T] = k
            cache.value[l, pos:pos + T] = v
            att = attention(q, cache.key[l, :pos + T], cache.value[l, :pos + T], pos)  # (T, n_heads*hd)
            x = x + layer.wo(att)
            # feed-forward: SwiGLU
            xb = rmsnorm(x, layer.ffn_norm, p.norm_eps)
            h = silu(layer.w1(xb)) * layer.w3(xb)              # (T, hidden_dim)
            x = x + layer.w2(h)
        cache.pos = pos + T
        x = rmsnorm(x[logits_from:], w.output_norm, p.norm_eps)
        return w.output(x)                                     # (T - logits_from, vocab)

    def linears(self) -> list[Linear]:
        """Every matmul weight, in execution order (the output head last)."""
        return self.weights.linears()
