"""quantlab.kernels._actquant: the Q8_0/Q8_1/Q8_K activation quantizers, byte-identical to
the NumPy formats (themselves tested against ggml), independent of threads; bad arguments."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab import KernelError

_actquant = pytest.importorskip("quantlab.kernels._actquant", reason="kernels not compiled")

TYPES = [(8, "q8_0"), (9, "q8_1"), (15, "q8_k")]


def kernel(type_id, x, n_threads=1):
    name, bs, ts = _actquant.ACT_TYPES[type_id]
    out = np.full((x.shape[0], x.shape[1] // bs * ts), 0xAB, np.uint8)
    _actquant.quantize_rows(type_id, x, out, n_threads)
    return out


def edge_rows(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((12, n)) * np.exp(rng.uniform(-30, 5, (12, 1)))).astype(np.float32)
    x[0] = 0.0                                              # all zero
    x[1, :300] = 0.0
    x[2] = np.float32(1e-40)                                # subnormal: 1/d overflows
    x[3, ::2] = -x[3, 1::2]                                 # equal magnitudes, both signs
    x[4] = np.round(x[4] * 4) / 4                           # exact ties after scaling
    x[5] = np.float32(1e-42) * rng.integers(-3, 4, n)
    x[6, 7] = -x[6].max() * 3                               # a negative outlier first
    return x


@pytest.mark.parametrize("type_id,name", TYPES)
def test_equals_numpy_format(type_id, name):
    x = edge_rows()
    ref = ql.get(name).quantize_rows(x, None)
    np.testing.assert_array_equal(kernel(type_id, x), ref)
    np.testing.assert_array_equal(kernel(type_id, x, 2), ref)
    np.testing.assert_array_equal(kernel(type_id, x, 3), ref)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint32, (3, 256), elements=st.integers(0, 2**32 - 1)))
def test_equals_numpy_on_raw_bits(bits):
    # finite values of any magnitude whose Q8_1 sum term stays inside fp16
    x = bits.view(np.float32)
    x = np.where(np.isfinite(x) & (np.abs(x) < 1000), x, np.float32(0.5)).astype(np.float32)
    for type_id, name in TYPES:
        np.testing.assert_array_equal(kernel(type_id, x), ql.get(name).quantize_rows(x, None))


def test_bad_arguments_raise_kernel_error():
    x = np.zeros((2, 256), np.float32)
    out = np.zeros((2, 272), np.uint8)
    _actquant.quantize_rows(8, x, out)
    for args in [(2, x, out), (8, x.astype(np.float64), out), (8, x[:, :100], out),
                 (8, x, out[:, :-1]), (15, x, out), (8, x, out, 0), (8, x, out[:1])]:
        with pytest.raises(KernelError):
            _actquant.quantize_rows(*args)
