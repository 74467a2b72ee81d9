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

f32 = np.float32

__all__ = ["f32", "seq_sum", "rne", "rhaz", "fp16", "half", "rt16", "first_max_abs"]


def seq_sum(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Σ along ``axis`` as ggml does it: ``acc = 0; acc = acc + a_i`` for i in order (float32)."""
    a = np.moveaxis(np.asarray(a, dtype=f32), axis, -1)
    acc = np.zeros(a.shape[:-1], dtype=f32)
    for i in range(a.shape[-1]):
        acc = acc + a[..., i]           # one float32 rounding per addition, in source order
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
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(f32)


def rt16(v: np.ndarray) -> np.ndarray:
    """The value after storing as fp16 and reading it back: ``half(fp16(v))``."""
    return half(fp16(v))


def first_max_abs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``x`` (…, n): ``(amax, m)`` where ``m`` is the signed first element of largest |x|."""
    x = np.asarray(x, dtype=f32)
    idx = np.argmax(np.abs(x), axis=-1)[..., None]
    m = np.take_along_axis(x, idx, axis=-1)[..., 0]
    return np.abs(m), m
