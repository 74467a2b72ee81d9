"""Write GGUF v3 files atomically (spec ``ggml-quants.md`` §9).

    write_gguf("out.gguf",
               {"general.architecture": "llama", "general.file_type": GGUFValue(ValueType.UINT32, 15)},
               [TensorSpec("blk.0.attn_q.weight", "Q4_K", (576, 576)), ...],
               data)                 # one uint8 array (or an iterator of chunks) per tensor, in order

The layout written is exactly ggml's ``gguf_write_to_file``::

    "GGUF" | u32 3 | i64 n_tensors | i64 n_kv | KV pairs (in the order given) | tensor infos
    zero padding to the alignment  -> data section starts here
    tensor k at offset_k = offset_{k-1} + pad(nbytes_{k-1}); each tensor followed by zero padding

``n_dims`` is written as ggml's ``ggml_n_dims``: the number of dimensions once trailing 1s
of ``ne`` (leading 1s of the NumPy shape) are dropped, at least 1.

Because every tensor's size follows from its type and shape, the header is written first
and the data then streamed tensor by tensor: a quantizer can hand over each tensor (or
each chunk of rows) as soon as it is ready, and nothing else is held in memory.

Atomic: the file is written to a temporary file in the destination folder, flushed, fsynced
and renamed over the destination only when everything succeeded.  On any error (including
Ctrl-C) the temporary file is removed and an existing destination is left untouched.
"""
from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import GGUFError
from .gguf import (DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, MAX_NAME,
                   SCALAR_DTYPES, GGUFValue, ValueType, ggml_type_id, tensor_nbytes)

__all__ = ["TensorSpec", "write_gguf", "atomic_output", "infer_value", "header_bytes"]


@dataclass(frozen=True)
class TensorSpec:
    """What the header says about one output tensor."""
    name: str
    type_name: str              # ggml type, e.g. "Q4_K"
    shape: tuple[int, ...]      # NumPy order: last axis = row = GGUF ne[0]

    @property
    def ggml_type(self) -> int:
        return ggml_type_id(self.type_name)

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.type_name, self.shape)


# ---------------------------------------------------------------------------- values
def infer_value(value: Any) -> GGUFValue:
    """A GGUFValue for a plain Python value, as gguf-py's ``GGUFValueType.get_type`` does.

    str -> STRING, bool -> BOOL, int -> INT32 (INT64 beyond its range), float -> FLOAT32,
    list -> ARRAY of the first item's type.  Pass a :class:`GGUFValue` for any other type.
    """
    if isinstance(value, GGUFValue):
        return value
    if isinstance(value, str):
        return GGUFValue(ValueType.STRING, value)
    if isinstance(value, (bool, np.bool_)):
        return GGUFValue(ValueType.BOOL, bool(value))
    if isinstance(value, (int, np.integer)):
        value = int(value)
        return GGUFValue(ValueType.INT32 if -2**31 <= value < 2**31 else ValueType.INT64, value)
    if isinstance(value, (float, np.floating)):
        return GGUFValue(ValueType.FLOAT32, float(value))
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            raise GGUFError("cannot infer the item type of an empty list; pass a GGUFValue")
        return GGUFValue(ValueType.ARRAY, items, infer_value(items[0]).type)
    raise GGUFError(f"cannot store a {type(value).__name__} as GGUF metadata "
                    "(str, bool, int, float, list or GGUFValue)")


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _scalars(vtype: ValueType, values: list, key: str) -> bytes:
    dt = SCALAR_DTYPES[vtype]
    if vtype == ValueType.BOOL:
        return np.asarray([bool(v) for v in values], dtype=np.uint8).tobytes()
    if dt.kind in "iu":
        info = np.iinfo(dt)
        bad = [v for v in values if not isinstance(v, (int, np.integer))
               or isinstance(v, bool) or not info.min <= int(v) <= info.max]
        if bad:
            raise GGUFError(f"metadata {key!r}: {bad[0]!r} is not a {vtype.name} "
                            f"(integer in {info.min}..{info.max})")
        return np.asarray([int(v) for v in values], dtype=dt).tobytes()
    try:
        return np.asarray(values, dtype=np.float64).astype(dt).tobytes()
    except (TypeError, ValueError):
        raise GGUFError(f"metadata {key!r}: values are not {vtype.name} numbers") from None


def _value(key: str, v: GGUFValue) -> bytes:
    if v.type not in set(ValueType):
        raise GGUFError(f"metadata {key!r}: unknown value type {v.type!r}")
    vtype = ValueType(v.type)
    out = struct.pack("<i", vtype)
    if vtype == ValueType.STRING:
        if not isinstance(v.value, str):
            raise GGUFError(f"metadata {key!r}: STRING value must be a str, got {v.value!r}")
        return out + _string(v.value)
    if vtype != ValueType.ARRAY:
        return out + _scalars(vtype, [v.value], key)
    if v.item_type not in set(ValueType) or v.item_type == ValueType.ARRAY:
        raise GGUFError(f"metadata {key!r}: arrays need a non-array item_type")
    itype, items = ValueType(v.item_type), list(v.value)
    out += struct.pack("<iQ", itype, len(items))
    if itype == ValueType.STRING:
        if not all(isinstance(s, str) for s in items):
            raise GGUFError(f"metadata {key!r}: array of STRING holds a non-string")
        return out + b"".join(_string(s) for s in items)
    return out + _scalars(itype, items, key)


def _n_dims(shape: tuple[int, ...]) -> int:
    """``ggml_n_dims``: dimensions once trailing 1s of ``ne`` are dropped (at least 1)."""
    ne = list(reversed(shape))
    while len(ne) > 1 and ne[-1] == 1:
        ne.pop()
    return len(ne)


def _check_tensors(tensors: Sequence[TensorSpec]) -> None:
    seen = set()
    for t in tensors:
        if not isinstance(t.name, str) or not t.name or len(t.name.encode("utf-8")) >= MAX_NAME:
            raise GGUFError(f"tensor name {t.name!r} must be 1..{MAX_NAME - 1} bytes (GGML_MAX_NAME)")
        if t.name in seen:
            raise GGUFError(f"tensor {t.name!r} appears twice")
        seen.add(t.name)
        if not 1 <= len(t.shape) <= MAX_DIMS or any(int(d) < 0 for d in t.shape):
            raise GGUFError(f"tensor {t.name!r}: shape {t.shape} must have 1..{MAX_DIMS} "
                            "non-negative dimensions")
        try:
            t.nbytes
        except GGUFError as exc:
            raise GGUFError(f"tensor {t.name!r}: {exc}") from None


def header_bytes(metadata: Mapping[str, Any], tensors: Sequence[TensorSpec]) -> tuple[bytes, int]:
    """The header up to the data section (padding included) and the alignment used."""
    kvs = {k: infer_value(v) for k, v in metadata.items()}
    align_v = kvs.get("general.alignment")
    alignment = DEFAULT_ALIGNMENT
    if align_v is not None:
        if (align_v.type != ValueType.UINT32 or not isinstance(align_v.value, int)
                or align_v.value <= 0 or align_v.value & (align_v.value - 1)):
            raise GGUFError("general.alignment must be a UINT32 power of two, got "
                            f"{align_v.type.name} {align_v.value!r}")
        alignment = align_v.value
    _check_tensors(tensors)
    parts = [GGUF_MAGIC, struct.pack("<Iqq", 3, len(tensors), len(kvs))]
    for key, v in kvs.items():
        if not isinstance(key, str) or not key:
            raise GGUFError(f"metadata key {key!r} must be a non-empty string")
        parts += [_string(key), _value(key, v)]
    offset = 0
    for t in tensors:
        shape = tuple(int(d) for d in t.shape)
        nd = _n_dims(shape)
        ne = list(reversed(shape))[:nd]
        parts += [_string(t.name), struct.pack(f"<I{nd}qiQ", nd, *ne, t.ggml_type, offset)]
        offset += _pad(t.nbytes, alignment)
    head = b"".join(parts)
    return head + bytes(_pad(len(head), alignment) - len(head)), alignment


def _pad(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


# ---------------------------------------------------------------------------- atomic file
class atomic_output:
    """Context manager: a binary file object that becomes ``path`` only on success.

    ``inputs`` are files that must not be overwritten (output == input is refused before
    anything is written).
    """

    def __init__(self, path, inputs: Iterable = ()):
        self.path = Path(path)
        for src in inputs:
            src = Path(src)
            if self.path.resolve() == src.resolve() or (
                    self.path.exists() and src.exists() and os.path.samefile(self.path, src)):
                raise GGUFError(f"output {self.path} is the input file; choose another output path")
        if self.path.is_dir():
            raise GGUFError(f"output {self.path} is a directory")
        if not self.path.parent.is_dir():
            raise GGUFError(f"output folder {self.path.parent} does not exist")

    def __enter__(self):
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".part")
        self._tmp = Path(tmp)
        self.file = os.fdopen(fd, "wb")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> bool:
        done = False
        try:
            if exc_type is None:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
                os.replace(self._tmp, self.path)
                done = True
                _fsync_dir(self.path.parent)
        finally:
            if not done:
                self.file.close()
                self._tmp.unlink(missing_ok=True)
        return False


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:       # e.g. Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- writer
def _chunks(item) -> Iterable[np.ndarray]:
    """A tensor's data: one array, or an iterable of arrays (chunks of rows)."""
    if isinstance(item, (np.ndarray, bytes, bytearray, memoryview)):
        yield np.frombuffer(item, dtype=np.uint8) if not isinstance(item, np.ndarray) else item
    else:
        yield from item


def write_gguf(path, metadata: Mapping[str, Any], tensors: Sequence[TensorSpec],
               data: Iterable, *, inputs: Iterable = ()) -> int:
    """Write a GGUF v3 file atomically; return its size in bytes.

    ``metadata`` maps keys to :class:`GGUFValue` or plain values (see :func:`infer_value`),
    written in iteration order.  ``data`` yields, for each tensor of ``tensors`` in order,
    its bytes: a uint8-viewable array or an iterable of such chunks.  Sizes are checked
    against the type and shape.  ``inputs`` are paths the output must not overwrite.
    """
    tensors = list(tensors)
    head, alignment = header_bytes(metadata, tensors)
    with atomic_output(path, inputs) as f:
        f.write(head)
        written = len(head)
        items = iter(data)
        for t in tensors:
            try:
                item = next(items)
            except StopIteration:
                raise GGUFError(f"no data given for tensor {t.name!r}") from None
            n = 0
            for chunk in _chunks(item):
                chunk = np.ascontiguousarray(chunk)
                raw = chunk.reshape(-1).view(np.uint8)
                n += raw.nbytes
                if n > t.nbytes:
                    raise GGUFError(f"tensor {t.name!r}: more than {t.nbytes} bytes given "
                                    f"({t.type_name}, shape {t.shape})")
                f.write(memoryview(raw))
            if n != t.nbytes:
                raise GGUFError(f"tensor {t.name!r}: {n} bytes given, {t.type_name} of shape "
                                f"{t.shape} needs {t.nbytes}")
            pad = _pad(n, alignment) - n
            f.write(bytes(pad))
            written += n + pad
        if next(items, None) is not None:
            raise GGUFError(f"more data items than the {len(tensors)} tensors declared")
    return written

