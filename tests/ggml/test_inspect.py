"""The block inspector on every ggml format: offsets, bytes, decoded fields, values, rendering.

Oracles: the tensor's own stored bytes and the format's ``dequantize`` of the whole tensor
(the view must show exactly those), the worked example of spec §11.2 (Q4_0), and NumPy's
float16 for decoded scale fields.
"""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab.errors import FormatError, ShapeError
from quantlab.formats.ggml import GGMLFormat

f32 = np.float32
GGML = [n for n in ql.formats() if isinstance(ql.get(n), GGMLFormat)]
X = np.random.default_rng(0).standard_t(4, (2, 3, 512)).astype(f32) * f32(0.05)


def _quantized(name):
    return ql.quantize(X, name)


@pytest.mark.parametrize("name", GGML)
def test_view_shows_the_stored_block_and_its_values(name):
    qt = _quantized(name)
    f = qt.format
    data = np.asarray(qt.data).reshape(-1, f.type_size)
    values = qt.dequantize().reshape(-1, f.block_size)
    n = data.shape[0]
    for i in (0, n // 2 + 1, n - 1, -1):
        v = ql.inspect(qt, block=i)
        k = i % n
        assert (v.index, v.n_blocks) == (k, n)
        assert np.array_equal(v.raw, data[k])
        # fields tile the block: contiguous, in layout order, raw bytes are slices of it
        assert [x.name for x in v.fields] == [name for name, _, _ in f.layout]
        assert [x.offset for x in v.fields] == list(np.cumsum([0] + [x.size for x in v.fields])[:-1])
        assert sum(x.size for x in v.fields) == f.type_size
        for fv in v.fields:
            assert np.array_equal(fv.raw, data[k, fv.offset:fv.offset + fv.size])
            assert fv.hex == bytes(fv.raw).hex(" ")
        np.testing.assert_array_equal(v.values.view(np.uint32), values[k].view(np.uint32))
        # where the block sits in the tensor
        per_row = X.shape[-1] // f.block_size
        assert v.row == tuple(int(r) for r in np.unravel_index(k // per_row, X.shape[:-1]))
        assert v.start == (k % per_row) * f.block_size
        if v.q is not None:
            assert np.asarray(v.q).size == f.block_size


@pytest.mark.parametrize("name", GGML)
def test_text_and_html_rendering(name):
    v = ql.inspect(_quantized(name), block=1)
    text = str(v)
    assert v.format.ggml_name in text and f"block 1 of {v.n_blocks}" in text
    for fv in v.fields:
        assert fv.name in text
    page = v._repr_html_()
    assert page.count("<span title=") == v.format.type_size        # one cell per byte
    for b in v.raw:
        assert f">{b:02x}</span>" in page
    assert "BlockView" in repr(v)
    assert [r["name"] for r in v.to_records()] == [fv.name for fv in v.fields]


def test_q4_0_worked_example_fields():
    """Spec §11.2: d = fp16 0xB1A4 (−0.17626953125), levels from the table, y_7 = +1.41015625."""
    x = np.array([0.12, -0.53, 0.98, -1.27, 0.33, 0.05, -0.76, 1.41, -0.02, 0.64, -0.89, 0.27,
                  1.10, -0.44, 0.71, -0.15, 0.58, -1.02, 0.09, 0.86, -0.31, 0.47, -0.68, 1.23,
                  -0.95, 0.19, 0.40, -0.57, 0.82, -0.08, 0.36, -1.18], dtype=f32)
    v = ql.inspect(ql.quantize(x, "q4_0"))
    d, qs = v.fields
    assert (d.name, d.offset, d.size, d.hex) == ("d", 0, 2, "a4 b1")
    assert d.value == np.frombuffer(bytes(d.raw), "<f2")[0] == f32(-0.17626953125)
    assert v.q.tolist() == [7, 11, 2, 15, 6, 8, 12, 0, 8, 4, 13, 6, 2, 10, 4, 9,
                            5, 14, 7, 3, 10, 5, 12, 1, 13, 7, 6, 11, 3, 8, 6, 15]
    assert (qs.offset, qs.size, qs.hex) == (2, 16, "57 eb 72 3f a6 58 cc 10 d8 74 6d b6 32 8a 64 f9")
    assert v.values[7] == f32(1.41015625)
    assert "0.17627" in str(v).replace("-", "")


def test_decoded_extras_for_two_level_formats():
    v = ql.inspect(_quantized("q4_k"), block=2)
    assert {"mins"} <= set(v.decoded) and v.decoded["mins"].size == 8
    v = ql.inspect(_quantized("iq4_xs"), block=2)
    assert v.decoded["scales"].size == 8 and set(v.decoded) >= {"q", "k"}
    v = ql.inspect(_quantized("ggml_f16"), block=5)
    assert v.fields[0].value == X.reshape(-1)[5].astype(np.float16).astype(f32)


def test_bad_block_index_is_a_shape_error():
    qt = _quantized("q8_0")
    n = np.asarray(qt.data).size // 34
    for bad in (n, -n - 1, 10**9):
        with pytest.raises(ShapeError, match=f"has {n} blocks"):
            ql.inspect(qt, block=bad)
    for bad in (1.0, "3", True, None):
        with pytest.raises(ShapeError, match="integer"):
            ql.inspect(qt, block=bad)
    assert ql.inspect(qt, block=np.int64(3)).index == 3


def test_non_ggml_input_is_a_format_error():
    other = [n for n in ql.formats() if not isinstance(ql.get(n), GGMLFormat)]
    with pytest.raises(FormatError, match="ggml"):
        ql.inspect(ql.quantize(X, other[0]))
    with pytest.raises(FormatError, match="ndarray"):
        ql.inspect(X)
