"""ggml's ternary types TQ1_0 and TQ2_0: weights in {−1, 0, +1} × one fp16 scale per 256.

Made for ternary models (BitNet b1.58, TriLMs), whose weights already are ``d·{−1, 0, 1}``:
for those the types are lossless; for ordinary weights they are a blunt 3-level quantizer.
Both share the quantizer (``quantize_row_tq1_0_ref`` / ``quantize_row_tq2_0_ref``; ggml
ignores an importance matrix for them)::

    d = max |x|                          (the scale is the absmax itself, not absmax / 1)
    t = lroundf(x / d) + 1  ∈ {0, 1, 2}  (round half away from zero; 0.5·d -> 1 -> t = 2)
    y = (t − 1)·d

and differ only in how the trits ``t`` are packed: TQ2_0 spends 2 bits per trit (simple,
fast), TQ1_0 packs 5 trits per byte as a base-3 number (3^5 = 243 ≤ 256): 1.6875 bpw.
These are not in the quantlab spec; they follow ggml's ``ggml-quants.c`` and
``ggml-common.h`` (commit 0c1e570) and are checked against its golden bytes.
"""
from __future__ import annotations

import numpy as np

from ..base import register
from .base import GGMLFormat
from .common import check_scales, inverse, u16_bytes
from .numerics import f32, fp16, half, rhaz

__all__ = ["TQ1_0", "TQ2_0", "ternary_trits"]

QK_K = 256
POW3 = np.array([1, 3, 9, 27, 81, 243], dtype=np.int64)


def ternary_trits(xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nb, 256) float32 -> (d (nb,) float32, t (nb, 256) int64 trits in {0, 1, 2}).

    ``t = lroundf(x·(1/d)) + 1``.  A block of float32 subnormals has ``1/d = inf``; C's
    ``lroundf`` of inf/NaN returns LONG_MIN on x86-64, and ``(int)(LONG_MIN + 1)`` is 1 —
    so such a block stores all-"0" trits, which we reproduce explicitly.
    """
    d = np.max(np.abs(xb), axis=1)                  # a max is exact, so any order will do
    v = xb * inverse(d)[:, None]
    t = np.where(np.isfinite(v), rhaz(v) + 1, 1).astype(np.int64)
    return d.astype(f32), t


def _unpack_trits(b: np.ndarray) -> np.ndarray:
    """Base-3 bytes -> their 5 trits, most significant first (``dequantize_row_tq1_0``).

    A byte holds ``ceil(T·256/243)`` for the base-3 number ``T``; multiplying by ``3^n`` (mod
    256) shifts trit ``n`` to the top, and ``(q·3) >> 8`` reads the top trit::

        trit_n = ((b·3^n mod 256)·3) >> 8        n = 0..4
    """
    q = (b[..., None].astype(np.int64) * POW3[:5]) & 0xFF               # (..., 5)
    return (q * 3) >> 8


class TQ1_0(GGMLFormat):
    """TQ1_0 — ternary, 5 trits per byte, 256 weights per block (ggml type 34).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       48    ``qs`` 5 trits per byte: bytes 0-31 hold elements 0-159, 32-47 hold 160-239
    48      4     ``qh`` 4 trits per byte: elements 240-255
    52      2     ``d``  fp16 scale (= max |x|)
    ======  ====  ==============================================

    bits/weight = 8·54/256 = 1.6875.   Value: ``y = (t − 1)·d``, ``t ∈ {0, 1, 2}``.

    Trit ``n`` of byte ``m`` (most significant first) is element::

        qs[m],      m < 32 :  m + 32·n          n = 0..4      (elements   0..159)
        qs[32 + m], m < 16 :  160 + m + 16·n    n = 0..4      (elements 160..239)
        qh[j],      j < 4  :  240 + j + 4·n     n = 0..3      (elements 240..255)

    A byte stores ``ceil(T·256/243)`` for the base-3 number ``T = Σ t_n·3^(4−n)`` (qh: four
    trits, then ×3), so that the top trit can be read with one multiply and shift.
    """

    name, ggml_name, ggml_type, type_size, block_size = "tq1_0", "TQ1_0", 34, 54, QK_K
    summary = "ggml ternary {-1,0,1}×fp16, 5 trits per byte (1.6875 bpw)"
    layout = (("qs", 48, "5 trits per byte (base 3): elements 0-239"),
              ("qh", 4, "4 trits per byte (base 3): elements 240-255"),
              ("d", 2, "fp16 scale = max |x|"))

    def quantize_rows(self, x, imatrix):
        with np.errstate(all="ignore"):
            d, t = ternary_trits(x.reshape(-1, QK_K))                       # (nb,), (nb, 256)
        nb = t.shape[0]
        # T = Σ t_n·3^(4-n), trit n of byte m taken from the element groups above
        T0 = np.einsum("bnm,n->bm", t[:, :160].reshape(nb, 5, 32), POW3[4::-1])    # (nb, 32)
        T1 = np.einsum("bnm,n->bm", t[:, 160:240].reshape(nb, 5, 16), POW3[4::-1])  # (nb, 16)
        Th = np.einsum("bnm,n->bm", t[:, 240:].reshape(nb, 4, 4), POW3[4:0:-1])     # (nb, 4)
        # byte = ceil(T·256 / 243): the top trit becomes readable as (byte·3) >> 8
        packed = (np.concatenate([T0, T1, Th], axis=1) * 256 + 242) // 243
        dh = fp16(d)
        check_scales(self.ggml_name, d=dh)
        out = np.concatenate([packed.astype(np.uint8), u16_bytes(dh)], axis=1)
        return out.reshape(x.shape[0], -1)

    def _decode(self, b):
        nb = b.shape[0]
        t0 = _unpack_trits(b[:, :32]).transpose(0, 2, 1).reshape(nb, 160)     # (m, n) -> m + 32n
        t1 = _unpack_trits(b[:, 32:48]).transpose(0, 2, 1).reshape(nb, 80)
        th = _unpack_trits(b[:, 48:52])[..., :4].transpose(0, 2, 1).reshape(nb, 16)
        t = np.concatenate([t0, t1, th], axis=1).astype(np.int8)
        return {"qs": b[:, :48], "qh": b[:, 48:52], "d": half(b[:, 52:54].copy().view("<u2")[:, 0]),
                "q": t}

    def block_fields(self, block):
        return {k: v[0] for k, v in self._decode(np.asarray(block, np.uint8).reshape(1, -1)).items()}

    def dequantize_blocks(self, blocks):
        f = self._decode(blocks)
        # y = (t - 1)·d
        return (f["q"].astype(np.int32) - 1).astype(f32) * f["d"][:, None]


class TQ2_0(GGMLFormat):
    """TQ2_0 — ternary, 2 bits per trit, 256 weights per block (ggml type 35).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       64    ``qs`` 4 trits per byte, 2 bits each
    64      2     ``d``  fp16 scale (= max |x|)
    ======  ====  ==============================================

    bits/weight = 8·66/256 = 2.0625.   Value: ``y = (t − 1)·d`` (a stored 3 would give +2d).
    Byte ``32c + m`` (c = 0, 1) holds four elements, bits ``2n..2n+1`` = element
    ``128c + m + 32n``::

        qs[32c + m] = t[128c+m+96] t[128c+m+64] t[128c+m+32] t[128c+m]   (2 bits each, high to low)
    """

    name, ggml_name, ggml_type, type_size, block_size = "tq2_0", "TQ2_0", 35, 66, QK_K
    summary = "ggml ternary {-1,0,1}×fp16, 2 bits per trit (2.0625 bpw)"
    layout = (("qs", 64, "4 × 2-bit trits per byte"), ("d", 2, "fp16 scale = max |x|"))

    def quantize_rows(self, x, imatrix):
        with np.errstate(all="ignore"):
            d, t = ternary_trits(x.reshape(-1, QK_K))
        nb = t.shape[0]
        t = t.reshape(nb, 2, 4, 32) & 3                                      # (nb, c, n, m)
        qs = (t << (2 * np.arange(4))[None, None, :, None]).sum(axis=2)    # (nb, c, m)
        dh = fp16(d)
        check_scales(self.ggml_name, d=dh)
        out = np.concatenate([qs.reshape(nb, 64).astype(np.uint8), u16_bytes(dh)], axis=1)
        return out.reshape(x.shape[0], -1)

    def _decode(self, b):
        nb = b.shape[0]
        t = (b[:, :64].reshape(nb, 2, 1, 32) >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3
        return {"qs": b[:, :64], "d": half(b[:, 64:66].copy().view("<u2")[:, 0]),
                "q": t.reshape(nb, 256).astype(np.int8)}

    def block_fields(self, block):
        return {k: v[0] for k, v in self._decode(np.asarray(block, np.uint8).reshape(1, -1)).items()}

    def dequantize_blocks(self, blocks):
        f = self._decode(blocks)
        # y = (t - 1)·d
        return (f["q"].astype(np.int32) - 1).astype(f32) * f["d"][:, None]


for _cls in (TQ1_0, TQ2_0):
    register(_cls())
