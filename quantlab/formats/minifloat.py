"""Minifloats (spec §2): FP8 (OCP E4M3 / E5M2, AMD FNUZ) and FP4 E2M1, plus the E8M0 scale.

One family class, :class:`Minifloat`, parameterised like the formats are defined — exponent
bits ``E``, mantissa bits ``M``, ``bias`` and the special-value policy — on top of the bit
field codec of :class:`~quantlab.formats.ieee.FloatFormat`.  What it adds is *scaling*: FP8
has so little range that a tensor is multiplied by ``scale = fmax / amax`` before the cast.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, InputError
from ..kernels import formats as kernel_formats   # compiled twins (None when off)
from .base import QTensor, as_float_array, register
from .ieee import FloatFormat

__all__ = ["Minifloat", "e8m0_encode", "e8m0_decode", "pack_nibbles", "unpack_nibbles",
           "E8M0_BIAS", "E8M0_NAN", "AMAX_EPS"]

AMAX_EPS = 1e-12        # torchao float8_utils.EPS: floor on amax so an all-zero tensor gets a scale


class Minifloat(FloatFormat):
    """8- and 4-bit floats, quantized with a scale (torchao's float8 recipe).

    (sign bit S on top of every code)

    ============ = = ==== ========== ================== ================= ======= ======= ==
    format       E M bias inf        NaN codes          max finite        min     min     -0
                                                                          normal  subn.
    ============ = = ==== ========== ================== ================= ======= ======= ==
    fp8_e4m3     4 3    7 none       S.1111.111         0x1.cp+8 = 448    0x1p-6  0x1p-9  ✓
    fp8_e5m2     5 2   15 S.11111.00 S.11111.{01,10,11} 0x1.cp+15 = 57344 0x1p-14 0x1p-16 ✓
    fp8_e4m3fnuz 4 3    8 none       0x80 only          0x1.ep+7 = 240    0x1p-7  0x1p-10 ✗
    fp8_e5m2fnuz 5 2   16 none       0x80 only          0x1.cp+15 = 57344 0x1p-15 0x1p-17 ✗
    fp4_e2m1     2 1    1 none       none               0x1.8p+2 = 6      0x1p+0  0x1p-1  ✓
    ============ = = ==== ========== ================== ================= ======= ======= ==

    fp8_e4m3 is OCP E4M3 = ml_dtypes/PyTorch ``float8_e4m3fn``: the top binade holds normals
    (256…448), only mantissa 111 is NaN.  FNUZ (AMD/Graphcore): bias + 1, the "-0" code 0x80
    is the one NaN.  E2M1 magnitudes are {0, 0.5, 1, 1.5, 2, 3, 4, 6}, codes 0–7, bit 3 = sign.

    Element cast (``encode``): round-to-nearest-even, then the overflow policy.
    ``saturate=False`` is ml_dtypes' cast (E4M3: 464 -> 448 by ties-to-even, 465 -> NaN;
    E5M2: 61440 -> inf); ``saturate=True`` clamps to ±max first.  FP4 has no NaN/inf: it
    always saturates, and NaN encodes as ml_dtypes does (+NaN -> 0b1000 = -0, -NaN -> 0).

    Quantization (``quantize``), torchao ``float8`` convention, multiplicative scale::

        amax  = max |x|                    (scaling="tensor": whole tensor;
                                            "channel": over the last axis, one per leading index)
        scale = float32(fmax / max(amax, 1e-12))      computed in float64
        code  = cast(clip(float32(x) · scale, -fmax, fmax))      saturating RNE cast
        x_hat = float32(code) / scale

    ``scaling="none"`` is the saturating cast alone.  data = codes (uint8; FP4 two per byte,
    element 2k in the low nibble), meta ``q_scale`` float32.  bits/weight = 8 (FP4: 4) plus
    32 bits per scale.  NaN/Inf input is refused (it would poison the scale); ``encode``
    takes it.  Where used: FP8 training/inference (H100, MI300: FNUZ), FP4 inside MX/NVFP4.
    """

    options = {"scaling": "tensor"}
    allow_nonfinite = False
    oracle = "ml_dtypes"

    @property
    def code_bits(self) -> int:
        """Bits one code occupies in storage (FP4: 4, packed two per byte)."""
        return self.n_bits

    def bits_per_weight(self, **opts) -> float:
        """Element bits; the float32 scale adds 32/size (tensor) or 32/row length (channel)."""
        self.resolve_options(opts)
        return float(self.code_bits)

    def _quantize(self, x, scaling: str) -> QTensor:
        if scaling not in ("tensor", "channel", "none"):
            raise FormatError(f"{self.name}: scaling must be 'tensor', 'channel' or 'none', "
                              f"got {scaling!r}")
        x32 = np.atleast_1d(x).astype(np.float32)              # torchao works in float32
        meta = {}
        if scaling == "none":
            codes = self.encode(x32, saturate=True)
        else:
            axis = None if scaling == "tensor" else -1
            amax = np.max(np.abs(x32), axis=axis, keepdims=True)   # () or (..., 1)
            # scale = fmax / max(amax, eps) in float64, stored as float32 (torchao amax_to_scale)
            scale = (self.max / np.maximum(amax.astype(np.float64), AMAX_EPS)).astype(np.float32)
            codes = self.encode(x32 * scale, saturate=True)      # float32 product, then cast
            meta["q_scale"] = scale.reshape(() if axis is None else x32.shape[:-1])
        data = pack_nibbles(codes) if self.code_bits == 4 else codes.reshape(-1)
        return QTensor(self, np.shape(x), data, meta, {"scaling": scaling})

    def _dequantize(self, qt: QTensor) -> np.ndarray:
        if (fast := kernel_formats.minifloat(self, qt)) is not None:   # same bits, compiled
            return fast
        codes = unpack_nibbles(qt.data, qt.size) if self.code_bits == 4 else qt.data
        v = self.decode(codes).reshape(qt.shape or (1,))      # the shape _quantize worked on
        if "q_scale" in qt.meta:
            s = qt.meta["q_scale"]
            v = v / (s if s.ndim == 0 else s[..., None])         # x_hat = code / scale (float32)
        return v.astype(np.float32).reshape(qt.shape)


fp8_e4m3 = register(Minifloat("fp8_e4m3", 4, 3, specials="fn", cast_via_float32=True,
                              family="fp8", summary="OCP FP8 E4M3 (e4m3fn): max 448, no inf"))
fp8_e5m2 = register(Minifloat("fp8_e5m2", 5, 2, specials="ieee", cast_via_float32=True,
                              family="fp8", summary="OCP FP8 E5M2: IEEE-like, max 57344, ±inf"))
fp8_e4m3fnuz = register(Minifloat("fp8_e4m3fnuz", 4, 3, bias=8, specials="fnuz",
                                  cast_via_float32=True, family="fp8",
                                  summary="FP8 E4M3 FNUZ (AMD MI300): max 240, NaN=0x80, no -0"))
fp8_e5m2fnuz = register(Minifloat("fp8_e5m2fnuz", 5, 2, bias=16, specials="fnuz",
                                  cast_via_float32=True, family="fp8",
                                  summary="FP8 E5M2 FNUZ (AMD MI300): max 57344, NaN=0x80, no -0"))
fp4_e2m1 = register(Minifloat("fp4_e2m1", 2, 1, specials="none", cast_via_float32=True,
                              family="fp4", summary="OCP FP4 E2M1: {0, .5, 1, 1.5, 2, 3, 4, 6}"))


# ----------------------------------------------------------------------------- nibbles
def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """4-bit codes (any shape, row-major) -> bytes; element 2k in the low nibble (torchao/OCP).

    byte k = codes[2k] | codes[2k+1] << 4        (an odd count is padded with a 0 nibble)
    """
    c = np.asarray(codes, dtype=np.uint8).reshape(-1)
    if c.size % 2:
        c = np.append(c, np.uint8(0))
    return (c[0::2] & 0x0F) | (c[1::2] << 4)


def unpack_nibbles(data: np.ndarray, n: int) -> np.ndarray:
    """Bytes -> the first ``n`` 4-bit codes (inverse of :func:`pack_nibbles`)."""
    d = np.asarray(data, dtype=np.uint8).reshape(-1)
    if 2 * d.size < n:
        raise InputError(f"{d.size} packed bytes hold {2 * d.size} 4-bit codes, need {n}")
    return np.stack([d & 0x0F, d >> 4], axis=-1).reshape(-1)[:n]


# ----------------------------------------------------------------------------- E8M0
E8M0_BIAS = 127
E8M0_NAN = 0xFF


def e8m0_decode(codes) -> np.ndarray:
    """E8M0 scale bytes -> float32 powers of two (OCP MX §5.4.1).

    Unsigned, exponent only: value = 2^(code - 127) for codes 0…254 (2^-127 … 2^127, no zero),
    0xFF = NaN.  2^-127 is a float32 subnormal, still exact.
    """
    c = np.asarray(codes)
    if c.dtype != np.uint8:
        raise InputError(f"E8M0 codes must be uint8 bytes, got dtype {c.dtype}")
    nan = c == E8M0_NAN
    v = np.ldexp(np.float32(1), np.where(nan, 0, c.astype(np.int32) - E8M0_BIAS))
    return np.where(nan, np.float32(np.nan), v).astype(np.float32)


def e8m0_encode(x) -> np.ndarray:
    """Positive floats -> nearest E8M0 code (uint8), as ``ml_dtypes.float8_e8m0fnu`` casts.

    Round to the nearest power of two; with no mantissa bits the implicit 1 is the "odd"
    bit, so ties round *up* (3 -> 4, 0.75 -> 1).  Zero, negatives, inf, NaN and values that
    round past 2^127 have no code and give 0xFF (NaN).  float64 input is rounded to float32
    first, as ml_dtypes does.

    Below 2^-126 ml_dtypes rounds as if code 0 were a zero with subnormal spacing 2^-126:
    x <= 2^-127 -> 0, 2^-127 < x < 2^-126 -> 1 (the true nearest power would stay 0 up to
    1.5·2^-127).  quantlab follows ml_dtypes there.
    MX does *not* use this rounding for its scales (it floors the exponent, see mx.py).
    """
    x = as_float_array(x, allow_nonfinite=True, what="input to e8m0_encode")
    with np.errstate(over="ignore", invalid="ignore"):
        a = x.astype(np.float32).astype(np.float64)       # ml_dtypes goes through float32
    ok = np.isfinite(a) & (a > 0)
    mant, ex = np.frexp(np.where(ok, a, 1.0))            # a = mant·2^ex, mant in [0.5, 1)
    # nearest power of two, ties up: 2^(ex-1) below the midpoint 0.75·2^ex, else 2^ex
    e = (ex - 1) + (mant >= 0.75)
    code = e + E8M0_BIAS
    # ml_dtypes' lowest binade: code 0 acts as zero, code 1 = 2^-126, tie 2^-127 to even (0)
    code = np.where(a < 2.0 ** -126, (a > 2.0 ** -127).astype(code.dtype), code)
    return np.where(ok & (code <= 254), code, E8M0_NAN).astype(np.uint8)
