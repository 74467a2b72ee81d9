"""ggml's shared scale searches and scale packings (spec ``ggml-quants.md`` §4).

Every K-quant (and the imatrix paths of the 32-element types) first fits a scale — and
for the asymmetric types an offset — to each (sub-)block with one of four small searches
from ``ggml/src/ggml-quants.c``:

====  ==========================  =========================================  ==============
name  ggml function               fits                                        levels ``L``
====  ==========================  =========================================  ==============
QX    ``make_qx_quants``          ``x ≈ s·(L − nmax)``, weighted LSQ          ``0..2·nmax−1``
Q3S   ``make_q3_quants``          ``x ≈ s·(L − nmax)``, coordinate descent    ``0..2·nmax−1``
QKX   ``make_qkx2/3_quants``      ``x ≈ s·L − the_min``, scale + offset       ``0..nmax``
QP    ``make_qp_quants``          ``x ≈ s·L`` for non-negative ``x``          ``0..nmax``
====  ==========================  =========================================  ==============

and then packs small integer codes into bytes (§4.6–4.8, at the bottom of this module).

Exactness rules (the whole point of this module):

* Blocks are independent, so every function takes a *batch* of blocks, ``x`` of shape
  ``(nb, n)``, and works on all of them at once.  Internally the arrays are transposed to
  ``(n, nb)`` so that element ``i`` of every block is one contiguous row.
* Element-wise float32 operations are vectorised freely (each is one IEEE rounding, as in
  C), but every **sum over the elements of a block** is a left-to-right float32
  accumulation (:func:`_sum`), and every comparison is the strict/non-strict one of the C
  source.  Candidate scales are tried in ggml's order; a block adopts a candidate only if
  it beats the best so far, exactly as the C loop does.
* Products keep the C operand order: ``w*x[i]*l`` is ``(w·x)·l``, ``w*l*x[i]`` is
  ``(w·l)·x``.  No FMA (NumPy never fuses).
"""
from __future__ import annotations

import numpy as np

from ...errors import InputError
from ... import backend
from .numerics import f32, first_max_abs, rne, seq_sum

__all__ = ["qx_quants", "q3_quants", "qkx_quants", "qkx2_quants", "qkx3_quants", "qp_quants",
           "pack_scale_min_k4", "unpack_scale_min_k4", "pack_q3_scales", "unpack_q3_scales",
           "pack_2bit_planes", "unpack_2bit_planes"]

GROUP_MAX_EPS = f32(1e-15)     # below this max |x| a group counts as all-zero (ggml)


# ----------------------------------------------------------------------------- helpers
def _sum(t: np.ndarray) -> np.ndarray:
    """Σ over axis 0 of ``t`` (n, B) in ggml's order (see :func:`.numerics.seq_sum`)."""
    return seq_sum(t, axis=0)


def _cols(a, dtype=f32) -> np.ndarray:
    """(nb, n) -> contiguous (n, nb): element i of every block in one row."""
    return np.ascontiguousarray(np.asarray(a, dtype=dtype).T)


def _first_max_abs(xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, B) -> (amax, m) per column: ggml's first-max-abs scan (:func:`.numerics.first_max_abs`)."""
    return first_max_abs(xt, axis=0)


def _nonzero(v: np.ndarray) -> np.ndarray:
    """``v`` with zeros replaced by 1, for divisions whose result is masked out anyway."""
    return np.where(v == 0, f32(1), v).astype(f32)


def _threads(x) -> int:
    """Threads for the compiled twins (quantlab.kernels._quantize): all but tiny batches."""
    return backend.n_threads(np.size(x), 1 << 12)


# ----------------------------------------------------------------------------- QX (§4.1)
def qx_quants(x, nmax: int, weights=None, rmse_type: int = 1):
    """ggml ``make_qx_quants(n, nmax, x, L, rmse_type=1, qw)`` on a batch of blocks.

    Symmetric weighted least-squares scale: ``x ≈ s·(L − nmax)``.  The first element of
    largest magnitude, ``m``, is mapped to level ``−nmax``; then 18 more inverse scales
    ``−(nmax + 0.1·k)/m`` (k = −9..−1, 1..9, in that order) are tried and the one with the
    largest ``sumlx²/suml2`` (i.e. the smallest weighted error) wins::

        l_i   = clamp(rne(iscale·x_i), −nmax, nmax−1)
        sumlx = Σ (w_i·x_i)·l_i      suml2 = Σ (w_i·l_i)·l_i      s = sumlx / suml2

    Parameters
    ----------
    x        (nb, n) float32 — one block per row
    nmax     half the number of levels (4 for Q3_K, 8 for Q4_0, 16 for Q5_0, 32 for Q6_K/Q3_K scales)
    weights  (nb, n) float32 or None — None means ggml's default ``w = x·x``
    rmse_type  only 1 (the one every quantizer uses) is implemented

    Returns
    -------
    scale  (nb,) float32 — opposite sign to ``m``; 0 for blocks with max |x| < 1e-15
    L      (nb, n) int32 in ``0..2·nmax−1`` (signed level + nmax); all **0** (not nmax)
           for those all-zero blocks
    """
    if rmse_type != 1:
        raise InputError(f"qx_quants: rmse_type={rmse_type!r} is not implemented; only 1 (the "
                         "only one ggml's quantizers use) is accepted")
    if (k := backend.kernel("_quantize")) is not None:     # compiled twin, same bits
        return k.qx_quants(x, nmax, weights, rmse_type, n_threads=_threads(x))
    xt = _cols(x)                                          # (n, B)
    w = xt * xt if weights is None else _cols(weights)     # (n, B)
    wx = w * xt                                            # (w·x), shared by every candidate
    amax, m = _first_max_abs(xt)                           # (B,), (B,)
    zero = amax < GROUP_MAX_EPS
    m = _nonzero(np.where(zero, f32(0), m))
    fnmax = f32(nmax)

    def candidate(iscale):
        l = np.clip(rne(iscale * xt), -nmax, nmax - 1).astype(f32)   # (n, B)
        return l, _sum(wx * l), _sum((w * l) * l)

    with np.errstate(all="ignore"):
        # iscale = -nmax / max
        l, sumlx, suml2 = candidate(-fnmax / m)
        scale = np.where(suml2 != 0, sumlx / _nonzero(suml2), f32(0)).astype(f32)
        best = scale * sumlx
        L = l
        for k in (*range(-9, 0), *range(1, 10)):
            # iscale = -(nmax + 0.1·k) / max
            l, sumlx, suml2 = candidate(-(fnmax + f32(0.1) * f32(k)) / m)
            win = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            L = np.where(win, l, L)
            scale = np.where(win, sumlx / _nonzero(suml2), scale).astype(f32)
            best = np.where(win, scale * sumlx, best).astype(f32)
    L = (L.astype(np.int32) + nmax).T
    return (np.where(zero, f32(0), scale).astype(f32),
            np.where(zero[:, None], 0, L).astype(np.int32))


# ----------------------------------------------------------------------------- Q3S (§4.2)
def q3_quants(x, nmax: int = 4):
    """ggml ``make_q3_quants(n, nmax, x, L, do_rmse=true)`` — Q3_K's reference search.

    Start like QX with ``w = x·x`` (only the first candidate, ``−nmax/m``), then up to 5
    passes of coordinate descent: for each element in order, move its level to the value
    that is optimal given the others, and keep the move if it raises ``sumlx²/suml2``.

    x (nb, n) float32 -> (scale (nb,) float32, L (nb, n) int32 in ``0..2·nmax−1``; all 0
    for blocks with max |x| < 1e-15).
    """
    if (k := backend.kernel("_quantize")) is not None:     # compiled twin, same bits
        return k.q3_quants(x, nmax, n_threads=_threads(x))
    xt = _cols(x)                                          # (n, B)
    w = xt * xt
    wx = w * xt
    amax, m = _first_max_abs(xt)
    zero = amax < GROUP_MAX_EPS
    m = _nonzero(np.where(zero, f32(0), m))
    with np.errstate(all="ignore"):
        L = np.clip(rne((-f32(nmax) / m) * xt), -nmax, nmax - 1).astype(f32)   # signed, (n, B)
        sumlx = _sum(wx * L)
        suml2 = _sum((w * L) * L)
        for _ in range(5):
            changed = np.zeros(xt.shape[1], dtype=bool)
            for i in range(xt.shape[0]):                       # in place, element by element
                Li = L[i]
                slx0 = sumlx - wx[i] * Li                      # the sums without element i
                sl20 = suml2 - (w[i] * Li) * Li
                # new_l = clamp(rne(x_i·sl2 / slx), −nmax, nmax−1): optimal given the others
                nl = np.clip(rne((xt[i] * sl20) / _nonzero(slx0)), -nmax, nmax - 1).astype(f32)
                slx = slx0 + wx[i] * nl
                sl2 = sl20 + (w[i] * nl) * nl
                take = ((slx0 > 0) & (nl != Li) & (sl2 > 0)
                        & ((slx * slx) * suml2 > (sumlx * sumlx) * sl2))
                L[i] = np.where(take, nl, Li)
                sumlx = np.where(take, slx, sumlx).astype(f32)
                suml2 = np.where(take, sl2, suml2).astype(f32)
                changed |= take
            if not changed.any():           # a pass without change leaves the state as is
                break
        scale = np.where(suml2 > 0, sumlx / _nonzero(suml2), f32(0)).astype(f32)
    L = (L.astype(np.int32) + nmax).T
    return (np.where(zero, f32(0), scale).astype(f32),
            np.where(zero[:, None], 0, L).astype(np.int32))


# ----------------------------------------------------------------------------- QKX (§4.3)
def qkx_quants(x, weights, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool,
               variant: int = 2):
    """ggml ``make_qkx2_quants`` (``variant=2``) / ``make_qkx3_quants`` (``variant=3``).

    Asymmetric fit ``x ≈ s·L − the_min`` with ``L ∈ 0..nmax``, ``s ≥ 0``, ``the_min ≥ 0``.
    Start from the data range ``[min(x, 0), max(x)]``, then try ``nstep + 1`` inverse
    scales ``(rmin + rdelta·k + nmax) / (max − lo)``; for each, round the levels, solve the
    weighted least-squares problem for (scale, offset) in closed form::

        D     = Σw·Σ(wL²) − (ΣwL)²
        scale = (Σw·Σ(wLx) − Σ(wx)·ΣwL) / D
        lo    = (Σ(wL²)·Σ(wx) − ΣwL·Σ(wLx)) / D        (if lo > 0: lo = 0, scale = ΣwLx/ΣwL²)

    and keep it if its weighted error ``Σ w·|E|`` (``use_mad``) or ``Σ w·E²`` is smaller,
    ``E = scale·L + lo − x``.  **A winning candidate's offset ``lo`` replaces the one used by
    every later candidate** (in ``max − lo`` and ``x − lo``), as in ggml.

    Parameters (ggml's names)
    ----------
    x        (nb, n) float32
    weights  (nb, n) float32 (``variant=3`` also accepts None: ``w = x·x``)
    nmax, rmin, rdelta, nstep, use_mad — see the parameter table of spec §4.3
    variant  2 or 3: the two ggml functions differ in the degenerate test (``max == min`` vs
             ``max <= min``) and in how a candidate's level is clamped (``clamp(rne(v), 0,
             nmax)`` vs ``v > 0 ? rne(min(v, nmax)) : 0``); identical for finite, sane input.

    Returns
    -------
    scale    (nb,) float32 (0 for a constant block with ``min(x, 0) == max(x)``)
    the_min  (nb,) float32, ``= −lo ≥ 0``
    L        (nb, n) int32 in ``0..nmax``
    """
    if (k := backend.kernel("_quantize")) is not None:     # compiled twin, same bits
        return k.qkx_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad, variant, _threads(x))
    xt = _cols(x)                                                 # (n, B)
    w = xt * xt if weights is None else _cols(weights)
    n, B = xt.shape
    fnmax = f32(nmax)
    # sequential scan: strict comparisons (the first of equal values wins), running sums
    lo, hi, sw, sx = xt[0].copy(), xt[0].copy(), w[0].copy(), w[0] * xt[0]
    for i in range(1, n):
        lo = np.where(xt[i] < lo, xt[i], lo)
        hi = np.where(xt[i] > hi, xt[i], hi)
        sw = sw + w[i]
        sx = sx + w[i] * xt[i]
    lo = np.where(lo > 0, f32(0), lo).astype(f32)
    degenerate = (hi == lo) if variant == 2 else (hi <= lo)

    def levels(iscale, lo):
        v = iscale * (xt - lo)                                     # (n, B)
        if variant == 2:
            return np.clip(rne(v), 0, nmax).astype(f32)
        return np.where(v > 0, rne(np.minimum(v, fnmax)), 0).astype(f32)

    def error(sc, mn, A):
        E = (sc * A + mn) - xt                                     # ((s·L) + lo) − x
        return _sum(w * (np.abs(E) if use_mad else E * E))

    with np.errstate(all="ignore"):
        iscale = fnmax / (hi - lo)
        scale = f32(1) / iscale
        L = np.clip(rne(iscale * (xt - lo)), 0, nmax).astype(f32)
        best = error(scale, lo, L)
        for k in range(nstep + 1) if nstep >= 1 else ():
            # iscale = (rmin + rdelta·k + nmax) / (max − lo)   — with the *current* lo
            iscale = ((f32(rmin) + f32(rdelta) * f32(k)) + fnmax) / (hi - lo)
            A = levels(iscale, lo)
            wA = w * A
            sl, sl2, sxl = _sum(wA), _sum(wA * A), _sum(wA * xt)
            D = sw * sl2 - sl * sl
            sc = (sw * sxl - sx * sl) / D
            mn = (sl2 * sx - sl * sxl) / D
            pos = mn > 0
            mn = np.where(pos, f32(0), mn).astype(f32)
            sc = np.where(pos, sxl / sl2, sc).astype(f32)
            e = error(sc, mn, A)
            win = (D > 0) & (e < best) & ~degenerate
            L = np.where(win, A, L)
            best = np.where(win, e, best).astype(f32)
            scale = np.where(win, sc, scale).astype(f32)
            lo = np.where(win, mn, lo).astype(f32)
    scale = np.where(degenerate, f32(0), scale).astype(f32)
    L = np.where(degenerate, f32(0), L).astype(np.int32).T
    return scale, (-lo).astype(f32), np.ascontiguousarray(L)


def qkx2_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad):
    """ggml ``make_qkx2_quants`` (K-quant reference paths); see :func:`qkx_quants`."""
    return qkx_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad, variant=2)


def qkx3_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad):
    """ggml ``make_qkx3_quants`` (imatrix paths of Q2_K/Q4_K/Q5_K/Q4_1/Q5_1); see :func:`qkx_quants`."""
    return qkx_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad, variant=3)


# ----------------------------------------------------------------------------- QP (§4.4)
def qp_quants(x, nmax: int, weights):
    """ggml ``make_qp_quants(n, nmax, x, L, quant_weights)``: quantize non-negative values.

    Used by the imatrix paths of Q2_K/Q4_K/Q5_K to turn the sub-block scales (or mins)
    ``x ≥ 0`` into codes ``L ∈ 0..nmax`` with one super-block factor ``s``, ``x ≈ s·L``.
    Try ``iscale = nmax/max`` and 8 neighbours ``(nmax + 0.1·k)/max`` (k = −4..4, k ≠ 0)
    by weighted squared error, then refine with QX-style coordinate descent (≤ 5 passes).

    ggml keeps the levels in ``uint8_t``, so a negative level (only possible for negative
    ``x``, which the K-quants never pass in practice) is stored modulo 256; that is
    reproduced here.

    x (nb, n) float32, weights (nb, n) float32 -> (scale (nb,) float32, L (nb, n) int32).
    """
    if (k := backend.kernel("_quantize")) is not None:     # compiled twin, same bits
        return k.qp_quants(x, nmax, weights, n_threads=_threads(x))
    xt = _cols(x)                                          # (n, B)
    w = _cols(weights)
    wx = w * xt
    fnmax = f32(nmax)
    hi = np.zeros(xt.shape[1], dtype=f32)
    for i in range(xt.shape[0]):                           # max = MAX(max, x[i])
        hi = np.where(hi > xt[i], hi, xt[i])
    zero = hi < GROUP_MAX_EPS
    hi = _nonzero(np.where(zero, f32(0), hi))

    def mse(sc, l):                                        # Σ (w·E)·E, E = x − sc·l
        E = xt - sc * l
        return _sum((w * E) * E)

    with np.errstate(all="ignore"):
        iscale = fnmax / hi
        L0 = (rne(iscale * xt) & 0xFF).astype(f32)          # stored in uint8, not clamped
        best = mse(f32(1) / iscale, L0)
        for k in (-4, -3, -2, -1, 1, 2, 3, 4):
            isc = (f32(0.1) * f32(k) + fnmax) / hi
            l = np.minimum(nmax, rne(isc * xt)).astype(f32)
            e = mse(f32(1) / isc, l)
            win = e < best
            best = np.where(win, e, best).astype(f32)
            iscale = np.where(win, isc, iscale).astype(f32)
        l = np.minimum(nmax, rne(iscale * xt))              # int; L keeps it modulo 256
        L = (l & 0xFF).astype(f32)
        l = l.astype(f32)
        sumlx = _sum(wx * l)
        suml2 = _sum((w * l) * l)
        for _ in range(5):
            changed = np.zeros(xt.shape[1], dtype=bool)
            for i in range(xt.shape[0]):
                Li = L[i]
                slx0 = sumlx - wx[i] * Li
                sl20 = suml2 - (w[i] * Li) * Li
                nl = np.minimum(nmax, rne((xt[i] * sl20) / _nonzero(slx0))).astype(f32)
                slx = slx0 + wx[i] * nl
                sl2 = sl20 + (w[i] * nl) * nl
                take = ((slx0 > 0) & (sl20 > 0) & (nl != Li)
                        & ((slx * slx) * suml2 > (sumlx * sumlx) * sl2))
                L[i] = np.where(take, (nl.astype(np.int32) & 0xFF), Li)
                sumlx = np.where(take, slx, sumlx).astype(f32)
                suml2 = np.where(take, sl2, suml2).astype(f32)
                changed |= take
            if not changed.any():
                break
        scale = np.where(suml2 > 0, sumlx / _nonzero(suml2), f32(0)).astype(f32)
    return (np.where(zero, f32(0), scale).astype(f32),
            np.where(zero[:, None], 0, L.T.astype(np.int32)))


# ----------------------------------------------------------------------------- packings
# 6-bit scale + 6-bit min codes of Q4_K / Q5_K in 12 bytes (§4.6, ggml get_scale_min_k4):
#
#   byte 0..3 :  SS SSSSSS     low 6 bits: sc_0..sc_3,  top 2 bits: sc_4..sc_7 >> 4
#   byte 4..7 :  MM MMMMMM     low 6 bits: mn_0..mn_3,  top 2 bits: mn_4..mn_7 >> 4
#   byte 8..11:  mmmm ssss     low nibble: sc_4..sc_7 & 15, high nibble: mn_4..mn_7 & 15
def pack_scale_min_k4(sc, mn) -> np.ndarray:
    """sc, mn (nb, 8) ints in 0..63 -> (nb, 12) uint8."""
    sc = np.asarray(sc, dtype=np.uint8)
    mn = np.asarray(mn, dtype=np.uint8)
    out = np.empty(sc.shape[:-1] + (12,), dtype=np.uint8)
    out[..., 0:4] = sc[..., :4] | ((sc[..., 4:] >> 4) << 6)
    out[..., 4:8] = mn[..., :4] | ((mn[..., 4:] >> 4) << 6)
    out[..., 8:12] = (sc[..., 4:] & 15) | ((mn[..., 4:] & 15) << 4)
    return out


def unpack_scale_min_k4(S) -> tuple[np.ndarray, np.ndarray]:
    """(nb, 12) uint8 -> (sc, mn), each (nb, 8) uint8 in 0..63."""
    S = np.asarray(S, dtype=np.uint8)
    sc = np.concatenate([S[..., 0:4] & 63, (S[..., 8:12] & 15) | ((S[..., 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([S[..., 4:8] & 63, (S[..., 8:12] >> 4) | ((S[..., 4:8] >> 6) << 4)], axis=-1)
    return sc, mn


# 16 six-bit codes v_0..v_15 of Q3_K (signed scale = v − 32) in 12 bytes (§4.7):
#
#   byte 0..7 :  hhhh llll     low nibble: v_j & 15,  high nibble: v_{j+8} & 15
#   byte 8..11:  DD CC BB AA   byte 8+k holds v_k, v_{4+k}, v_{8+k}, v_{12+k} >> 4 (2 bits each,
#                              lowest pair first)
def pack_q3_scales(v) -> np.ndarray:
    """v (nb, 16) ints in 0..63 -> (nb, 12) uint8."""
    v = np.asarray(v, dtype=np.uint8)
    out = np.empty(v.shape[:-1] + (12,), dtype=np.uint8)
    out[..., 0:8] = (v[..., 0:8] & 15) | ((v[..., 8:16] & 15) << 4)
    hi = (v >> 4).reshape(v.shape[:-1] + (4, 4))          # (…, g, k): code of v_{4g+k}
    out[..., 8:12] = hi[..., 0, :] | (hi[..., 1, :] << 2) | (hi[..., 2, :] << 4) | (hi[..., 3, :] << 6)
    return out


def unpack_q3_scales(S) -> np.ndarray:
    """(nb, 12) uint8 -> v (nb, 16) uint8 in 0..63 (the signed scale is ``v − 32``)."""
    S = np.asarray(S, dtype=np.uint8)
    low = np.concatenate([S[..., 0:8] & 15, S[..., 0:8] >> 4], axis=-1)           # (…, 16)
    shifts = (2 * (np.arange(16) // 4)).astype(np.uint8)
    high = (S[..., 8 + np.arange(16) % 4] >> shifts) & 3
    return low | (high << 4)


# 2-bit planes of Q2_K / Q3_K (§4.8): 256 levels in 64 bytes, per 128-element half h:
#
#   qs[32h + l] = L[128h+l] | L[128h+l+32] << 2 | L[128h+l+64] << 4 | L[128h+l+96] << 6
#                 bits 1-0    bits 3-2            bits 5-4            bits 7-6
def pack_2bit_planes(L) -> np.ndarray:
    """L (nb, 256) ints in 0..3 -> (nb, 64) uint8."""
    L = np.asarray(L, dtype=np.uint8).reshape(-1, 2, 4, 32)     # (nb, half, plane g, l)
    q = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return q.reshape(-1, 64)


def unpack_2bit_planes(qs) -> np.ndarray:
    """(nb, 64) uint8 -> L (nb, 256) uint8 in 0..3."""
    qs = np.asarray(qs, dtype=np.uint8).reshape(-1, 2, 1, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((qs >> shifts) & 3).reshape(-1, 256)
