"""Importance-matrix collection on a tiny Llama GGUF: sums against a direct computation of the
layer-0 inputs, counts, the shared input of Q/K/V, llama-imatrix's rules (blk.* only, output on
request, batches under 16 rows skipped) and the file written through quantlab.io.imatrix.
(The real-model comparison with llama-imatrix's golden file is in test_smollm2.py.)"""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab.io.imatrix import read_imatrix
from quantlab.model import load_model
from quantlab.model.imatrix import collect_imatrix
from quantlab.model.llama import rmsnorm

from model_helpers import tiny_config, tiny_tensors, write_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = tiny_config(vocab_size=52)
    return load_model(write_gguf(tmp_path_factory.mktemp("imx") / "tiny.gguf", cfg=cfg,
                                 tensors=tiny_tensors(cfg, seed=4)))


def test_sums_counts_and_rules(tiny, tmp_path):
    tokens = np.random.default_rng(0).integers(0, 49, 70)
    r = collect_imatrix(tiny, tokens=tokens, ctx=16, chunks=None, progress=False)
    assert r.chunks == 4 and r.ctx == 16                       # 70 // 16 chunks
    linears = [lin.name for lin in tiny.linears() if lin.name.startswith("blk.")]
    assert sorted(r.sums) == sorted(linears) and "output.weight" not in r.sums
    assert set(r.counts.values()) == {64}
    # layer 0's attention input depends on the token alone: Σ_t rmsnorm(E[t])²
    x = rmsnorm(tiny.weights.token_embedding[tokens[:64]], tiny.weights.layers[0].attn_norm,
                tiny.config.norm_eps).astype(np.float64)
    np.testing.assert_allclose(r.sums["blk.0.attn_q.weight"], (x * x).sum(0), rtol=1e-5)
    for l in range(tiny.config.n_layers):
        q, k, v = (r.sums[f"blk.{l}.attn_{t}.weight"] for t in "qkv")
        assert np.array_equal(q, k) and np.array_equal(q, v)
    imp = r.importance()
    np.testing.assert_allclose(imp["blk.1.ffn_down.weight"], r.sums["blk.1.ffn_down.weight"] / 64,
                               rtol=1e-6)
    back = read_imatrix(r.save(tmp_path / "t.imatrix.gguf"))
    assert back.chunk_count == 4 and back.chunk_size == 16
    np.testing.assert_array_equal(back.sums["blk.0.ffn_up.weight"].reshape(-1),
                                  r.sums["blk.0.ffn_up.weight"])


def test_process_output_collects_every_token_of_the_tied_head(tiny):
    tokens = np.random.default_rng(1).integers(0, 49, 40)
    r = collect_imatrix(tiny, tokens=tokens, ctx=16, process_output=True, progress=False)
    assert r.counts["token_embd.weight"] == 32                 # tied: recorded under its tensor
    assert all(lin.hook is None for lin in tiny.linears())      # hooks removed afterwards


def test_small_batches_are_ignored_like_llama_imatrix(tiny):
    with pytest.raises(ql.InputError, match="ctx >= 16"):
        collect_imatrix(tiny, tokens=np.arange(40) % 49, ctx=8, progress=False)
