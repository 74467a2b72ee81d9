"""GGMLFormat: what every ggml block type shares (spec ``ggml-quants.md`` §0, §1).

A ggml tensor row of ``n`` float32 values is cut into blocks of ``block_size`` elements,
each stored in ``type_size`` bytes.  A block type only writes two functions on rows/blocks:

* ``quantize_rows(x, imatrix)``: ``x`` (rows, n) float32 -> (rows, n // block_size * type_size) uint8
* ``dequantize_blocks(b)``:      ``b`` (n_blocks, type_size) uint8 -> (n_blocks, block_size) float32

and the base class does the reshaping, the checks and the storage accounting.
``bits per weight = 8 · type_size / block_size``.
"""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from ... import backend
from ...errors import ShapeError, InputError
from ...kernels import formats as kernel_formats
from ..base import Format, QTensor

__all__ = ["GGMLFormat"]


class GGMLFormat(Format):
    family = "ggml"
    oracle = "ggml (golden bytes)"
    ggml_type: int = -1          # enum ggml_type id, as stored in GGUF tensor infos
    ggml_name: str = ""          # ggml's spelling, e.g. "Q4_K"
    type_size: int = 0           # bytes per block
    options = {"imatrix": None}
    layout: tuple[tuple[str, int, str], ...] = ()
    """The block as the sum of its parts: ``(field, bytes, meaning)``; sizes sum to ``type_size``."""

    def bits_per_weight(self, **opts) -> float:
        return 8.0 * self.type_size / self.block_size

    def row_bytes(self, n: int) -> int:
        """Bytes of one row of ``n`` elements."""
        self._check_row_length(n)
        return n // self.block_size * self.type_size

    def _check_row_length(self, n: int) -> None:
        if n % self.block_size:
            raise ShapeError(f"{self.ggml_name}: row length {n} is not a multiple of the block "
                             f"size {self.block_size} (ggml quantizes whole blocks along the last axis)")

    # -- Format API ---------------------------------------------------------------------
    def _quantize(self, x: np.ndarray, imatrix=None) -> QTensor:
        shape = x.shape
        n = shape[-1]
        self._check_row_length(n)
        rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, n)
        if imatrix is not None:
            imatrix = np.asarray(imatrix)
            if imatrix.dtype.kind != "f" or imatrix.shape != (n,):
                raise ShapeError(f"{self.ggml_name}: imatrix must be a float array of shape ({n},) "
                                 f"(one weight per column), got {imatrix.dtype} {imatrix.shape}")
            if not np.all(np.isfinite(imatrix)) or np.any(imatrix < 0):
                raise InputError(f"{self.ggml_name}: imatrix values must be finite and >= 0")
            imatrix = imatrix.astype(np.float32)
        data = self.quantize_rows(rows, imatrix)
        return QTensor(self, shape, data.reshape(*shape[:-1], -1), {}, {"imatrix": imatrix is not None})

    def _dequantize(self, qt: QTensor) -> np.ndarray:
        blocks = backend.xp(qt.data).ascontiguousarray(qt.data).reshape(-1, self.type_size)
        if (fast := kernel_formats.ggml(self, blocks)) is not None:   # compiled twin, same bits
            return fast.reshape(qt.shape)
        return self.dequantize_blocks(blocks).reshape(qt.shape)

    def from_bytes(self, raw, shape) -> QTensor:
        """Wrap raw ggml bytes (e.g. a GGUF tensor) of a tensor of ``shape`` (row-major, last axis = row)."""
        shape = tuple(int(s) for s in shape)
        raw = np.asarray(raw).view(np.uint8)
        expected = self.row_bytes(shape[-1]) * (int(np.prod(shape[:-1])) if len(shape) > 1 else 1)
        if raw.size != expected:
            raise ShapeError(f"{self.ggml_name}: {raw.size} bytes do not hold a tensor of shape "
                             f"{shape} (needs {expected})")
        return QTensor(self, shape, raw.reshape(*shape[:-1], -1), {}, {"imatrix": None})

    # -- what each block type writes --------------------------------------------------------
    @abstractmethod
    def quantize_rows(self, x: np.ndarray, imatrix: np.ndarray | None) -> np.ndarray:
        """(rows, n) float32 [+ (n,) importance] -> (rows, row_bytes) uint8, ggml's bytes."""

    @abstractmethod
    def block_fields(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Decode the fields of ONE block (``type_size`` bytes) into named values.

        Keys follow :attr:`layout` (e.g. ``d``, ``dmin``, ``scales``, ``mins``, ``qh``, ``qs``)
        plus decoded extras (``q``: the integer level of every element).  The block
        inspector (:func:`quantlab.inspect`) shows these beside the raw bytes.
        """

    @abstractmethod
    def dequantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """(n_blocks, type_size) uint8 -> (n_blocks, block_size) float32, ggml's ``to_float``."""
