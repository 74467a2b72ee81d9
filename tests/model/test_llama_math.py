"""The forward pass piece by piece against direct formulas, and the whole forward of tiny random
Llamas against an independent token-by-token, head-by-head transliteration of llama2.c's run.c."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from quantlab.errors import InputError, ModelError
from quantlab.model.llama import attention, rmsnorm, rope, rope_cos_sin, silu, softmax

from model_helpers import tiny_llama

finite = st.floats(-100, 100, width=32, allow_subnormal=False)


@settings(deadline=None)
@given(arrays(np.float32, (3, 16), elements=finite), arrays(np.float32, (16,), elements=finite))
def test_rmsnorm_formula(x, w):
    got = rmsnorm(x, w, 1e-5)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt(np.mean(x64 ** 2, axis=-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-5)
    assert got.dtype == np.float32


def test_rope_is_complex_rotation_of_adjacent_pairs():
    rng = np.random.default_rng(0)
    T, H, hd, theta = 7, 3, 16, 10000.0
    x = rng.standard_normal((T, H, hd)).astype(np.float32)
    pos = np.arange(5, 5 + T)
    got = rope(x, *rope_cos_sin(pos, hd, theta))
    # (x[2i] + i·x[2i+1]) · exp(i · p · θ^(-2i/hd))
    z = x[..., 0::2].astype(np.complex128) + 1j * x[..., 1::2]
    angle = pos[:, None, None] * theta ** (-np.arange(0, hd, 2) / hd)
    zr = z * np.exp(1j * angle)
    np.testing.assert_allclose(got[..., 0::2], zr.real, atol=2e-6)
    np.testing.assert_allclose(got[..., 1::2], zr.imag, atol=2e-6)


def test_rope_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 1, 1, 64)).astype(np.float32)
    def score(pq, pk):
        return float(np.sum(rope(q, *rope_cos_sin([pq], 64, 1e5)) * rope(k, *rope_cos_sin([pk], 64, 1e5))))
    assert score(10, 3) == pytest.approx(score(107, 100), rel=1e-4)


def test_rope_partial_rotation_leaves_tail():
    x = np.random.default_rng(2).standard_normal((4, 2, 16)).astype(np.float32)
    out = rope(x, *rope_cos_sin(np.arange(4), 8, 1e4))
    assert np.array_equal(out[..., 8:], x[..., 8:])
    assert not np.array_equal(out[1:, :, :8], x[1:, :, :8])


def test_softmax_and_silu_formulas():
    x = np.array([[1.0, 2.0, -np.inf], [1000.0, 1000.0, 999.0]], np.float32)
    p = softmax(x)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    assert p[0, 2] == 0 and np.isfinite(p).all()
    v = np.linspace(-20, 20, 101, dtype=np.float32)
    np.testing.assert_allclose(silu(v), v / (1 + np.exp(-v.astype(np.float64))), rtol=1e-6, atol=1e-7)


def naive_attention(q, k, v, pos):
    """One query, one head at a time (llama2.c run.c): head h reads KV head h // kv_mul."""
    T, H, hd = q.shape
    kv_mul = H // k.shape[1]
    out = np.zeros((T, H, hd), np.float64)
    for t in range(T):
        for h in range(H):
            kh = k[:pos + t + 1, h // kv_mul].astype(np.float64)          # (S_t, hd)
            s = kh @ q[t, h] / np.sqrt(hd)
            a = np.exp(s - s.max())
            a /= a.sum()
            out[t, h] = a @ v[:pos + t + 1, h // kv_mul]
    return out.reshape(T, H * hd)


@pytest.mark.parametrize("n_heads, n_kv, pos", [(9, 3, 0), (4, 4, 0), (8, 2, 5), (6, 1, 3)])
def test_gqa_attention_matches_per_head_loop(n_heads, n_kv, pos):
    rng = np.random.default_rng(n_heads * 10 + n_kv)
    T, hd = 5, 16
    q = rng.standard_normal((T, n_heads, hd)).astype(np.float32)
    k = rng.standard_normal((pos + T, n_kv, hd)).astype(np.float32)
    v = rng.standard_normal((pos + T, n_kv, hd)).astype(np.float32)
    np.testing.assert_allclose(attention(q, k, v, pos), naive_attention(q, k, v, pos), rtol=1e-5, atol=1e-5)


def test_gqa_head_mapping_is_consecutive_groups():
    # make every KV head's value a constant = its index; query head h must read h // kv_mul
    T, H, n_kv, hd = 1, 6, 3, 4
    q = np.zeros((T, H, hd), np.float32)
    k = np.zeros((1, n_kv, hd), np.float32)
    v = np.broadcast_to(np.arange(n_kv, dtype=np.float32)[None, :, None], (1, n_kv, hd)).copy()
    out = attention(q, k, v, 0).reshape(H, hd)
    assert out[:, 0].tolist() == [0, 0, 1, 1, 2, 2]


def run_c_forward(model, tokens):
    """llama2.c's forward(token, pos), one token at a time, written independently of llama.py."""
    p, w = model.config, model.weights
    hd, kv_mul = p.head_dim, p.n_heads // p.n_kv_heads
    kc = np.zeros((p.n_layers, len(tokens), p.n_kv_heads * hd))
    vc = np.zeros_like(kc)
    logits = []

    def norm(x, g):
        return x / np.sqrt(np.mean(x * x) + p.norm_eps) * g

    for pos, tok in enumerate(tokens):
        x = w.token_embedding[tok].astype(np.float64)
        for l, L in enumerate(w.layers):
            xb = norm(x, L.attn_norm)
            q, k, v = L.wq.weight @ xb, L.wk.weight @ xb, L.wv.weight @ xb
            for i in range(0, p.n_heads * hd, 2):         # RoPE on adjacent pairs
                f = 1.0 / p.rope_theta ** ((i % hd) / hd)
                c, s = np.cos(pos * f), np.sin(pos * f)
                for vec in ((q, k) if i < p.n_kv_heads * hd else (q,)):
                    a, b = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = a * c - b * s, a * s + b * c
            kc[l, pos], vc[l, pos] = k, v
            att = np.zeros(p.n_heads * hd)
            for h in range(p.n_heads):
                g = h // kv_mul
                sc = kc[l, :pos + 1, g * hd:(g + 1) * hd] @ q[h * hd:(h + 1) * hd] / np.sqrt(hd)
                a = np.exp(sc - sc.max())
                att[h * hd:(h + 1) * hd] = (a / a.sum()) @ vc[l, :pos + 1, g * hd:(g + 1) * hd]
            x = x + L.wo.weight @ att
            xb = norm(x, L.ffn_norm)
            h1, h3 = L.w1.weight @ xb, L.w3.weight @ xb
            x = x + L.w2.weight @ (h1 / (1 + np.exp(-h1)) * h3)
        logits.append(w.output.weight @ norm(x, w.output_norm))
    return np.array(logits)


@pytest.mark.parametrize("tied, n_kv", [(True, 2), (False, 4), (True, 1)])
def test_tiny_forward_matches_run_c(tied, n_kv):
    m = tiny_llama(seed=n_kv, tied=tied, n_kv_heads=n_kv)
    tokens = np.array([3, 17, 0, 49, 8, 8, 21])
    got = m.forward(tokens, 0, m.new_cache(16))
    ref = run_c_forward(m, tokens)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_tiny_incremental_decode_equals_full_forward():
    m = tiny_llama(seed=5)
    tokens = np.random.default_rng(5).integers(0, 50, 20)
    full = m.forward(tokens, 0, m.new_cache(32))
    cache = m.new_cache(32)
    parts = [m.forward(tokens[:7], 0, cache)]
    parts += [m.forward(tokens[i:i + 1], i, cache) for i in range(7, 12)]
    parts.append(m.forward(tokens[12:], 12, cache))
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-4, atol=1e-5)
    last = m.forward(tokens, 0, m.new_cache(32), logits_from=19)
    np.testing.assert_allclose(last, full[19:], rtol=1e-5, atol=1e-6)


def test_forward_refuses_bad_calls():
    m = tiny_llama()
    cache = m.new_cache(8)
    with pytest.raises(InputError):
        m.forward(np.array([50]), 0, cache)                  # id outside the vocabulary
    with pytest.raises(InputError):
        m.forward(np.array([1]), 3, cache)                   # pos disagrees with the cache
    with pytest.raises(ModelError):
        m.forward(np.arange(9), 0, cache)                    # longer than the context
    with pytest.raises(InputError):
        m.forward(np.array([], dtype=int), 0, cache)
