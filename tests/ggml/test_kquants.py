"""K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K against ggml.

Oracles: the golden bytes/floats of ``ggml_quantize_chunk`` / ``to_float`` (every case of
``../shared/golden/ggml/Q{2..6}_K.npz``, with and without imatrix), the SHA-256 conformance
vectors of spec §12 (which also cover Q8_K), and gguf-py's independent dequantizers
(``gguf.quants.dequantize``).  Properties and error handling are checked on top.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gguf
import quantlab as ql
from quantlab.errors import FormatError, InputError, ShapeError
from quantlab.formats.ggml import by_type
from ggml_golden import assert_bytes_equal, assert_floats_identical, golden_params

f32 = np.float32
TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
ALL = TYPES + ["Q8_K"]
IDS = {"Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q8_K": 15}
SIZES = {"Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q8_K": 292}


def cases():
    return [pytest.param(t, c.values[0], id=c.id) for t in TYPES for c in golden_params(t)]


# ----------------------------------------------------------------------------- ggml goldens
@pytest.mark.parametrize("t,case", cases())
def test_quantize_matches_ggml_bytes(t, case):
    fmt = by_type(t)
    qt = fmt.quantize(case.x, imatrix=case.imatrix)
    assert_bytes_equal(qt.data, case.q, fmt.type_size, case.id)


@pytest.mark.parametrize("t,case", cases())
def test_dequantize_matches_ggml_floats(t, case):
    fmt = by_type(t)
    y = fmt.dequantize(fmt.from_bytes(case.q, case.x.shape))
    assert_floats_identical(y, case.deq, case.id)


# ----------------------------------------------------------------------------- spec §12 vectors
def conformance_inputs():
    """The 4 × 512 matrix X and importance QW of spec §12 (exact integer/float64 generator)."""
    M = 2**64

    def splitmix(k):
        z = ((k + 1) * 0x9E3779B97F4A7C15) % M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % M
        return ((z ^ (z >> 31)) >> 11) / 2**53
    base = np.array([[((2 * splitmix(512 * r + c) - 1) ** 3) * 2.0 for c in range(512)]
                     for r in range(4)])
    base[1] *= 0.01
    base[2][100] = 25.0
    base[3][0:64] = 0.0
    qw = np.array([0.5 + ((37 * j) % 11) / 4 for j in range(512)], dtype=f32)
    qw[np.arange(512) % 13 == 0] = 0
    return base.astype(f32), qw


CONFORMANCE = {  # spec §12: SHA-256 of ggml_quantize_chunk(type, X, 4, 512, imatrix)
    ("Q2_K", False): "69551b1296391889ac7b868b1b6610e51438aedcb2e768decf0a1877a69a8d78",
    ("Q2_K", True): "5435065f8e443944d5b8e5820feadcdbd9a1a0de3d805dd0381b8406b9d0d0bf",
    ("Q3_K", False): "d63e27726d57faff8c1c083dec979117074d7f4afa1fc26dadbcb0d6b668358b",
    ("Q3_K", True): "511d2824b2d26f9205956f0971e3704113d9331545296db7d816316515b97190",
    ("Q4_K", False): "5fb154a50c7b50aaaf026068ab7d19302b103a9fd4873b80af6850dd5f0562b9",
    ("Q4_K", True): "3efa5864f93a0a8d5ca51cac2f00b3fbfb07b6e5147ad614bfa2172e115c9920",
    ("Q5_K", False): "6718b11bf911ca3067bcbaa00ffcc458f213a201b18f36611ed2885e4e8b77bb",
    ("Q5_K", True): "ef620729e0e0526d04a64f2a5253c61ef8119f622a81674384e5d01b7234ba20",
    ("Q6_K", False): "17e55cb8fa630d17279f855643b06ff04cabd0c974155e415d933b5df4a33efa",
    ("Q6_K", True): "d368a85649083bfbf1ae96a8f478689b1906939e0aec4bc7951d9dc341e4fdaa",
    ("Q8_K", False): "1d72bc227808e2063381cf22529c09076ff1e713272605ad8270c3ae07bae65e",
}


@pytest.mark.parametrize("t,weighted", list(CONFORMANCE), ids=[f"{t}-{'QW' if w else 'none'}"
                                                              for t, w in CONFORMANCE])
def test_spec_conformance_vectors(t, weighted):
    x, qw = conformance_inputs()
    if t == "Q8_K":                 # quantize_row_q8_K_ref over all 2048 values
        x = x.reshape(1, -1)
    data = by_type(t).quantize(x, imatrix=qw if weighted else None).data
    assert hashlib.sha256(data.tobytes()).hexdigest() == CONFORMANCE[(t, weighted)]


# ----------------------------------------------------------------------------- gguf-py oracle
@pytest.mark.parametrize("t", TYPES)
def test_gguf_dequantize_agrees_on_our_bytes(t):
    rng = np.random.default_rng(IDS[t])
    x = (rng.standard_t(4, (6, 512)) * 0.05).astype(f32)
    x[0, :256] = 0                              # an all-zero super-block
    x[1, 16:48] = 0                             # zero sub-blocks inside a live super-block
    x[2] = np.abs(x[2])                         # one-signed rows
    x[3] = -np.abs(x[3])
    fmt = by_type(t)
    for imatrix in (None, rng.uniform(0, 2, 512).astype(f32)):
        qt = fmt.quantize(x, imatrix=imatrix)
        ref = gguf.quants.dequantize(qt.data, gguf.GGMLQuantizationType[t])
        assert_floats_identical(qt.dequantize(), ref.reshape(x.shape), f"{t} vs gguf")


# ----------------------------------------------------------------------------- format facts
@pytest.mark.parametrize("t", ALL)
def test_layout_and_type_facts(t):
    fmt = by_type(t)
    assert fmt is ql.get(t.lower()) and fmt.name == t.lower() and fmt.ggml_name == t
    assert fmt.ggml_type == IDS[t] and by_type(IDS[t]) is fmt
    assert fmt.block_size == 256 and fmt.type_size == SIZES[t]
    assert sum(size for _, size, _ in fmt.layout) == fmt.type_size
    assert fmt.bits_per_weight() == 8 * SIZES[t] / 256
    assert fmt.summary and "bits per weight" in (type(fmt).__doc__ or "")
    assert fmt.row_bytes(512) == 2 * SIZES[t]
    assert t in fmt.describe()


@pytest.mark.parametrize("t", ALL)
def test_block_fields_rebuild_the_dequantized_values(t):
    """The decoded fields of one block, put through the type's formula, give to_float's values."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(256) * 0.1).astype(f32)
    fmt = by_type(t)
    qt = fmt.quantize(x)
    f = fmt.block_fields(qt.data)
    q = f["q"].astype(f32)
    if t == "Q8_K":
        y = f["d"] * q
        assert np.array_equal(f["bsums"], f["q"].astype(int).reshape(16, 16).sum(1))
    else:
        sub = 256 // len(f["scales"])
        sc = np.repeat(f["scales"].astype(f32), sub)
        y = (f["d"] * sc) * q
        if "mins" in f:
            y = y - f["dmin"] * np.repeat(f["mins"].astype(f32), sub)
    assert_floats_identical(y.astype(f32), qt.dequantize(), t)


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("t", ALL)
def test_zero_superblock_is_all_zero_bytes(t):
    fmt = by_type(t)
    qt = fmt.quantize(np.zeros((2, 256), f32))
    assert not qt.data.any()
    y = qt.dequantize()
    assert not y.any()
    if t != "Q8_K":     # Q6_K's zero block decodes to −0.0 (d·sc·(0 − 32)), in ggml and gguf alike
        ref = gguf.quants.dequantize(qt.data, gguf.GGMLQuantizationType[t]).reshape(2, 256)
        assert_floats_identical(y, ref, t)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.sampled_from(TYPES), weighted=st.booleans())
def test_superblocks_are_independent(seed, t, weighted):
    """Quantizing rows together or one super-block at a time gives the same bytes."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, 512)) * rng.uniform(1e-3, 10, (3, 1))).astype(f32)
    qw = rng.uniform(0, 3, 512).astype(f32) if weighted else None
    fmt = by_type(t)
    x0 = x.copy()
    whole = fmt.quantize(x, imatrix=qw).data.reshape(-1, fmt.type_size)
    assert np.array_equal(x, x0)                                     # input untouched
    for r in range(3):
        for b in range(2):
            part = fmt.quantize(x[r, 256 * b:256 * (b + 1)],
                                imatrix=None if qw is None else qw[256 * b:256 * (b + 1)]).data
            assert np.array_equal(part.reshape(-1), whole[2 * r + b])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-6, 1e-2, 1.0, 300.0]))
def test_q8_k_round_trip(seed, scale):
    """Q8_K: q = min(127, rne(−127·x/m)), d = −m/127, bsums = Σ q per 16, |x − d·q| ≤ |d|/2."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 256)) * scale).astype(f32)
    fmt = by_type("Q8_K")
    qt = fmt.quantize(x)
    blocks = qt.data.reshape(-1, 292)
    for b in range(2):
        f = fmt.block_fields(blocks[b])
        q = f["q"].astype(np.int64)
        assert np.array_equal(f["bsums"], q.reshape(16, 16).sum(axis=1))
        assert q.min() >= -127 and q.max() <= 127
        m = x[b][np.argmax(np.abs(x[b]))]
        assert q[np.argmax(np.abs(x[b]))] == -127                 # the largest maps to −127
        assert np.sign(f["d"]) == -np.sign(m)
        err = np.abs(x[b].astype(np.float64) - f["d"] * q)
        assert err.max() <= abs(float(f["d"])) * (0.5 + 1e-5)
    y = qt.dequantize()
    assert np.array_equal(y, (f32(qt.data.reshape(-1, 292)[:, :4].copy().view("<f4"))
                              * qt.data.reshape(-1, 292)[:, 4:260].view(np.int8).astype(f32)
                              ).reshape(2, 256))


@pytest.mark.parametrize("t", TYPES)
def test_error_is_bounded_by_the_block_range(t):
    """Sanity: every reconstruction lies within the stored grid (|y − x| ≤ range of the block)."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((4, 256)) * 0.02).astype(f32)
    y = by_type(t).quantize(x).dequantize()
    rng_ = x.max(1) - x.min(1)
    assert (np.abs(y - x).max(1) <= rng_ / (2 ** {"Q2_K": 1, "Q3_K": 2, "Q4_K": 3,
                                                  "Q5_K": 4, "Q6_K": 5}[t])).all()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("t", ALL)
def test_row_length_must_be_a_multiple_of_256(t):
    with pytest.raises(ShapeError, match="256"):
        by_type(t).quantize(np.ones((2, 300), f32))


@pytest.mark.parametrize("t", TYPES)
def test_bad_imatrix_and_nan_are_refused(t):
    fmt = by_type(t)
    x = np.ones((2, 512), f32)
    with pytest.raises(ShapeError, match="512"):
        fmt.quantize(x, imatrix=np.ones(256, f32))
    with pytest.raises(InputError):
        fmt.quantize(x, imatrix=np.full(512, np.nan, f32))
    x[1, 7] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fmt.quantize(x)


@pytest.mark.parametrize("t", TYPES)
def test_fp16_scale_overflow_is_refused(t):
    """llama-quantize rejects non-finite fp16 scales; so does quantlab (spec §2)."""
    x = np.linspace(-1, 1, 256, dtype=f32) * f32(3e9)
    with pytest.raises(FormatError, match="overflow"):
        by_type(t).quantize(x)


def test_q8_k_has_no_imatrix_path():
    with pytest.raises(FormatError, match="imatrix"):
        by_type("Q8_K").quantize(np.ones(256, f32), imatrix=np.ones(256, f32))


@settings(max_examples=25, deadline=None)
@given(raw=st.lists(st.integers(0, 2**32 - 1), min_size=256, max_size=256),
       t=st.sampled_from(ALL), weighted=st.booleans())
def test_any_finite_bits_quantize_or_refuse_cleanly(raw, t, weighted):
    """Arbitrary finite float32 bit patterns (subnormals, ±0, huge values): either valid blocks
    whose decoded values are finite, or quantlab's FormatError for an fp16 scale overflow."""
    x = np.array(raw, dtype=np.uint32).view(f32).copy()
    x[~np.isfinite(x)] = f32(0)
    x = np.where(np.abs(x) > 1e6, x * f32(1e-30), x).astype(f32)   # mostly in fp16-scale range
    fmt = by_type(t)
    qw = np.linspace(0, 2, 256, dtype=f32) if weighted and t != "Q8_K" else None
    try:
        qt = fmt.quantize(x, imatrix=qw)
    except FormatError as e:
        assert "overflow" in str(e)
        return
    assert np.isfinite(qt.dequantize()).all()
