"""ggml's K-quants with a scale *and* a min per sub-block: Q2_K, Q4_K, Q5_K (spec §5.1, §5.3, §5.4).

A K-quant block ("super-block") holds 256 weights cut into sub-blocks (16 of 16 or 8 of 32).
Every sub-block ``j`` gets its own scale and min, but those are themselves stored as small
integer codes ``sc_j``, ``m_j`` times two fp16 super-block factors ``d`` and ``dmin``::

    y_e = (d·sc_j)·q_e − dmin·m_j              (e in sub-block j, q_e ∈ 0..2^bits − 1)

=====  ===  =====  ======  ==============================  ==========================
type   id   bytes  bpw     sub-blocks                      codes per sub-block
=====  ===  =====  ======  ==============================  ==========================
Q2_K   10    84    2.625   16 × 16 elements, 2-bit q       4-bit scale, 4-bit min
Q4_K   12   144    4.5      8 × 32 elements, 4-bit q       6-bit scale, 6-bit min
Q5_K   13   176    5.5      8 × 32 elements, 5-bit q       6-bit scale, 6-bit min
=====  ===  =====  ======  ==============================  ==========================

The symmetric K-quants (Q3_K, Q6_K, and the activation type Q8_K) live in
:mod:`.kquants_sym`.  Every K-quant is quantized in three phases (spec §5):

1. per sub-block, a search (:mod:`.search`: QKX here) fits a float scale and min and
   provisional levels ``L``;
2. the sub-block scales and mins become integer codes with fp16 factors ``d``, ``dmin``
   (without imatrix: the largest maps to the top code; with one: the QP search);
3. re-quantization against the *stored* factors: ``dj = half(d)·sc_j``; if ``dj ≠ 0`` the
   levels are recomputed ``L_e = clamp(rne((x_e + half(dmin)·m_j)/dj), 0, nmax)``, **else the
   provisional levels of phase 1 are kept** (and written, although they decode to ``−min``).

Rounding: ``rne`` (ggml ``nearest_int``, half to even) everywhere.  Sums are sequential
float32 (:func:`.search._sum`), products in C operand order, no FMA.
"""
from __future__ import annotations

import numpy as np

from ...errors import FormatError
from ..base import register
from .base import GGMLFormat
from .numerics import f32, fp16, half, rne
from .search import (_sum, pack_2bit_planes, pack_scale_min_k4, qkx2_quants, qkx3_quants,
                     qp_quants, unpack_2bit_planes, unpack_scale_min_k4)

__all__ = ["Q2_K", "Q4_K", "Q5_K", "QK_K", "KQuant"]

QK_K = 256


# ----------------------------------------------------------------------------- shared driver
class KQuant(GGMLFormat):
    """Shared driver of every K-quant: rows -> 256-element super-blocks -> bytes.

    Subclasses write ``quantize_superblocks(xb, qw)`` on ``xb`` (NB, 256) float32 with the
    matching imatrix slices ``qw`` (NB, 256) (or None), and ``decode(blocks)`` returning the
    named fields (arrays with a leading NB axis) that :meth:`dequantize_blocks` and
    :meth:`block_fields` share.
    """

    block_size = QK_K
    fp16_fields: tuple[tuple[str, int], ...] = ()     # (name, byte offset) of fp16 scale fields

    def quantize_rows(self, x, imatrix):
        xb = x.reshape(-1, QK_K)                                               # (NB, 256)
        qw = None if imatrix is None else np.broadcast_to(imatrix, x.shape).reshape(-1, QK_K)
        # ggml's arithmetic is plain IEEE: divisions by a zero scale, inf reciprocals of tiny
        # scales etc. happen in branches whose result is then discarded, as in the C code.
        with np.errstate(all="ignore"):
            blocks = self.quantize_superblocks(xb, qw)
        self._check_scales(blocks)
        return blocks.reshape(x.shape[0], -1)

    def _check_scales(self, blocks):
        """llama-quantize rejects blocks whose fp16 scale fields are inf/NaN (spec §2)."""
        for name, off in self.fp16_fields:
            bits = blocks[:, off:off + 2].copy().view("<u2")[:, 0]
            bad = (bits & 0x7C00) == 0x7C00
            if bad.any():
                raise FormatError(
                    f"{self.ggml_name}: the fp16 field {name!r} overflows in {int(bad.sum())} "
                    f"super-block(s) (first: {int(np.argmax(bad))}); the values are too large for "
                    "this type (fp16 max 65504) — llama-quantize rejects such tensors too. "
                    "Scale the data down or use F32/BF16.")

    def dequantize_blocks(self, blocks):
        with np.errstate(all="ignore"):
            return self.dequantize_fields(self.decode(blocks))

    def block_fields(self, block):
        block = np.asarray(block, dtype=np.uint8).reshape(1, self.type_size)
        return {k: v[0] for k, v in self.decode(block).items()}


def f16_bytes(v) -> np.ndarray:
    """float32 (NB,) -> (NB, 2) uint8: the fp16 bits, little-endian."""
    return fp16(v).astype("<u2").view(np.uint8).reshape(-1, 2)


def f16_read(blocks, off) -> np.ndarray:
    """(NB, type_size) uint8 -> (NB,) float32: the fp16 field at byte ``off``, widened."""
    return half(blocks[:, off:off + 2].copy().view("<u2")[:, 0])


def scan_max(v) -> np.ndarray:
    """(NB, S) -> (NB,): ``m = 0; if v_j > m: m = v_j`` (ggml's max_scale / max_min loops)."""
    m = np.zeros(v.shape[0], dtype=f32)
    for j in range(v.shape[1]):
        m = np.where(v[:, j] > m, v[:, j], m)
    return m


def max_codes(v, top: int):
    """Reference-path codes: the largest value maps to ``top``.

    ``c_j = rne(top/max · v_j)`` and factor ``max/top``, with ``max`` by :func:`scan_max`;
    both 0 when ``max ≤ 0``.  v (NB, S) float32 -> (codes (NB, S) int, factor (NB,) float32).
    """
    mx = scan_max(v)
    pos = mx > 0
    codes = np.where(pos[:, None], rne((f32(top) / mx)[:, None] * v), 0)
    return codes, np.where(pos, mx / f32(top), f32(0)).astype(f32)


def imatrix_weights(xb, qw, factor: int) -> np.ndarray:
    """``w_e = qw_e·sqrt(σ² + x_e²)`` with ``σ² = factor·Σ_256 x² / 256`` (spec §7).

    ``factor`` is 1 for Q2_K and 2 for Q3_K/Q4_K/Q5_K (ggml computes ``2*sumx2/QK_K``).
    xb, qw (NB, 256) -> (NB, 256) float32.
    """
    sumx2 = _sum((xb * xb).T)                                        # (NB,) sequential
    sigma2 = (f32(factor) * sumx2) / f32(QK_K)                      # (2*sumx2)/QK_K
    return qw * np.sqrt(sigma2[:, None] + xb * xb)


def requantize(x, L, dj, mj, nmax) -> np.ndarray:
    """Phase 3: ``L = clamp(rne((x + mj)/dj), 0, nmax)`` where ``dj ≠ 0``, else keep ``L``.

    x, L (NB, S, n); dj, mj (NB, S) float32.
    """
    new = np.clip(rne((x + mj[..., None]) / dj[..., None]), 0, nmax)
    return np.where(dj[..., None] != 0, new, L)


# ----------------------------------------------------------------------------- Q2_K
class Q2_K(KQuant):
    """Q2_K — 2-bit K-quant with 4-bit sub-block scales and mins (ggml type 10).

    ====================  ======================================================
    bits per weight       2.625  (84 bytes per 256 weights)
    sub-blocks            16 × 16 elements, level ``q ∈ 0..3``
    formula               ``y = (d·sc_j)·q − dmin·m_j``   (``sc_j, m_j ∈ 0..15``)
    rounding              rne (ggml ``nearest_int``)
    search (no imatrix)   QKX(nmax 3, rmin −0.5, rdelta 0.1, nstep 15, |E|), ``w = |x|``;
                          codes ``rne(15·S_j/max S)``, ``d = max S / 15``
    search (imatrix)      QKX3(3, −0.9, 0.05, 36, E²), ``w = qw·sqrt(Σx²/256 + x²)``;
                          codes and ``d``/``dmin`` by QP(nmax 15)
    where used            the ``Q2_K`` mix (most of its tensors)
    ====================  ======================================================

    =======  =====  ===========================================================
    offset   bytes  field
    =======  =====  ===========================================================
    0        16     ``scales[j]`` = ``sc_j | m_j << 4`` for sub-block j
    16       64     ``qs``: 2-bit levels in four planes (below)
    80       2      ``d``    fp16
    82       2      ``dmin`` fp16
    =======  =====  ===========================================================
    """

    name = "q2_k"
    ggml_name = "Q2_K"
    ggml_type = 10
    type_size = 16 + QK_K // 4 + 2 + 2
    summary = "ggml 2-bit K-quant: 16×16 sub-blocks, 4-bit scale+min codes, fp16 d/dmin (2.625 bpw)"
    layout = (("scales", 16, "per 16-element sub-block: scale code (low nibble) | min code (high nibble)"),
              ("qs", QK_K // 4, "2-bit levels q ∈ 0..3, four 32-element planes per 128 elements"),
              ("d", 2, "fp16 factor of the scale codes"),
              ("dmin", 2, "fp16 factor of the min codes"))
    fp16_fields = (("d", 80), ("dmin", 82))

    def quantize_superblocks(self, xb, qw):
        NB = xb.shape[0]
        xs = xb.reshape(NB * 16, 16)                                          # sub-blocks
        if qw is None:
            S, M, L = qkx2_quants(xs, np.abs(xs), 3, -0.5, 0.1, 15, True)
            (sc, d), (mn, dmin) = max_codes(S.reshape(NB, 16), 15), max_codes(M.reshape(NB, 16), 15)
        else:
            w = imatrix_weights(xb, qw, 1).reshape(NB * 16, 16)
            S, M, L = qkx3_quants(xs, w, 3, -0.9, 0.05, 36, False)
            sw = _sum(w.T).reshape(NB, 16)                                     # Σ w per sub-block
            d, sc = qp_quants(S.reshape(NB, 16), 15, sw)
            dmin, mn = qp_quants(M.reshape(NB, 16), 15, sw)
        # ggml stores l into a uint8 and then ORs in (min_code << 4): keep it byte-exact
        scales = ((sc & 0xFF) | (mn << 4)) & 0xFF                             # (NB, 16)
        d16, dmin16 = fp16(d), fp16(dmin)
        dj = half(d16)[:, None] * (scales & 0xF).astype(f32)                 # (NB, 16)
        mj = half(dmin16)[:, None] * (scales >> 4).astype(f32)
        L = requantize(xb.reshape(NB, 16, 16), L.reshape(NB, 16, 16), dj, mj, 3)
        return np.concatenate([scales.astype(np.uint8), pack_2bit_planes(L.reshape(NB, QK_K)),
                               f16_bytes(d), f16_bytes(dmin)], axis=1)

    def decode(self, blocks):
        scales = blocks[:, 0:16]
        return {"d": f16_read(blocks, 80), "dmin": f16_read(blocks, 82),
                "scales": scales & 0xF, "mins": scales >> 4,
                "q": unpack_2bit_planes(blocks[:, 16:80])}

    def dequantize_fields(self, f):
        NB = f["q"].shape[0]
        dl = f["d"][:, None] * f["scales"].astype(f32)                       # (NB, 16)
        ml = f["dmin"][:, None] * f["mins"].astype(f32)
        q = f["q"].reshape(NB, 16, 16).astype(f32)
        return (dl[..., None] * q - ml[..., None]).reshape(NB, QK_K)


# ----------------------------------------------------------------------------- Q4_K, Q5_K
class _Q45K(KQuant):
    """Q4_K and Q5_K share everything but the number of bits per level."""

    bits = 4
    ref_search = (-1.0, 0.1, 20)            # (rmin, rdelta, nstep) of the reference QKX
    clamp_imatrix_codes = False             # quantize_row_q5_K_impl clamps QP codes to 63; q4_K's does not
    fp16_fields = (("d", 0), ("dmin", 2))

    def quantize_superblocks(self, xb, qw):
        NB = xb.shape[0]
        nmax = (1 << self.bits) - 1
        xs = xb.reshape(NB * 8, 32)                                           # sub-blocks
        if qw is None:
            # w = av + |x|,  av = sqrt(Σ_32 x² / 32)
            av = np.sqrt(_sum((xs * xs).T) / f32(32))
            S, M, L = qkx2_quants(xs, av[:, None] + np.abs(xs), nmax, *self.ref_search, False)
            (sc, d), (mn, dmin) = max_codes(S.reshape(NB, 8), 63), max_codes(M.reshape(NB, 8), 63)
            sc, mn = np.minimum(63, sc & 0xFF), np.minimum(63, mn & 0xFF)     # via uint8, as ggml
        else:
            w = imatrix_weights(xb, qw, 2).reshape(NB * 8, 32)
            S, M, L = qkx3_quants(xs, w, nmax, -0.9, 0.05, 36, False)
            sw = _sum(w.T).reshape(NB, 8)
            d, sc = qp_quants(S.reshape(NB, 8), 63, sw)
            dmin, mn = qp_quants(M.reshape(NB, 8), 63, sw)
            if self.clamp_imatrix_codes:
                sc, mn = np.minimum(63, sc), np.minimum(63, mn)
        packed = pack_scale_min_k4(sc, mn)                                    # (NB, 12)
        sc, mn = unpack_scale_min_k4(packed)                                  # as ggml re-reads them
        d16, dmin16 = fp16(d), fp16(dmin)
        dj = half(d16)[:, None] * sc.astype(f32)                             # (NB, 8)
        mj = half(dmin16)[:, None] * mn.astype(f32)
        L = requantize(xb.reshape(NB, 8, 32), L.reshape(NB, 8, 32), dj, mj, nmax)
        return np.concatenate([f16_bytes(d), f16_bytes(dmin), packed,
                               *self.pack_levels(L.reshape(NB, QK_K))], axis=1)

    @staticmethod
    def pack_nibbles(L):
        """(NB, 256) levels -> (NB, 128): chunk c of 64, ``qs[32c+l] = L[64c+l] | L[64c+32+l] << 4``."""
        L = np.asarray(L).astype(np.uint8).reshape(-1, 4, 2, 32)              # (NB, c, half, l)
        return ((L[:, :, 0] & 15) | ((L[:, :, 1] & 15) << 4)).reshape(-1, 128)

    @staticmethod
    def unpack_nibbles(qs):
        """(NB, 128) -> (NB, 256) low 4 bits of every level."""
        qs = qs.reshape(-1, 4, 1, 32)
        return ((qs >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 15).reshape(-1, QK_K)

    def decode(self, blocks):
        sc, mn = unpack_scale_min_k4(blocks[:, 4:16])
        return {"d": f16_read(blocks, 0), "dmin": f16_read(blocks, 2), "scales": sc, "mins": mn,
                **self.unpack_levels(blocks[:, 16:])}

    def dequantize_fields(self, f):
        NB = f["q"].shape[0]
        dl = f["d"][:, None] * f["scales"].astype(f32)                       # (NB, 8)
        ml = f["dmin"][:, None] * f["mins"].astype(f32)
        q = f["q"].reshape(NB, 8, 32).astype(f32)
        return (dl[..., None] * q - ml[..., None]).reshape(NB, QK_K)


class Q4_K(_Q45K):
    """Q4_K — 4-bit K-quant with 6-bit sub-block scales and mins (ggml type 12).

    ====================  ======================================================
    bits per weight       4.5  (144 bytes per 256 weights)
    sub-blocks            8 × 32 elements, level ``q ∈ 0..15``
    formula               ``y = (d·sc_j)·q − dmin·m_j``   (``sc_j, m_j ∈ 0..63``)
    rounding              rne (ggml ``nearest_int``)
    search (no imatrix)   QKX(nmax 15, rmin −1, rdelta 0.1, nstep 20, E²),
                          ``w = sqrt(Σ_32 x²/32) + |x|``; codes ``rne(63·S_j/max S)``
    search (imatrix)      QKX3(15, −0.9, 0.05, 36, E²), ``w = qw·sqrt(2Σx²/256 + x²)``;
                          codes and ``d``/``dmin`` by QP(nmax 63)
    where used            the workhorse of ``Q4_K_M`` / ``Q4_K_S`` (and ``Q3_K_M``'s attn_v)
    ====================  ======================================================

    =======  =====  ===========================================================
    offset   bytes  field
    =======  =====  ===========================================================
    0        2      ``d``    fp16 factor of the scale codes
    2        2      ``dmin`` fp16 factor of the min codes
    4        12     8 six-bit scale codes + 8 six-bit min codes (spec §4.6)
    16       128    ``qs``: per 64-element chunk c, byte ``32c+l`` holds element
                    ``64c+l`` (low nibble) and ``64c+32+l`` (high nibble)
    =======  =====  ===========================================================
    """

    name = "q4_k"
    ggml_name = "Q4_K"
    ggml_type = 12
    bits = 4
    type_size = 2 + 2 + 12 + QK_K // 2
    summary = "ggml 4-bit K-quant: 8×32 sub-blocks, 6-bit scale+min codes, fp16 d/dmin (4.5 bpw)"
    layout = (("d", 2, "fp16 factor of the scale codes"),
              ("dmin", 2, "fp16 factor of the min codes"),
              ("scales", 12, "8 six-bit scale codes and 8 six-bit min codes, packed"),
              ("qs", QK_K // 2, "4-bit levels: chunk of 64 = 32 bytes, elements l and 32+l per byte"))
    ref_search = (-1.0, 0.1, 20)
    clamp_imatrix_codes = False

    def pack_levels(self, L):
        return (self.pack_nibbles(L),)

    def unpack_levels(self, rest):
        return {"q": self.unpack_nibbles(rest)}


class Q5_K(_Q45K):
    """Q5_K — 5-bit K-quant with 6-bit sub-block scales and mins (ggml type 13).

    ====================  ======================================================
    bits per weight       5.5  (176 bytes per 256 weights)
    sub-blocks            8 × 32 elements, level ``q ∈ 0..31``
    formula               ``y = (d·sc_j)·q − dmin·m_j``   (``sc_j, m_j ∈ 0..63``)
    rounding              rne (ggml ``nearest_int``)
    search (no imatrix)   QKX(nmax 31, rmin −0.5, rdelta 0.1, nstep 15, E²),
                          ``w = sqrt(Σ_32 x²/32) + |x|``; codes ``rne(63·S_j/max S)``
    search (imatrix)      QKX3(31, −0.9, 0.05, 36, E²), ``w = qw·sqrt(2Σx²/256 + x²)``;
                          codes and ``d``/``dmin`` by QP(nmax 63)
    where used            ``Q5_K_M`` / ``Q5_K_S``; attn_v / ffn_down of ``Q4_K_M``-like mixes
    ====================  ======================================================

    =======  =====  ===========================================================
    offset   bytes  field
    =======  =====  ===========================================================
    0        2      ``d``    fp16
    2        2      ``dmin`` fp16
    4        12     scale / min codes (as Q4_K)
    16       32     ``qh``: bit 2c of ``qh[l]`` = bit 4 of element ``64c+l``,
                    bit 2c+1 = bit 4 of element ``64c+32+l``
    48       128    ``qs``: low 4 bits, nibbles as Q4_K
    =======  =====  ===========================================================
    """

    name = "q5_k"
    ggml_name = "Q5_K"
    ggml_type = 13
    bits = 5
    type_size = 2 + 2 + 12 + QK_K // 8 + QK_K // 2
    summary = "ggml 5-bit K-quant: 8×32 sub-blocks, 6-bit scale+min codes, fp16 d/dmin (5.5 bpw)"
    layout = (("d", 2, "fp16 factor of the scale codes"),
              ("dmin", 2, "fp16 factor of the min codes"),
              ("scales", 12, "8 six-bit scale codes and 8 six-bit min codes, packed"),
              ("qh", QK_K // 8, "fifth bit of every level: qh[l] bit 2c / 2c+1 for chunk c"),
              ("qs", QK_K // 2, "low 4 bits of every level, nibbles as Q4_K"))
    ref_search = (-0.5, 0.1, 15)
    clamp_imatrix_codes = True

    # qh[l] (l = 0..31) collects bit 4 of the eight elements l, 32+l, …, 224+l:
    #
    #   qh[l]:  bit  7      6      5      4      3     2     1     0
    #           e224+l e192+l e160+l e128+l e96+l e64+l e32+l  e0+l      (bit k <- element 32k + l)
    def pack_levels(self, L):
        L = np.asarray(L).astype(np.uint8)
        hb = (L >> 4).reshape(-1, 8, 32)                                      # (NB, k, l)
        qh = np.bitwise_or.reduce(hb << np.arange(8, dtype=np.uint8)[None, :, None], axis=1)
        return qh.astype(np.uint8), self.pack_nibbles(L)

    def unpack_levels(self, rest):
        qh, qs = rest[:, :32], rest[:, 32:]
        shifts = np.arange(8, dtype=np.uint8).reshape(1, 8, 1)                # bit k
        high = ((qh.reshape(-1, 1, 32) >> shifts) & 1).reshape(-1, QK_K)     # element 32k + l
        return {"qh": high, "q": self.unpack_nibbles(qs) | (high << 4)}


register(Q2_K())
register(Q4_K())
register(Q5_K())

from . import kquants_sym  # noqa: E402,F401  (Q3_K, Q6_K, Q8_K register themselves)
