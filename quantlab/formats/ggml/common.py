"""Helpers shared by ggml's block types: C casts, nibble and bit packing, fp16 fields, checks.

Small functions every block format needs and that must behave exactly like ggml's C:

* :func:`c_int` — float -> integer conversion of the x86-64 reference build (``cvttss2si``);
* :func:`first_min_max` — ggml's strict scan (the first of equal
  values wins; an all-zero block keeps ggml's start value ``+0``);
* :func:`inverse` — ``d ? 1/d : 0``;
* :func:`pack_nibbles` / :func:`pack_qh` — the 32-element legacy layouts (also used by IQ4
  and MXFP4);
* :func:`check_scales` — llama-quantize refuses a tensor whose fp16 scales overflow.
"""
from __future__ import annotations

import numpy as np

from ... import backend
from ...errors import FormatError
from .numerics import f32

__all__ = ["c_int", "pack_nibbles", "unpack_nibbles", "pack_qh", "unpack_qh", "u16_bytes",
           "first_min_max", "inverse", "refuse_overflow", "check_scales"]


def c_int(v: np.ndarray, bits: int = 32) -> np.ndarray:
    """C float -> integer conversion as the x86-64 reference build does it (``cvttss2si``).

    Truncate toward zero; NaN and values outside int32 give ``INT32_MIN`` ("integer
    indefinite").  The result is then stored into a ``bits``-wide signed integer
    (two's-complement wrap), as C does for ``(int8_t)`` casts.  Only blocks whose scale
    reciprocal overflows (float32 subnormal input) ever reach the odd cases.
    """
    v = np.asarray(v, dtype=np.float64)
    ok = np.abs(v) < 2.0**31                     # False for NaN and ±inf
    i = np.where(ok, np.trunc(np.where(ok, v, 0.0)), -2.0**31).astype(np.int64)
    half_range = 1 << (bits - 1)
    return (i + half_range) % (1 << bits) - half_range


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(nb, 32) levels -> (nb, 16) bytes: ``qs[j] = (q[j] & 15) | (q[j+16] & 15) << 4``."""
    q = np.asarray(q).astype(np.int64) & 0xFF
    return ((q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)).astype(np.uint8)


def unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    """(nb, 16) bytes -> (nb, 32) nibbles in element order (low nibbles, then high nibbles)."""
    return backend.xp(qs).concatenate([qs & 15, qs >> 4], axis=-1).astype(np.uint8)


def pack_qh(q: np.ndarray) -> np.ndarray:
    """(nb, 32) 5-bit levels -> (nb, 4) bytes: uint32 LE whose bit e is bit 4 of q[e]."""
    hb = (np.asarray(q).astype(np.int64) >> 4) & 1                      # (nb, 32)
    return np.packbits(hb.astype(np.uint8), axis=-1, bitorder="little")


def unpack_qh(qh: np.ndarray) -> np.ndarray:
    """(nb, 4) bytes -> (nb, 32) high bits (0/1), element order."""
    # bit k of byte j is element 8j + k (little bit order); shifts work on NumPy and CuPy
    bits = (qh[..., :, None] >> backend.xp(qh).arange(8, dtype=np.uint8)) & 1       # (nb, 4, 8)
    return bits.reshape(*qh.shape[:-1], 8 * qh.shape[-1]).astype(np.uint8)


def u16_bytes(bits: np.ndarray) -> np.ndarray:
    """(nb,) uint16 -> (nb, 2) little-endian bytes."""
    return np.asarray(bits, dtype="<u2").reshape(-1, 1).view(np.uint8)


def first_min_max(xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lo, hi`` by ggml's strict scan (the first of equal values wins — matters for ±0)."""
    lo = np.take_along_axis(xb, np.argmin(xb, axis=1)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(xb, np.argmax(xb, axis=1)[:, None], axis=1)[:, 0]
    return lo, hi


def inverse(d: np.ndarray) -> np.ndarray:
    """``id = d ? 1/d : 0`` (float32; a subnormal ``d`` gives ``inf``, as in C)."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d != 0, f32(1) / np.where(d != 0, d, f32(1)), f32(0)).astype(f32)


def refuse_overflow(name: str, field: str, bad: np.ndarray, limit: str = "fp16 max 65504") -> None:
    """Raise if a stored field came out inf/NaN: llama-quantize validates its output (spec §2)."""
    bad = np.asarray(bad)
    if bad.any():
        raise FormatError(
            f"{name}: the stored field {field!r} overflows in {int(bad.sum())} block(s) (first: "
            f"block {int(np.argmax(bad.reshape(-1)))}); the data is too large for this type "
            f"({limit}) — llama-quantize rejects such tensors too. Scale it down or use F32.")


def check_scales(name: str, **halves: np.ndarray) -> None:
    """Every fp16 field (``d``, ``m``, …) must be finite: exponent bits 0x7C00 not all set."""
    for field, bits in halves.items():
        refuse_overflow(name, field, (np.asarray(bits) & 0x7C00) == 0x7C00)
