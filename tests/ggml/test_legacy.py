"""ggml legacy types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and F32/F16/BF16 storage against ggml.

Oracles: the golden bytes/floats of ``ggml_quantize_chunk`` / ``to_float`` (every case of
``../shared/golden/ggml/{Q4_0,…,BF16}.npz``, with and without imatrix), the worked example
(spec §11) and SHA-256 conformance vectors (spec §12, the only oracle for Q8_1), gguf-py's
independent quantizers and dequantizers, and ml_dtypes/NumPy for the float storage types.
"""
from __future__ import annotations

import hashlib

import ml_dtypes
import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf.quants import dequantize as gguf_dequantize, quantize as gguf_quantize
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql
from quantlab.errors import FormatError, InputError, ShapeError
from quantlab.formats.ggml import by_type
from qltest import model_path
from ggml_golden import (assert_bytes_equal, assert_floats_identical, conformance_inputs,
                         golden_params, random_blocks)

f32 = np.float32
GOLDEN_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16"]
FACTS = {  # name: (registry name, ggml id, bytes per block, block size)
    "Q4_0": ("q4_0", 2, 18, 32), "Q4_1": ("q4_1", 3, 20, 32), "Q5_0": ("q5_0", 6, 22, 32),
    "Q5_1": ("q5_1", 7, 24, 32), "Q8_0": ("q8_0", 8, 34, 32), "Q8_1": ("q8_1", 9, 36, 32),
    "F32": ("ggml_f32", 0, 4, 1), "F16": ("ggml_f16", 1, 2, 1), "BF16": ("ggml_bf16", 30, 2, 1)}
GGUF_TYPES = {"Q4_0": GT.Q4_0, "Q4_1": GT.Q4_1, "Q5_0": GT.Q5_0, "Q5_1": GT.Q5_1, "Q8_0": GT.Q8_0,
              "F16": GT.F16, "BF16": GT.BF16, "F32": GT.F32}


# ----------------------------------------------------------------------------- golden
@pytest.mark.parametrize("case", [p for t in GOLDEN_TYPES for p in golden_params(t)])
def test_quantize_matches_ggml_bytes(case):
    f = by_type(case.type_name)
    qt = f.quantize(case.x, imatrix=case.imatrix)
    assert_bytes_equal(qt.data, case.q, f.type_size, case.id)


@pytest.mark.parametrize("case", [p for t in GOLDEN_TYPES for p in golden_params(t)])
def test_dequantize_matches_ggml_floats(case):
    f = by_type(case.type_name)
    assert_floats_identical(f.from_bytes(case.q, case.x.shape).dequantize(), case.deq, case.id)


# ----------------------------------------------------------------------------- spec §11, §12
X11 = np.array([0.12, -0.53, 0.98, -1.27, 0.33, 0.05, -0.76, 1.41, -0.02, 0.64, -0.89, 0.27,
                1.10, -0.44, 0.71, -0.15, 0.58, -1.02, 0.09, 0.86, -0.31, 0.47, -0.68, 1.23,
                -0.95, 0.19, 0.40, -0.57, 0.82, -0.08, 0.36, -1.18], dtype=f32)


def test_worked_example_q8_0_and_q4_0():
    q8 = ql.quantize(X11, "q8_0").data
    assert bytes(q8).hex() == ("af210bd0588e1e05bc7ffe3ab01863d840f234a4084de42ac36faa11"
                               "24cd4af92096")
    assert bytes(ql.quantize(X11, "q4_0").data).hex() == "a4b157eb723fa658cc10d8746db6328a64f9"
    # with an all-ones imatrix the QX search moves the scale and element 13 (spec §11.2)
    assert (bytes(ql.quantize(X11, "q4_0", imatrix=np.ones(32, f32)).data).hex()
            == "96b157eb723fa658cc10d8746db6328b64f9")


SPEC12 = [("ggml_f16", False, "6882ad41c6af1478506b5d83181d8449983a085debe84247b2f11c97aa6c31b6"),
          ("ggml_bf16", False, "3e946970824c91f619dfb7d30561cc62fdb7bcd9d275aecf63e7ef3291dfe6db"),
          ("q4_0", False, "955615992a38e32e3fa42dd2ade5be3a3ea495e782add8e3b1cf6d70e30e0a8b"),
          ("q4_0", True, "53a55e4f057f207203d7b08bf34112712b030a12bcfc8056e5876820a36a3125"),
          ("q4_1", False, "6484788d0f45564ad99f3662f361073ffab80e4fb5297083b3eceb0dd17add39"),
          ("q4_1", True, "5158d0d5babad1ad813c953d5c8b1ec90ba61b3c8a77c3df107db1c290e7cc80"),
          ("q5_0", False, "698bd1b459df8b7a48f5b1c36110363c94ab66625a9f9b35091c2ae6865ec13f"),
          ("q5_0", True, "085f141cad385251d27be03c15cbb82bb2ae13deacc856b5981e783b9a8d1989"),
          ("q5_1", False, "5bba0478dcd9c05abddb4b1323e4e4bc01514de2b44d016afcdabf4f3b37618d"),
          ("q5_1", True, "d9e5bc8d43d5ae4f2500f69ee4eb7a35f28882003f68ec6e0894cb0ac379e522"),
          ("q8_0", False, "7b0f380cc84fa04fa6dda6c3265f40857252f04e7eb665f807ef39dec7eab75f"),
          ("q8_0", True, "7b0f380cc84fa04fa6dda6c3265f40857252f04e7eb665f807ef39dec7eab75f"),
          ("q8_1", False, "ea20fcd4f4911e765959bc4f1152b48e878d2cef8dc3e6261a3cbcae2466108a")]


@pytest.mark.parametrize("name, use_qw, sha", SPEC12, ids=[f"{n}-{'qw' if q else 'none'}"
                                                           for n, q, _ in SPEC12])
def test_spec_conformance_vectors(name, use_qw, sha):
    x, qw = conformance_inputs()
    data = ql.quantize(x, name, imatrix=qw if use_qw else None).data
    assert hashlib.sha256(bytes(data)).hexdigest() == sha


def test_q8_1_sum_field_and_values():
    x, _ = conformance_inputs()
    f = by_type("Q8_1")
    blocks = np.asarray(f.quantize(x).data).reshape(-1, 36)
    q8_0 = np.asarray(ql.quantize(x, "q8_0").data).reshape(-1, 34)
    assert_bytes_equal(blocks[:, [0, 1] + list(range(4, 36))], q8_0, 34, "Q8_1 = Q8_0 + s")
    # s carries d·Σq: compare with the integer sum times the stored d (fp16 rounding apart)
    fields = [f.block_fields(b) for b in blocks]
    for fl in fields:
        assert abs(fl["s"] - fl["d"] * fl["q"].astype(np.int64).sum()) <= abs(fl["s"]) * 2**-10 + 1e-7
    assert_floats_identical(f.from_bytes(blocks, x.shape).dequantize(),
                            ql.get("q8_0").from_bytes(q8_0, x.shape).dequantize(), "Q8_1 values")


# ----------------------------------------------------------------------------- gguf-py oracle
def _finite_blocks(x):
    """gguf-py has no answer for blocks whose scale reciprocal overflows: flush tiny values."""
    return np.where(np.abs(x) < 1e-20, f32(0), x).astype(f32)


ELEMENTS = st.one_of(st.floats(-8, 8, width=32, allow_subnormal=False),
                     st.sampled_from([0.5, -0.5, 1.5, -2.5, 8.5, -8.0, 127.5, 0.0, -0.0]).map(f32))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16"]),
       arrays(f32, (2, 64), elements=ELEMENTS), st.sampled_from([1e-3, 1.0, 30.0]))
def test_quantize_agrees_with_gguf_py(name, x, scale):
    """gguf-py's NumPy quantizers reproduce ggml's _ref rounding (ties, sign, clamp) too."""
    x = _finite_blocks(x * f32(scale))
    ours = np.asarray(by_type(name).quantize(x).data)
    with np.errstate(all="ignore"):
        ref = gguf_quantize(x, GGUF_TYPES[name]).view(np.uint8).reshape(ours.shape)
    assert_bytes_equal(ours, ref, FACTS[name][2], f"{name} vs gguf-py")


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F32", "F16", "BF16"])
def test_dequantize_agrees_with_gguf_py(name):
    rng = np.random.default_rng(7)
    x = (rng.standard_t(3, size=(8, 256)) * 0.05).astype(f32)
    x[0, :32] = 0                                                  # an all-zero block
    f = by_type(name)
    for imatrix in (None, rng.uniform(0, 2, 256).astype(f32)):
        qt = f.quantize(x, imatrix=imatrix)
        ref = gguf_dequantize(np.asarray(qt.data), GGUF_TYPES[name]).astype(f32)
        assert_floats_identical(qt.dequantize(), ref, f"{name} vs gguf-py dequantize")


# ----------------------------------------------------------------------------- float storage
def test_storage_types_against_numpy_and_ml_dtypes():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
    x = bits.view(f32)
    x = np.where(np.isfinite(x) & (np.abs(x) < 6e4), x, f32(1.5)).reshape(16, 256)
    x[0, :6] = [0.0, -0.0, 65504.0, 65519.99, 1e-8, -6e-8]        # max, just below inf, subnormals
    assert_bytes_equal(ql.quantize(x, "ggml_f32").data, x.view(np.uint8).reshape(16, -1))
    assert_bytes_equal(ql.quantize(x, "ggml_f16").data,
                       x.astype(np.float16).view(np.uint8).reshape(16, -1), what="F16 vs numpy")
    assert_bytes_equal(ql.quantize(x, "ggml_bf16").data,
                       x.astype(ml_dtypes.bfloat16).view(np.uint8).reshape(16, -1), what="BF16 vs ml_dtypes")
    for name in ("ggml_f32", "ggml_f16", "ggml_bf16"):
        qt = ql.quantize(x, name)
        want = {"ggml_f32": x, "ggml_f16": x.astype(np.float16).astype(f32),
                "ggml_bf16": x.astype(ml_dtypes.bfloat16).astype(f32)}[name]
        assert_floats_identical(qt.dequantize(), want, name)


def test_f16_decodes_nan_quiet_like_ggml():
    f = by_type("F16")
    raw = np.array([0x7C01, 0xFE00, 0x7C00, 0x0001], dtype="<u2").view(np.uint8)
    y = f.from_bytes(raw, (4,)).dequantize().view(np.uint32)
    # ggml_compute_fp16_to_fp32: payload << 13 with the quiet bit set; inf and subnormal exact
    assert y.tolist() == [0x7FC02000, 0xFFC00000, 0x7F800000, 0x33800000]


# ----------------------------------------------------------------------------- facts, properties
@pytest.mark.parametrize("name", list(FACTS))
def test_layout_adds_up(name):
    reg, gid, size, bs = FACTS[name]
    f = ql.get(reg)
    assert (f.ggml_name, f.ggml_type, f.type_size, f.block_size, f.family) == (name, gid, size, bs, "ggml")
    assert sum(s for _, s, _ in f.layout) == f.type_size
    assert f.bits_per_weight() == 8 * size / bs
    assert by_type(gid) is f and by_type(name) is f
    assert name in f.describe() and "offset" in (type(f).__doc__ or "")
    qt = f.quantize(np.linspace(-1, 1, 64, dtype=f32).reshape(2, 32))
    assert qt.nbytes == 64 // bs * size and np.asarray(qt.data).dtype == np.uint8


# (no imatrix, imatrix): ggml's bytes for an all-zero block (as in golden edge row 0).  The
# _ref rules put 0 on the middle level with d = -0.0 (fp16 0x8000); the searches return
# s = 0 and level 0 instead.
ZERO_BLOCK = {"Q4_0": ("0080" + "88" * 16, "00" * 18),
              "Q4_1": ("00" * 20, "00" * 20),
              "Q5_0": ("0080" + "ffffffff" + "00" * 16, "00" * 22),
              "Q5_1": ("00" * 24, "00" * 24),
              "Q8_0": ("00" * 34, "00" * 34)}


@pytest.mark.parametrize("name", list(ZERO_BLOCK))
def test_zero_block(name):
    f = by_type(name)
    for imatrix, want in zip((None, np.ones(32, f32)), ZERO_BLOCK[name]):
        qt = f.quantize(np.zeros((1, 32), f32), imatrix=imatrix)
        assert bytes(qt.data).hex() == want
        assert np.all(qt.dequantize() == 0)


def test_signed_zeros_follow_ggml_scans():
    """ggml's scans replace only on strict </>: the first of equal values wins, and an
    all-zero block keeps the start value +0 for the max-abs element (so d = +0/−8 = −0)."""
    neg = np.full((1, 32), -0.0, f32)
    assert bytes(ql.quantize(neg, "q4_0").data).hex() == "0080" + "88" * 16
    assert bytes(ql.quantize(neg, "q5_0").data).hex() == "0080" + "ff" * 4 + "00" * 16
    mixed = np.zeros((2, 32), f32)
    mixed[0, 0] = -0.0                                     # min scan keeps the first zero met
    mixed[1, 1:] = -0.0
    b = np.asarray(ql.quantize(mixed, "q4_1").data).reshape(2, 20)
    assert bytes(b[:, 2:4]).hex() == "0080" + "0000"       # m = fp16(first minimum)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]), st.integers(0, 2**32 - 1))
def test_blocks_are_independent(name, seed):
    """Without imatrix each block is quantized on its own: permuting blocks permutes bytes."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((6, 32)) * rng.uniform(1e-3, 10, (6, 1))).astype(f32)
    f = by_type(name)
    perm = rng.permutation(6)
    whole = np.asarray(f.quantize(x.reshape(1, -1)).data).reshape(6, -1)
    assert_bytes_equal(np.asarray(f.quantize(x[perm].reshape(1, -1)).data).reshape(6, -1),
                       whole[perm], f.type_size)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]),
       arrays(f32, (1, 32), elements=st.floats(-100, 100, width=32)))
def test_error_is_within_half_a_step(name, x):
    """|x − y| ≤ step/2 plus what storing the scale (and offset) as fp16 costs.

    Q4_0/Q5_0 are asymmetric around 0 (levels −8..7): an element of the opposite sign and
    the same magnitude as the extreme is clamped to +7·d — one full step away.

    Levels are chosen with the float32 scale ``d32``; fp16 keeps it within 2^-11 relative or
    2^-25 absolute (subnormals/underflow), and every level ≤ nmax multiplies that error.
    """
    f = by_type(name)
    qt = f.quantize(x)
    fl = f.block_fields(np.asarray(qt.data).reshape(-1))
    nmax = {"Q4_0": 8, "Q5_0": 16, "Q8_0": 127, "Q4_1": 15, "Q5_1": 31}[name]
    d16 = abs(float(fl["d"]))
    fp16_err = lambda v: abs(v) * 2**-11 + 2**-25                         # noqa: E731
    steps = 1.0 if name in ("Q4_0", "Q5_0") else 0.5
    bound = (d16 + fp16_err(d16)) * steps + nmax * fp16_err(d16) + (fp16_err(float(fl["m"])) if "m" in fl else 0)
    assert np.max(np.abs(qt.dequantize() - x)) <= bound * (1 + 1e-5)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1"])
def test_bad_input_is_refused(name):
    x = np.ones((2, 64), f32)
    with pytest.raises(ShapeError, match="multiple of the block size 32"):
        ql.quantize(np.ones((2, 33), f32), name)
    with pytest.raises(ShapeError, match="imatrix"):
        ql.quantize(x, name, imatrix=np.ones(32, f32))
    bad = x.copy()
    bad[1, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        ql.quantize(bad, name)
    with pytest.raises(InputError):
        ql.quantize(np.ones((2, 64), np.int32), name)
    assert np.all(np.isfinite(x))                                 # input untouched


@pytest.mark.parametrize("name, big", [("q8_0", 1e7), ("q4_0", 6e5), ("q5_0", 1.1e6), ("q4_1", -7e4),
                                       ("q5_1", 3e6), ("ggml_f16", 7e4), ("ggml_bf16", 3.4e38)])
def test_fp16_scale_overflow_is_refused_like_llama_quantize(name, big):
    x = np.linspace(-1, 1, 64, dtype=f32).reshape(2, 32)
    x[1, 3] = big
    with pytest.raises(FormatError, match="overflows"):
        ql.quantize(x, name)


def test_q8_0_largest_accepted_block():
    """d = 65504·127 is the largest finite fp16 scale: x = 8.3e6 still encodes."""
    x = np.full((1, 32), 8.3e6, f32)
    assert np.allclose(ql.quantize(x, "q8_0").dequantize(), x, rtol=1e-3)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16", "F32"]),
       st.integers(0, 2**32 - 1))
def test_dequantize_arbitrary_bytes_like_gguf_py(name, seed):
    """Any stored bytes (with finite scales) decode as gguf-py's independent decoder says."""
    f = by_type(name)
    b = random_blocks(f, 64, np.random.default_rng(seed))
    if name == "F32":
        b = np.where(np.isfinite(b.view("<f4")), b.view("<f4"), f32(0)).astype("<f4").view(np.uint8)
    ref = gguf_dequantize(b.reshape(1, -1), GGUF_TYPES[name]).astype(f32).reshape(-1)
    assert_floats_identical(f.from_bytes(b.reshape(-1), (64 * f.block_size,)).dequantize(), ref, name)


def test_embedded_model_tensors_round_trip_through_the_file_bytes():
    """SmolLM2's GGUF (written by llama.cpp): Q4_1, Q8_0 and F32 tensors decode like gguf-py, and
    re-quantizing the decoded weights gives back llama.cpp's bytes exactly (a fixed point)."""
    from quantlab.io.gguf import GGUFFile

    g = GGUFFile(model_path())
    for name in ("blk.0.ffn_down.weight", "token_embd.weight", "blk.0.attn_norm.weight"):
        qt = g.qtensor(name)
        f = qt.format
        data = np.asarray(qt.data).reshape(-1, np.asarray(qt.data).shape[-1])[:512]   # ≤ 512 rows
        shape = (data.shape[0], qt.shape[-1])
        y = f.from_bytes(data, shape).dequantize()
        want = gguf_dequantize(data, GGUF_TYPES[f.ggml_name]).astype(f32).reshape(shape)
        assert_floats_identical(y, want, name)
        assert_bytes_equal(f.quantize(y).data, data, f.type_size, f"{name} re-quantized")
