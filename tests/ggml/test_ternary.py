"""TQ1_0 and TQ2_0 against ggml.

Oracles: ggml's golden bytes/floats (every case of TQ1_0.npz / TQ2_0.npz; ggml ignores the
imatrix for these types, and so do the golden "imatrix" cases), gguf-py's independent
quantizers and dequantizers, and exact invariants (ternary data is stored losslessly; every
base-3 byte decodes to its trits).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf.quants import dequantize as gguf_dequantize, quantize as gguf_quantize
from hypothesis import given, settings, strategies as st

import quantlab as ql
from quantlab.errors import FormatError, InputError, ShapeError
from quantlab.formats.ggml import by_type
from ggml_golden import assert_bytes_equal, assert_floats_identical, golden_params, random_blocks

f32 = np.float32
GGUF = {"TQ1_0": GT.TQ1_0, "TQ2_0": GT.TQ2_0}
TYPES = ["TQ1_0", "TQ2_0"]


@pytest.mark.parametrize("case", golden_params("TQ1_0") + golden_params("TQ2_0"))
def test_quantize_matches_ggml_bytes(case):
    f = by_type(case.type_name)
    assert_bytes_equal(f.quantize(case.x, imatrix=case.imatrix).data, case.q, f.type_size, case.id)


@pytest.mark.parametrize("case", golden_params("TQ1_0") + golden_params("TQ2_0"))
def test_dequantize_matches_ggml_floats(case):
    f = by_type(case.type_name)
    assert_floats_identical(f.from_bytes(case.q, case.x.shape).dequantize(), case.deq, case.id)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(TYPES), st.integers(0, 2**32 - 1), st.sampled_from([1e-3, 1.0, 100.0]))
def test_quantize_agrees_with_gguf_py(name, seed, scale):
    """Random blocks with planted near-ties (±amax/2) and zeros, against gguf-py's quantizer."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, (2, 256)) * scale).astype(f32)
    amax = np.abs(x).max(axis=1, keepdims=True)
    pick = rng.random(x.shape)
    x = np.where(pick < 0.1, amax / 2, np.where(pick < 0.2, -amax / 2, x))
    x = np.where(pick > 0.95, f32(0), x).astype(f32)
    ours = np.asarray(by_type(name).quantize(x).data)
    assert_bytes_equal(ours, gguf_quantize(x, GGUF[name]).view(np.uint8).reshape(ours.shape),
                       by_type(name).type_size, f"{name} vs gguf-py")


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(TYPES), st.integers(0, 2**32 - 1))
def test_dequantize_arbitrary_bytes_like_gguf_py(name, seed):
    """Also bytes no quantizer writes: TQ1_0 bytes 243..255, TQ2_0 trit value 3 (= +2·d)."""
    f = by_type(name)
    b = random_blocks(f, 8, np.random.default_rng(seed))
    ref = gguf_dequantize(b.reshape(1, -1), GGUF[name]).astype(f32).reshape(-1)
    assert_floats_identical(f.from_bytes(b.reshape(-1), (8 * 256,)).dequantize(), ref, name)


def _all_trit_patterns() -> np.ndarray:
    """Blocks of ternary values (−1, 0, 1) covering all 3^5 trit patterns of every TQ1_0 byte slot."""
    pats = np.array(list(itertools.product((-1, 0, 1), repeat=5)), dtype=f32)     # (243, 5)
    blocks = np.zeros((243, 256), f32)
    k = np.arange(243)
    for n in range(5):               # the 5 trits of byte slot m are elements m+32n, 160+m+16n
        blocks[k, (k % 32) + 32 * n] = pats[:, n]
        blocks[k, 160 + (k % 16) + 16 * n] = pats[:, n]
    for n in range(4):               # qh slot j holds elements 240 + j + 4n
        blocks[k, 240 + (k % 4) + 4 * n] = pats[:, n]
    blocks[:, 255] = 1.0             # d = max |x| = 1 in every block
    return blocks


@pytest.mark.parametrize("name", TYPES)
def test_ternary_data_is_lossless_for_every_trit_pattern(name):
    x = _all_trit_patterns() * f32(0.375)                          # d exact in fp16
    qt = by_type(name).quantize(x)
    assert_floats_identical(qt.dequantize(), x, name)


def test_every_base3_byte_decodes_to_its_trits():
    """Exhaustive: T = 0..242 -> ceil(T·256/243) -> the 5 trits of T, most significant first."""
    f = by_type("TQ1_0")
    x = _all_trit_patterns()
    fields = [f.block_fields(b) for b in np.asarray(f.quantize(x).data).reshape(-1, 54)]
    got = np.array([fl["q"] for fl in fields]).astype(int) - 1
    assert np.array_equal(got, x.astype(int))


@pytest.mark.parametrize("name, zero", [("TQ1_0", "80" * 48 + "7f" * 4 + "0000"),
                                        ("TQ2_0", "55" * 64 + "0000")])
def test_zero_block_and_imatrix_ignored(name, zero):
    f = by_type(name)
    assert bytes(f.quantize(np.zeros((1, 256), f32)).data).hex() == zero
    x = np.random.default_rng(4).normal(size=(2, 512)).astype(f32)
    assert_bytes_equal(f.quantize(x, imatrix=np.arange(512, dtype=f32)).data, f.quantize(x).data)


@pytest.mark.parametrize("name, gid, size", [("TQ1_0", 34, 54), ("TQ2_0", 35, 66)])
def test_layout_adds_up(name, gid, size):
    f = ql.get(name.lower())
    assert (f.ggml_name, f.ggml_type, f.type_size, f.block_size) == (name, gid, size, 256)
    assert sum(s for _, s, _ in f.layout) == size and f.bits_per_weight() == 8 * size / 256


@pytest.mark.parametrize("name", ["tq1_0", "tq2_0"])
def test_bad_input_is_refused(name):
    with pytest.raises(ShapeError, match="multiple of the block size 256"):
        ql.quantize(np.ones((2, 288), f32), name)
    with pytest.raises(InputError):
        ql.quantize(np.full((1, 256), np.nan, f32), name)
    with pytest.raises(FormatError, match="overflows"):
        ql.quantize(np.full((1, 256), 7e4, f32), name)              # d = max |x| > fp16 max
