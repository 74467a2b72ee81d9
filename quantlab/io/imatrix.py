"""Importance-matrix files of llama.cpp (spec ``ggml-quants.md`` §7, ``algorithms.md`` §13).

    save_imatrix("m.imatrix.gguf", {"blk.0.attn_q.weight": (sum2, count)}, dataset="wiki", chunks=10)
    imp = load_imatrix("m.imatrix.gguf")   # {"blk.0.attn_q.weight": importance (n_in,) float32}
    im = read_imatrix(path)                # the raw sums, counts, datasets and chunk numbers

For a weight ``W`` with ``n_in`` input columns, calibration accumulates over every token row
``a`` that multiplies it ``sum2[j] += a_j²`` and ``count += 1``; the importance used by the
quantizers is the mean squared activation

    importance[j] = sum2[j] / count          (float32 division; count 0 -> all 1.0)

**GGUF imatrix** (``llama-imatrix`` default): KVs ``general.type = "imatrix"``,
``imatrix.datasets`` (array of strings), ``imatrix.chunk_count``, ``imatrix.chunk_size``
(UINT32); per weight, tensors sorted by name: ``<W>.in_sum2`` F32 ``ne = [n_in, n_mat]`` and
``<W>.counts`` F32 ``ne = [1, n_mat]`` (``n_mat`` = number of experts, 1 for dense weights).
Newer files may also hold ``<W>.in_sum`` (sum of activations); it is read and ignored.

**Legacy ``.dat``**: i32 n_entries; per entry i32 name length, name, i32 ncall, i32 nval,
nval float32 stored as ``mean · ncall``; then optionally i32 last chunk, i32 length + dataset
name.  Loading divides by ``ncall`` (float32) when ``ncall > 0``, as ``llama-quantize`` does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GGUFError
from .gguf import GGUF_MAGIC, GGUFFile, GGUFValue, ValueType
from .gguf_write import TensorSpec, write_gguf

__all__ = ["IMatrix", "read_imatrix", "load_imatrix", "save_imatrix", "importance"]


@dataclass
class IMatrix:
    """The contents of an imatrix file: per weight the raw sums of squares and token counts."""
    sums: dict[str, np.ndarray]          # name -> (n_mat, n_in) float32, sum of a_j² over tokens
    counts: dict[str, np.ndarray]        # name -> (n_mat,) float32 token counts (legacy: ncall)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False                 # read from a .dat file (sums are mean·ncall)

    def importance(self) -> dict[str, np.ndarray]:
        """``{name: (n_mat·n_in,) float32}``: what llama-quantize passes to the quantizers."""
        return {name: importance(self.sums[name], self.counts[name], legacy=self.legacy)
                for name in self.sums}


def importance(sums: np.ndarray, counts: np.ndarray, *, legacy: bool = False) -> np.ndarray:
    """Mean squared activation per column, flattened expert-major, as ``llama-quantize``.

    GGUF files: ``sums / count`` per matrix in float32; a matrix with count 0 gets 1.0.
    Legacy files: ``values / ncall`` when ``ncall > 0``, else the values unchanged.
    """
    sums = np.asarray(sums, dtype=np.float32)            # (n_mat, n_in)
    counts = np.asarray(counts, dtype=np.float32)        # (n_mat,)
    if legacy:
        ncall = counts[0]
        return (sums / ncall if ncall > 0 else sums).reshape(-1)
    safe = np.where(counts > 0, counts, np.float32(1))[:, None]
    return np.where(counts[:, None] > 0, sums / safe, np.float32(1)).astype(np.float32).reshape(-1)


# ---------------------------------------------------------------------------- reading
def read_imatrix(path) -> IMatrix:
    """Read a GGUF or legacy ``.dat`` imatrix file (detected by the GGUF magic)."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such imatrix file")
    with open(path, "rb") as f:
        magic = f.read(4)
    im = _read_gguf(path) if magic == GGUF_MAGIC else _read_legacy(path)
    if not im.sums:
        raise GGUFError(f"{path}: no imatrix entries (expected <weight>.in_sum2 / <weight>.counts "
                        "tensors, or a legacy .dat file)")
    for name, s in im.sums.items():
        bad = ~np.isfinite(s) | (s < 0)
        if bad.any():
            raise GGUFError(f"{path}: imatrix entry {name!r} has {int(bad.sum())} non-finite or "
                            f"negative sums (first {s.reshape(-1)[np.argmax(bad.reshape(-1))]!r})")
    return im


def load_imatrix(path) -> dict[str, np.ndarray]:
    """``{tensor name: importance (n_in·n_mat,) float32}`` exactly as llama-quantize computes it."""
    return read_imatrix(path).importance()


def _read_gguf(path: Path) -> IMatrix:
    g = GGUFFile(path)
    gtype = g.metadata.get("general.type")
    if gtype is not None and gtype != "imatrix":
        raise GGUFError(f"{path}: general.type is {gtype!r}, not 'imatrix' (is this a model file?)")
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, t in g.tensors.items():
        for suffix in (".in_sum2", ".counts", ".in_sum"):
            if name.endswith(suffix):
                if t.type_name != "F32":
                    raise GGUFError(f"{path}: imatrix tensor {name!r} is {t.type_name}, expected F32")
                pairs.setdefault(name[:-len(suffix)], {})[suffix] = t.data.view("<f4")
                break
    im = IMatrix({}, {}, datasets=list(g.metadata.get("imatrix.datasets", [])),
                 chunk_count=int(g.metadata.get("imatrix.chunk_count", 0)),
                 chunk_size=int(g.metadata.get("imatrix.chunk_size", 0)))
    for weight, p in pairs.items():
        if ".in_sum2" not in p or ".counts" not in p:
            raise GGUFError(f"{path}: imatrix entry {weight!r} needs both .in_sum2 and .counts")
        sums, counts = p[".in_sum2"], p[".counts"]
        if counts.size == 0 or sums.size % counts.size:
            raise GGUFError(f"{path}: imatrix entry {weight!r}: {sums.size} sums do not split "
                            f"into {counts.size} matrices")
        im.sums[weight] = np.array(sums.reshape(counts.size, -1))     # copy: file may close
        im.counts[weight] = np.array(counts)
    return im


def _read_legacy(path: Path) -> IMatrix:
    raw = path.read_bytes()
    pos = 0

    def take(fmt: str, what: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(raw):
            raise GGUFError(f"{path}: legacy imatrix truncated at byte {pos} reading {what}")
        out = struct.unpack_from(fmt, raw, pos)
        pos += n
        return out

    (n_entries,) = take("<i", "the entry count")
    if not 1 <= n_entries <= len(raw) // 12:
        raise GGUFError(f"{path}: not an imatrix file (neither GGUF nor a legacy .dat with a "
                        f"plausible entry count; read {n_entries})")
    im = IMatrix({}, {}, legacy=True)
    for i in range(n_entries):
        (nlen,) = take("<i", f"entry #{i} name length")
        if not 0 < nlen <= len(raw) - pos:
            raise GGUFError(f"{path}: legacy imatrix entry #{i} has a bad name length {nlen}")
        try:
            name = raw[pos:pos + nlen].decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{path}: legacy imatrix entry #{i} name is not UTF-8") from None
        pos += nlen
        ncall, nval = take("<ii", f"entry {name!r} counts")
        if not 0 < nval <= (len(raw) - pos) // 4:
            raise GGUFError(f"{path}: legacy imatrix entry {name!r} claims {nval} values, "
                            "which do not fit in the file")
        vals = np.frombuffer(raw, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        im.sums[name] = vals.reshape(1, -1)
        im.counts[name] = np.array([ncall], dtype=np.float32)
    if pos + 4 <= len(raw):
        (im.chunk_count,) = take("<i", "the chunk count")
        if pos + 4 <= len(raw):
            (dlen,) = take("<i", "the dataset name length")
            if 0 <= dlen <= len(raw) - pos:
                im.datasets = [raw[pos:pos + dlen].decode("utf-8", errors="replace")]
    return im


# ---------------------------------------------------------------------------- writing
def save_imatrix(path, entries: dict, *, dataset: str | list[str] = (), chunks: int = 0,
                 chunk_size: int = 512) -> Path:
    """Write a GGUF imatrix file as ``llama-imatrix`` does (atomically).

    ``entries`` maps a weight name to ``(sum2, count)``: ``sum2`` the per-column sums of
    squared activations, shape ``(n_in,)`` or ``(n_mat, n_in)`` for expert tensors, and
    ``count`` the number of token rows summed (a number, or ``(n_mat,)``).  ``dataset``
    names the calibration text(s) (none: ``""``); ``chunks`` is how many chunks of ``chunk_size`` tokens
    were processed.  Entries are written sorted by name, like llama.cpp.
    """
    datasets = ([dataset] if dataset else []) if isinstance(dataset, str) else list(dataset)
    tensors, data = [], []
    for name in sorted(entries):
        sum2, count = entries[name]
        sum2 = np.asarray(sum2)
        if sum2.dtype.kind not in "fiu" or sum2.ndim not in (1, 2) or sum2.size == 0:
            raise GGUFError(f"imatrix entry {name!r}: sum2 must be a non-empty numeric array of "
                            f"shape (n_in,) or (n_mat, n_in), got {sum2.dtype} {sum2.shape}")
        sum2 = sum2.astype(np.float32).reshape(-1, sum2.shape[-1])          # (n_mat, n_in)
        count = np.asarray(count, dtype=np.float64).reshape(-1)
        if count.shape != (sum2.shape[0],):
            raise GGUFError(f"imatrix entry {name!r}: {count.size} counts for {sum2.shape[0]} "
                            "matrices")
        if not (np.all(np.isfinite(sum2)) and np.all(sum2 >= 0) and np.all(count >= 0)):
            raise GGUFError(f"imatrix entry {name!r}: sums and counts must be finite and >= 0")
        tensors += [TensorSpec(f"{name}.in_sum2", "F32", sum2.shape),
                    TensorSpec(f"{name}.counts", "F32", (sum2.shape[0], 1))]
        data += [sum2, count.astype(np.float32)]
    if not tensors:
        raise GGUFError("save_imatrix: no entries to write")
    metadata = {
        "general.type": GGUFValue(ValueType.STRING, "imatrix"),
        "imatrix.datasets": GGUFValue(ValueType.ARRAY, datasets, ValueType.STRING),
        "imatrix.chunk_count": GGUFValue(ValueType.UINT32, int(chunks)),
        "imatrix.chunk_size": GGUFValue(ValueType.UINT32, int(chunk_size)),
    }
    write_gguf(path, metadata, tensors, data)
    return Path(path)
