"""imatrix files: llama.cpp's GGUF format (golden file from llama-imatrix) and the legacy .dat.

Oracles: the golden file read independently with gguf-py (importance = in_sum2 / counts
per llama-quantize), its exact bytes (our writer must reproduce them), and legacy files
built here with ``struct`` following llama.cpp's ``save_imatrix_legacy``.
"""
from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from qltest import golden
from quantlab.errors import GGUFError
from quantlab.io.gguf import GGUFFile, GGUFValue, ValueType
from quantlab.io.gguf_write import TensorSpec, write_gguf
from quantlab.io.imatrix import importance, load_imatrix, read_imatrix, save_imatrix

GOLDEN = "imatrix-smollm2-pydoc.gguf"


def test_golden_loads_as_llama_quantize_computes_it():
    imp = load_imatrix(golden(GOLDEN))
    ref = gguf.GGUFReader(golden(GOLDEN))
    tensors = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in ref.tensors}
    weights = sorted(n[:-len(".in_sum2")] for n in tensors if n.endswith(".in_sum2"))
    assert sorted(imp) == weights and len(weights) == 210
    for w in weights:
        sums, count = tensors[w + ".in_sum2"], tensors[w + ".counts"]
        assert count.shape == (1,) and count[0] == 5120.0       # 10 chunks x 512 tokens
        expected = sums / count[0]                               # float32 / float32
        assert imp[w].dtype == np.float32 and imp[w].shape == sums.shape
        assert np.array_equal(imp[w].view(np.uint32), expected.view(np.uint32)), w
    assert imp["blk.0.ffn_down.weight"].shape == (1536,)
    assert imp["blk.29.attn_q.weight"].shape == (576,)


def test_golden_round_trips_byte_for_byte(tmp_path):
    im = read_imatrix(golden(GOLDEN))
    assert im.datasets == [gguf.GGUFReader(golden(GOLDEN)).fields["imatrix.datasets"].contents()[0]]
    assert (im.chunk_count, im.chunk_size, im.legacy) == (10, 512, False)
    out = save_imatrix(tmp_path / "copy.gguf", {w: (im.sums[w][0], im.counts[w][0]) for w in im.sums},
                       dataset=im.datasets[0], chunks=im.chunk_count, chunk_size=im.chunk_size)
    assert out.read_bytes() == golden(GOLDEN).read_bytes()


def test_expert_entries_and_zero_counts(tmp_path):
    """3-D expert weights: one row of sums and one count per expert; count 0 -> importance 1."""
    sums = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 9.0, 9.0, 9.0]], np.float32)
    counts = np.array([2, 4, 0])
    path = save_imatrix(tmp_path / "e.gguf", {"blk.0.ffn_up_exps.weight": (sums, counts),
                                              "blk.0.attn_q.weight": (np.full(4, 6.0), 3)},
                        dataset=["a.txt", "b.txt"], chunks=7)
    ref = gguf.GGUFReader(path)
    by = {t.name: t for t in ref.tensors}
    assert [t.name for t in ref.tensors] == ["blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts",
                                             "blk.0.ffn_up_exps.weight.in_sum2",
                                             "blk.0.ffn_up_exps.weight.counts"]
    assert by["blk.0.ffn_up_exps.weight.in_sum2"].shape.tolist() == [4, 3]     # ne = [n_in, n_mat]
    assert by["blk.0.ffn_up_exps.weight.counts"].shape.tolist() == [1, 3]
    assert ref.fields["general.type"].contents() == "imatrix"
    assert ref.fields["imatrix.datasets"].contents() == ["a.txt", "b.txt"]
    assert ref.fields["imatrix.chunk_count"].types == [gguf.GGUFValueType.UINT32]
    imp = load_imatrix(path)
    want = np.concatenate([sums[0] / np.float32(2), sums[1] / np.float32(4), np.ones(4, np.float32)])
    assert np.array_equal(imp["blk.0.ffn_up_exps.weight"], want)
    assert np.array_equal(imp["blk.0.attn_q.weight"], np.full(4, 2.0, np.float32))


def _legacy(entries, last_chunk=None, dataset=None) -> bytes:
    """llama.cpp save_imatrix_legacy: values stored as mean * ncall."""
    out = struct.pack("<i", len(entries))
    for name, ncall, vals in entries:
        vals = np.asarray(vals, np.float32)
        out += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", ncall, vals.size)
        out += vals.tobytes()
    if last_chunk is not None:
        out += struct.pack("<i", last_chunk)
        if dataset is not None:
            out += struct.pack("<i", len(dataset)) + dataset.encode()
    return out


def test_legacy_dat(tmp_path):
    vals = np.array([3.0, 6.0, 0.0, 1.5], np.float32)
    p = tmp_path / "old.dat"
    p.write_bytes(_legacy([("blk.0.attn_k.weight", 3, vals), ("blk.0.attn_v.weight", 0, vals)],
                          last_chunk=3, dataset="wiki.train.raw"))
    im = read_imatrix(p)
    assert im.legacy and im.chunk_count == 3 and im.datasets == ["wiki.train.raw"]
    imp = load_imatrix(p)
    assert np.array_equal(imp["blk.0.attn_k.weight"], vals / np.float32(3))
    assert np.array_equal(imp["blk.0.attn_v.weight"], vals)          # ncall 0: values as stored
    p.write_bytes(_legacy([("x.weight", 1, vals)]))                  # no trailer: still fine
    assert list(load_imatrix(p)) == ["x.weight"]


@pytest.mark.parametrize("raw,match", [
    (struct.pack("<i", 0), "not an imatrix file"),
    (struct.pack("<ii", 1, 999) + b"ab" + bytes(20), "bad name length"),
    (struct.pack("<ii", 1, 1) + b"a" + struct.pack("<ii", 1, 1000) + bytes(8), "do not fit"),
    (struct.pack("<ii", 1, 5) + b"abcde" + bytes(2), "truncated"),
])
def test_bad_legacy_files(tmp_path, raw, match):
    p = tmp_path / "bad.dat"
    p.write_bytes(raw)
    with pytest.raises(GGUFError, match=match):
        load_imatrix(p)


def test_bad_gguf_imatrix_files(tmp_path):
    p = tmp_path / "a.gguf"
    write_gguf(p, {}, [TensorSpec("w.in_sum2", "F32", (4,))], [np.ones(4, np.float32)])
    with pytest.raises(GGUFError, match="needs both .in_sum2 and .counts"):
        load_imatrix(p)
    write_gguf(p, {"general.type": "model"}, [], [])
    with pytest.raises(GGUFError, match="not 'imatrix'"):
        load_imatrix(p)
    write_gguf(p, {"general.type": GGUFValue(ValueType.STRING, "imatrix")}, [], [])
    with pytest.raises(GGUFError, match="no imatrix entries"):
        load_imatrix(p)
    write_gguf(p, {}, [TensorSpec("w.in_sum2", "F32", (4,)), TensorSpec("w.counts", "F32", (1,))],
               [np.array([1, np.inf, 2, 3], np.float32), np.ones(1, np.float32)])
    with pytest.raises(GGUFError, match="non-finite"):
        load_imatrix(p)
    with pytest.raises(GGUFError, match="no such imatrix file"):
        load_imatrix(tmp_path / "missing.gguf")
    with pytest.raises(GGUFError, match="2 counts for 1 matrices"):
        save_imatrix(tmp_path / "x.gguf", {"w": (np.ones(4), [1, 2])})
    assert not (tmp_path / "x.gguf").exists()


def test_importance_helper_matches_definition():
    sums = np.array([[2.0, 4.0]], np.float32)
    assert np.array_equal(importance(sums, np.array([4.0])), np.array([0.5, 1.0], np.float32))
    assert np.array_equal(importance(sums, np.array([0.0])), np.array([1.0, 1.0], np.float32))
    assert GGUFFile(golden(GOLDEN)).metadata["general.type"] == "imatrix"


def test_no_dataset_writes_an_empty_list(tmp_path):
    p = save_imatrix(tmp_path / "n.gguf", {"w": (np.ones(2), 1)}, dataset="", chunks=0)
    assert read_imatrix(p).datasets == [] and GGUFFile(p).kv["imatrix.datasets"].value == []
