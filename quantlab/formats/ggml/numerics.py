"""ggml's float32 arithmetic, reproduced exactly in NumPy (spec ``ggml-quants.md`` §0).

Bit-exactness with ggml needs three things NumPy does not do by default:

* **Sequential sums.**  ggml adds left to right, one float32 rounding per addition.
  ``np.sum``/``np.dot`` use pairwise summation and change K-quant bytes, so every
  within-block sum goes through :func:`seq_sum` (vectorised *across* blocks, sequential
  *within* one).
* **Three rounding rules**: :func:`rne` (ggml ``nearest_int``, half to even via the
  12582912 magic number), :func:`rhaz` (C ``roundf``, half away from zero) and plain
  truncation (C float→int cast, ``np.trunc``).
* **No fused multiply-add**: NumPy's element-wise float32 ops never fuse, which is what
  the reference build does.
"""
from __future__ import annotations

import numpy as np

from ... import backend

f32 = np.float32

__all__ = ["f32", "seq_sum", "rne", "rhaz", "fp16", "half", "rt16", "first_max_abs"]


def seq_sum(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Σ along ``axis`` as ggml does it: ``acc = 0; acc = acc + a_i`` for i in order (float32).

    One float32 rounding per addition, left to right — unlike ``np.sum``, which adds
    pairwise.  The summed axis is moved to the front and made contiguous so that each
    step adds one contiguous row (element i of every block) in place: the Python loop
    runs over the few elements of a block, never over blocks.  Starting from
    ``a_0 + 0`` rather than ``a_0`` reproduces C's ``acc = 0`` (a leading -0.0 becomes +0.0).
    """
    t = np.ascontiguousarray(np.moveaxis(np.asarray(a, dtype=f32), axis, 0))
    acc = t[0] + f32(0)
    for i in range(1, t.shape[0]):
        np.add(acc, t[i], out=acc)      # one float32 rounding per addition, in source order
    return acc


def rne(v: np.ndarray) -> np.ndarray:
    """ggml ``nearest_int``: add 1.5·2^23, keep the low mantissa bits -> int32 (half to even)."""
    s = (np.asarray(v, dtype=f32) + f32(12582912.0)).view(np.int32)
    return (s & 0x007FFFFF) - 0x00400000


def rhaz(v: np.ndarray) -> np.ndarray:
    """C ``roundf``: round half away from zero (exact, computed in float64)."""
    v = np.asarray(v, dtype=np.float64)
    return np.trunc(v + np.copysign(0.5, v))


def fp16(v: np.ndarray) -> np.ndarray:
    """float32 -> IEEE half bits (uint16), RNE; NaN -> 0x7E00 with the input's sign (ggml)."""
    v = np.asarray(v, dtype=f32)
    with np.errstate(over="ignore", invalid="ignore"):
        bits = v.astype(np.float16).view(np.uint16)
    nan = np.isnan(v)
    if nan.any():
        sign = (v.view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x8000)
        bits = np.where(nan, sign | np.uint16(0x7E00), bits)
    return bits


def half(bits: np.ndarray) -> np.ndarray:
    """IEEE half bits (uint16) -> float32, exact widening."""
    xp = backend.xp(bits)                              # NumPy, or CuPy for CuPy input
    return xp.asarray(bits, dtype=xp.uint16).view(xp.float16).astype(f32)


def rt16(v: np.ndarray) -> np.ndarray:
    """The value after storing as fp16 and reading it back: ``half(fp16(v))``."""
    return half(fp16(v))


def first_max_abs(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """ggml's scan ``amax = m = 0; if |x_i| > amax: amax, m = |x_i|, x_i`` along ``axis``.

    Returns ``(amax, m)``: ``m`` is the signed first element of largest magnitude
    (``argmax`` picks the first of equals); NaN never compares greater, so it is skipped;
    a group of zeros gives ``amax = m = +0`` (also for -0.0, which matters for fp16 signs).
    """
    x = np.asarray(x, dtype=f32)
    a = np.abs(x)
    a = np.where(np.isnan(a), f32(-1), a)
    idx = np.expand_dims(np.argmax(a, axis=axis), axis)
    amax = np.take_along_axis(a, idx, axis=axis).squeeze(axis)
    m = np.take_along_axis(x, idx, axis=axis).squeeze(axis)
    found = amax > 0
    return np.where(found, amax, f32(0)).astype(f32), np.where(found, m, f32(0)).astype(f32)
