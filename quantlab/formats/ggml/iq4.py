"""ggml's non-linear 4-bit types IQ4_NL and IQ4_XS (spec §6).

Instead of 16 evenly spaced levels, each 4-bit index picks one of 16 fixed integers that
bunch up near zero, where most weights are (``kvalues_iq4nl``)::

    K = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    |-----|----|----|---|--|--|--|--|--|--|--|---|---|----|-----|     (to scale)
    -127           -65              0           53             113
    steps of 16-24 at the ends, 11-13 around 0: finer where most weights are

and a weight is ``scale · K[index]``.  Both types share one search (``quantize_row_iq4_nl_impl``
with ``ntry = 7``, run with *or without* an importance matrix): per 32 weights, try 16 scales
that map the largest weight near the ends of ``K`` and keep the one with the smallest
weighted squared error.  IQ4_XS then stores the 8 sub-block scales of a 256-weight
super-block as 6-bit integers times one fp16 scale.
"""
from __future__ import annotations

import numpy as np

from ... import backend
from ..base import register
from .base import GGMLFormat
from .common import (check_scales, inverse, pack_nibbles, u16_bytes,
                     unpack_nibbles)
from .numerics import f32, first_max_abs, fp16, half, rne, seq_sum

__all__ = ["IQ4_NL", "IQ4_XS", "KVALUES", "best_index_int8", "iq4_scales"]

KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                   dtype=f32)
GROUP_MAX_EPS = f32(1e-15)    # below this max |x| a block counts as all-zero (ggml)
NTRY = 7                      # quantize_iq4_nl / quantize_iq4_xs search width


def best_index_int8(v: np.ndarray) -> np.ndarray:
    """Index of the entry of ``K`` nearest to ``v`` — ggml ``best_index_int8`` (spec §4.5).

    ``v ≤ −127`` -> 0, ``v ≥ 113`` -> 15; otherwise with ``K[p] ≤ v < K[p+1]`` take ``p`` if
    ``v − K[p] < K[p+1] − v`` (float32), else ``p+1``: **ties go up** (−4.5 -> index 8).
    NaN gives 15, as the C binary search does.
    """
    v = np.asarray(v, dtype=f32)
    # up = p + 1 = 1 + #{j in 1..14 : K[j] ≤ v}, so that K[up-1] ≤ v < K[up] inside the table
    # (15 vectorised comparisons: much faster than a binary search per element)
    up = np.ones(v.shape, dtype=np.uint8)
    for k in KVALUES[1:15]:
        up += v >= k
    lo, hi = np.take(KVALUES, up - 1), np.take(KVALUES, up)
    idx = np.where((v - lo) < (hi - v), up - 1, up)
    idx = np.where(v <= KVALUES[0], 0, idx)
    return np.where((v >= KVALUES[15]) | np.isnan(v), 15, idx).astype(np.uint8)


def _fit(xt, w, ident):
    """One candidate inverse scale -> (sumqx, sumq2): Σ (w·q)·x and Σ (w·q)·q, q = K[index].

    xt, w (32, nb) — element-major, so each sequential sum runs over contiguous rows.
    """
    q = np.take(KVALUES, best_index_int8(ident[None, :] * xt))          # (32, nb)
    wq = w * q
    return seq_sum(wq * xt, axis=0), seq_sum(wq * q, axis=0)


def iq4_scales(xb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Best scale of each 32-weight block for the table ``K`` (``quantize_row_iq4_nl_impl``).

    xb, w (nb, 32) float32 -> (nb,) float32; 0 for blocks whose max |x| < 1e-15.  With
    ``m`` the first element of largest magnitude::

        d = m / 127 ;  fit with id = 1/d            (m lands on +127 -> nearest entry 113)
        s = Σ(w·q)·x / Σ(w·q)·q ,  best = s·Σ(w·q)·x
        for t = -7..7:  id = (t − 127) / m ; refit ; keep s if Σqx²/Σq² beats best
    """
    if (k := backend.kernel("_quantize")) is not None:     # compiled twin, same bits
        return k.iq4_scales(xb, w, n_threads=backend.n_threads(np.size(xb), 1 << 12))
    amax, m = first_max_abs(xb)
    zero = amax < GROUP_MAX_EPS
    m = np.where(zero, f32(1), m).astype(f32)        # placeholder, masked out at the end
    xt, wt = np.ascontiguousarray(xb.T), np.ascontiguousarray(w.T)      # (32, nb)
    # d = -max / values[0] = -max / -127
    d = (-m) / f32(-127)
    sumqx, sumq2 = _fit(xt, wt, f32(1) / d)
    s = np.where(sumq2 > 0, sumqx / np.where(sumq2 > 0, sumq2, f32(1)), f32(0)).astype(f32)
    best = s * sumqx
    for t in range(-NTRY, NTRY + 1):
        # id = (itry + values[0]) / max
        sumqx, sumq2 = _fit(xt, wt, f32(t - 127) / m)
        win = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        s = np.where(win, sumqx / np.where(win, sumq2, f32(1)), s).astype(f32)
        best = np.where(win, s * sumqx, best).astype(f32)
    return np.where(zero, f32(0), s).astype(f32)


def _weights(x: np.ndarray, qw: np.ndarray | None, super_block: int) -> np.ndarray:
    """Importance per element, as (rows·n/32, 32) float32 (spec §7).

    ``x²`` without imatrix; with one ``qw·sqrt(σ² + x²)``, ``σ² = Σx²·(2/super_block)`` over
    each super-block (32 for IQ4_NL, 256 for IQ4_XS).  x (rows, n), qw (n,).
    """
    xs = x.reshape(x.shape[0], -1, super_block)                         # (rows, nsb, sb)
    if qw is None:
        w = xs * xs
    else:
        sigma2 = seq_sum(xs * xs) * f32(2 / super_block)                  # (rows, nsb)
        w = qw.reshape(1, -1, super_block) * np.sqrt(sigma2[..., None] + xs * xs)
    return w.astype(f32).reshape(-1, 32)


class IQ4_NL(GGMLFormat):
    """IQ4_NL — 4-bit indices into a fixed non-linear table, 32 weights per block (ggml type 20).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``  fp16 scale
    2       16    ``qs`` 32 × 4-bit index into ``K`` (byte j: elements j, j+16)
    ======  ====  ==============================================

    bits/weight = 8·18/32 = 4.5 (same cost as Q4_0).  Value: ``y = d·K[index]``.

    Quantize (``quantize_iq4_nl``, ntry 7, with or without imatrix): weights ``x²`` or
    ``qw·sqrt(σ² + x²)`` (σ² = 2·Σx²/32 over the block); ``s`` = :func:`iq4_scales`; store
    ``fp16(s)``; the final indices are ``best_index_int8(x / s)`` with the float32 ``s`` — not
    the stored fp16 one.  An all-zero block gives ``00 00 | 88 × 16``.  (ggml's
    ``quantize_row_iq4_nl_ref``, ntry −1, is a different, weaker variant that files never use.)
    """

    name, ggml_name, ggml_type, type_size, block_size = "iq4_nl", "IQ4_NL", 20, 18, 32
    summary = "ggml non-linear 4-bit: 16-entry table × fp16 scale, 32-weight blocks (4.5 bpw)"
    layout = (("d", 2, "fp16 scale"), ("qs", 16, "32 × 4-bit table indices, byte j = elements j | j+16 << 4"))

    def quantize_rows(self, x, imatrix):
        xb = x.reshape(-1, 32)                                           # (nb, 32)
        with np.errstate(all="ignore"):
            s = iq4_scales(xb, _weights(x, imatrix, 32))
            # final indices from the float32 scale: id = s ? 1/s : 0
            idx = best_index_int8(inverse(s)[:, None] * xb)
        d = fp16(s)
        check_scales(self.ggml_name, d=d)
        return np.concatenate([u16_bytes(d), pack_nibbles(idx)], axis=1).reshape(x.shape[0], -1)

    def _decode(self, b):
        idx = unpack_nibbles(b[:, 2:18])
        return {"d": half(b[:, 0:2].copy().view("<u2")[:, 0]), "qs": idx, "q": idx,
                "k": KVALUES[idx].astype(np.int16)}

    def block_fields(self, block):
        return {k: v[0] for k, v in self._decode(np.asarray(block, np.uint8).reshape(1, -1)).items()}

    def dequantize_blocks(self, blocks):
        f = self._decode(blocks)
        # y = d·K[index]
        return f["d"][:, None] * KVALUES[f["q"]]


class IQ4_XS(GGMLFormat):
    """IQ4_XS — IQ4_NL's table with 6-bit sub-block scales in 256-weight super-blocks (type 23).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       2     ``d``        fp16 super-block scale
    2       2     ``scales_h`` uint16 LE: bits 2b..2b+1 = high 2 bits of code b
    4       4     ``scales_l`` byte b//2, nibble b%2 (low first) = low 4 bits of code b
    8       128   ``qs``       sub-block b: bytes 16b..16b+15, 4-bit indices (j, j+16 pairs)
    ======  ====  ==============================================

    Eight 6-bit codes ``c_b`` (b = 0..7) packed as::

        scales_h (uint16):  77 66 55 44 33 22 11 00     two high bits of c_7 … c_0
        scales_l[k] (byte): HHHH LLLL                    LLLL = c_2k & 15, HHHH = c_2k+1 & 15

    bits/weight = 8·136/256 = 4.25.   Value: ``y = (d·(c_b − 32))·K[index]``.

    Quantize (``quantize_iq4_xs``): per 32-weight sub-block the IQ4_NL scale ``S_b``
    (weights ``x²`` or ``qw·sqrt(σ² + x²)``, σ² = 2·Σx²/256 over the super-block); then
    ``d = −S_max/32`` (``S_max`` the signed sub-block scale of largest magnitude),
    ``l_b = clamp(rne(S_b/d), −32, 31)``, and indices ``best_index_int8(x / (d·l_b))`` with
    the float32 ``d``.  All-zero super-block: ``00 80 | aa aa | 00 00 00 00 | 88 × 128``.
    """

    name, ggml_name, ggml_type, type_size, block_size = "iq4_xs", "IQ4_XS", 23, 136, 256
    summary = "ggml non-linear 4-bit, 6-bit sub-block scales in 256-weight super-blocks (4.25 bpw)"
    layout = (("d", 2, "fp16 super-block scale"),
              ("scales_h", 2, "uint16 LE: high 2 bits of the 8 sub-block codes"),
              ("scales_l", 4, "low 4 bits of the 8 sub-block codes, two per byte"),
              ("qs", 128, "8 sub-blocks × 16 bytes of 4-bit table indices"))

    def quantize_rows(self, x, imatrix):
        xs = x.reshape(-1, 256)                                          # (nsb, 256)
        xb = xs.reshape(-1, 32)                                          # (nsb·8, 32)
        with np.errstate(all="ignore"):
            S = iq4_scales(xb, _weights(x, imatrix, 256)).reshape(-1, 8)   # (nsb, 8)
            _, s_max = first_max_abs(S)
            # d = -max_scale / 32  (all-zero super-block: -0.0 -> fp16 0x8000)
            d = -s_max / f32(32)
            l = np.clip(rne(inverse(d)[:, None] * S), -32, 31)             # (nsb, 8)
            dl = d[:, None] * l.astype(f32)                                 # float32 d, not fp16
            idx = best_index_int8(inverse(dl).reshape(-1, 1) * xb)          # (nsb·8, 32)
        dh = fp16(d)
        check_scales(self.ggml_name, d=dh)
        c = (l + 32).astype(np.int64)                                       # codes 0..63
        scales_h = ((c >> 4) << (2 * np.arange(8))).sum(axis=1)             # 2 bits per code
        scales_l = (c[:, 0::2] & 15) | ((c[:, 1::2] & 15) << 4)             # (nsb, 4)
        qs = pack_nibbles(idx).reshape(-1, 128)
        out = np.concatenate([u16_bytes(dh), u16_bytes(scales_h), scales_l.astype(np.uint8), qs],
                             axis=1)
        return out.reshape(x.shape[0], -1)

    def _decode(self, b):
        h = b[:, 0:4].copy().view("<u2")                                   # d, scales_h
        sh = (h[:, 1:2].astype(np.int64) >> (2 * np.arange(8))) & 3         # (nb, 8)
        sl = np.stack([b[:, 4:8] & 15, b[:, 4:8] >> 4], axis=-1).reshape(-1, 8)
        idx = unpack_nibbles(b[:, 8:136].reshape(-1, 16)).reshape(-1, 256)
        return {"d": half(h[:, 0]), "scales_h": sh.astype(np.uint8), "scales_l": sl.astype(np.uint8),
                "scales": (sl.astype(np.int16) | (sh.astype(np.int16) << 4)) - 32,
                "qs": idx, "q": idx, "k": KVALUES[idx].astype(np.int16)}

    def block_fields(self, block):
        return {k: v[0] for k, v in self._decode(np.asarray(block, np.uint8).reshape(1, -1)).items()}

    def dequantize_blocks(self, blocks):
        f = self._decode(blocks)
        # dl = d·(c_b − 32) ; y = dl·K[index]
        dl = f["d"][:, None] * f["scales"].astype(f32)                     # (nb, 8)
        return (np.repeat(dl, 32, axis=1) * KVALUES[f["q"]]).astype(f32)


for _cls in (IQ4_NL, IQ4_XS):
    register(_cls())
