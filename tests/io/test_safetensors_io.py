"""safetensors reading against files made by a small independent writer in this test.

The writer below follows the published format (u64 header length, JSON header with dtype,
shape and data_offsets, then the raw little-endian data); the values are checked against
NumPy/ml_dtypes arrays, so the oracle is the data itself.
"""
from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlab.errors import GGUFError, QuantlabError
from quantlab.io.safetensors import SafetensorsFile

NAMES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype(ml_dtypes.bfloat16): "BF16",
         np.dtype("<f8"): "F64", np.dtype("<i4"): "I32", np.dtype("u1"): "U8",
         np.dtype("i1"): "I8", np.dtype(np.bool_): "BOOL",
         np.dtype(ml_dtypes.float8_e4m3fn): "F8_E4M3"}


def write_st(path: Path, tensors: dict[str, np.ndarray], metadata=None, pad_to=8) -> None:
    """Minimal independent safetensors writer (header padded with spaces, as the reference)."""
    header, blobs, pos = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % pad_to)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_round_trip_dtypes_and_shapes(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    tensors = {"w32": x, "w16": x.astype(np.float16), "wbf": x.astype(ml_dtypes.bfloat16),
               "w64": x.astype(np.float64), "idx": np.arange(7, dtype=np.int32),
               "u8": np.arange(6, dtype=np.uint8).reshape(2, 3), "i8": np.array([-1, 2], np.int8),
               "mask": np.array([True, False]), "scalar": np.array(2.5, np.float32),
               "empty": np.zeros((0, 4), np.float32),
               "f8": x.astype(ml_dtypes.float8_e4m3fn), "cube": rng.standard_normal((2, 3, 4)).astype("<f4")}
    path = tmp_path / "m.safetensors"
    write_st(path, tensors, metadata={"format": "pt"})
    st_ = SafetensorsFile(path)
    assert st_.metadata == {"format": "pt"} and list(st_) == list(tensors) and len(st_) == len(tensors)
    for name, arr in tensors.items():
        got = st_[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape, name
        assert got.tobytes() == np.ascontiguousarray(arr).tobytes(), name
    # zero-copy: a read-only view of the file, not an in-memory copy
    assert not st_["w32"].flags.writeable
    assert np.array_equal(st_.float32("wbf"), x.astype(ml_dtypes.bfloat16).astype(np.float32))
    assert st_.float32("w16").dtype == np.float32
    assert st_.tensors["cube"].n_elements == 24 and st_.tensors["w16"].nbytes == 30


def _open(raw: bytes, folder: Path) -> SafetensorsFile:
    p = folder / "f.safetensors"
    p.write_bytes(raw)
    return SafetensorsFile(p)


def _st_bytes(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize("raw,match", [
    (b"\x01\x02", "too short"),
    (struct.pack("<Q", 10**9) + b"{}", "does not fit"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "not UTF-8 JSON"),
    (struct.pack("<Q", 2) + b"[]", "JSON object"),
    (_st_bytes({"a": {"dtype": "F32", "shape": [2]}}, bytes(8)), "needs dtype, shape and data_offsets"),
    (_st_bytes({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)),
     "dtype 'Q4' is not supported"),
    (_st_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(8)),
     "4 bytes stored, F32 of shape \\(2,\\) needs 8"),
    (_st_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
     "truncated"),
    (_st_bytes({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(8)),
     "non-negative"),
    (_st_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8)),
     "begin <= end"),
    (_st_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)), "overlap"),
    (_st_bytes({"__metadata__": {"k": 1}}, b""), "__metadata__"),
])
def test_bad_files_raise_gguf_error(tmp_path, raw, match):
    with pytest.raises(GGUFError, match=match):
        _open(raw, tmp_path)


def test_unknown_tensor_name(tmp_path):
    path = tmp_path / "m.safetensors"
    write_st(path, {"a": np.zeros(2, np.float32)})
    with pytest.raises(GGUFError, match="no tensor 'b'"):
        SafetensorsFile(path)["b"]
    with pytest.raises(GGUFError, match="no such file"):
        SafetensorsFile(tmp_path / "missing.safetensors")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_only_quantlab_errors(raw):
    with tempfile.TemporaryDirectory() as d:
        for blob in (raw, struct.pack("<Q", len(raw)) + raw):
            try:
                f = _open(blob, Path(d))
            except QuantlabError:
                continue
            for name in f:
                f[name]
