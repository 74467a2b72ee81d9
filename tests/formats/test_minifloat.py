"""FP8 / FP4 minifloats and E8M0, exact against ml_dtypes (spec §2); torchao scaling recipe."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab.formats.minifloat import e8m0_decode, e8m0_encode, pack_nibbles, unpack_nibbles
from qltest import assert_floats_identical

# one table drives every test: name -> (ml_dtypes type, has -0)
FORMATS = {
    "fp8_e4m3": (ml_dtypes.float8_e4m3fn, True),
    "fp8_e5m2": (ml_dtypes.float8_e5m2, True),
    "fp8_e4m3fnuz": (ml_dtypes.float8_e4m3fnuz, False),
    "fp8_e5m2fnuz": (ml_dtypes.float8_e5m2fnuz, False),
    "fp4_e2m1": (ml_dtypes.float4_e2m1fn, True),
}
EDGES = np.array([463.9, 464, 465, -464, 480, 61439, 61440, -61440, 57344, 240, 247.9, 248, 256,
                  0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, -7, 0.5, 6, 0.0, -0.0, np.nan, -np.nan,
                  np.inf, -np.inf, 2.0 ** -9, 2.0 ** -10, 2.0 ** -11, 2.0 ** -17, 2.0 ** -18, 1e-30, 1e30],
                 dtype=np.float32)


def cast(x, dtype):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(dtype)


def assert_codes_match(ours, ref, what):
    """Same code bits, except any NaN equals any NaN (E5M2 NaN payloads are library choices)."""
    ref_codes = ref.view(np.uint8)
    both_nan = np.isnan(ours.view(ref.dtype).astype(np.float32)) & np.isnan(ref.astype(np.float32))
    bad = (ours != ref_codes) & ~both_nan
    if bad.any():
        i = np.flatnonzero(bad)[:6]
        raise AssertionError(f"{what}: {int(bad.sum())}/{bad.size} codes differ; first at "
                             f"{i.tolist()}: ours {[hex(v) for v in ours[i]]} "
                             f"ref {[hex(v) for v in ref_codes[i]]}")


@pytest.fixture(scope="module")
def x32():
    """Raw float32 bit patterns (all exponents, NaN, inf, subnormals) + values in FP8 range + edges."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 2 ** 32, 600_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = (rng.standard_normal(500_000) * np.exp2(rng.integers(-20, 17, 500_000))).astype(np.float32)
    # exact midpoints between neighbouring E4M3 / E5M2 / E2M1 values: the ties
    mids = []
    for dt, n_codes in ((ml_dtypes.float8_e4m3fn, 256), (ml_dtypes.float8_e5m2, 256),
                        (ml_dtypes.float4_e2m1fn, 16)):
        v = np.abs(np.arange(n_codes, dtype=np.uint8).view(dt).astype(np.float64))
        v = np.unique(v[np.isfinite(v)])
        mids.append((v[1:] + v[:-1]) / 2)                   # exact in float32
    mids = np.concatenate(mids).astype(np.float32)
    return np.concatenate([raw, near, mids, -mids, EDGES])


# ----------------------------------------------------------------------------- decode / constants
@pytest.mark.parametrize("name", FORMATS)
def test_decode_every_code(name):
    dt, _ = FORMATS[name]
    f = ql.get(name)
    codes = np.arange(2 ** f.n_bits, dtype=np.uint8)
    assert_floats_identical(f.decode(codes), codes.view(dt).astype(np.float32), f"{name} decode")


@pytest.mark.parametrize("name", FORMATS)
def test_constants_match_finfo(name):
    dt, _ = FORMATS[name]
    fi, f = ml_dtypes.finfo(dt), ql.get(name)
    assert (f.max, f.smallest_normal, f.smallest_subnormal, f.eps) == (
        float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal), float(fi.eps))


def test_spec_table_values():
    e2m1 = ql.get("fp4_e2m1").decode(np.arange(8, dtype=np.uint8))
    assert e2m1.tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    e4m3 = ql.get("fp8_e4m3").decode(np.arange(128, dtype=np.uint8))
    assert np.count_nonzero(np.isfinite(e4m3) & (e4m3 > 0)) == 126
    assert [ql.get(n).max for n in FORMATS] == [448, 57344, 240, 57344, 6]


# ----------------------------------------------------------------------------- encode
@pytest.mark.parametrize("name", FORMATS)
def test_encode_matches_ml_dtypes(name, x32):
    dt, _ = FORMATS[name]
    assert_codes_match(ql.get(name).encode(x32), cast(x32, dt), f"{name} non-saturating")


@pytest.mark.parametrize("name", FORMATS)
def test_saturating_encode_is_clip_then_cast(name, x32):
    dt, _ = FORMATS[name]
    f = ql.get(name)
    assert_codes_match(f.encode(x32, saturate=True), cast(np.clip(x32, -f.max, f.max), dt),
                       f"{name} saturating")


def test_spec_boundary_vectors():
    e4m3, e5m2, e2m1 = ql.get("fp8_e4m3"), ql.get("fp8_e5m2"), ql.get("fp4_e2m1")
    assert e4m3.encode(np.array([463.9, 464, 465], dtype=np.float32)).tolist() == [0x7E, 0x7E, 0x7F]
    assert e4m3.encode(np.float32(465), saturate=True).item() == 0x7E
    assert e4m3.encode(np.float32(np.inf), saturate=True).item() == 0x7E
    assert e5m2.encode(np.array([61439, 61440], dtype=np.float32)).tolist() == [0x7B, 0x7C]
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7], dtype=np.float32)
    assert e2m1.decode(e2m1.encode(ties)).tolist() == [0, 1, 1, 2, 2, 4, 4, 6]
    # FNUZ: one NaN (0x80), no -0; FP4: NaN follows ml_dtypes (+NaN -> 0b1000, -NaN -> 0)
    fnuz = ql.get("fp8_e4m3fnuz").encode(np.array([np.nan, -0.0, -1e-9, 1e9], dtype=np.float32))
    assert fnuz.tolist() == [0x80, 0x00, 0x00, 0x80]
    assert e2m1.encode(np.array([np.nan, -np.nan, np.inf], dtype=np.float32)).tolist() == [0x8, 0x0, 0x7]


def test_float64_input_goes_through_float32_like_ml_dtypes():
    # 1 + 2^-4 + 2^-40: float32 rounds it to the E4M3 tie 1 + 2^-4, which goes to even (1.0);
    # a direct float64 rounding would give 1.125.  ml_dtypes does the former.
    x = np.array([1 + 2.0 ** -4 + 2.0 ** -40, 3.0e-3, -5.5e4, 1e300])
    for name, (dt, _) in FORMATS.items():
        assert_codes_match(ql.get(name).encode(x), cast(x, dt), f"{name} from float64")


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", FORMATS)
def test_round_trip_every_non_nan_code(name):
    f = ql.get(name)
    codes = np.arange(2 ** f.n_bits, dtype=np.uint8)
    v = f.decode(codes)
    keep = ~np.isnan(v)
    assert np.array_equal(f.encode(v[keep]), codes[keep])
    finite = np.isfinite(v)                                   # saturating: ±inf -> ±max
    assert np.array_equal(f.encode(v[finite], saturate=True), codes[finite])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(2, 200), elements=st.floats(width=32, allow_nan=False)),
       st.sampled_from(sorted(FORMATS)), st.booleans())
def test_encode_is_monotone(x, name, saturate):
    f = ql.get(name)
    y = f.decode(f.encode(np.sort(x), saturate=saturate))
    y = y[~np.isnan(y)]            # E4M3FN/FNUZ overflow to NaN when not saturating
    assert (y[1:] >= y[:-1]).all()


@pytest.mark.parametrize("name", FORMATS)
def test_negative_zero(name):
    _, has_neg_zero = FORMATS[name]
    f = ql.get(name)
    z = f.decode(f.encode(np.float32(-0.0)))
    assert bool(np.signbit(z)) == has_neg_zero and z == 0


# ----------------------------------------------------------------------------- E8M0
def test_e8m0_against_ml_dtypes(x32):
    ref = cast(x32, ml_dtypes.float8_e8m0fnu).view(np.uint8)
    assert np.array_equal(e8m0_encode(x32), ref)
    tiny = np.float32(2.0 ** -127) * np.linspace(0.5, 2.9, 1000, dtype=np.float32)   # subnormal zone
    assert np.array_equal(e8m0_encode(tiny), cast(tiny, ml_dtypes.float8_e8m0fnu).view(np.uint8))
    codes = np.arange(256, dtype=np.uint8)
    assert_floats_identical(e8m0_decode(codes), codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float32))
    assert e8m0_encode(np.array([3, 0.75, 1, 2.0 ** 127], dtype=np.float32)).tolist() == [129, 127, 127, 254]


# ----------------------------------------------------------------------------- scaled quantize
def torchao_recipe(x, dt, fmax, axis):
    """Independent assembly of torchao's float8 tensor/axiswise scaling with ml_dtypes casts."""
    x = x.astype(np.float32)
    amax = np.max(np.abs(x), axis=axis, keepdims=True).astype(np.float64)
    scale = (fmax / np.maximum(amax, 1e-12)).astype(np.float32)
    codes = np.clip(x * scale, -fmax, fmax).astype(dt)
    return codes.view(np.uint8), scale, codes.astype(np.float32) / scale


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("scaling,axis", [("tensor", None), ("channel", -1)])
def test_quantize_matches_torchao_recipe(name, scaling, axis):
    dt, _ = FORMATS[name]
    f = ql.get(name)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 96)) * np.exp2(rng.integers(-12, 12, (16, 1)))   # float64 input
    qt = ql.quantize(x, name, scaling=scaling)
    codes, scale, x_hat = torchao_recipe(x, dt, f.max, axis)
    if f.n_bits == 4:
        assert np.array_equal(qt.data, codes.reshape(-1)[0::2] | (codes.reshape(-1)[1::2] << 4))
    else:
        assert np.array_equal(qt.data, codes.reshape(-1))
    assert qt.meta["q_scale"].dtype == np.float32
    assert np.array_equal(qt.meta["q_scale"], scale.reshape(qt.meta["q_scale"].shape))
    assert_floats_identical(qt.dequantize(), x_hat, f"{name} {scaling}")
    n_scales = 1 if scaling == "tensor" else 16
    assert qt.nbytes == x.size * f.n_bits // 8 + 4 * n_scales


def test_quantize_none_is_the_saturating_cast_and_zero_tensor_is_fine():
    x = np.array([1000.0, -0.3, 0.0], dtype=np.float32)
    qt = ql.quantize(x, "fp8_e4m3", scaling="none")
    assert qt.meta == {} and qt.dequantize().tolist() == [448.0, -0.3125, 0.0]
    z = ql.quantize(np.zeros((3, 4), np.float32), "fp8_e5m2")
    assert not z.dequantize().any() and np.isfinite(z.meta["q_scale"])


def test_fp4_packing_order_and_odd_length():
    qt = ql.quantize(np.array([0.5, 1.0, -6.0], dtype=np.float32), "fp4_e2m1", scaling="none")
    assert qt.data.tolist() == [0x21, 0x0F]                      # element 0 low, 1 high; pad nibble 0
    assert unpack_nibbles(pack_nibbles(np.arange(16, dtype=np.uint8)), 16).tolist() == list(range(16))
    assert qt.dequantize().tolist() == [0.5, 1.0, -6.0] and qt.dequantize().shape == (3,)


def test_scalar_input():
    qt = ql.quantize(np.float32(3.0), "fp8_e4m3", scaling="channel")
    assert qt.shape == () and qt.dequantize().shape == () and qt.dequantize() == 3.0


@pytest.mark.parametrize("name", FORMATS)
def test_bits_per_weight(name):
    f = ql.get(name)
    x = np.random.default_rng(5).standard_normal((64, 1024)).astype(np.float32)
    qt = ql.quantize(x, name)
    assert f.bits_per_weight() == f.n_bits
    assert qt.bits_per_weight == pytest.approx(f.n_bits + 32 / x.size, abs=0)


@pytest.mark.parametrize("bad,err,match", [
    (np.array([1.0, np.nan], np.float32), ql.InputError, "NaN/Inf"),
    (np.array([1.0, np.inf], np.float32), ql.InputError, "NaN/Inf"),
    (np.arange(4), ql.InputError, "floating-point"),
    (np.zeros((0, 3), np.float32), ql.InputError, "empty")])
def test_bad_input(bad, err, match):
    keep = np.array(bad, copy=True)
    with pytest.raises(err, match=match):
        ql.quantize(bad, "fp8_e4m3")
    assert np.array_equal(bad, keep, equal_nan=bad.dtype.kind == "f")


def test_bad_options():
    with pytest.raises(ql.FormatError, match="accepted: scaling"):
        ql.quantize(np.ones(4, np.float32), "fp8_e4m3", scale="tensor")
    with pytest.raises(ql.FormatError, match="'tensor', 'channel' or 'none'"):
        ql.quantize(np.ones(4, np.float32), "fp4_e2m1", scaling="block")
    with pytest.raises(ql.InputError, match="values must be in"):
        ql.get("fp4_e2m1").decode(np.array([16], dtype=np.uint8))
