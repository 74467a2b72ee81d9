"""The packed-weight model path (quantlab.model.packed) against the float32 reference and
llama.cpp: act_quant logits identical with and without kernels, float mode close to the
reference, thread invariance, and llama-perplexity's running values for the shipped file."""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab import backend
from quantlab.model.packed import PackedEmbedding, PackedLinear

IDS = np.array([504, 3458, 282, 4649, 314, 1345, 30, 378, 2013, 1161, 42, 7, 3112, 9093, 28, 253])


@pytest.fixture(scope="module")
def embedded():
    from quantlab.model import default_model_path
    return default_model_path()


def load(path, monkeypatch, pure: bool, act_quant: bool):
    with monkeypatch.context() as m:
        if pure:
            m.setenv("QUANTLAB_PURE_NUMPY", "1")
        else:
            m.delenv("QUANTLAB_PURE_NUMPY", raising=False)
        return ql.load_model(path, act_quant=act_quant)


def test_packed_path_is_used_and_keeps_weights_packed(embedded, monkeypatch):
    m = load(embedded, monkeypatch, pure=False, act_quant=False)
    assert isinstance(m.weights.token_embedding, PackedEmbedding)
    if backend.kernel("_matvec") is not None:
        assert all(isinstance(lin, PackedLinear) for lin in m.linears())
        assert all(lin._w is None for lin in m.linears())      # no float32 copy was made


def test_act_quant_logits_identical_with_and_without_kernels(embedded, monkeypatch):
    """Kernel path (_actquant + _matvec) == NumPy emulation (dot.py), bit for bit."""
    ref = load(embedded, monkeypatch, pure=True, act_quant=True)
    with monkeypatch.context() as m:
        m.setenv("QUANTLAB_PURE_NUMPY", "1")
        expected = ref.logits(IDS)
    fast = load(embedded, monkeypatch, pure=False, act_quant=True)
    got = fast.logits(IDS)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_float_mode_matches_the_float32_reference(embedded, monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("QUANTLAB_PURE_NUMPY", "1")
        expected = load(embedded, monkeypatch, pure=True, act_quant=False).logits(IDS)
    fast = load(embedded, monkeypatch, pure=False, act_quant=False)
    np.testing.assert_allclose(fast.logits(IDS), expected, rtol=0, atol=2e-3 * np.abs(expected).max())
    # decode (T = 1 at a time, the fused kernel) agrees with the prompt path (panels + BLAS)
    cache = fast.new_cache(len(IDS))
    steps = np.concatenate([fast.forward(IDS[i:i + 1], i, cache) for i in range(len(IDS))])
    np.testing.assert_allclose(steps, expected, rtol=0, atol=2e-3 * np.abs(expected).max())


def test_which_forwards_keep_blas_to_one_thread(embedded, monkeypatch):
    """Long prompts in float mode multiply dequantized panels with BLAS; act_quant and short
    inputs run every product in the kernels, so the forward keeps BLAS to one thread."""
    fast = load(embedded, monkeypatch, pure=False, act_quant=False)
    aq = load(embedded, monkeypatch, pure=False, act_quant=True)
    if backend.kernel("_matvec") is None:
        assert all(lin.uses_blas(512) for lin in fast.linears())      # the reference
        return
    assert not any(lin.uses_blas(8) for lin in fast.linears())
    assert all(lin.uses_blas(9) for lin in fast.linears())
    assert not any(lin.uses_blas(512) for lin in aq.linears())


@pytest.mark.parametrize("act_quant", [False, True])
def test_threads_do_not_change_logits(embedded, monkeypatch, act_quant):
    m = load(embedded, monkeypatch, pure=False, act_quant=act_quant)
    out = {}
    for n in ("1", "2"):
        with monkeypatch.context() as mp:
            mp.setenv("OMP_NUM_THREADS", n)
            out[n] = m.logits(IDS[:6])
    np.testing.assert_array_equal(out["1"].view(np.uint32), out["2"].view(np.uint32))


@pytest.mark.slow
def test_act_quant_perplexity_matches_llama_cpp(embedded, monkeypatch):
    """Shipped Q4_1 file, llama.cpp's mode, 20 chunks of 512: llama-perplexity gives 11.6700
    (golden README); the issue asks for agreement within 0.1 %.

    All 20 chunks, not fewer: the early running values move by up to 0.5 % with nothing but
    the float summation order of the dot products (a sequential sum gave 12.6422 after two
    chunks, the 8-lane sum 12.6966; llama.cpp 12.6364), because each layer re-quantizes its
    activations and a rounding flip there propagates.  The 20-chunk figure is stable to
    0.1 % under both orders (11.6800, 11.6714)."""
    from qltest import golden
    from quantlab.model import perplexity
    ids = np.load(golden("tokens-pydoc-topics.npz"))["ids"]
    with monkeypatch.context() as mp:               # the compiled path throughout (its NumPy
        mp.delenv("QUANTLAB_PURE_NUMPY", raising=False)   # twin is bit-identical, 3x slower)
        m = ql.load_model(embedded, act_quant=True)
        r = perplexity(m, tokens=ids, ctx=512, chunks=20, progress=False)
    assert len(r.running) == 20
    assert abs(r.running[-1] / 11.6700 - 1) < 1e-3, r.running
    # and the gap to float activations is real: the weights alone give 11.6409
    assert abs(r.running[-1] / 11.6409 - 1) > 1e-3
