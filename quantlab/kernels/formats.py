"""Glue between the non-ggml formats and their compiled dequantizer (``_dequant_tables``).

Each function takes the format and a QTensor exactly as that format's ``_dequantize`` gets
them and returns the float32 array — or ``None`` when the kernels are off
(``QUANTLAB_PURE_NUMPY=1`` or not compiled), in which case the format runs its NumPy code,
the documented twin.  The formats call them in one line::

    if (fast := kernels.formats.minifloat(self, qt)) is not None:
        return fast
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import backend

__all__ = ["minifloat", "mx", "nvfp4", "bnb4", "integer", "ggml"]


@lru_cache(maxsize=None)
def _table(fmt, bits: int) -> np.ndarray:
    """Every code's value, decoded once by the format itself (float32, NaN bits kept)."""
    with np.errstate(all="ignore"):
        return np.ascontiguousarray(fmt.decode(np.arange(1 << bits, dtype=np.uint8)), np.float32)


def _lookup(codes, bits, table, n, scale=None, group=1, divide=False, high_first=False):
    k = backend.kernel("_dequant_tables")
    if k is None:
        return None
    out = np.empty(n, np.float32)
    scale = None if scale is None else np.ascontiguousarray(scale, np.float32).reshape(-1)
    k.lookup(np.ascontiguousarray(codes, np.uint8).reshape(-1), bits, high_first, table, scale,
             int(group), divide, out, backend.n_threads(n))
    return out


def minifloat(fmt, qt):
    """FP8 / FP4 element formats: ``code value / q_scale`` (per tensor or per row)."""
    n = qt.size
    s = qt.meta.get("q_scale")
    group = n if s is None or np.ndim(s) == 0 else (qt.shape[-1] if qt.shape else 1)
    out = _lookup(qt.data, fmt.code_bits, _table(fmt, fmt.code_bits), n, s, group, divide=True)
    return None if out is None else out.reshape(qt.shape)


def mx(fmt, qt):
    """OCP MX: ``code value · 2^(e − 127)`` per block of 32."""
    from ..formats.minifloat import e8m0_decode
    bits = fmt.element.code_bits
    X = e8m0_decode(qt.meta["scale_e8m0"])
    out = _lookup(qt.data, bits, _table(fmt.element, bits), qt.size, X, fmt.block_size)
    return None if out is None else out.reshape(qt.shape)


def nvfp4(fmt, qt, total):
    """NVFP4: ``code value · total`` per block of 16, ``total = g·s_b`` computed by the format."""
    from ..formats.minifloat import fp4_e2m1
    out = _lookup(qt.data, 4, _table(fp4_e2m1, 4), qt.size, total, fmt.block_size)
    return None if out is None else out.reshape(qt.shape)


def bnb4(fmt, qt, absmax, table):
    """NF4 / bitsandbytes FP4: ``table[index] · absmax`` per block, high nibble first."""
    table = np.ascontiguousarray(table, np.float32)
    out = _lookup(qt.data, 4, table, qt.size, absmax, qt.options["blocksize"], high_first=True)
    return None if out is None else out.reshape(qt.shape)


def integer(fmt, qt):
    """INTn affine: ``float32(s · (q − z))`` with the product in float64."""
    k = backend.kernel("_dequant_tables")
    if k is None:
        return None
    s, z = fmt.params(qt)
    n = qt.size
    gran = qt.options["granularity"]
    group = n if gran == "tensor" else (qt.shape[-1] if gran == "channel" else qt.options["group_size"])
    out = np.empty(n, np.float32)
    zero = None if qt.options["symmetric"] else np.ascontiguousarray(z, np.int64).reshape(-1)
    k.affine(np.ascontiguousarray(qt.data, np.uint8).reshape(-1), fmt.bits, qt.options["symmetric"],
             np.ascontiguousarray(s, np.float64).reshape(-1), zero, int(group), out,
             backend.n_threads(n))
    return out.reshape(qt.shape)


def ggml(fmt, blocks):
    """ggml block types: ``_dequant.dequantize`` on (n_blocks, type_size) bytes (NumPy only)."""
    k = backend.kernel("_dequant")
    if k is None or not isinstance(blocks, np.ndarray) or fmt.ggml_type not in k.GGML_TYPES:
        return None
    out = np.empty((blocks.shape[0], fmt.block_size), np.float32)
    k.dequantize(fmt.ggml_type, np.ascontiguousarray(blocks, np.uint8), out, backend.n_threads(out.size))
    return out
