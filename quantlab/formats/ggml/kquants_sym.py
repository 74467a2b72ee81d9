"""ggml's symmetric K-quants Q3_K and Q6_K, and the activation type Q8_K (spec §5.2, §5.5, §5.6).

No min here: every 16-element sub-block ``j`` has one signed integer scale code ``sc_j``
and the super-block one factor ``d``::

    y_e = (d·sc_j)·q_e            (q_e signed, e in sub-block j)

=====  ===  =====  ======  ==============================  =============================
type   id   bytes  bpw     levels                          scale codes
=====  ===  =====  ======  ==============================  =============================
Q3_K   11   110    3.4375  q ∈ −4..3 (2 low bits + 1 high)  16 × 6-bit, ``sc ∈ −32..31``
Q6_K   14   210    6.5625  q ∈ −32..31 (4 low + 2 high)     16 × int8
Q8_K   15   292    9.125   q ∈ −127..127 (int8)             none: one float32 ``d``
=====  ===  =====  ======  ==============================  =============================

Phases as in :mod:`.kquants`: a per-sub-block search (Q3S or QX from :mod:`.search`),
integer scale codes with one fp16 factor (the largest-magnitude scale maps to −32 / −128,
so ``d`` has the opposite sign of that scale), then re-quantization of every sub-block
against the stored ``half(d)·sc_j`` — or, where that product is 0, keeping the provisional
levels of the search.
"""
from __future__ import annotations

import numpy as np

from ...errors import FormatError
from ..base import register
from .kquants import QK_K, KQuant, f16_bytes, f16_read, imatrix_weights
from .numerics import f32, fp16, half, rne
from .search import (GROUP_MAX_EPS, _first_max_abs, _sum, pack_2bit_planes, pack_q3_scales,
                     q3_quants, qx_quants, unpack_2bit_planes, unpack_q3_scales)

__all__ = ["Q3_K", "Q6_K", "Q8_K"]


def requantize_sym(x, L, dj, lo, hi) -> np.ndarray:
    """``L = clamp(rne(x/dj), lo, hi) − lo`` where ``dj ≠ 0``, else keep ``L``.

    x, L (NB, 16, 16); dj (NB, 16) float32.
    """
    new = np.clip(rne(x / dj[..., None]), lo, hi) - lo
    return np.where(dj[..., None] != 0, new, L)


# ----------------------------------------------------------------------------- Q3_K
class Q3_K(KQuant):
    """Q3_K — 3-bit symmetric K-quant with 6-bit signed sub-block scales (ggml type 11).

    ====================  ======================================================
    bits per weight       3.4375  (110 bytes per 256 weights)
    sub-blocks            16 × 16 elements, level ``q ∈ −4..3``
    formula               ``y = (d·sc_j)·q``   (``sc_j ∈ −32..31``)
    rounding              rne (ggml ``nearest_int``)
    search (no imatrix)   Q3S(nmax 4) (coordinate descent, ``w = x²``); codes
                          ``clamp(rne(−32·S_j/S_max), −32, 31)``, ``d = S_max/−32``
    search (imatrix)      QX(nmax 4), ``w = qw·sqrt(2Σx²/256 + x²)``; codes and ``d``
                          by QX(nmax 32) over the 16 scales, weighted by Σw
    where used            ``Q3_K_S/M/L`` mixes; attn_v / ffn_down of the ``Q2_K`` mix
    ====================  ======================================================

    =======  =====  ===========================================================
    offset   bytes  field
    =======  =====  ===========================================================
    0        32     ``hmask``: bit ``e // 32`` of byte ``e % 32`` = high bit of ``q_e + 4``
    32       64     ``qs``: low 2 bits of ``q_e + 4``, planes as Q2_K
    96       12     16 six-bit codes ``v_j = sc_j + 32`` (spec §4.7)
    108      2      ``d`` fp16
    =======  =====  ===========================================================
    """

    name = "q3_k"
    ggml_name = "Q3_K"
    ggml_type = 11
    type_size = QK_K // 8 + QK_K // 4 + 12 + 2
    summary = "ggml 3-bit K-quant: 16×16 sub-blocks, 6-bit signed scale codes, fp16 d (3.4375 bpw)"
    layout = (("hmask", QK_K // 8, "high bit of every 3-bit level: byte e % 32, bit e // 32"),
              ("qs", QK_K // 4, "low 2 bits of every level, four 32-element planes per 128"),
              ("scales", 12, "16 six-bit codes sc + 32: low nibbles in bytes 0-7, top bits in 8-11"),
              ("d", 2, "fp16 factor of the scale codes"))
    fp16_fields = (("d", 108),)

    def quantize_superblocks(self, xb, qw):
        NB = xb.shape[0]
        xs = xb.reshape(NB * 16, 16)
        if qw is None:
            S, L = q3_quants(xs, 4)                                           # L ∈ 0..7
            S = S.reshape(NB, 16)
            _, mS = _first_max_abs(S.T)                                       # signed largest scale
            ok = mS != 0
            iscale = f32(-32) / np.where(ok, mS, f32(1))
            # v = clamp(int8(rne(−32/mS · S_j)), −32, 31) + 32
            l8 = ((rne(iscale[:, None] * S) + 128) & 0xFF) - 128
            v = np.where(ok[:, None], np.clip(l8, -32, 31) + 32, 0)
            d = np.where(ok, f32(1) / iscale, f32(0))
            packed = np.where(ok[:, None], pack_q3_scales(v), 0).astype(np.uint8)
        else:
            w = imatrix_weights(xb, qw, 2).reshape(NB * 16, 16)
            S, L = qx_quants(xs, 4, w)
            sw = _sum(w.T).reshape(NB, 16)
            d, v = qx_quants(S.reshape(NB, 16), 32, sw)                        # v ∈ 0..63
            packed = pack_q3_scales(v)
        sc = unpack_q3_scales(packed).astype(np.int32) - 32                  # as ggml re-reads them
        dj = half(fp16(d))[:, None] * sc.astype(f32)                         # (NB, 16)
        L = requantize_sym(xb.reshape(NB, 16, 16), L.reshape(NB, 16, 16), dj, -4, 3)
        L = L.reshape(NB, QK_K)
        # hmask: byte e % 32, bit e // 32  <-  L_e > 3 ; the 2-bit planes get L_e mod 4
        hb = (L > 3).astype(np.uint8).reshape(NB, 8, 32)                      # (NB, bit, byte)
        hmask = np.bitwise_or.reduce(hb << np.arange(8, dtype=np.uint8)[None, :, None], axis=1)
        return np.concatenate([hmask.astype(np.uint8), pack_2bit_planes(L & 3), packed,
                               f16_bytes(d)], axis=1)

    def decode(self, blocks):
        hm = blocks[:, 0:32]
        high = ((hm.reshape(-1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1)
        high = high.reshape(-1, QK_K)                                         # element 32k + l
        low = unpack_2bit_planes(blocks[:, 32:96])
        # q = low2 − (hbit ? 0 : 4): a set high bit means the stored level L = q + 4 was ≥ 4
        q = low.astype(np.int8) - 4 * (1 - high).astype(np.int8)
        return {"d": f16_read(blocks, 108),
                "scales": unpack_q3_scales(blocks[:, 96:108]).astype(np.int8) - 32,
                "hmask": high, "q": q}

    def dequantize_fields(self, f):
        NB = f["q"].shape[0]
        dl = f["d"][:, None] * f["scales"].astype(f32)                       # (NB, 16)
        return (dl[..., None] * f["q"].reshape(NB, 16, 16).astype(f32)).reshape(NB, QK_K)


# ----------------------------------------------------------------------------- Q6_K
class Q6_K(KQuant):
    """Q6_K — 6-bit symmetric K-quant with int8 sub-block scales (ggml type 14).

    ====================  ======================================================
    bits per weight       6.5625  (210 bytes per 256 weights)
    sub-blocks            16 × 16 elements, level ``q ∈ −32..31``
    formula               ``y = (d·sc_j)·q``   (``sc_j`` int8)
    rounding              rne (ggml ``nearest_int``)
    search (no imatrix)   QX(nmax 32, ``w = x²``); codes ``min(127, rne(−128·S_j/S_max))``,
                          ``d = S_max/−128``
    search (imatrix)      QX(nmax 32, ``w = qw``: the raw importance, no σ² term)
    where used            ``Q6_K`` mix; output.weight of almost every mix
    ====================  ======================================================

    =======  =====  ===========================================================
    offset   bytes  field
    =======  =====  ===========================================================
    0        128    ``ql``: low 4 bits of ``q + 32`` (layout below)
    128      64     ``qh``: high 2 bits of ``q + 32``
    192      16     ``scales``: int8 per 16-element sub-block
    208      2      ``d`` fp16
    =======  =====  ===========================================================

    Per 128-element half h (``b = 128h``), for l = 0..31::

        ql[64h + l]      = lo4(b+l)    | lo4(b+64+l) << 4
        ql[64h + 32 + l] = lo4(b+32+l) | lo4(b+96+l) << 4
        qh[32h + l]      = hi2(b+l) | hi2(b+32+l) << 2 | hi2(b+64+l) << 4 | hi2(b+96+l) << 6
    """

    name = "q6_k"
    ggml_name = "Q6_K"
    ggml_type = 14
    type_size = QK_K // 2 + QK_K // 4 + QK_K // 16 + 2
    summary = "ggml 6-bit K-quant: 16×16 sub-blocks, int8 scales, fp16 d (6.5625 bpw)"
    layout = (("ql", QK_K // 2, "low 4 bits of every level q+32"),
              ("qh", QK_K // 4, "high 2 bits of every level q+32, four per byte"),
              ("scales", QK_K // 16, "int8 scale per 16-element sub-block"),
              ("d", 2, "fp16 factor of the scales"))
    fp16_fields = (("d", 208),)

    def quantize_superblocks(self, xb, qw):
        NB = xb.shape[0]
        xs = xb.reshape(NB * 16, 16)
        S, L = qx_quants(xs, 32, None if qw is None else qw.reshape(NB * 16, 16))   # L ∈ 0..63
        S = S.reshape(NB, 16)
        amax, mS = _first_max_abs(S.T)
        zero = amax < GROUP_MAX_EPS                          # whole super-block stored as zeros
        iscale = f32(-128) / np.where(zero, f32(1), mS)
        d = f32(1) / iscale
        # scales_j = min(127, rne(−128/S_max · S_j)) stored as int8
        sc = ((np.minimum(127, rne(iscale[:, None] * S)) + 128) & 0xFF) - 128
        dj = half(fp16(d))[:, None] * sc.astype(f32)
        L = requantize_sym(xb.reshape(NB, 16, 16), L.reshape(NB, 16, 16), dj, -32, 31)
        out = np.concatenate([*self.pack_levels(L.reshape(NB, QK_K)),
                              sc.astype(np.int8).view(np.uint8), f16_bytes(d)], axis=1)
        out[zero] = 0
        return out

    @staticmethod
    def pack_levels(L):
        """(NB, 256) levels 0..63 -> ql (NB, 128), qh (NB, 64)."""
        L = np.asarray(L).astype(np.uint8).reshape(-1, 2, 4, 32)             # (NB, h, g, l)
        lo, hi = L & 15, L >> 4
        ql = np.stack([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=2)
        qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
        return ql.reshape(-1, 128), qh.reshape(-1, 64)

    def decode(self, blocks):
        ql = blocks[:, 0:128].reshape(-1, 2, 2, 1, 32)                        # (NB, h, g&1, ., l)
        lo = (ql >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 1, 2, 1)) & 15   # (NB,h,g&1,g>>1,l)
        lo = lo.transpose(0, 1, 3, 2, 4).reshape(-1, 2, 4, 32)              # g = 2·(g>>1) + (g&1)
        qh = blocks[:, 128:192].reshape(-1, 2, 1, 32)
        hi = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
        q = (lo | (hi << 4)).reshape(-1, QK_K).astype(np.int8) - 32
        return {"d": f16_read(blocks, 208), "scales": blocks[:, 192:208].view(np.int8), "q": q}

    def dequantize_fields(self, f):
        NB = f["q"].shape[0]
        dl = f["d"][:, None] * f["scales"].astype(f32)                       # (d·sc)·q
        return (dl[..., None] * f["q"].reshape(NB, 16, 16).astype(f32)).reshape(NB, QK_K)


# ----------------------------------------------------------------------------- Q8_K
class Q8_K(KQuant):
    """Q8_K — 8-bit activation type of the K-quant dot products (ggml type 15).

    ====================  ======================================================
    bits per weight       9.125  (292 bytes per 256 values)
    formula               ``y = d·q``, ``q ∈ −127..127`` (int8), ``d`` **float32**
    rounding              rne (ggml ``nearest_int``): ``q = min(127, rne(−127/m · x))``,
                          ``m`` = the signed first element of largest magnitude,
                          ``d = 1/(−127/m)`` (opposite sign to ``m``)
    bsums                 16 int16 sums of the quants of each 16-element group, used by
                          the Q2_K..Q6_K × Q8_K dot products to apply the mins cheaply
    where used            never in files: llama.cpp quantizes activations to Q8_K on the
                          fly (``quantize_row_q8_K_ref``); ``ggml_quantize_chunk`` refuses it
    ====================  ======================================================

    =======  =====  ===========================================================
    offset   bytes  field
    =======  =====  ===========================================================
    0        4      ``d`` float32
    4        256    ``qs`` int8
    260      32     ``bsums`` int16[16]
    =======  =====  ===========================================================

    An all-zero block stores ``d = 0`` and zero quants; ggml leaves its ``bsums`` unwritten,
    quantlab writes zeros (their true sums).  No importance-weighted variant exists.
    """

    name = "q8_k"
    ggml_name = "Q8_K"
    ggml_type = 15
    type_size = 4 + QK_K + 2 * (QK_K // 16)
    summary = "ggml 8-bit activation type for K-quant dot products: float32 d, int8, int16 sums (9.125 bpw)"
    layout = (("d", 4, "float32 scale"),
              ("qs", QK_K, "int8 quants"),
              ("bsums", 2 * (QK_K // 16), "int16 sum of the quants of each 16-element group"))

    def quantize_superblocks(self, xb, qw):
        if qw is not None:
            raise FormatError("Q8_K is an activation format: ggml has no importance-weighted "
                              "quantizer for it; call it without imatrix")
        amax, m = _first_max_abs(xb.T)
        zero = amax == 0
        iscale = f32(-127) / np.where(zero, f32(1), m)
        q = np.minimum(127, rne(iscale[:, None] * xb))                       # (NB, 256)
        q = np.where(zero[:, None], 0, q)
        q8 = (((q + 128) & 0xFF) - 128).astype(np.int8)
        bsums = q8.astype(np.int32).reshape(-1, 16, 16).sum(axis=-1)         # exact integer sums
        d = np.where(zero, f32(0), f32(1) / iscale).astype("<f4")
        return np.concatenate([d.view(np.uint8).reshape(-1, 4), q8.view(np.uint8),
                               bsums.astype("<i2").view(np.uint8).reshape(-1, 32)], axis=1)

    def decode(self, blocks):
        return {"d": blocks[:, 0:4].copy().view("<f4")[:, 0],
                "q": blocks[:, 4:260].view(np.int8),
                "bsums": blocks[:, 260:292].copy().view("<i2")}

    def dequantize_fields(self, f):
        return f["d"][:, None] * f["q"].astype(f32)


register(Q3_K())
register(Q6_K())
register(Q8_K())
