"""Read GGUF files memory-mapped (spec ``ggml-quants.md`` §9).

    g = GGUFFile(path)
    g.metadata["llama.block_count"]      # plain Python values (str, int, float, bool, list)
    g.kv["llama.block_count"]            # GGUFValue: the same value with its stored GGUF type
    t = g.tensors["blk.0.attn_q.weight"] # TensorInfo: name, type_name, ggml_type, shape, data
    g.qtensor(t.name)                    # a QTensor over the file's bytes (no copy)
    g.dequantize(t.name)                 # float32, through quantlab's own format classes

Shapes are NumPy order: a GGUF tensor with ``ne = [cols, rows]`` has ``shape == (rows, cols)``;
the last axis is the contiguous row that ggml blocks run along.  Nothing is read into RAM
until a tensor's bytes are touched.

The file layout (little-endian, version 3; version 2 is identical)::

    "GGUF" | u32 version | i64 n_tensors | i64 n_kv
    n_kv      × ( string key | i32 value type | value )
    n_tensors × ( string name | u32 n_dims | n_dims × i64 ne | i32 ggml type | u64 offset )
    zero padding to general.alignment (default 32)
    tensor data, each tensor at data_start + offset
    string = u64 byte length + UTF-8 bytes;  array = i32 item type + u64 count + items

quantlab parses the header itself (the ``gguf`` package is the test oracle) because a parser
of untrusted bytes must check every length against the file before using it: a corrupt or
truncated file raises :class:`~quantlab.GGUFError` naming the file, the byte offset and the
key or tensor being read — never a NumPy traceback, a hang or a huge allocation.  Types are
kept (:attr:`GGUFFile.kv`) so a writer can copy metadata exactly.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GGUFError

__all__ = ["GGUFFile", "TensorInfo", "GGUFValue", "ValueType", "GGML_TYPES", "ggml_type_id",
           "tensor_nbytes", "GGUF_MAGIC", "DEFAULT_ALIGNMENT", "MAX_DIMS", "MAX_NAME"]

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4          # GGML_MAX_DIMS
MAX_NAME = 64         # GGML_MAX_NAME: tensor names are shorter than this (NUL included in C)


class ValueType(IntEnum):
    """GGUF metadata value types (``enum gguf_type``)."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# little-endian NumPy dtype of every fixed-size value type
SCALAR_DTYPES: dict[ValueType, np.dtype] = {
    ValueType.UINT8: np.dtype("<u1"), ValueType.INT8: np.dtype("<i1"),
    ValueType.UINT16: np.dtype("<u2"), ValueType.INT16: np.dtype("<i2"),
    ValueType.UINT32: np.dtype("<u4"), ValueType.INT32: np.dtype("<i4"),
    ValueType.FLOAT32: np.dtype("<f4"), ValueType.BOOL: np.dtype("<u1"),
    ValueType.UINT64: np.dtype("<u8"), ValueType.INT64: np.dtype("<i8"),
    ValueType.FLOAT64: np.dtype("<f8"),
}


@dataclass(frozen=True)
class GGUFValue:
    """One metadata value with its GGUF type (``item_type`` for arrays)."""
    type: ValueType
    value: Any                      # str, int, float, bool, or a list of those
    item_type: ValueType | None = None


# ggml type id -> (name, block size, bytes per block): the ``gguf`` package's
# ``GGML_QUANT_SIZES``, copied exactly (tests/io/test_gguf_types.py checks it).  Written out rather
# than imported: importing ``gguf`` loads its reader, writer, vocab, YAML and JSON modules, ~4 MB
# of a small model's resident memory.  Ids 4, 5, 31-33, 36-38 are retired.  Doubt: ggml-quants.md
# §1 gives Q8_1 36 bytes (ggml's sizeof(block_q8_1), quantlab's Q8_1 format) where gguf-py says
# 40 (Q8_1 is an activation format, not stored in files), and lists Q2_0 (42), which this gguf-py
# lacks.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
_ID_BY_NAME = {name: i for i, (name, _, _) in GGML_TYPES.items()}


def ggml_type_id(name: str | int) -> int:
    """The ggml type id of a type name ("Q4_K", case-insensitive) or id."""
    if isinstance(name, (int, np.integer)) and int(name) in GGML_TYPES:
        return int(name)
    if isinstance(name, str) and name.upper() in _ID_BY_NAME:
        return _ID_BY_NAME[name.upper()]
    raise GGUFError(f"unknown ggml type {name!r}; known: {', '.join(sorted(_ID_BY_NAME))}")


def tensor_nbytes(type_name: str | int, shape) -> int:
    """Bytes of a tensor: ``rows · (ne0 / block) · type_size``; ``ne0`` must fill whole blocks."""
    tname, block, tsize = GGML_TYPES[ggml_type_id(type_name)]
    shape = tuple(int(s) for s in shape)
    ne0 = shape[-1] if shape else 1
    if ne0 % block:
        raise GGUFError(f"{tname}: row length {ne0} is not a multiple of the block size {block}")
    rows = int(np.prod(shape[:-1], dtype=object)) if len(shape) > 1 else 1
    return rows * (ne0 // block) * tsize


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: int            # enum ggml_type id
    type_name: str            # ggml's spelling, e.g. "Q4_1"
    shape: tuple[int, ...]    # NumPy order (last axis = GGUF ne[0], the row)
    data: np.ndarray          # uint8 view into the memory-mapped file
    offset: int = -1          # absolute byte offset of the data in the file

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.n_elements


class _Truncated(Exception):
    """Internal: a read ran past the end of the file."""


class _Cursor:
    """Reads little-endian fields from a buffer, checking every length against its end."""

    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, n: int) -> int:
        """Reserve ``n`` bytes; return their start offset."""
        if n < 0 or self.pos + n > self.size:
            raise _Truncated(f"needs {n} bytes at offset {self.pos}, file has {self.size}")
        start, self.pos = self.pos, self.pos + n
        return start

    def scalar(self, fmt: str):
        return struct.unpack_from("<" + fmt, self.buf, self.take(struct.calcsize(fmt)))[0]

    def string(self, what: str) -> str:
        n = self.scalar("Q")
        start = self.take(n)
        try:
            return str(self.buf[start:start + n], "utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{what} at offset {start} is not valid UTF-8") from None


def _read_value(cur: _Cursor, vtype: int, what: str) -> GGUFValue:
    """One metadata value of type ``vtype`` (arrays of scalars are read in one go)."""
    try:
        vtype = ValueType(vtype)
    except ValueError:
        raise GGUFError(f"{what}: unknown value type {vtype} (valid: 0..12)") from None
    if vtype == ValueType.STRING:
        return GGUFValue(vtype, cur.string(what))
    if vtype in SCALAR_DTYPES:
        value = cur.scalar(SCALAR_DTYPES[vtype].char)
        return GGUFValue(vtype, bool(value) if vtype == ValueType.BOOL else value)
    # ARRAY: item type, count, items
    itype_raw, count = cur.scalar("i"), cur.scalar("Q")
    try:
        itype = ValueType(itype_raw)
    except ValueError:
        raise GGUFError(f"{what}: array of unknown value type {itype_raw}") from None
    if itype == ValueType.ARRAY:
        raise GGUFError(f"{what}: nested arrays are not allowed in GGUF")
    if itype == ValueType.STRING:
        # each string needs at least its 8-byte length: bound the count before looping
        if count > (cur.size - cur.pos) // 8:
            raise _Truncated(f"array of {count} strings cannot fit in the file")
        return GGUFValue(vtype, [cur.string(f"{what}[{i}]") for i in range(count)], itype)
    dt = SCALAR_DTYPES[itype]
    if count > (cur.size - cur.pos) // dt.itemsize:
        raise _Truncated(f"array of {count} {itype.name} values cannot fit in the file")
    start = cur.take(count * dt.itemsize)
    items = np.frombuffer(cur.buf, dtype=dt, count=count, offset=start)
    items = items.astype(bool) if itype == ValueType.BOOL else items
    return GGUFValue(vtype, items.tolist(), itype)


class GGUFFile:
    """A GGUF file opened read-only and memory-mapped."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"{self.path}: no such file")
        size = self.path.stat().st_size
        if size < 24:
            raise GGUFError(f"{self.path}: {size} bytes is too short for a GGUF header (24 bytes)")
        with open(self.path, "rb") as f:
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._map = np.frombuffer(self._mmap, dtype=np.uint8)       # read-only view, no copy
        try:
            self._parse(_Cursor(memoryview(self._mmap), size))
        except _Truncated as exc:
            raise GGUFError(f"{self.path}: truncated or corrupt ({exc}) while reading "
                            f"{self._where}") from None
        except GGUFError as exc:
            raise GGUFError(f"{self.path}: {exc}") from None

    # -- parsing ------------------------------------------------------------------------
    _where = "the header"

    def _parse(self, cur: _Cursor) -> None:
        magic = bytes(cur.buf[:4])
        if magic != GGUF_MAGIC:
            raise GGUFError(f"not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
        cur.take(4)
        version = cur.scalar("I")
        if version & 0xFFFF == 0:
            raise GGUFError(f"version field {version:#x} looks byte-swapped: big-endian GGUF "
                            "files are not supported")
        if version not in (2, 3):
            raise GGUFError(f"GGUF version {version} is not supported (2 and 3 are)")
        self.version = version
        n_tensors, n_kv = cur.scalar("q"), cur.scalar("q")
        # every KV takes >= 13 bytes (8 key length + 4 type + 1 value); every tensor info >= 32
        left = cur.size - cur.pos
        if not 0 <= n_kv <= left // 13 or not 0 <= n_tensors <= left // 32:
            raise GGUFError(f"header claims {n_tensors} tensors and {n_kv} metadata keys, "
                            f"which cannot fit in {cur.size} bytes")

        self.kv: dict[str, GGUFValue] = {}
        for i in range(n_kv):
            self._where = f"metadata key #{i}"
            key = cur.string(self._where)
            self._where = f"metadata key #{i} {key!r}"
            if key in self.kv:
                raise GGUFError(f"duplicate metadata key {key!r}")
            self.kv[key] = _read_value(cur, cur.scalar("i"), f"metadata {key!r}")
        self.metadata: dict[str, Any] = {k: v.value for k, v in self.kv.items()}

        align = self.kv.get("general.alignment")
        if align is not None and (align.type != ValueType.UINT32 or align.value <= 0
                                  or align.value & (align.value - 1)):
            raise GGUFError(f"general.alignment must be a UINT32 power of two, got "
                            f"{align.type.name} {align.value!r}")

        infos = []
        for i in range(n_tensors):
            self._where = f"tensor info #{i}"
            name = cur.string(self._where)
            self._where = f"tensor info #{i} {name!r}"
            n_dims = cur.scalar("I")
            if not 1 <= n_dims <= MAX_DIMS:
                raise GGUFError(f"tensor {name!r}: {n_dims} dimensions (1..{MAX_DIMS} allowed)")
            ne = [cur.scalar("q") for _ in range(n_dims)]
            type_id, offset = cur.scalar("i"), cur.scalar("Q")
            infos.append((name, ne, type_id, offset))

        self._where = "the tensor data"
        data_start = -(-cur.pos // self.alignment) * self.alignment
        self.data_offset = data_start
        self.tensors: dict[str, TensorInfo] = {}
        for name, ne, type_id, offset in infos:
            self.tensors[name] = self._tensor(name, ne, type_id, offset, data_start, cur.size)

    def _tensor(self, name, ne, type_id, offset, data_start, size) -> TensorInfo:
        if name in self.tensors:
            raise GGUFError(f"duplicate tensor name {name!r}")
        if type_id not in GGML_TYPES:
            raise GGUFError(f"tensor {name!r} has unknown ggml type id {type_id}")
        tname, block, tsize = GGML_TYPES[type_id]
        if any(d < 0 for d in ne):
            raise GGUFError(f"tensor {name!r} has a negative dimension {ne}")
        if ne[0] % block:
            raise GGUFError(f"tensor {name!r} ({tname}) has row length {ne[0]}, not a multiple "
                            f"of the block size {block}")
        if offset % self.alignment:
            raise GGUFError(f"tensor {name!r} offset {offset} is not a multiple of the "
                            f"alignment {self.alignment}")
        nbytes = tensor_nbytes(type_id, tuple(reversed(ne)))
        start = data_start + offset
        if start + nbytes > size:
            raise GGUFError(f"tensor {name!r} ({tname}, ne={ne}) needs bytes {start}..{start + nbytes}"
                            f" but the file has {size}: truncated")
        shape = tuple(int(d) for d in reversed(ne))
        data = np.frombuffer(self._map, dtype=np.uint8, count=nbytes, offset=start)
        return TensorInfo(name=name, ggml_type=type_id, type_name=tname, shape=shape,
                          data=data, offset=start)

    # -- convenience ---------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def alignment(self) -> int:
        align = self.kv.get("general.alignment")
        return int(align.value) if align is not None else DEFAULT_ALIGNMENT

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise GGUFError(f"{self.path}: no tensor {name!r} ({len(self.tensors)} tensors, "
                            f"e.g. {', '.join(list(self.tensors)[:3])})") from None

    def qtensor(self, name: str):
        """The tensor as a :class:`~quantlab.QTensor` viewing the file's bytes."""
        from ..formats.ggml import by_type
        info = self._info(name)
        return by_type(info.ggml_type).from_bytes(info.data, info.shape)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor decoded to float32 through quantlab's format classes."""
        return self.qtensor(name).dequantize()

    def release(self, name: str) -> None:
        """Let the OS drop the tensor's pages from memory (they are re-read if touched again).

        Reading a memory-mapped tensor keeps its pages resident; a tool that walks a large
        model once (like the quantizer) calls this after each tensor so that resident memory
        stays near one tensor instead of growing to the whole file (llama.cpp unmaps too).
        """
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is None:
            return
        info = self._info(name)
        page = mmap.PAGESIZE
        start = -(-info.offset // page) * page                 # whole pages inside the tensor
        end = (info.offset + info.nbytes) // page * page
        if end > start:
            self._mmap.madvise(advice, start, end - start)

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.tensors)} tensors)"
