"""MXFP4 / MXFP8 / NVFP4 against an independent assembly from ml_dtypes casts (spec §2)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab.formats.minifloat import e8m0_decode, unpack_nibbles
from qltest import assert_floats_identical

E2M1, E4M3, E8M0 = ml_dtypes.float4_e2m1fn, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e8m0fnu
MX = {"mxfp4": (E2M1, 2, 6.0, 4), "mxfp8_e4m3": (E4M3, 8, 448.0, 8)}   # elem, emax, max, bits


def packed(codes: np.ndarray) -> np.ndarray:
    c = codes.reshape(-1)
    return c[0::2] | (c[1::2] << 4)


def mx_reference(x, elem, emax, fmax):
    """OCP MX FLOOR scale with float64 log2 and ml_dtypes casts (no quantlab code)."""
    V = x.astype(np.float32).reshape(*x.shape[:-1], -1, 32)
    amax = np.abs(V).max(-1).astype(np.float64)
    with np.errstate(divide="ignore"):
        shared = np.where(amax > 0, np.floor(np.log2(amax)) - emax, -127)
    X = np.exp2(np.clip(shared, -127, 127))                      # exact powers of two
    scale_bytes = X.astype(E8M0).view(np.uint8)
    P = np.clip(V / X[..., None], -fmax, fmax).astype(elem)      # float64 division: exact
    x_hat = (P.astype(np.float32) * X[..., None].astype(np.float32)).reshape(x.shape)
    return scale_bytes, P.view(np.uint8), x_hat


def nvfp4_reference(x, two_level):
    """torchao nvfp4_quantize, re-assembled in float32 with ml_dtypes casts."""
    f32 = np.float32
    V = x.astype(f32).reshape(*x.shape[:-1], -1, 16)
    block_scale = np.abs(V).max(-1) / f32(6)
    g = np.abs(V).max() / f32(2688) if two_level else f32(1)
    s = np.clip(block_scale / g, f32(2.0 ** -6), f32(448)).astype(E4M3)
    total = g * s.astype(f32)
    P = np.clip(V / total[..., None], f32(-6), f32(6)).astype(E2M1)
    return s.view(np.uint8), P.view(np.uint8), (P.astype(f32) * total[..., None]).reshape(x.shape), g


def random_blocks(shape, seed):
    """Rows with very different magnitudes, a zero block, a tiny block and a one-outlier block."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-40, 40, (shape[0], 1)))
    x[0, :32] = 0
    x[1, :32] *= 1e-30
    x[2, 5] = 3e4
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- exact
@pytest.mark.parametrize("name", MX)
def test_mx_matches_independent_assembly(name):
    elem, emax, fmax, bits = MX[name]
    x = random_blocks((64, 512), seed=1)
    qt = ql.quantize(x, name)
    scale_bytes, P, x_hat = mx_reference(x, elem, emax, fmax)
    assert np.array_equal(qt.meta["scale_e8m0"], scale_bytes)
    assert qt.meta["scale_e8m0"].shape == (64, 16) and qt.meta["scale_e8m0"].dtype == np.uint8
    assert np.array_equal(qt.data, packed(P) if bits == 4 else P.reshape(-1))
    assert_floats_identical(qt.dequantize(), x_hat, name)


@pytest.mark.parametrize("two_level", [True, False])
def test_nvfp4_matches_independent_assembly(two_level):
    x = random_blocks((32, 256), seed=2)[:, :256] * np.float32(1e-3)
    qt = ql.quantize(x, "nvfp4", tensor_scale=two_level)
    s, P, x_hat, g = nvfp4_reference(x, two_level)
    assert np.array_equal(qt.meta["scale_e4m3"], s) and qt.meta["scale_e4m3"].shape == (32, 16)
    assert np.array_equal(qt.data, packed(P))
    if two_level:
        assert qt.meta["tensor_scale"].dtype == np.float32 and qt.meta["tensor_scale"] == g
    else:
        assert "tensor_scale" not in qt.meta
    assert_floats_identical(qt.dequantize(), x_hat, "nvfp4")


def test_mx_floor_clips_the_block_max():
    """FLOOR scale: amax/X in [4, 8) for FP4, so 7.5·X saturates to 6·X (spec §2)."""
    x = np.zeros(32, np.float32)
    x[0], x[1] = 7.5, 1.0
    qt = ql.quantize(x, "mxfp4")
    assert qt.meta["scale_e8m0"].tolist() == [127]                # X = 2^(2-2) = 1
    assert qt.dequantize()[:2].tolist() == [6.0, 1.0]


# ----------------------------------------------------------------------------- properties
@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.sampled_from([32, 64, 96])),
              elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
       st.sampled_from(["mxfp4", "mxfp8_e4m3", "nvfp4"]))
def test_block_properties(x, name):
    f = ql.get(name)
    qt = ql.quantize(x, name)
    B = f.block_size
    x_hat = qt.dequantize()
    assert x_hat.shape == x.shape and np.isfinite(x_hat).all()
    blocks = x.reshape(-1, B)
    zero = ~blocks.any(axis=1)
    assert not x_hat.reshape(-1, B)[zero].any()                  # zero block -> zeros
    if name.startswith("mx"):
        X = e8m0_decode(qt.meta["scale_e8m0"]).reshape(-1)
        mant, _ = np.frexp(X)
        assert (mant == 0.5).all()                                 # scale is a power of two
        P = x_hat.reshape(-1, B) / X[:, None]                      # exact: X is a power of two
        assert (np.abs(P) <= f.element.max).all()                  # |P| <= element max
        # unclipped elements are within half an element ulp·X of the input
        e = f.element
        V = blocks.astype(np.float64) / X[:, None]
        inside = np.abs(V) <= e.max
        ulp = np.exp2(np.maximum(np.floor(np.log2(np.maximum(np.abs(V), 1e-300))), e.emin) - e.M)
        assert (np.abs(P - V)[inside] <= ulp[inside] / 2).all()
    # blocks are independent: changing block 0 leaves every other block's bytes alone
    # (nvfp4 without its tensor scale, which by design couples all blocks)
    opts = {"tensor_scale": False} if name == "nvfp4" else {}
    y = x.copy()
    y.reshape(-1, B)[0] = np.float32(1e-3) * np.arange(B, dtype=np.float32)
    a, b = ql.quantize(x, name, **opts), ql.quantize(y, name, **opts)
    (scale_key,) = [k for k in a.meta if k.startswith("scale")]
    assert np.array_equal(a.meta[scale_key].reshape(-1)[1:], b.meta[scale_key].reshape(-1)[1:])
    block_bytes = B * f.element.code_bits // 8 if name != "nvfp4" else B // 2
    assert np.array_equal(a.data[block_bytes:], b.data[block_bytes:])


@pytest.mark.parametrize("name,bpw", [("mxfp4", 4.25), ("mxfp8_e4m3", 8.25), ("nvfp4", 4.5)])
def test_bits_per_weight_equals_storage(name, bpw):
    x = np.random.default_rng(3).standard_normal((256, 1024)).astype(np.float32)
    qt = ql.quantize(x, name)
    assert ql.get(name).bits_per_weight() == bpw
    extra = 32 / x.size if name == "nvfp4" else 0                  # the float32 tensor scale
    assert qt.bits_per_weight == 8 * qt.nbytes / x.size == bpw + extra


def test_nvfp4_zero_tensor_and_leading_dims():
    z = ql.quantize(np.zeros((2, 3, 16), np.float32), "nvfp4")
    assert not z.dequantize().any() and z.dequantize().shape == (2, 3, 16)
    x = np.random.default_rng(6).standard_normal((2, 3, 64)).astype(np.float32)
    flat = ql.quantize(x.reshape(6, 64), "mxfp4")
    assert np.array_equal(ql.quantize(x, "mxfp4").data, flat.data)
    assert unpack_nibbles(flat.data, x.size).shape == (x.size,)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name,block", [("mxfp4", 32), ("mxfp8_e4m3", 32), ("nvfp4", 16)])
def test_ragged_length_names_the_block(name, block):
    with pytest.raises(ql.ShapeError, match=f"multiple of {block}"):
        ql.quantize(np.ones((4, block + 8), np.float32), name)
    with pytest.raises(ql.ShapeError, match="scalar"):
        ql.quantize(np.float32(1), name)


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "nvfp4"])
def test_bad_input(name):
    x = np.ones(32, np.float32)
    x[3] = np.nan
    with pytest.raises(ql.InputError, match="NaN/Inf"):
        ql.quantize(x, name)
    with pytest.raises(ql.InputError, match="floating-point"):
        ql.quantize(np.ones(32, np.int8), name)
    with pytest.raises(ql.InputError, match="empty"):
        ql.quantize(np.zeros((0, 32), np.float32), name)
    with pytest.raises(ql.FormatError, match="does not take"):
        ql.quantize(np.ones(32, np.float32), name, block_size=16)
