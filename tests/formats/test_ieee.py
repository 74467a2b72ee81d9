"""fp32 / fp16 / bf16 as bit fields, exact against NumPy, ml_dtypes and gguf (spec §1)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab.formats.ieee import FloatFormat
from qltest import assert_floats_identical

ORACLE = {"fp32": np.float32, "fp16": np.float16, "bf16": ml_dtypes.bfloat16}
CODE = {"fp32": np.uint32, "fp16": np.uint16, "bf16": np.uint16}

# the boundary vectors of spec §1 (and the E4M3/E5M2/E2M1 ones, harmless here)
EDGES = np.array([65519.99, 65520.0, -65520.0, 65504.0, 2.0 ** -25, 2.0 ** -25 * (1 + 2.0 ** -23),
                  2.0 ** -24, 2.0 ** -14, 464.0, 465.0, 61440.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5,
                  5.0, 0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 3.3961776e38, 3.3961775e38,
                  1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1e-45, -1e-45, 2.0 ** -133, 2.0 ** -134],
                 dtype=np.float32)


def raw_float32(n: int, seed: int) -> np.ndarray:
    """Random float32 bit patterns: every exponent, subnormals, ±0, inf and NaN payloads."""
    bits = np.random.default_rng(seed).integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([bits.view(np.float32), EDGES])


def cast(x: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dtype)


def assert_codes_match(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Bit-identical codes, except that any NaN equals any NaN (payloads differ by library)."""
    ref_dt = ref.dtype
    ref_codes = ref.view(f"u{ref_dt.itemsize}")
    assert ours.dtype == ref_codes.dtype, f"{what}: dtype {ours.dtype} != {ref_codes.dtype}"
    both_nan = np.isnan(ours.view(ref_dt).astype(np.float32)) & np.isnan(ref.astype(np.float32))
    bad = (ours != ref_codes) & ~both_nan
    if bad.any():
        i = np.flatnonzero(bad.reshape(-1))[:5]
        raise AssertionError(f"{what}: {int(bad.sum())}/{bad.size} codes differ; first: ours "
                             f"{[hex(v) for v in ours.reshape(-1)[i]]} ref "
                             f"{[hex(v) for v in ref_codes.reshape(-1)[i]]}")


@pytest.fixture(scope="module")
def x32():
    return raw_float32(1_000_000, seed=0)


# ----------------------------------------------------------------------------- decode
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_decode_all_65536_codes(name):
    codes = np.arange(2 ** 16, dtype=np.uint16)
    ref = codes.view(ORACLE[name]).astype(np.float32)
    assert_floats_identical(ql.get(name).decode(codes), ref, f"{name} decode")


def test_fp32_decode_is_the_identity_on_a_million_codes():
    codes = np.random.default_rng(1).integers(0, 2 ** 32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    ours = ql.get("fp32").decode(codes)
    ref = codes.view(np.float32)
    finite = np.isfinite(ref)
    assert np.array_equal(ours.view(np.uint32)[finite], codes[finite])
    assert np.array_equal(np.isnan(ours), np.isnan(ref)) and np.array_equal(ours[~finite & ~np.isnan(ref)],
                                                                           ref[~finite & ~np.isnan(ref)])


# ----------------------------------------------------------------------------- encode
@pytest.mark.parametrize("name", ["fp16", "bf16", "fp32"])
def test_encode_float32_matches_original(name, x32):
    ours = ql.get(name).encode(x32)
    assert_codes_match(ours, cast(x32, ORACLE[name]), f"{name} encode")


def test_spec_boundary_vectors_fp16():
    f = ql.get("fp16")
    got = f.encode(np.array([65519.99, 65520, -65520, 2.0 ** -25, 2.0 ** -25 * (1 + 2.0 ** -23), -0.0],
                            dtype=np.float32))
    # 65504, +inf (tie to even = 2^16 overflows), -inf, 0 (tie with the smallest subnormal), 2^-24, -0
    assert got.tolist() == [0x7BFF, 0x7C00, 0xFC00, 0x0000, 0x0001, 0x8000]


def test_spec_boundary_vectors_bf16():
    f = ql.get("bf16")
    mid = np.array([0x7F7F8000, 0x7F7F7FFF], dtype=np.uint32).view(np.float32)
    assert f.encode(mid).tolist() == [0x7F80, 0x7F7F]           # midpoint above max -> inf
    assert f.encode(np.float32(1 + 2.0 ** -8)).item() == 0x3F80  # tie -> even (1.0)
    assert f.encode(np.float32(1 + 3 * 2.0 ** -8)).item() == 0x3F82


def test_float64_input_rounds_like_the_original():
    """fp16 rounds float64 directly (NumPy); bf16 goes through float32 (ml_dtypes)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(200_000) * np.exp2(rng.integers(-30, 18, 200_000))
    # values within 2^-40 of fp16 and bf16 ties: double rounding would show here
    ties = (1 + 2.0 ** -11) * np.exp2(np.arange(-10, 10.0)) + 2.0 ** -40
    x = np.concatenate([x, ties, 1 + 2.0 ** -8 + 2.0 ** -40 * np.arange(1, 50)])
    assert_codes_match(ql.get("fp16").encode(x), cast(x, np.float16), "fp16 from float64")
    assert_codes_match(ql.get("bf16").encode(x), cast(x, ml_dtypes.bfloat16), "bf16 from float64")
    assert_codes_match(ql.get("fp32").encode(x), cast(x, np.float32), "fp32 from float64")


def test_bf16_agrees_with_gguf_quantizer(x32):
    """gguf's BF16 quantizer is a second, independent RNE oracle (finite values)."""
    from gguf import GGMLQuantizationType, quants
    x = x32[np.isfinite(x32)]
    ref = quants.quantize(x, GGMLQuantizationType.BF16).view(np.uint16)
    assert np.array_equal(ql.get("bf16").encode(x), ref)


def test_bf16_bit_trick_equals_the_generic_codec(x32):
    """Two independent implementations: the add-bias trick and the generic E8M7 RNE codec."""
    generic = FloatFormat("generic_e8m7", 8, 7, cast_via_float32=True)
    assert np.array_equal(ql.get("bf16").encode(x32), generic.encode(x32))


def test_bf16_truncate_is_round_toward_zero(x32):
    f = ql.get("bf16")
    trunc = f.encode(x32, mode="truncate")
    finite = np.isfinite(x32)
    assert np.array_equal(trunc[finite], (x32.view(np.uint32)[finite] >> 16).astype(np.uint16))
    assert np.isnan(f.decode(trunc[np.isnan(x32)])).all()            # NaN never becomes inf
    assert np.isfinite(f.decode(trunc[finite])).all()                 # never makes inf
    v = x32[finite & (np.abs(x32) < 1e38)]
    assert (np.abs(f.decode(f.encode(v, mode="truncate"))) <= np.abs(v)).all()  # toward zero
    differ = np.mean(f.encode(v, mode="truncate") != f.encode(v))
    assert 0.45 < differ < 0.55, differ                               # ≈ half of random inputs


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp32"])
def test_saturating_encode_is_clamp_then_cast(name, x32):
    f = ql.get(name)
    ref = cast(np.clip(x32, -f.max, f.max), ORACLE[name])
    assert_codes_match(f.encode(x32, saturate=True), ref, f"{name} saturating")


@pytest.mark.parametrize("name,finfo", [("fp32", np.finfo(np.float32)), ("fp16", np.finfo(np.float16)),
                                        ("bf16", ml_dtypes.finfo(ml_dtypes.bfloat16))])
def test_constants_match_finfo(name, finfo):
    f = ql.get(name)
    assert f.max == float(finfo.max)
    assert f.smallest_normal == float(finfo.smallest_normal)
    assert f.smallest_subnormal == float(finfo.smallest_subnormal)
    assert f.eps == float(finfo.eps)


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_round_trip_every_non_nan_code(name):
    f = ql.get(name)
    codes = np.arange(2 ** 16, dtype=np.uint16)
    v = f.decode(codes)
    keep = ~np.isnan(v)
    assert np.array_equal(f.encode(v[keep]), codes[keep])


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint32, st.integers(1, 300)))
def test_fp32_round_trip_raw_bits(codes):
    f = ql.get("fp32")
    v = np.append(f.decode(codes), np.float32(1))      # never all-NaN (empty input is refused)
    keep = ~np.isnan(v)
    assert np.array_equal(f.encode(v[keep]), np.append(codes, np.uint32(0x3F800000))[keep])


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(2, 300), elements=st.floats(width=32, allow_nan=False)),
       st.sampled_from(["fp16", "bf16"]))
def test_encode_is_monotone(x, name):
    f = ql.get(name)
    y = f.decode(f.encode(np.sort(x)))
    assert (y[1:] >= y[:-1]).all()


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_negative_zero_survives(name):
    f = ql.get(name)
    z = f.decode(f.encode(np.array([-0.0, 0.0], dtype=np.float32)))
    assert np.signbit(z).tolist() == [True, False]
    back = ql.get("fp32").decode(ql.get("fp32").encode(ql.get("bf16").decode(ql.get("bf16").encode(z))))
    assert np.signbit(back).tolist() == [True, False]


# ----------------------------------------------------------------------------- bits / from_bits
def test_bits_fields():
    b = ql.bits("fp16", np.array([1.0, -2.0, 65504.0, 2.0 ** -24], dtype=np.float32))
    assert b.sign.tolist() == [0, 1, 0, 0]
    assert b.exponent.tolist() == [15, 16, 30, 0]
    assert b.mantissa.tolist() == [0, 0, 1023, 1]
    assert b.codes.dtype == np.uint16
    e = ql.bits("fp8_e4m3", np.float32(448.0))
    assert (int(e.sign), int(e.exponent), int(e.mantissa)) == (0, 15, 6)
    f = ql.bits("fp4_e2m1", np.array([-6.0, 0.5], dtype=np.float32))
    assert f.exponent.tolist() == [3, 0] and f.mantissa.tolist() == [1, 1] and f.sign.tolist() == [1, 0]


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2fnuz", "fp4_e2m1"])
def test_from_bits_inverts_bits(name):
    f = ql.get(name)
    codes = np.arange(min(2 ** f.n_bits, 2 ** 16), dtype=np.int64)
    b = f.split(codes)
    v = ql.from_bits(name, b.sign, b.exponent, b.mantissa)
    assert_floats_identical(v, f.decode(codes), name)
    x = v[~np.isnan(v)]
    again = ql.bits(name, x)
    assert np.array_equal(ql.from_bits(name, again.sign, again.exponent, again.mantissa), x)


def test_bits_refuses_block_formats_and_bad_fields():
    with pytest.raises(ql.FormatError, match="element-wise float format"):
        ql.bits("mxfp4", np.ones(32, np.float32))
    with pytest.raises(ql.InputError, match="exponent field has 5 bit"):
        ql.from_bits("fp16", 0, 32, 0)
    with pytest.raises(ql.InputError, match="integers"):
        ql.from_bits("fp16", 0, 1.5, 0)


# ----------------------------------------------------------------------------- quantize
def test_quantize_is_a_plain_cast_with_honest_storage():
    x = np.random.default_rng(3).standard_normal((8, 33)).astype(np.float32)
    for name in ["fp32", "fp16", "bf16"]:
        qt = ql.quantize(x, name)
        ref = x.astype(ORACLE[name])
        assert np.array_equal(qt.data, ref.reshape(-1).view(np.uint8)), name   # little-endian host
        assert qt.data.dtype == np.uint8 and qt.nbytes == x.size * ref.itemsize
        assert qt.bits_per_weight == ql.get(name).bits_per_weight() == 8 * ref.itemsize
        assert_floats_identical(qt.dequantize(), ref.astype(np.float32), name)
    t = ql.quantize(x, "bf16", mode="truncate")
    assert np.array_equal(t.data.view(np.uint16), (x.view(np.uint32) >> 16).astype(np.uint16).reshape(-1))


def test_quantize_keeps_nan_inf_and_does_not_modify_input():
    x = np.array([np.nan, np.inf, -1.0, 1e6], dtype=np.float32)
    keep = x.copy()
    y = ql.quantize(x, "fp16").dequantize()
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == -1 and y[3] == np.inf
    assert_floats_identical(x, keep, "input untouched")


@pytest.mark.parametrize("bad,err", [(np.arange(4), ql.InputError), (np.zeros(0, np.float32), ql.InputError),
                                     (np.array([1 + 1j]), ql.InputError)])
def test_bad_input(bad, err):
    with pytest.raises(err):
        ql.quantize(bad, "fp16")
    with pytest.raises(err):
        ql.get("bf16").encode(bad)


def test_bad_options_and_codes():
    with pytest.raises(ql.FormatError, match="accepted: mode"):
        ql.quantize(np.ones(3, np.float32), "bf16", rounding="rne")
    with pytest.raises(ql.FormatError, match="'rne' or 'truncate'"):
        ql.quantize(np.ones(3, np.float32), "bf16", mode="nearest")
    with pytest.raises(ql.FormatError, match="accepted: none"):
        ql.quantize(np.ones(3, np.float32), "fp16", scaling="tensor")
    with pytest.raises(ql.InputError, match="values must be in"):
        ql.get("fp16").decode(np.array([70000]))
    with pytest.raises(ql.InputError, match="integer array"):
        ql.get("fp16").decode(np.array([1.0]))


def test_describe_shows_the_card():
    text = ql.describe("fp16")
    assert "0x1.ffcp+15" in text and "0x1p-24" in text and "bias 15" in text
