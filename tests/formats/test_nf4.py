"""NF4 / bitsandbytes FP4 (+ double quantization) against bitsandbytes 0.50.2's golden outputs,
the normal-quantile derivation of the codebook, and the format's invariants."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab.formats import nf4
from qltest import assert_bytes_equal, assert_floats_identical, golden

GOLD = np.load(golden("bnb-4bit.npz"))
SETS = ["normal", "heavy", "uniform", "ragged"]
KINDS = [("nf4", "nf4"), ("fp4", "bnb_fp4")]
CASES = [(s, k, f, bs, m) for s in SETS for k, f in KINDS for bs in (64, 128, 256)
         for m in ("plain", "dq")]


# ----------------------------------------------------------------------------- golden
@pytest.mark.parametrize("st_,kind,fmt,bs,mode", CASES,
                         ids=[f"{c[0]}-{c[1]}-bs{c[3]}-{c[4]}" for c in CASES])
def test_golden_bit_exact(st_, kind, fmt, bs, mode):
    """Every golden case: packed bytes, absmax (float32 or uint8 codes), absmax2, offset and
    dequantize_4bit's output, all identical to bitsandbytes bit for bit."""
    key = f"{st_}/{kind}/bs{bs}/{mode}"
    x = GOLD[f"x/{st_}"]
    qt = ql.quantize(x, fmt, blocksize=bs, double_quant=(mode == "dq"))
    assert_bytes_equal(qt.data, GOLD[f"packed/{key}"].reshape(-1), what=f"packed {key}")
    ref_absmax = GOLD[f"absmax/{key}"]
    assert qt.meta["absmax"].dtype == ref_absmax.dtype
    assert_bytes_equal(qt.meta["absmax"], ref_absmax, what=f"absmax {key}")
    if mode == "dq":
        assert_floats_identical(qt.meta["absmax2"], GOLD[f"absmax2/{key}"], what=f"absmax2 {key}")
        assert_floats_identical(qt.meta["offset"], GOLD[f"offset/{key}"], what=f"offset {key}")
    assert_floats_identical(qt.dequantize(), GOLD[f"deq/{key}"], what=f"deq {key}")


def test_codebooks_equal_bitsandbytes():
    assert_floats_identical(nf4.NF4_CODE, GOLD["code/nf4"], what="NF4 table")
    assert_floats_identical(nf4.FP4_CODE, GOLD["code/fp4"], what="FP4 table")


def test_dynamic_map_equals_golden_code2():
    """create_dynamic_map(signed=True), rebuilt in code, equals every golden state2.code."""
    code = nf4.dynamic_map()
    for key in [k for k in GOLD.files if k.startswith("code2/")]:
        assert_floats_identical(code, GOLD[key], what=key)
    assert code.size == 256 and np.all(np.diff(code) > 0)          # sorted, no duplicates
    assert code[-1] == 1.0 and 0.0 in code and -1.0 not in code    # +1 but no -1
    assert code[0] == np.float32(-0.99296875)


def test_nf4_codebook_regenerated_from_normal_quantiles():
    """Spec §4: v = sort(-ppf(linspace(δ,.5,8)[:-1]) ∪ {0} ∪ ppf(linspace(δ,.5,9)[:-1])) / ppf(δ)."""
    from scipy.stats import norm
    delta = 0.9677083
    pos = norm.ppf(np.linspace(delta, 0.5, 9, dtype=np.float32)[:-1]).tolist()
    neg = (-norm.ppf(np.linspace(delta, 0.5, 8, dtype=np.float32)[:-1])).tolist()
    v = np.sort(np.array(neg + [0.0] + pos))
    v /= v.max()
    np.testing.assert_allclose(nf4.NF4_CODE, v, rtol=0, atol=1e-6)
    assert nf4.NF4_CODE[7] == 0 and abs(nf4.NF4_CODE).max() == 1


# ----------------------------------------------------------------------------- invariants
finite_f32 = arrays(np.float32, st.integers(1, 300),
                    elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=True))


@settings(max_examples=60, deadline=None)
@given(x=finite_f32, fmt=st.sampled_from(["nf4", "bnb_fp4"]),
       bs=st.sampled_from([32, 64, 128]))
def test_idempotent_and_error_bound(x, fmt, bs):
    """q(dq(q(x))) decodes to the same values; |x - x_hat| <= absmax_b * (max level gap)/2."""
    qt = ql.quantize(x, fmt, blocksize=bs)
    xh = qt.dequantize()
    again = ql.quantize(xh, fmt, blocksize=bs).dequantize()
    assert np.array_equal(again, xh)                      # == (the sign of a zero may differ)
    code = np.sort(ql.get(fmt).code.astype(np.float64))
    half_gap = np.diff(code).max() / 2
    amax = np.repeat(qt.meta["absmax"].astype(np.float64), bs)[:x.size]
    err = np.abs(x.astype(np.float64) - xh.astype(np.float64))
    assert np.all(err <= amax * half_gap * (1 + 1e-6) + 1e-44)


@pytest.mark.parametrize("fmt", ["nf4", "bnb_fp4"])
def test_zero_blocks_stay_zero_and_blocks_are_independent(fmt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(64 * 5 + 20).astype(np.float32)
    x[64:128] = 0.0                                       # a full zero block
    x[320:] = 0.0                                         # a zero partial block
    qt = ql.quantize(x, fmt, blocksize=64)
    xh = qt.dequantize()
    assert np.all(xh[64:128] == 0) and np.all(xh[320:] == 0)
    assert qt.meta["absmax"][1] == 0                      # full block: stored unclamped
    assert qt.meta["absmax"][5] == np.float32(1e-38)      # partial block: bnb stores the clamp
    if fmt == "nf4":                                      # zero maps to the level 0.0 (index 7)
        assert np.all(qt.data[32:64] == 0x77)
    y = x.copy()
    y[200] = 50.0                                         # change block 3 only
    qy = ql.quantize(y, fmt, blocksize=64)
    diff = np.flatnonzero(qy.data != qt.data)
    assert diff.size and diff.min() >= 96 and diff.max() < 128
    assert np.flatnonzero(qy.meta["absmax"] != qt.meta["absmax"]).tolist() == [3]


def test_odd_length_pads_one_nibble_and_keeps_shape():
    x = np.linspace(-1, 1, 7, dtype=np.float32).reshape(7, 1)
    qt = ql.quantize(x, "nf4")
    assert qt.data.shape == (4,) and qt.data[-1] & 0x0F == 7    # pad = the code of 0.0
    assert qt.dequantize().shape == (7, 1)
    np.testing.assert_array_equal(qt.dequantize()[[0, 3, 6], 0], [-1, 0, 1])


def test_ties_go_to_the_lower_level():
    """A value exactly on a float32 midpoint between two levels takes the lower index."""
    mids = ((nf4.NF4_CODE[:-1] + nf4.NF4_CODE[1:]) / np.float32(2)).astype(np.float32)
    x = np.concatenate([[1.0], mids]).astype(np.float32)           # absmax 1 -> u = x
    idx = nf4.unpack_high_first(ql.quantize(x, "nf4", blocksize=32).data, x.size)
    assert idx[1:].tolist() == list(range(15))


def test_fp4_small_positive_values_and_the_sign_of_zero():
    """0 < u <= 1/384 gets index 8 (the second zero in table order); bitsandbytes' CPU kernel
    decodes it as -0.0 on its scalar path (last dim not a multiple of 16, as in golden
    'ragged') and +0.0 on its AVX-512 path (as in golden 'normal')."""
    x = np.full((1, 10), 1e-4, np.float32)
    x[0, 0] = 1.0
    for shape, neg in [((1, 10), True), ((2, 16), False), ((1, 9), False)]:
        y = np.resize(x, shape).astype(np.float32)
        y.reshape(-1)[0] = 1.0
        qt = ql.quantize(y, "bnb_fp4")
        idx = nf4.unpack_high_first(qt.data, y.size)
        assert idx[1] == 8
        assert np.signbit(qt.dequantize().reshape(-1)[1]) == neg


def test_input_dtypes():
    rng = np.random.default_rng(3)
    x16 = (rng.standard_normal(200) * 0.02).astype(np.float16)
    a = ql.quantize(x16, "nf4")
    b = ql.quantize(x16.astype(np.float32), "nf4")
    assert np.array_equal(a.data, b.data) and np.array_equal(a.meta["absmax"], b.meta["absmax"])
    x64 = rng.standard_normal(200)
    c = ql.quantize(x64, "nf4", double_quant=True)
    d = ql.quantize(x64.astype(np.float32), "nf4", double_quant=True)
    assert np.array_equal(c.data, d.data) and c.dequantize().dtype == np.float32
    assert x64.dtype == np.float64 and x16.dtype == np.float16      # inputs untouched


def test_double_quant_single_block_residual_is_zero():
    x = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    qt = ql.quantize(x, "nf4", double_quant=True)
    assert qt.meta["absmax2"].tolist() == [0.0] and qt.meta["absmax"].tolist() == [0]
    plain = ql.quantize(x, "nf4")
    assert_floats_identical(qt.dequantize(), plain.dequantize(), what="single-block DQ")


# ----------------------------------------------------------------------------- 8-bit blockwise
def test_blockwise_8bit_is_nearest_up_to_the_lookup_grid():
    """bnb's CPU 8-bit quantizer reads a 65536-point table: its code is the nearest one or,
    within one grid step (2/65535) of a midpoint, a neighbour."""
    code = nf4.dynamic_map().astype(np.float64)
    x = np.random.default_rng(5).standard_normal(20000).astype(np.float32)
    q, absmax = nf4.quantize_blockwise_8bit(x)
    u = x.astype(np.float64) / np.repeat(absmax, 256)[:x.size]
    chosen = np.abs(u - code[q])
    best = np.abs(u[:, None] - code[None, :]).min(axis=1)
    assert np.all(chosen <= best + 2 / 65535)
    assert np.mean(chosen == best) > 0.99
    z, za = nf4.quantize_blockwise_8bit(np.zeros(300, np.float32))
    assert not z.any() and not za.any()


# ----------------------------------------------------------------------------- accounting
def test_bits_per_weight():
    assert ql.get("nf4").bits_per_weight() == 4.5
    assert ql.get("nf4").bits_per_weight(double_quant=True) == pytest.approx(4.127, abs=5e-4)
    assert ql.get("bnb_fp4").bits_per_weight(blocksize=128) == 4.25
    x = np.zeros((256, 256), np.float32)
    assert ql.quantize(x, "nf4").bits_per_weight == 4.5                  # 8*nbytes/size
    qt = ql.quantize(x, "nf4", double_quant=True)
    # 32768 data + 1024 codes + 4*4 absmax2 + 4 offset bytes
    assert qt.nbytes == 32768 + 1024 + 16 + 4
    assert qt.bits_per_weight == pytest.approx(4.127, abs=5e-4)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("opts,match", [
    ({"blocksize": 48}, "32, 64, 128, 256, 512, 1024, 2048, 4096"),
    ({"blocksize": 8192}, "valid block sizes"),
    ({"blocksize": True}, "valid block sizes"),
    ({"double_quant": "yes"}, "True or False"),
    ({"group_size": 64}, "accepted: blocksize, double_quant"),
])
def test_bad_options(opts, match):
    with pytest.raises(ql.FormatError, match=match):
        ql.quantize(np.ones(64, np.float32), "nf4", **opts)


@pytest.mark.parametrize("x,match", [
    (np.arange(64), "floating-point"),
    (np.array([1.0, np.nan], np.float32), "NaN"),
    (np.array([1.0, np.inf], np.float32), "NaN/Inf"),
    (np.zeros(0, np.float32), "empty"),
])
def test_bad_input(x, match):
    with pytest.raises(ql.InputError, match=match):
        ql.quantize(x, "bnb_fp4")
