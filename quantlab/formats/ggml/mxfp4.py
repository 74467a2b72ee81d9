"""ggml's MXFP4 block (type 39): 32 FP4 (E2M1) values sharing one power-of-two scale.

The OCP Microscaling MXFP4 format as ggml stores it (used by gpt-oss GGUFs).  Registered as
``ggml_mxfp4``; quantlab's ``mxfp4`` (:mod:`quantlab.formats.mx`) is the OCP format itself.
What ggml adds is its own *quantizer* and *byte layout*:

* the 16 E2M1 codes are kept **doubled** as small integers, so one table serves all math::

      code   0  1  2  3  4  5  6   7 |  8   9  10  11  12  13  14   15
      K      0  1  2  3  4  6  8  12 |  0  -1  -2  -3  -4  -6  -8  -12     (= 2 × E2M1 value)

  and the scale is halved to match: ``d = 2^(e − 128)`` = ½ · E8M0(e);
* the nibbles use ggml's legacy order (byte j: elements j and j + 16), not OCP's pairs.

Not in the quantlab spec; follows ggml's ``quantize_row_mxfp4_ref`` / ``dequantize_row_mxfp4``
(``ggml-quants.c``, ``ggml-impl.h``, commit 0c1e570), checked against its golden bytes.
"""
from __future__ import annotations

import numpy as np

from ..base import register
from .base import GGMLFormat
from .common import c_int, pack_nibbles, unpack_nibbles
from .numerics import f32

__all__ = ["GGMLMXFP4", "KVALUES_MXFP4"]

KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=f32)


def e8m0_half(e: np.ndarray) -> np.ndarray:
    """``GGML_E8M0_TO_FP32_HALF``: ``d = 2^(e − 128)`` as float32 (e = 0, 1 give subnormals)."""
    return np.ldexp(1.0, np.asarray(e, dtype=np.int64) - 128).astype(f32)


def shared_exponent(amax: np.ndarray) -> np.ndarray:
    """``e = amax > 0 ? (uint8_t)(floorf(log2f(amax)) − 2 + 127) : 0``.

    The largest E2M1 magnitude is 6 = 1.5·2², hence the ``− 2``: ``amax`` lands in
    ``[4, 8)·2^(e−127)``.  ``log2f`` is float32 — for ``amax`` just below a power of two it
    rounds *up* to the integer, so ``floor`` is one more than the exact exponent; we take
    the float64 log2 rounded to float32, which matches C's ``log2f`` on every such case.
    ``amax < 2^−125`` makes the value negative and the C cast wraps it modulo 256 (x86-64).
    """
    with np.errstate(divide="ignore"):
        lg = np.log2(np.asarray(amax, dtype=np.float64)).astype(f32)
    e = np.floor(lg) - f32(2) + f32(127)
    return np.where(amax > 0, c_int(np.where(amax > 0, e, 0), 32) & 0xFF, 0).astype(np.uint8)


def best_index_mxfp4(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Index of ``K`` minimising ``|K_i·d − x|`` (float32); the first of equal errors wins.

    So ties go to the smaller index: between 0 and ±1 the 0 (index 0, never 8 = "−0"),
    between 1 and 2 the 1, between −1 and −2 the −1.  x (nb, 32), d (nb,) -> (nb, 32).
    """
    err = np.abs(KVALUES_MXFP4 * d[:, None, None] - x[..., None])       # (nb, 32, 16)
    return np.argmin(err, axis=-1).astype(np.uint8)


class GGMLMXFP4(GGMLFormat):
    """MXFP4 (ggml) — 32 × E2M1 with one E8M0 exponent (ggml type 39).

    ======  ====  ==============================================
    offset  size  field
    ======  ====  ==============================================
    0       1     ``e``  E8M0 shared exponent (scale 2^(e−127))
    1       16    ``qs`` 32 × 4-bit E2M1 codes (byte j: elements j, j+16)
    ======  ====  ==============================================

    bits/weight = 8·17/32 = 4.25.   Value: ``y = K[code]·2^(e − 128)`` (= E2M1 · 2^(e−127)).

    Quantize (``quantize_row_mxfp4_ref``; ggml ignores an imatrix): ``e`` from
    :func:`shared_exponent`, then each element takes the nearest representable value
    (:func:`best_index_mxfp4`, smaller index on ties — not OCP's round-half-to-even).
    Values beyond ``12·d`` (= 6·scale) saturate to ±6·scale.
    """

    name, ggml_name, ggml_type, type_size, block_size = "ggml_mxfp4", "MXFP4", 39, 17, 32
    summary = "ggml MXFP4: 32 × E2M1 + E8M0 exponent, legacy nibble order (4.25 bpw)"
    layout = (("e", 1, "E8M0 shared exponent"),
              ("qs", 16, "32 × 4-bit E2M1 codes, byte j = elements j | j+16 << 4"))

    def quantize_rows(self, x, imatrix):
        xb = x.reshape(-1, 32)                                           # (nb, 32)
        e = shared_exponent(np.max(np.abs(xb), axis=1))                  # (nb,) uint8
        with np.errstate(over="ignore"):       # e = 255: 12·2^127 overflows to inf, as in C
            idx = best_index_mxfp4(xb, e8m0_half(e))
        return np.concatenate([e[:, None], pack_nibbles(idx)], axis=1).reshape(x.shape[0], -1)

    def _decode(self, b):
        idx = unpack_nibbles(b[:, 1:17])
        return {"e": b[:, 0], "scale": np.ldexp(1.0, b[:, 0].astype(np.int64) - 127).astype(f32),
                "qs": idx, "q": idx, "e2m1": KVALUES_MXFP4[idx] / f32(2)}

    def block_fields(self, block):
        return {k: v[0] for k, v in self._decode(np.asarray(block, np.uint8).reshape(1, -1)).items()}

    def dequantize_blocks(self, blocks):
        # y = K[code]·d with d = 2^(e-128)   (e = 255: ±12·2^127 is ±inf, as in ggml)
        with np.errstate(over="ignore"):
            return KVALUES_MXFP4[unpack_nibbles(blocks[:, 1:17])] * e8m0_half(blocks[:, 0])[:, None]


register(GGMLMXFP4())
