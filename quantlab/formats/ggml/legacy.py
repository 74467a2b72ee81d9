"""ggml's 32-element "legacy" block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 (spec §3).

The oldest llama.cpp formats, still the easiest to read: a block of 32 weights stores one
fp16 scale ``d`` (and, for the ``_1`` types, an fp16 offset ``m``) plus one small integer per
weight.

=======  ===  =====  =====  ============================  ===========================
type     id   bytes  bpw    stored per block              value of element e
=======  ===  =====  =====  ============================  ===========================
Q4_0      2    18    4.5    d, 32 × 4 bit                 ``(q − 8)·d``
Q4_1      3    20    5.0    d, m, 32 × 4 bit              ``q·d + m``
Q5_0      6    22    5.5    d, 32 high bits, 32 × 4 bit   ``(q − 16)·d``
Q5_1      7    24    6.0    d, m, 32 high bits, 32 × 4    ``q·d + m``
Q8_0      8    34    8.5    d, 32 × int8                  ``q·d``
Q8_1      9    36    9.0    d, s = d·Σq, 32 × int8        ``q·d``  (activations only)
=======  ===  =====  =====  ============================  ===========================

Nibble order (all 4- and 5-bit types): byte ``j`` holds element ``j`` in its low nibble and
element ``j + 16`` in its high nibble — not two neighbours::

    qs[j] = HHHH LLLL      LLLL = q[j] & 15,   HHHH = q[j + 16] & 15      (j = 0..15)

Q5's fifth bits live in one little-endian uint32 ``qh``: bit ``e`` = bit 4 of ``q[e]``.

Two quantizers per type, exactly as ``ggml_quantize_chunk`` picks them (spec §8):

* no importance matrix -> ggml's ``quantize_row_*_ref`` max-abs / min-max rules (below);
* with one -> the weighted searches of :mod:`.search` (QX for Q4_0/Q5_0, QKX for
  Q4_1/Q5_1) with weights ``w = imatrix · sqrt(σ² + x²)``, σ² = mean of x² over the row.
  Q8_0 (and Q8_1) ignore the imatrix, as ggml does.

Every step is float32 in ggml's order; integer conversions follow the x86-64 C build
(:func:`.common.c_int`), which matters only for blocks of float32 subnormals.
"""
from __future__ import annotations

import numpy as np

from ... import backend
from ..base import register
from .base import GGMLFormat
from .common import (c_int, check_scales, first_min_max, inverse, pack_nibbles,
                     pack_qh, u16_bytes, unpack_nibbles, unpack_qh)
from .numerics import f32, first_max_abs, fp16, half, rhaz, seq_sum
from .search import qkx3_quants, qx_quants

__all__ = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "row_weights"]

QK = 32


# ----------------------------------------------------------------------------- helpers
def row_weights(x: np.ndarray, imatrix: np.ndarray, block: int = QK) -> np.ndarray:
    """Importance weights of the legacy ``_impl`` paths, per block (spec §7).

    ``σ² = (Σ_row x²) / n`` (sequential float32 sum over the whole row), then
    ``w_e = qw_e · sqrt(σ² + x_e²)``.  x (rows, n), imatrix (n,) -> (rows·n/block, block).
    """
    n = x.shape[1]
    sigma2 = seq_sum(x * x, axis=-1) / f32(n)                         # (rows,)
    w = imatrix[None, :] * np.sqrt(sigma2[:, None] + x * x)           # (rows, n)
    return w.astype(f32).reshape(-1, block)


class _Legacy32(GGMLFormat):
    """Shared driver: rows -> 32-element blocks -> ggml's ref or weighted quantizer -> bytes.

    A concrete type writes ``quantize_ref(xb)`` (and ``quantize_weighted(xb, w)`` unless it
    ignores importance), both ``(nb, 32)`` float32 -> ``(nb, type_size)`` uint8, and
    ``decode(blocks)`` -> named fields, from which dequantization and the inspector follow.
    """

    block_size = QK
    fields_fp16: tuple[str, ...] = ("d",)   # fp16 fields at bytes 0-1 (and 2-3), validated
    uses_imatrix = True

    def quantize_rows(self, x, imatrix):
        xb = x.reshape(-1, QK)                                          # (nb, 32)
        with np.errstate(all="ignore"):        # overflow to inf is caught by check_scales
            if imatrix is None or not self.uses_imatrix:
                k = backend.kernel("_quantize_legacy")          # compiled twin, same bytes
                blocks = (self.quantize_ref(xb) if k is None or self.ggml_type not in k.TYPES
                          else k.quantize_ref(self.ggml_type, xb, backend.n_threads(xb.size, 1 << 14)))
            else:
                blocks = self.quantize_weighted(xb, row_weights(x, imatrix))
        check_scales(self.ggml_name, **{f: blocks[:, 2 * i:2 * i + 2].copy().view("<u2")[:, 0]
                                        for i, f in enumerate(self.fields_fp16)})
        return blocks.reshape(x.shape[0], -1)

    def block_fields(self, block):
        return {k: v[0] for k, v in self.decode(np.asarray(block, np.uint8).reshape(1, -1)).items()}

    def dequantize_blocks(self, blocks):
        return self.dequantize_fields(self.decode(blocks))


# ----------------------------------------------------------------------------- Q4_0
class Q4_0(_Legacy32):
    """Q4_0 — symmetric 4-bit, 32 weights per block, one fp16 scale (ggml type 2).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       16    ``qs`` 32 × 4-bit level ``q ∈ 0..15`` (byte j: elements j, j+16)
    ======  ====  ==============================================

    bits/weight = 8·(2 + 16)/32 = 4.5.   Value: ``y = (q − 8)·d`` (float32).

    Quantize, no imatrix (``quantize_row_q4_0_ref``): ``m`` = the signed element of largest
    magnitude (first one), ``d = m / −8`` so that ``m`` lands on level 0 (−8·d), and
    ``q = min(15, trunc(x·(1/d) + 8.5))`` — round half *up*, with the float32 ``1/d``, not the
    stored fp16 one.  The opposite extreme (``+m``) would be level 16 and is clamped to 15.
    With imatrix: weighted QX search, nmax = 8 (spec §4.1).  Used by llama-quantize's
    ``Q4_0`` mix and as the classic "4.5 bpw" baseline.
    """

    name, ggml_name, ggml_type, type_size = "q4_0", "Q4_0", 2, 18
    summary = "ggml 4-bit symmetric, 32-weight blocks, fp16 scale (4.5 bpw)"
    layout = (("d", 2, "fp16 scale"), ("qs", 16, "32 × 4-bit levels, byte j = elements j | j+16 << 4"))

    def quantize_ref(self, xb):
        amax, m = first_max_abs(xb)                                # (nb,)
        # d = max / -8 : the largest-magnitude element maps to level 0
        d = m / f32(-8)
        ident = inverse(d)
        # q = min(15, (int8)(x·id + 8.5))   (x·id ≥ −8, so the cast floors: round half up)
        q = np.minimum(15, c_int(xb * ident[:, None] + f32(8.5), 8))
        return np.concatenate([u16_bytes(fp16(d)), pack_nibbles(q)], axis=1)

    def quantize_weighted(self, xb, w):
        s, L = qx_quants(xb, 8, w)                                      # L ∈ 0..15
        return np.concatenate([u16_bytes(fp16(s)), pack_nibbles(L)], axis=1)

    def decode(self, b):
        qs = unpack_nibbles(b[:, 2:18])
        return {"d": half(b[:, 0:2].copy().view("<u2")[:, 0]), "qs": qs, "q": qs}

    def dequantize_fields(self, f):
        # y = (q - 8)·d
        return (f["q"].astype(np.int32) - 8).astype(f32) * f["d"][:, None]


# ----------------------------------------------------------------------------- Q4_1
class Q4_1(_Legacy32):
    """Q4_1 — asymmetric 4-bit, 32 weights per block, fp16 scale and offset (ggml type 3).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       2     ``m``  fp16 offset (the value of level 0)
    4       16    ``qs`` 32 × 4-bit level ``q ∈ 0..15`` (byte j: elements j, j+16)
    ======  ====  ==============================================

    bits/weight = 8·(2 + 2 + 16)/32 = 5.   Value: ``y = q·d + m`` (two float32 roundings).

    Quantize, no imatrix (``quantize_row_q4_1_ref``): ``lo, hi`` = block min and max,
    ``d = (hi − lo)/15``, ``m = lo``, ``q = min(15, trunc((x − lo)·(1/d) + 0.5))`` (round half
    up).  With imatrix: weighted QKX search (nmax 15, rmin −0.9, rdelta 0.05, 36 steps), which
    stores ``m = −the_min ≤ 0`` (spec §3.2).  The SmolLM2 GGUF shipped with quantlab is Q4_1.
    """

    name, ggml_name, ggml_type, type_size = "q4_1", "Q4_1", 3, 20
    summary = "ggml 4-bit asymmetric, 32-weight blocks, fp16 scale + offset (5.0 bpw)"
    layout = (("d", 2, "fp16 scale"), ("m", 2, "fp16 offset (value of level 0)"),
              ("qs", 16, "32 × 4-bit levels, byte j = elements j | j+16 << 4"))
    fields_fp16 = ("d", "m")

    def quantize_ref(self, xb):
        lo, hi = first_min_max(xb)                                       # (nb,)
        # d = (max - min) / 15 ; m = min
        d = (hi - lo) / f32(15)
        ident = inverse(d)
        # q = min(15, (int8)((x - min)·id + 0.5))
        q = np.minimum(15, c_int((xb - lo[:, None]) * ident[:, None] + f32(0.5), 8))
        return np.concatenate([u16_bytes(fp16(d)), u16_bytes(fp16(lo)), pack_nibbles(q)], axis=1)

    def quantize_weighted(self, xb, w):
        s, the_min, L = qkx3_quants(xb, w, 15, -0.9, 0.05, 36, False)   # L ∈ 0..15
        return np.concatenate([u16_bytes(fp16(s)), u16_bytes(fp16(-the_min)), pack_nibbles(L)],
                              axis=1)

    def decode(self, b):
        qs = unpack_nibbles(b[:, 4:20])
        h = b[:, 0:4].copy().view("<u2")
        return {"d": half(h[:, 0]), "m": half(h[:, 1]), "qs": qs, "q": qs}

    def dequantize_fields(self, f):
        # y = q·d + m
        return f["q"].astype(f32) * f["d"][:, None] + f["m"][:, None]


# ----------------------------------------------------------------------------- Q5_0
class Q5_0(_Legacy32):
    """Q5_0 — symmetric 5-bit, 32 weights per block, one fp16 scale (ggml type 6).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       4     ``qh`` uint32 LE, bit e = bit 4 of ``q[e]``
    6       16    ``qs`` low 4 bits of each level (byte j: elements j, j+16)
    ======  ====  ==============================================

    bits/weight = 8·(2 + 4 + 16)/32 = 5.5.   Value: ``y = (q − 16)·d``, ``q ∈ 0..31``::

        q[e] = qs nibble of e  |  ((qh >> e) & 1) << 4

    Quantize, no imatrix: ``d = m / −16``, ``q = min(31, trunc(x·(1/d) + 16.5))``.
    With imatrix: weighted QX search, nmax = 16.
    """

    name, ggml_name, ggml_type, type_size = "q5_0", "Q5_0", 6, 22
    summary = "ggml 5-bit symmetric, 32-weight blocks, fp16 scale (5.5 bpw)"
    layout = (("d", 2, "fp16 scale"), ("qh", 4, "uint32 LE: bit e = bit 4 of level e"),
              ("qs", 16, "low 4 bits of 32 levels, byte j = elements j | j+16 << 4"))

    def quantize_ref(self, xb):
        amax, m = first_max_abs(xb)
        # d = max / -16 ; q = min(31, (int8)(x·id + 16.5))
        d = m / f32(-16)
        ident = inverse(d)
        q = np.minimum(31, c_int(xb * ident[:, None] + f32(16.5), 8))
        return np.concatenate([u16_bytes(fp16(d)), pack_qh(q), pack_nibbles(q)], axis=1)

    def quantize_weighted(self, xb, w):
        s, L = qx_quants(xb, 16, w)                                     # L ∈ 0..31
        return np.concatenate([u16_bytes(fp16(s)), pack_qh(L), pack_nibbles(L)], axis=1)

    def decode(self, b):
        qs, qh = unpack_nibbles(b[:, 6:22]), unpack_qh(b[:, 2:6])
        return {"d": half(b[:, 0:2].copy().view("<u2")[:, 0]), "qh": qh, "qs": qs,
                "q": qs | (qh << 4)}

    def dequantize_fields(self, f):
        # y = (q - 16)·d
        return (f["q"].astype(np.int32) - 16).astype(f32) * f["d"][:, None]


# ----------------------------------------------------------------------------- Q5_1
class Q5_1(_Legacy32):
    """Q5_1 — asymmetric 5-bit, 32 weights per block, fp16 scale and offset (ggml type 7).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       2     ``m``  fp16 offset (the value of level 0)
    4       4     ``qh`` uint32 LE, bit e = bit 4 of ``q[e]``
    8       16    ``qs`` low 4 bits of each level (byte j: elements j, j+16)
    ======  ====  ==============================================

    bits/weight = 8·(2 + 2 + 4 + 16)/32 = 6.   Value: ``y = q·d + m``, ``q ∈ 0..31``.

    Quantize, no imatrix: ``d = (hi − lo)/31``, ``m = lo``, ``q = trunc((x − lo)·(1/d) + 0.5)``
    (ggml does not clamp here; finite input never exceeds 31).  With imatrix: weighted QKX
    search, nmax 31.
    """

    name, ggml_name, ggml_type, type_size = "q5_1", "Q5_1", 7, 24
    summary = "ggml 5-bit asymmetric, 32-weight blocks, fp16 scale + offset (6.0 bpw)"
    layout = (("d", 2, "fp16 scale"), ("m", 2, "fp16 offset (value of level 0)"),
              ("qh", 4, "uint32 LE: bit e = bit 4 of level e"),
              ("qs", 16, "low 4 bits of 32 levels, byte j = elements j | j+16 << 4"))
    fields_fp16 = ("d", "m")

    def quantize_ref(self, xb):
        lo, hi = first_min_max(xb)
        # d = (max - min) / 31 ; q = (uint8)((x - min)·id + 0.5)
        d = (hi - lo) / f32(31)
        ident = inverse(d)
        q = c_int((xb - lo[:, None]) * ident[:, None] + f32(0.5), 8) & 0xFF
        return np.concatenate([u16_bytes(fp16(d)), u16_bytes(fp16(lo)), pack_qh(q),
                               pack_nibbles(q)], axis=1)

    def quantize_weighted(self, xb, w):
        s, the_min, L = qkx3_quants(xb, w, 31, -0.9, 0.05, 36, False)   # L ∈ 0..31
        return np.concatenate([u16_bytes(fp16(s)), u16_bytes(fp16(-the_min)), pack_qh(L),
                               pack_nibbles(L)], axis=1)

    def decode(self, b):
        h = b[:, 0:4].copy().view("<u2")
        qs, qh = unpack_nibbles(b[:, 8:24]), unpack_qh(b[:, 4:8])
        return {"d": half(h[:, 0]), "m": half(h[:, 1]), "qh": qh, "qs": qs, "q": qs | (qh << 4)}

    def dequantize_fields(self, f):
        # y = q·d + m
        return f["q"].astype(f32) * f["d"][:, None] + f["m"][:, None]


# ----------------------------------------------------------------------------- Q8_0, Q8_1
def _q8(xb):
    """Shared by Q8_0 and Q8_1: ``d = max|x| / 127``, ``q = roundf(x·(1/d))`` (half away from 0)."""
    amax = np.max(np.abs(xb), axis=1)               # a max is exact, so any order will do
    d = amax / f32(127)
    ident = inverse(d)
    q = c_int(rhaz(xb * ident[:, None]), 8)         # C roundf, then stored as int8
    return d, q


class Q8_0(_Legacy32):
    """Q8_0 — symmetric 8-bit, 32 weights per block, one fp16 scale (ggml type 8).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       32    ``qs`` int8 level per element, natural order
    ======  ====  ==============================================

    bits/weight = 8·34/32 = 8.5.   Value: ``y = q·d``, ``q ∈ −127..127``.

    Quantize (``quantize_row_q8_0_ref``; ggml ignores an imatrix for this type):
    ``d = max|x| / 127``, ``q = roundf(x·(1/d))`` — C ``roundf``, ties away from zero
    (``np.round`` would round them to even).  The near-lossless llama.cpp format; also how
    llama.cpp quantizes activations for Q4_0/Q8_0 dot products.
    """

    name, ggml_name, ggml_type, type_size = "q8_0", "Q8_0", 8, 34
    summary = "ggml 8-bit symmetric, 32-weight blocks, fp16 scale (8.5 bpw)"
    layout = (("d", 2, "fp16 scale"), ("qs", 32, "32 × int8 levels, natural order"))
    uses_imatrix = False

    def quantize_ref(self, xb):
        d, q = _q8(xb)
        return np.concatenate([u16_bytes(fp16(d)), q.astype(np.int8).view(np.uint8)], axis=1)

    def decode(self, b):
        qs = b[:, 2:34].view(np.int8)
        return {"d": half(b[:, 0:2].copy().view("<u2")[:, 0]), "qs": qs, "q": qs}

    def dequantize_fields(self, f):
        # y = q·d
        return f["q"].astype(f32) * f["d"][:, None]


class Q8_1(_Legacy32):
    """Q8_1 — Q8_0 plus the block sum, ggml's activation format for Q4_1/Q5_1 dot products (type 9).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       2     ``s``  fp16 ``d·Σq`` (float32 d, exact integer sum)
    4       32    ``qs`` int8 level per element, natural order
    ======  ====  ==============================================

    bits/weight = 8·36/32 = 9.   Value: ``y = q·d``; ``s`` only speeds up ``Σ (q·d)·(q'·d' + m')``.
    Quantize (``quantize_row_q8_1_ref``): ``d`` and ``q`` exactly as Q8_0, ``s = fp16(Σq · d)``.
    ``llama-quantize`` never writes this type (``ggml_quantize_chunk`` refuses it); an
    imatrix is ignored.
    """

    name, ggml_name, ggml_type, type_size = "q8_1", "Q8_1", 9, 36
    summary = "ggml 8-bit activation format: Q8_0 + fp16 d·Σq (9.0 bpw)"
    oracle = "ggml (spec §12 SHA-256)"
    layout = (("d", 2, "fp16 scale"), ("s", 2, "fp16 d·Σq (auxiliary, for dot products)"),
              ("qs", 32, "32 × int8 levels, natural order"))
    fields_fp16 = ("d", "s")
    uses_imatrix = False

    def quantize_ref(self, xb):
        d, q = _q8(xb)
        # s = d · Σq  (an int times the float32 d, before the fp16 rounding of d)
        s = q.sum(axis=1).astype(f32) * d
        return np.concatenate([u16_bytes(fp16(d)), u16_bytes(fp16(s)),
                               q.astype(np.int8).view(np.uint8)], axis=1)

    def decode(self, b):
        h = b[:, 0:4].copy().view("<u2")
        qs = b[:, 4:36].view(np.int8)
        return {"d": half(h[:, 0]), "s": half(h[:, 1]), "qs": qs, "q": qs}

    def dequantize_fields(self, f):
        # y = q·d
        return f["q"].astype(f32) * f["d"][:, None]


for _cls in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1):
    register(_cls())

# F32 / F16 / BF16 storage live in their own module; importing it here registers them
# right after the legacy types (ggml/__init__ imports this module).
from . import storage  # noqa: E402,F401
