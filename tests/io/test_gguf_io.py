"""GGUF reading and writing against the ``gguf`` package and llama.cpp-written files.

Oracles: gguf-py's GGUFReader (an independent parser), and the byte content of two files
written by llama.cpp/gguf-py (the shipped SmolLM2 model and the golden imatrix): rewriting
them must reproduce them byte for byte.
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qltest import golden, model_path, sha256_of as sha
from quantlab.errors import GGUFError, QuantlabError
from quantlab.io.gguf import GGUFFile, GGUFValue, ValueType
from quantlab.io.gguf_write import TensorSpec, atomic_output, write_gguf


def rewrite(g: GGUFFile, out: Path) -> None:
    write_gguf(out, g.kv, [TensorSpec(t.name, t.type_name, t.shape) for t in g.tensors.values()],
               (t.data for t in g.tensors.values()))


@pytest.mark.parametrize("src", [model_path(), golden("imatrix-smollm2-pydoc.gguf")],
                         ids=["smollm2-q4_1", "imatrix"])
def test_rewrite_is_byte_identical(tmp_path, src):
    """Parse + write reproduces files written by llama.cpp / gguf-py exactly."""
    out = tmp_path / "copy.gguf"
    rewrite(GGUFFile(src), out)
    assert out.stat().st_size == src.stat().st_size
    assert sha(out) == sha(src)


def test_reader_agrees_with_gguf_py():
    """(The model itself is covered by the byte-identical rewrite: any misread value or type
    would change the rewritten bytes; gguf-py needs seconds just to open it.)"""
    src = golden("imatrix-smollm2-pydoc.gguf")
    ours, ref = GGUFFile(src), gguf.GGUFReader(src)
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert list(ours.kv) == list(fields)
    for k, f in fields.items():
        assert ours.kv[k].type == f.types[0], k
        if f.types[0] == ValueType.ARRAY:
            assert ours.kv[k].item_type == f.types[-1], k
            # gguf-py builds whole-list contents slowly: compare the length and both ends
            n = len(f.data)
            assert len(ours.metadata[k]) == n, k
            assert ours.metadata[k][:50] == f.contents(slice(0, 50)), k
            assert ours.metadata[k][-50:] == f.contents(slice(max(n - 50, 0), n)), k
        else:
            assert ours.metadata[k] == f.contents(), k
    assert [t.name for t in ref.tensors] == list(ours.tensors)
    for t in ref.tensors:
        mine = ours.tensors[t.name]
        assert mine.type_name == t.tensor_type.name
        assert mine.shape == tuple(reversed(t.shape.tolist()))
        assert np.array_equal(mine.data, np.asarray(t.data).reshape(-1).view(np.uint8))
        assert mine.offset == t.data_offset


ALL_VALUES = {
    "general.architecture": "llama",
    "general.alignment": GGUFValue(ValueType.UINT32, 64),
    "t.u8": GGUFValue(ValueType.UINT8, 255), "t.i8": GGUFValue(ValueType.INT8, -128),
    "t.u16": GGUFValue(ValueType.UINT16, 65535), "t.i16": GGUFValue(ValueType.INT16, -32768),
    "t.u32": GGUFValue(ValueType.UINT32, 2**32 - 1), "t.i32": -7,
    "t.f32": 0.1, "t.bool": True, "t.str": "héllo ✓",
    "t.u64": GGUFValue(ValueType.UINT64, 2**64 - 1), "t.i64": GGUFValue(ValueType.INT64, -2**63),
    "t.f64": GGUFValue(ValueType.FLOAT64, 0.1),
    "t.arr_i32": [1, -2, 3], "t.arr_str": ["a", "", "ü"], "t.arr_bool": [True, False],
    "t.arr_f32": GGUFValue(ValueType.ARRAY, [1.5, -0.25], ValueType.FLOAT32),
    "t.arr_u8": GGUFValue(ValueType.ARRAY, [], ValueType.UINT8),
}


def _synthetic(tmp_path) -> tuple[Path, list[TensorSpec], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    specs = [TensorSpec("a.weight", "F32", (2, 3, 64)), TensorSpec("b.weight", "Q4_0", (5, 64)),
             TensorSpec("c.norm", "F32", (7,)), TensorSpec("d.row", "F16", (1, 32)),
             TensorSpec("e.k", "Q6_K", (2, 256)), TensorSpec("f.empty", "F32", (0, 32))]
    data = [rng.integers(0, 256, s.nbytes, dtype=np.uint8) for s in specs]
    path = tmp_path / "all.gguf"
    write_gguf(path, ALL_VALUES, specs, data)
    return path, specs, data


def test_written_file_read_by_gguf_py(tmp_path):
    path, specs, data = _synthetic(tmp_path)
    ref = gguf.GGUFReader(path)
    assert ref.alignment == 64 and ref.data_offset % 64 == 0
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert list(fields) == list(ALL_VALUES)
    for k, v in ALL_VALUES.items():
        v = v if isinstance(v, GGUFValue) else None
        got = fields[k].contents()
        if k == "t.f32":
            assert got == float(np.float32(0.1)) and fields[k].types == [ValueType.FLOAT32]
        elif k == "t.arr_u8":
            assert got == [] and fields[k].types[0] == ValueType.ARRAY
        elif v is not None and v.type != ValueType.ARRAY:
            assert got == v.value and fields[k].types == [v.type], k
        else:
            expected = ALL_VALUES[k].value if v is not None else ALL_VALUES[k]
            assert got == expected, k
    assert fields["t.i32"].types == [ValueType.INT32]
    assert fields["t.arr_str"].types == [ValueType.ARRAY, ValueType.STRING]
    by_name = {t.name: t for t in ref.tensors}
    for s, d in zip(specs, data):
        t = by_name[s.name]
        assert t.tensor_type.name == s.type_name
        ne = list(reversed(s.shape))
        while len(ne) > 1 and ne[-1] == 1:       # ggml_n_dims drops trailing 1s of ne
            ne.pop()
        assert t.shape.tolist() == ne, s.name
        assert t.data_offset % 64 == 0
        assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8), d), s.name
    # and quantlab's own reader gives the same back (shape with leading 1s dropped)
    ours = GGUFFile(path)
    assert ours.tensors["d.row"].shape == (32,) and ours.tensors["a.weight"].shape == (2, 3, 64)
    assert {k: v.type for k, v in ours.kv.items()}["t.u64"] == ValueType.UINT64
    assert ours.metadata["t.arr_bool"] == [True, False]


def test_streamed_chunks_and_size_checks(tmp_path):
    spec = TensorSpec("w", "Q8_0", (4, 64))
    rows = np.arange(spec.nbytes, dtype=np.uint32).astype(np.uint8).reshape(4, -1)
    write_gguf(tmp_path / "a.gguf", {}, [spec], [iter([rows[:1], rows[1:]])])
    assert np.array_equal(GGUFFile(tmp_path / "a.gguf").tensors["w"].data, rows.reshape(-1))
    with pytest.raises(GGUFError, match="needs 272"):
        write_gguf(tmp_path / "b.gguf", {}, [spec], [rows[:3]])
    with pytest.raises(GGUFError, match="not a multiple of the block size 32"):
        write_gguf(tmp_path / "c.gguf", {}, [TensorSpec("w", "Q8_0", (4, 40))], [b""])
    with pytest.raises(GGUFError, match="appears twice"):
        write_gguf(tmp_path / "d.gguf", {}, [spec, spec], [rows, rows])
    with pytest.raises(GGUFError, match="GGML_MAX_NAME"):
        write_gguf(tmp_path / "e.gguf", {}, [TensorSpec("x" * 64, "F32", (1,))], [b"0000"])
    with pytest.raises(GGUFError, match="UINT8"):
        write_gguf(tmp_path / "f.gguf", {"k": GGUFValue(ValueType.UINT8, 256)}, [], [])
    with pytest.raises(GGUFError, match="power of two"):
        write_gguf(tmp_path / "g.gguf", {"general.alignment": GGUFValue(ValueType.UINT32, 48)},
                   [], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf"]     # no partial outputs


# ---------------------------------------------------------------------------- atomicity
def _failing_data(n_ok: int, exc=RuntimeError("disk on fire")):
    spec = TensorSpec("t", "F32", (1024,))
    for _ in range(n_ok):
        yield np.zeros(spec.nbytes, np.uint8)
    raise exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing_and_keeps_existing_output(tmp_path, exc):
    specs = [TensorSpec(f"t{i}", "F32", (1024,)) for i in range(3)]
    out = tmp_path / "out.gguf"
    with pytest.raises(type(exc)):
        write_gguf(out, {}, specs, _failing_data(2, exc))
    assert list(tmp_path.iterdir()) == []                       # no output, no temp file
    out.write_bytes(b"previous contents")
    before = (sha(out), out.stat().st_mtime_ns)
    with pytest.raises(type(exc)):
        write_gguf(out, {}, specs, _failing_data(1, exc))
    assert (sha(out), out.stat().st_mtime_ns) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.gguf"]


def test_success_replaces_existing_output(tmp_path):
    out = tmp_path / "out.gguf"
    out.write_bytes(b"old")
    write_gguf(out, {"a": 1}, [], [])
    assert GGUFFile(out).metadata == {"a": 1}


def test_output_equal_to_input_is_refused(tmp_path):
    src = tmp_path / "in.gguf"
    write_gguf(src, {"a": 1}, [], [])
    before = (sha(src), src.stat().st_mtime_ns)
    link = tmp_path / "link.gguf"
    os.symlink(src, link)
    for dst in (src, tmp_path / "." / "in.gguf", link):
        with pytest.raises(GGUFError, match="is the input file"):
            with atomic_output(dst, inputs=[src]):
                pass
    assert (sha(src), src.stat().st_mtime_ns) == before


# ---------------------------------------------------------------------------- hardening
def _small_valid() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.gguf"
        write_gguf(path, {"general.architecture": "llama", "a.list": ["x", "yz"], "n": 3},
                   [TensorSpec("w", "Q4_0", (2, 32)), TensorSpec("n", "F32", (4,))],
                   [np.arange(36, dtype=np.uint8), np.ones(4, np.float32)])
        return path.read_bytes()


SMALL = _small_valid()


def _open_bytes(raw: bytes, folder: Path) -> GGUFFile:
    p = folder / "f.gguf"
    p.write_bytes(raw)
    return GGUFFile(p)


def _must_be_ours(raw: bytes) -> None:
    """Opening must either work (and every tensor's bytes be readable) or raise QuantlabError."""
    with tempfile.TemporaryDirectory() as d:
        try:
            g = _open_bytes(raw, Path(d))
        except QuantlabError as exc:
            assert str(Path(d) / "f.gguf") in str(exc)            # errors name the file
            return
        for t in g.tensors.values():
            assert t.data.nbytes == t.nbytes and t.offset + t.nbytes <= len(raw)
            bytes(t.data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(raw):
    _must_be_ours(raw)
    _must_be_ours(b"GGUF\x03\x00\x00\x00" + raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(SMALL)))
def test_fuzz_mutated_header(edits, cut):
    raw = bytearray(SMALL)
    for pos, val in edits:
        raw[pos] = val
    _must_be_ours(bytes(raw[:cut]))
    _must_be_ours(bytes(raw))


REAL = golden("imatrix-smollm2-pydoc.gguf").read_bytes()      # a header written by llama.cpp


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutated_real_header(edits):
    raw = bytearray(REAL)
    for pos, val in edits:
        raw[pos] = val
    _must_be_ours(bytes(raw))


def test_every_truncation_of_a_real_header_is_a_gguf_error(tmp_path):
    """Cut the imatrix golden file (a real llama.cpp header) at many points."""
    raw = golden("imatrix-smollm2-pydoc.gguf").read_bytes()
    g = GGUFFile(golden("imatrix-smollm2-pydoc.gguf"))
    last = max(t.offset + t.nbytes for t in g.tensors.values())
    for cut in list(range(0, 400, 7)) + [g.data_offset - 1, last - 1]:
        with pytest.raises(GGUFError, match="f.gguf"):
            _open_bytes(raw[:cut], tmp_path)


def _header(n_tensors=0, n_kv=0, version=3) -> bytes:
    return b"GGUF" + struct.pack("<Iqq", version, n_tensors, n_kv)


def _str(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


def _tensor_info(name, ne, type_id, offset=0) -> bytes:
    return _str(name) + struct.pack(f"<I{len(ne)}qiQ", len(ne), *ne, type_id, offset)


@pytest.mark.parametrize("raw,match", [
    (b"GGML" + bytes(20), "not a GGUF file"),
    (b"GGUF" + struct.pack(">I", 3) + bytes(16), "big-endian"),
    (_header(version=1), "version 1 is not supported"),
    (_header(n_kv=2**40), "cannot fit"),
    (_header(n_tensors=-1), "cannot fit"),
    (_header(n_kv=1) + _str("k") + struct.pack("<i", 13) + bytes(8), "unknown value type 13"),
    (_header(n_kv=1) + _str("k") + struct.pack("<iiQ", 9, 4, 2**62), "cannot fit"),
    (_header(n_kv=1) + _str("k") + struct.pack("<iiQ", 9, 8, 2**62), "cannot fit"),
    (_header(n_kv=1) + _str("k") + struct.pack("<iiQ", 9, 9, 1), "nested arrays"),
    (_header(n_kv=2) + (_str("k") + struct.pack("<iB", 0, 1)) * 2, "duplicate metadata key 'k'"),
    (_header(n_kv=1) + struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<iB", 0, 1), "UTF-8"),
    (_header(n_kv=1) + _str("general.alignment") + struct.pack("<iI", 4, 3), "power of two"),
    (_header(n_tensors=1) + _tensor_info("w.weight", [32, 2], 99) + bytes(64),
     "tensor 'w.weight' has unknown ggml type id 99"),
    (_header(n_tensors=1) + _tensor_info("w.weight", [30, 2], 2) + bytes(64),
     "row length 30, not a multiple"),
    (_header(n_tensors=1) + _tensor_info("w.weight", [32, 5], 0) + bytes(64),
     r"tensor 'w.weight' \(F32, ne=\[32, 5\]\) needs bytes"),
    (_header(n_tensors=1) + _tensor_info("w.weight", [32, -1], 0) + bytes(64), "negative"),
    (_header(n_tensors=1) + _tensor_info("w.weight", [32], 0, offset=4) + bytes(200), "alignment"),
    (_header(n_tensors=1) + struct.pack("<Q", 3) + b"abc" + struct.pack("<I", 5) + bytes(64),
     "5 dimensions"),
    (_header(n_tensors=2) + _tensor_info("w", [8], 0) * 2 + bytes(64), "duplicate tensor name 'w'"),
])
def test_corrupt_headers_name_the_problem(tmp_path, raw, match):
    with pytest.raises(GGUFError, match=match):
        _open_bytes(raw, tmp_path)


def test_missing_file_and_short_file(tmp_path):
    with pytest.raises(GGUFError, match="no such file"):
        GGUFFile(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="too short"):
        _open_bytes(b"", tmp_path)


def test_release_keeps_data_readable():
    g = GGUFFile(golden("imatrix-smollm2-pydoc.gguf"))
    name = "blk.0.ffn_down.weight.in_sum2"
    before = bytes(g.tensors[name].data)
    for t in g.tensors:
        g.release(t)
    assert bytes(g.tensors[name].data) == before          # pages are re-read from the file
