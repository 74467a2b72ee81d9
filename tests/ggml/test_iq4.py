"""IQ4_NL and IQ4_XS against ggml.

Oracles: ggml's golden bytes/floats (every case of IQ4_NL.npz / IQ4_XS.npz, with and without
imatrix), the spec §12 SHA-256 vectors, gguf-py's dequantizer, and a scalar transliteration
of ggml's ``best_index_int8`` binary search for the table lookup.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf.quants import dequantize as gguf_dequantize
from hypothesis import given, settings, strategies as st

import quantlab as ql
from quantlab.errors import FormatError, InputError, ShapeError
from quantlab.formats.ggml import by_type
from quantlab.formats.ggml.iq4 import KVALUES, best_index_int8
from ggml_golden import (assert_bytes_equal, assert_floats_identical, conformance_inputs,
                         golden_params, random_blocks)

f32 = np.float32
GGUF = {"IQ4_NL": GT.IQ4_NL, "IQ4_XS": GT.IQ4_XS}


@pytest.mark.parametrize("case", golden_params("IQ4_NL") + golden_params("IQ4_XS"))
def test_quantize_matches_ggml_bytes(case):
    f = by_type(case.type_name)
    assert_bytes_equal(f.quantize(case.x, imatrix=case.imatrix).data, case.q, f.type_size, case.id)


@pytest.mark.parametrize("case", golden_params("IQ4_NL") + golden_params("IQ4_XS"))
def test_dequantize_matches_ggml_floats(case):
    f = by_type(case.type_name)
    assert_floats_identical(f.from_bytes(case.q, case.x.shape).dequantize(), case.deq, case.id)


SPEC12 = [("iq4_nl", False, "569330572334c08ebad2bea5880b466df152d885920f7e57af49e2b16407d6c9"),
          ("iq4_nl", True, "bb8b53e074638280c5cb26a3342fb24bee288014bbc2f3e268f7ce8c3a58edd7"),
          ("iq4_xs", False, "475994aae3e34fb26244dc2f80b8dfe40d3ce43f1c1755c798ce9cc3c841fbf0"),
          ("iq4_xs", True, "9a96f370cbf54b2b5b4a9e566c6159b178f25f4bdaedc492a27d534e9f87584b")]


@pytest.mark.parametrize("name, use_qw, sha", SPEC12, ids=["nl", "nl-qw", "xs", "xs-qw"])
def test_spec_conformance_vectors(name, use_qw, sha):
    x, qw = conformance_inputs()
    data = ql.quantize(x, name, imatrix=qw if use_qw else None).data
    assert hashlib.sha256(bytes(data)).hexdigest() == sha


# ----------------------------------------------------------------------------- table lookup
def _best_index_c(x: np.float32) -> int:
    """ggml's ``best_index_int8`` (commit 0c1e570), one float32 at a time, as written in C."""
    val = KVALUES
    if x <= val[0]:
        return 0
    if x >= val[15]:
        return 15
    ml, mu = 0, 15
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if x < val[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if f32(x - val[mu - 1]) < f32(val[mu] - x) else mu


def test_best_index_int8_midpoints_ends_and_nan():
    mids = (KVALUES[:-1] + KVALUES[1:]) / 2                       # ties, all exact in float32
    v = np.concatenate([KVALUES, mids, np.nextafter(mids, f32(-1e9)), np.nextafter(mids, f32(1e9)),
                        [-1e30, -127.5, 113.5, 1e30, 0.0, -0.0, -4.5, 1e-30]]).astype(f32)
    ours = best_index_int8(v)
    assert ours.tolist() == [_best_index_c(t) for t in v]
    assert best_index_int8(f32(-4.5)) == 8                         # ties go up
    assert best_index_int8(f32(np.nan)) == 15                      # the C search ends at the top


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-200, 200, width=32), min_size=1, max_size=64))
def test_best_index_int8_like_c(values):
    v = np.array(values, dtype=f32)
    assert best_index_int8(v).tolist() == [_best_index_c(t) for t in v]


# ----------------------------------------------------------------------------- properties
def test_zero_blocks():
    for imatrix in (None, np.ones(256, f32)):
        nl = ql.quantize(np.zeros((1, 256), f32), "iq4_nl", imatrix=imatrix)
        assert bytes(nl.data).hex() == ("0000" + "88" * 16) * 8
        xs = ql.quantize(np.zeros((1, 256), f32), "iq4_xs", imatrix=imatrix)
        assert bytes(xs.data).hex() == "0080" + "aaaa" + "00" * 4 + "88" * 128   # d = -0.0
        assert np.all(xs.dequantize() == 0) and np.all(nl.dequantize() == 0)


def test_iq4_xs_zero_sub_block_inside_a_super_block():
    x = np.random.default_rng(5).normal(0, 0.02, (1, 256)).astype(f32)
    x[0, 64:96] = 0
    f = by_type("IQ4_XS")
    fields = f.block_fields(np.asarray(f.quantize(x).data).reshape(-1))
    assert fields["scales"][2] == 0 and np.all(fields["q"][64:96] == 8)
    assert np.all(f.quantize(x).dequantize()[0, 64:96] == 0)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["IQ4_NL", "IQ4_XS"]), st.integers(0, 2**32 - 1))
def test_super_blocks_are_independent(name, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, (4, 256)) * rng.uniform(1e-3, 10, (4, 1))).astype(f32)
    f = by_type(name)
    perm = rng.permutation(4)
    whole = np.asarray(f.quantize(x.reshape(1, -1)).data).reshape(4, -1)
    assert_bytes_equal(np.asarray(f.quantize(x[perm].reshape(1, -1)).data).reshape(4, -1), whole[perm])


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["IQ4_NL", "IQ4_XS"]), st.integers(0, 2**32 - 1))
def test_dequantize_arbitrary_bytes_like_gguf_py(name, seed):
    f = by_type(name)
    b = random_blocks(f, 16, np.random.default_rng(seed))
    ref = gguf_dequantize(b.reshape(1, -1), GGUF[name]).astype(f32).reshape(-1)
    assert_floats_identical(f.from_bytes(b.reshape(-1), (16 * f.block_size,)).dequantize(), ref, name)


@pytest.mark.parametrize("name", ["IQ4_NL", "IQ4_XS"])
def test_dequantize_own_output_like_gguf_py(name):
    rng = np.random.default_rng(11)
    x = (rng.standard_t(3, (4, 512)) * 0.02).astype(f32)
    for imatrix in (None, rng.uniform(0, 3, 512).astype(f32)):
        qt = ql.quantize(x, name.lower(), imatrix=imatrix)
        ref = gguf_dequantize(np.asarray(qt.data), GGUF[name]).astype(f32)
        assert_floats_identical(qt.dequantize(), ref, name)


@pytest.mark.parametrize("name, gid, size, bs", [("IQ4_NL", 20, 18, 32), ("IQ4_XS", 23, 136, 256)])
def test_layout_adds_up(name, gid, size, bs):
    f = ql.get(name.lower())
    assert (f.ggml_name, f.ggml_type, f.type_size, f.block_size) == (name, gid, size, bs)
    assert sum(s for _, s, _ in f.layout) == size and f.bits_per_weight() == 8 * size / bs


def test_iq4_xs_scale_codes_round_trip():
    """The 6-bit codes written into scales_h/scales_l read back as the signed scales used."""
    x = np.random.default_rng(2).normal(0, 1, (1, 256)).astype(f32) * np.repeat(
        np.array([0.01, 0.1, 1, 3, 0.5, 0.02, 2, 0.3], f32), 32)
    f = by_type("IQ4_XS")
    b = np.asarray(f.quantize(x).data).reshape(-1)
    fl = f.block_fields(b)
    codes = fl["scales_l"].astype(int) | (fl["scales_h"].astype(int) << 4)
    assert np.array_equal(codes - 32, fl["scales"]) and fl["scales"].min() >= -32
    y = f.dequantize(f.from_bytes(b, (256,)))
    want = np.repeat(np.float32(fl["d"]) * fl["scales"].astype(f32), 32) * KVALUES[fl["q"]]
    assert_floats_identical(y, want.astype(f32), "IQ4_XS fields")


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name, block", [("iq4_nl", 32), ("iq4_xs", 256)])
def test_bad_input_is_refused(name, block):
    with pytest.raises(ShapeError, match=f"multiple of the block size {block}"):
        ql.quantize(np.ones((2, block + 32 if block == 256 else 33), f32), name)
    with pytest.raises(ShapeError, match="imatrix"):
        ql.quantize(np.ones((1, 512), f32), name, imatrix=np.ones(256, f32))
    x = np.ones((1, 512), f32)
    x[0, 7] = np.inf
    with pytest.raises(InputError):
        ql.quantize(x, name)


@pytest.mark.parametrize("name, big", [("iq4_nl", 1e7), ("iq4_xs", 1e9)])
def test_scale_overflow_is_refused(name, big):
    x = np.linspace(-1, 1, 512, dtype=f32).reshape(1, 512)
    x[0, 300] = big
    with pytest.raises(FormatError, match="overflows"):
        ql.quantize(x, name)
