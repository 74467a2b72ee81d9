"""Compiled float casts (quantlab/kernels/_floatcast.pyx) == their NumPy twins in formats/ieee.py.

The kernels are imported directly (not through quantlab.backend), so these tests check them
even when the suite runs with QUANTLAB_PURE_NUMPY=1.
"""
from __future__ import annotations

import importlib

import ml_dtypes
import numpy as np
import pytest

import quantlab as ql
from quantlab.formats import ieee

kernels = importlib.import_module("quantlab.kernels._floatcast")

MINIFLOATS = ["fp8_e4m3", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "fp4_e2m1"]


@pytest.fixture(scope="module")
def x32():
    """1M+ float32: raw bit patterns (NaN payloads, inf, subnormals, ±0), FP8-range values, ties."""
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 2 ** 32, 700_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = (rng.standard_normal(400_000) * np.exp2(rng.integers(-20, 17, 400_000))).astype(np.float32)
    bf16_ties = ((rng.integers(0, 2 ** 16, 20_000, dtype=np.uint32) << 16) | 0x8000).view(np.float32)
    fp8_vals = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    fp8_vals = np.unique(fp8_vals[np.isfinite(fp8_vals)])
    ties = ((fp8_vals[1:] + fp8_vals[:-1]) / 2).astype(np.float32)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 464, 465, 61440, 1e-45],
                       dtype=np.float32)
    return np.concatenate([raw, near, bf16_ties, ties, special])


def test_bf16_kernel_equals_numpy_twin_for_1_and_2_threads(x32):
    bits = x32.view(np.uint32)
    ref = np.empty(bits.shape, np.uint16)
    ieee.bf16_encode(bits, ref)
    for n_threads in (1, 2):
        out = np.empty(bits.shape, np.uint16)
        kernels.bf16_encode(bits, out, n_threads)
        assert np.array_equal(out, ref), f"{int((out != ref).sum())} codes differ, {n_threads} thread(s)"
    # and the twin is the original: ml_dtypes (any NaN for NaN)
    with np.errstate(invalid="ignore"):
        oracle = x32.astype(ml_dtypes.bfloat16)
    nan = np.isnan(x32)
    assert np.array_equal(ref[~nan], oracle.view(np.uint16)[~nan])
    assert np.isnan(ref[nan].view(ml_dtypes.bfloat16).astype(np.float32)).all()


@pytest.mark.parametrize("name", MINIFLOATS)
def test_minifloat_kernel_equals_numpy_twin_for_1_and_2_threads(name, x32):
    f = ql.get(name)
    for saturate in (False, True):
        ref = np.empty(x32.shape, np.uint8)
        ieee.minifloat_encode(x32, ref, f.E, f.M, f.bias, f.specials, saturate)
        for n_threads in (1, 2):
            out = np.empty(x32.shape, np.uint8)
            kernels.minifloat_encode(x32, out, f.E, f.M, f.bias, f.specials, saturate, n_threads)
            bad = out != ref
            assert not bad.any(), (f"{name} saturate={saturate} threads={n_threads}: {int(bad.sum())} "
                                   f"differ, first x={x32[bad][:3]} ours={out[bad][:3]} twin={ref[bad][:3]}")


def test_format_encode_uses_the_kernel_unless_pure_numpy(monkeypatch, x32):
    f = ql.get("fp8_e4m3")
    fast = f.encode(x32)
    monkeypatch.setenv("QUANTLAB_PURE_NUMPY", "1")
    assert ql.backend.kernel("_floatcast") is None
    assert np.array_equal(f.encode(x32), fast)
    assert np.array_equal(ql.get("bf16").encode(x32[:1000]), ql.get("bf16").encode(x32[:1000]))


@pytest.mark.parametrize("fn,out_dtype,extra", [
    ("bf16_encode", np.uint16, ()),
    ("minifloat_encode", np.uint8, (4, 3, 7, "fn", False))])
@pytest.mark.parametrize("impl", ["kernel", "twin"])
def test_wrong_length_out_buffer_is_a_kernel_error(fn, out_dtype, extra, impl):
    x = np.ones(10, np.float32)
    arg = x.view(np.uint32) if fn == "bf16_encode" else x
    func = getattr(kernels if impl == "kernel" else ieee, fn)
    with pytest.raises(ql.KernelError, match="out has 9 elements, input 10"):
        func(arg, np.empty(9, out_dtype), *extra)
    with pytest.raises(ql.KernelError, match="n_threads"):
        func(arg, np.empty(10, out_dtype), *extra, 0) if extra else func(arg, np.empty(10, out_dtype), 0)


@pytest.mark.parametrize("impl", [kernels.minifloat_encode, ieee.minifloat_encode])
def test_minifloat_kernel_refuses_formats_it_cannot_hold(impl):
    with pytest.raises(ql.KernelError, match="1\\+E\\+M <= 8"):
        impl(np.ones(4, np.float32), np.empty(4, np.uint8), 5, 10, 15, "ieee", False, 1)
    with pytest.raises(ql.KernelError, match="specials"):
        impl(np.ones(4, np.float32), np.empty(4, np.uint8), 4, 3, 7, "ocp", False, 1)
