"""ggml's MXFP4 (type 39) against ggml.

Oracles: ggml's golden bytes/floats (every case of MXFP4.npz; ggml ignores the imatrix for
this type), gguf-py's quantizer/dequantizer, the C library's ``log2f`` (the function ggml's
exponent rule calls) and brute-force nearest-value search.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf.quants import dequantize as gguf_dequantize, quantize as gguf_quantize
from hypothesis import given, settings, strategies as st

import quantlab as ql
from quantlab.errors import InputError, ShapeError
from quantlab.formats.ggml import by_type
from quantlab.formats.ggml.mxfp4 import KVALUES_MXFP4, best_index_mxfp4, e8m0_half, shared_exponent
from ggml_golden import assert_bytes_equal, assert_floats_identical, golden_params, random_blocks

f32 = np.float32
F = by_type("MXFP4")


@pytest.mark.parametrize("case", golden_params("MXFP4"))
def test_quantize_matches_ggml_bytes(case):
    assert_bytes_equal(F.quantize(case.x, imatrix=case.imatrix).data, case.q, 17, case.id)


@pytest.mark.parametrize("case", golden_params("MXFP4"))
def test_dequantize_matches_ggml_floats(case):
    assert_floats_identical(F.from_bytes(case.q, case.x.shape).dequantize(), case.deq, case.id)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e20]))
def test_quantize_agrees_with_gguf_py(seed, scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, (4, 64)) * scale).astype(f32)
    x[0, :32] = 0                                                   # all-zero block: e = 0
    x[1, 5] = f32(2.0 ** rng.integers(-20, 20))                     # exact powers of two
    ours = np.asarray(F.quantize(x).data)
    assert_bytes_equal(ours, gguf_quantize(x, GT.MXFP4).view(np.uint8).reshape(ours.shape), 17)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_dequantize_arbitrary_bytes_like_gguf_py(seed):
    b = random_blocks(F, 64, np.random.default_rng(seed))
    b[0, 0] = 255                                                   # 12·2^127 overflows to inf
    with np.errstate(over="ignore"):
        ref = gguf_dequantize(b.reshape(1, -1), GT.MXFP4).astype(f32).reshape(-1)
    assert_floats_identical(F.from_bytes(b.reshape(-1), (64 * 32,)).dequantize(), ref)


def test_shared_exponent_uses_float32_log2_like_c():
    """floor(log2f(amax)): just below a power of two C's log2f rounds up to the integer."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.log2f.restype, libm.log2f.argtypes = ctypes.c_float, [ctypes.c_float]
    p = 2.0 ** np.arange(-125, 128, dtype=np.float64)
    below = [np.float32(v) for k in range(1, 40) for v in p * (1 - k * 2.0**-24)]
    amax = np.unique(np.array(below + list(p.astype(f32)) + [f32(3e-38), f32(6.0)], dtype=f32))
    want = [int(np.floor(libm.log2f(float(a)))) - 2 + 127 for a in amax]
    assert shared_exponent(amax).astype(int).tolist() == want
    assert shared_exponent(np.array([f32(0)]))[0] == 0


def test_tiny_blocks_wrap_the_exponent_like_the_c_cast():
    """amax < 2^-125 gives a negative exponent; (uint8_t) on x86-64 keeps it modulo 256."""
    amax = np.array([2.0**-126, 2.0**-130, 2.0**-149], dtype=f32)
    assert shared_exponent(amax).tolist() == [(-126 - 2 + 127) % 256, (-130 - 2 + 127) % 256,
                                               (-149 - 2 + 127) % 256]


def test_best_index_is_the_first_nearest_value():
    d = np.array([f32(0.25)], f32)
    v = np.arange(-14, 14.01, 0.125, dtype=f32)[None, :] * d        # all midpoints and ties
    err = np.abs(KVALUES_MXFP4[None, :] * d[:, None] - v[0][:, None])  # brute force, (n, 16)
    first = np.argmax(err == err.min(axis=1, keepdims=True), axis=1)
    got = np.concatenate([best_index_mxfp4(v[:, i:i + 32], d)[0] for i in range(0, v.shape[1], 32)])
    assert got.tolist() == first[:got.size].tolist()
    assert 8 not in got.tolist()                                    # "-0" is never chosen


def test_e8m0_half_matches_the_bit_construction():
    e = np.arange(256)
    bits = np.where(e < 2, 0x00200000 << e, (e - 1) << 23).astype(np.uint32)   # ggml-impl.h
    assert_floats_identical(e8m0_half(e), bits.view(f32))


def test_zero_block_imatrix_ignored_and_layout():
    assert bytes(F.quantize(np.zeros((1, 32), f32)).data).hex() == "00" * 17
    x = np.random.default_rng(8).normal(size=(2, 64)).astype(f32)
    assert_bytes_equal(F.quantize(x, imatrix=np.ones(64, f32)).data, F.quantize(x).data)
    assert (F.name, F.ggml_name, F.ggml_type, F.type_size, F.block_size) == ("ggml_mxfp4", "MXFP4", 39, 17, 32)
    assert sum(s for _, s, _ in F.layout) == 17 and F.bits_per_weight() == 4.25


def test_values_are_e2m1_times_the_e8m0_scale():
    x = np.random.default_rng(9).normal(size=(1, 32)).astype(f32)
    fl = F.block_fields(np.asarray(F.quantize(x).data).reshape(-1))
    assert set(np.abs(fl["e2m1"]).tolist()) <= {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0}
    assert_floats_identical(F.quantize(x).dequantize()[0], (fl["e2m1"] * fl["scale"]).astype(f32))


def test_bad_input_is_refused():
    with pytest.raises(ShapeError, match="multiple of the block size 32"):
        ql.quantize(np.ones((1, 48), f32), "ggml_mxfp4")
    with pytest.raises(InputError):
        ql.quantize(np.array([[np.inf] * 32], f32), "ggml_mxfp4")
