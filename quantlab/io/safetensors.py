"""Read safetensors files memory-mapped, with quantlab's own small parser.

    st = SafetensorsFile("model.safetensors")
    st.metadata                     # the "__metadata__" string map (may be empty)
    st.tensors["lm_head.weight"]    # SafetensorsTensor: name, dtype, shape, nbytes
    w = st["lm_head.weight"]        # NumPy view into the file (bfloat16 via ml_dtypes)
    w32 = st.float32("lm_head.weight")

The format (huggingface/safetensors) is::

    u64 N (little-endian) | N bytes of UTF-8 JSON header | data section
    header = {"__metadata__": {str: str},                            (optional)
              "<name>": {"dtype": "F32", "shape": [rows, cols],
                         "data_offsets": [begin, end]}, ...}          (relative to the data section)

Tensors are row-major (C order) and little-endian.  Nothing is read until a tensor is
indexed; each tensor is a zero-copy view of the memory map, so a model larger than RAM can
be walked tensor by tensor.  Every offset, size and dtype is checked against the file
before use; a bad file raises :class:`~quantlab.GGUFError` naming the file and tensor.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from ..errors import GGUFError

__all__ = ["SafetensorsFile", "SafetensorsTensor", "DTYPES"]

# safetensors dtype name -> NumPy dtype (little-endian)
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype(np.bool_),
}
_MAX_HEADER = 100_000_000   # the reference implementation's limit on the JSON header


@dataclass(frozen=True)
class SafetensorsTensor:
    name: str
    dtype: str                 # safetensors spelling, e.g. "BF16"
    shape: tuple[int, ...]
    begin: int                 # absolute byte offsets in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=object))


class SafetensorsFile:
    """A safetensors file opened read-only and memory-mapped."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"{self.path}: no such file")
        size = self.path.stat().st_size
        if size < 8:
            raise GGUFError(f"{self.path}: {size} bytes is too short for a safetensors file")
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, _MAX_HEADER):
                raise GGUFError(f"{self.path}: header length {n} does not fit in the file "
                                f"({size} bytes): truncated or not safetensors")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GGUFError(f"{self.path}: header is not UTF-8 JSON ({exc})") from None
        if not isinstance(header, dict):
            raise GGUFError(f"{self.path}: header must be a JSON object")
        meta = header.pop("__metadata__", {})
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise GGUFError(f"{self.path}: __metadata__ must map strings to strings")
        self.metadata: dict[str, str] = meta
        self.data_offset = 8 + n
        self.tensors: dict[str, SafetensorsTensor] = {}
        for name, entry in header.items():
            self.tensors[name] = self._entry(name, entry, size)
        self._check_overlaps()
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size > 0 else None

    def _entry(self, name: str, e, size: int) -> SafetensorsTensor:
        where = f"{self.path}: tensor {name!r}"
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
            raise GGUFError(f"{where}: entry needs dtype, shape and data_offsets, got {e!r}")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in DTYPES:
            raise GGUFError(f"{where}: dtype {dtype!r} is not supported; supported: "
                            f"{', '.join(DTYPES)}")
        if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)):
            raise GGUFError(f"{where}: shape {shape!r} must be a list of non-negative integers")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(type(o) is int for o in offs) or not 0 <= offs[0] <= offs[1]):
            raise GGUFError(f"{where}: data_offsets {offs!r} must be [begin, end], 0 <= begin <= end")
        begin, end = self.data_offset + offs[0], self.data_offset + offs[1]
        need = int(np.prod(shape, dtype=object)) * DTYPES[dtype].itemsize
        if end - begin != need:
            raise GGUFError(f"{where}: {end - begin} bytes stored, {dtype} of shape "
                            f"{tuple(shape)} needs {need}")
        if end > size:
            raise GGUFError(f"{where}: data ends at byte {end}, file has {size}: truncated")
        return SafetensorsTensor(name, dtype, tuple(shape), begin, end)

    def _check_overlaps(self) -> None:
        spans = sorted((t.begin, t.end, t.name) for t in self.tensors.values() if t.nbytes)
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise GGUFError(f"{self.path}: tensors {n0!r} and {n1!r} overlap")

    # -- access ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor as a read-only NumPy view of the file (no copy)."""
        t = self.tensors.get(name)
        if t is None:
            raise GGUFError(f"{self.path}: no tensor {name!r} ({len(self.tensors)} tensors, "
                            f"e.g. {', '.join(list(self.tensors)[:3])})")
        dt = DTYPES[t.dtype]
        if t.nbytes == 0:
            return np.zeros(t.shape, dtype=dt)
        return np.frombuffer(self._map, dtype=dt, count=t.nbytes // dt.itemsize,
                             offset=t.begin).reshape(t.shape)

    def float32(self, name: str) -> np.ndarray:
        """The tensor converted to float32 (exact for F16, BF16 and the FP8 types)."""
        return np.asarray(self[name], dtype=np.float32)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        return f"SafetensorsFile({str(self.path)!r}, {len(self.tensors)} tensors)"
