"""CuPy: the reference ggml dequantizers and the model's math run unchanged on CuPy arrays
(``backend.xp`` picks the array module from the inputs).  Skips cleanly without CuPy or a GPU;
``python benchmarks/gpu_check.py`` runs these and a timing on a GPU machine."""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab import backend

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install quantlab[gpu])")
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def gpu():
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:                    # no driver / no device
        pytest.skip(f"no usable CUDA device ({exc})")


def test_backend_picks_cupy():
    assert backend.xp(cupy.zeros(3)) is cupy
    assert backend.xp(np.zeros(3)) is np


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_ggml_dequantize_on_cupy_is_bit_identical(name):
    fmt = ql.get(name)
    x = np.random.default_rng(0).standard_normal((64, 1024)).astype(np.float32)
    blocks = np.ascontiguousarray(fmt.quantize(x).data).reshape(-1, fmt.type_size)
    with_numpy = fmt.dequantize_blocks(blocks)
    on_gpu = fmt.dequantize_blocks(cupy.asarray(blocks))
    assert isinstance(on_gpu, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(on_gpu).view(np.uint32), with_numpy.view(np.uint32))


def test_model_math_on_cupy():
    from quantlab.model.llama import attention, rmsnorm, silu, softmax
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    q = rng.standard_normal((5, 4, 16)).astype(np.float32)
    k = rng.standard_normal((9, 2, 16)).astype(np.float32)
    v = rng.standard_normal((9, 2, 16)).astype(np.float32)
    g = cupy.asarray
    for ours, ref in [(rmsnorm(g(x), g(w), 1e-5), rmsnorm(x, w, 1e-5)), (silu(g(x)), silu(x)),
                      (softmax(g(x)), softmax(x)),
                      (attention(g(q), g(k), g(v), 4), attention(q, k, v, 4))]:
        assert isinstance(ours, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(ours), ref, rtol=1e-5, atol=1e-6)
