"""Binary floats as bit fields (spec §1): ``fp32``, ``fp16``, ``bf16`` — and the codec every
narrower float (FP8, FP4 in :mod:`quantlab.formats.minifloat`) reuses.

A float code is three integers side by side::

    fp16   S EEEEE MMMMMMMMMM        value = (-1)^S · 2^(e - bias) · (1 + f/2^M)    normal
    bf16   S EEEEEEEE MMMMMMM               = (-1)^S · 2^(1 - bias) · (f/2^M)       subnormal (e = 0)

Decoding is that formula.  Encoding is round-to-nearest-even on the grid of representable
magnitudes, which — because codes of one sign are sorted like the values they stand for —
is a single integer: ``code = (e - emin)·2^M + k`` with ``k = rint(|x| / ulp)``.

``bits(fmt, x)`` / ``from_bits(fmt, sign, exponent, mantissa)`` expose the fields of any float
format (fp32 … fp4) for the lessons' bit boxes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backend
from ..errors import FormatError, InputError, KernelError
from .base import Format, QTensor, as_float_array, get, register

__all__ = ["FloatFormat", "BF16", "FloatBits", "bits", "from_bits", "bf16_encode", "minifloat_encode",
           "hexfloat"]

_SPECIALS = ("ieee", "fn", "fnuz", "none")


def hexfloat(v: float) -> str:
    """``448.0 -> '0x1.cp+8'`` (C99 hex float, trailing zeros dropped, as ml_dtypes' finfo prints)."""
    mant, exp = float(v).hex().split("p")
    return f"{mant.rstrip('0').rstrip('.')}p{exp}"


class FloatBits(NamedTuple):
    """The fields of float codes: ``sign``, biased ``exponent``, ``mantissa`` (fraction) and ``codes``."""

    sign: np.ndarray
    exponent: np.ndarray
    mantissa: np.ndarray
    codes: np.ndarray


# ----------------------------------------------------------------------------- codec
class FloatFormat(Format):
    """IEEE 754 binary floats, element-wise (spec §1).  Quantize = plain cast, no scale.

    ====== = === === ==== ============================ ============ ============ ========
    format S  E   M  bias max finite                   min normal   min subnorm. +inf
    ====== = === === ==== ============================ ============ ============ ========
    fp32   1  8  23  127  0x1.fffffep+127 ≈ 3.4028235e38 0x1p-126    0x1p-149     7F800000
    fp16   1  5  10   15  0x1.ffcp+15 = 65504           0x1p-14      0x1p-24      7C00
    ====== = === === ==== ============================ ============ ============ ========

    Exponent field all ones: mantissa 0 = ±inf, otherwise NaN (quiet NaN: top mantissa bit
    set; NaN 0x7FC00000 / 0x7E00).  Exponent field 0: ±0 and subnormals.

    Rounding: round-to-nearest-even, ties to the even code; a finite value at or beyond the
    midpoint above max becomes ±inf (65520 -> inf in fp16).  ``encode(x, saturate=True)``
    clamps to ±max first (clamp-then-cast).  NaN keeps its sign and the top payload bits
    and is made quiet.  Decoding (widening to float32) is exact.

    fp16 rounds float64 input directly, as NumPy's ``astype(float16)`` does; bf16 and the
    FP8/FP4 formats first round float64 to float32 (ml_dtypes' casts do), which can differ
    on values within 2^-29 relative of a tie (double rounding).

    Where used: fp32 is the reference precision; fp16 stores ggml block scales and most
    released checkpoints.  Storage: 8·itemsize bits per weight.
    """

    family = "ieee"
    block_size = 1
    oracle = "numpy"
    allow_nonfinite = True

    def __init__(self, name: str, E: int, M: int, bias: int | None = None, *,
                 specials: str = "ieee", cast_via_float32: bool = False,
                 family: str | None = None, oracle: str | None = None, summary: str = ""):
        if specials not in _SPECIALS:
            raise FormatError(f"specials must be one of {_SPECIALS}, got {specials!r}")
        self.name, self.E, self.M = name, E, M
        self.bias = (1 << (E - 1)) - 1 if bias is None else bias
        self.specials = specials
        self.cast_via_float32 = cast_via_float32
        self.family = family or self.family
        self.oracle = oracle or self.oracle
        self.summary = summary
        self.n_bits = 1 + E + M
        self.code_dtype = np.dtype(np.uint8 if self.n_bits <= 8 else
                                   np.uint16 if self.n_bits <= 16 else np.uint32)
        self.emin = 1 - self.bias                       # exponent of the lowest normal binade
        all_ones = (1 << (E + M)) - 1                   # magnitude bits all set
        # largest finite magnitude code: below inf (ieee), below the NaN slot (fn), or all ones
        self.max_code = {"ieee": all_ones - (1 << M), "fn": all_ones - 1,
                         "fnuz": all_ones, "none": all_ones}[specials]

    # -- constants (tested against ml_dtypes.finfo) -------------------------------------
    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self.decode(np.array(self.max_code)))

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** self.emin

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.M)

    @property
    def eps(self) -> float:
        """Distance from 1 to the next value: 2^-M."""
        return 2.0 ** -self.M

    # -- fields ---------------------------------------------------------------------------
    def split(self, codes) -> FloatBits:
        """Codes -> (sign, exponent, mantissa, codes) integer arrays."""
        c = self._check_codes(codes)
        E, M = self.E, self.M
        # S EEEE MMM: sign above exponent above mantissa
        return FloatBits(sign=np.asarray((c >> (E + M)) & 1),
                         exponent=np.asarray((c >> M) & ((1 << E) - 1)),
                         mantissa=np.asarray(c & ((1 << M) - 1)), codes=c.astype(self.code_dtype))

    def join(self, sign, exponent, mantissa) -> np.ndarray:
        """(sign, biased exponent, mantissa) integer arrays -> codes."""
        parts = []
        for what, v, width in (("sign", sign, 1), ("exponent", exponent, self.E),
                               ("mantissa", mantissa, self.M)):
            v = np.asarray(v)
            if v.dtype.kind not in "iu":
                raise InputError(f"{self.name}: {what} must be integers, got dtype {v.dtype}")
            if v.size and (v.min() < 0 or v.max() >= (1 << width)):
                raise InputError(f"{self.name}: {what} field has {width} bit(s), values must be "
                                 f"in [0, {(1 << width) - 1}]; got [{v.min()}, {v.max()}]")
            parts.append(v.astype(np.int64))
        s, e, f = np.broadcast_arrays(*parts)
        return ((s << (self.E + self.M)) | (e << self.M) | f).astype(self.code_dtype)

    # -- decode -----------------------------------------------------------------------
    def decode(self, codes) -> np.ndarray:
        """Codes -> float32 values (exact: every code of these formats is a float32)."""
        S, e, f, c = self.split(codes)
        S, e, f = S.astype(np.int64), e.astype(np.int64), f.astype(np.int64)
        special = self._is_special(c.astype(np.int64), e, f)
        # value = (-1)^S · 2^(max(e,1) - bias - M) · (f + 2^M·[e > 0])     e = 0: no implicit 1
        sig = np.where(special, 0, f + np.where(e > 0, 1 << self.M, 0))
        mag = np.ldexp(sig.astype(np.float64), (np.maximum(e, 1) - self.bias - self.M).astype(np.int32))
        v = np.where(S == 1, -mag, mag).astype(np.float32)
        if special.any():
            v = np.where(special, self._special_values(S, e, f).view(np.float32), v)
        return v

    def _is_special(self, c, e, f):
        top, all_ones = (1 << self.E) - 1, (1 << (self.E + self.M)) - 1
        return {"ieee": e == top,                                   # inf and NaN
                "fn": (c & all_ones) == all_ones,                    # S.1111.111 only
                "fnuz": c == 1 << (self.E + self.M),                 # 0x80 (the "-0" slot)
                "none": np.zeros(c.shape, dtype=bool)}[self.specials]

    def _special_values(self, S, e, f):
        """float32 bits for special codes: ±inf, or a quiet NaN with the code's sign/payload."""
        sign = S.astype(np.uint32) << 31
        payload = f.astype(np.uint32) << (23 - self.M) if self.specials == "ieee" else 0
        nan = sign | np.uint32(0x7FC00000) | payload
        if self.has_inf:
            return np.where(f == 0, sign | np.uint32(0x7F800000), nan).astype(np.uint32)
        return nan.astype(np.uint32)

    # -- encode ---------------------------------------------------------------------------
    def encode(self, x, saturate: bool = False) -> np.ndarray:
        """Float array -> codes (uint8/16/32), round-to-nearest-even.

        ``saturate=False`` mirrors ml_dtypes / NumPy casts: overflow gives ±inf (IEEE, E5M2),
        NaN (E4M3FN, FNUZ) or ±max (FP4, which has neither).  ``saturate=True`` clamps to
        ±max before the cast (torchao's ``to_fp8_saturated``); NaN stays NaN.
        """
        x = self._encode_input(x)
        kern = backend.kernel("_floatcast") if self.n_bits <= 8 and x.dtype == np.float32 else None
        if kern is None:
            return self._encode_numpy(x, saturate)
        flat = np.ascontiguousarray(x).reshape(-1)                       # (n,)
        out = np.empty(flat.shape, dtype=np.uint8)
        kern.minifloat_encode(flat, out, self.E, self.M, self.bias, self.specials, saturate,
                              backend.n_threads(flat.size))
        return out.reshape(x.shape)

    def _encode_numpy(self, x: np.ndarray, saturate: bool) -> np.ndarray:
        """The reference encoder (any width, float32 or float64 ``x``); see :meth:`encode`."""
        if saturate:
            x = np.clip(x, -self.max, self.max)               # clamp-then-cast; NaN passes
        with np.errstate(invalid="ignore"):                    # signalling NaNs widen quietly
            a = np.abs(x).astype(np.float64)                   # exact widening
        nan, inf = np.isnan(a), np.isinf(a)
        mag = self.round_magnitude(np.where(nan | inf, 0.0, a))
        over = inf | (mag > self.max_code)
        mag = np.where(over, self._overflow_code(), mag)
        sign = np.signbit(x).astype(np.int64)
        code = (sign << (self.E + self.M)) | mag
        if self.specials == "fnuz":                            # no -0: negative zero -> +0
            code = np.where(mag == 0, 0, code)
        if nan.any():
            code = np.where(nan, self._nan_code(x, sign), code)
        return code.astype(self.code_dtype)

    def round_magnitude(self, a: np.ndarray) -> np.ndarray:
        """|x| (float64, finite, >= 0) -> magnitude code (int64), RNE; may exceed ``max_code``.

        ``e = max(floor(log2 a), emin)``: subnormals share the spacing of the lowest binade;
        ``k = rint(a / 2^(e-M))`` (exact scaling, NumPy's rint is half-to-even); codes count
        up through the binades, so ``code = (e - emin)·2^M + k`` — a carry ``k = 2^(M+1)``
        lands on the first code of the next binade, as it should.
        """
        _, ex = np.frexp(a)                                    # a = m·2^ex, m in [0.5, 1)
        e = np.maximum(np.where(a > 0, ex - 1, self.emin), self.emin)
        k = np.rint(np.ldexp(a, (self.M - e).astype(np.int32))).astype(np.int64)
        return (e - self.emin).astype(np.int64) * (1 << self.M) + k

    def _overflow_code(self) -> int:
        top = (1 << (self.E + self.M)) - 1
        return {"ieee": top - ((1 << self.M) - 1),             # inf: exponent all ones, f = 0
                "fn": top, "fnuz": 1 << (self.E + self.M),     # their only NaN
                "none": self.max_code}[self.specials]          # no inf, no NaN: saturate

    def _nan_code(self, x, sign):
        E, M = self.E, self.M
        if self.specials == "ieee":
            # quiet NaN: exponent all ones, top mantissa bit set, next payload bits kept
            # (read from x's own bits: widening a signalling NaN would raise "invalid")
            frac_bits = {2: 10, 4: 23, 8: 52}[x.dtype.itemsize]
            u = x.view(f"u{x.dtype.itemsize}").astype(np.uint64) & np.uint64((1 << frac_bits) - 1)
            u = u >> np.uint64(frac_bits - M) if frac_bits >= M else u << np.uint64(M - frac_bits)
            payload = (u & np.uint64((1 << M) - 1)).astype(np.int64)
            return (sign << (E + M)) | (((1 << E) - 1) << M) | (1 << (M - 1)) | payload
        if self.specials == "fn":
            return (sign << (E + M)) | ((1 << (E + M)) - 1)
        if self.specials == "fnuz":
            return np.full(sign.shape, 1 << (E + M), dtype=np.int64)
        # "none" (FP4 E2M1): no NaN code.  ml_dtypes returns its quiet_NaN() stand-in, the
        # -0 code, negated for a negative NaN (+NaN -> 0b1000, -NaN -> 0b0000); we copy it
        # so encode stays bit-exact.  quantize() refuses NaN, so this only reaches encode().
        return (1 - sign) << (E + M)

    def _encode_input(self, x) -> np.ndarray:
        arr = as_float_array(x, allow_nonfinite=True, what=f"input to {self.name}.encode")
        if arr.dtype.itemsize > 8:                            # long double: NumPy's own path
            arr = arr.astype(np.float64)
        if self.cast_via_float32 and arr.dtype != np.float32:
            with np.errstate(over="ignore"):                  # > float32 max -> inf, as ml_dtypes
                arr = arr.astype(np.float32)
        return arr

    def _check_codes(self, codes) -> np.ndarray:
        c = np.asarray(codes)
        if c.dtype.kind not in "iu":
            raise InputError(f"{self.name} codes must be an integer array, got dtype {c.dtype}")
        if c.size and (c.min() < 0 or c.max() >= (1 << self.n_bits)):
            raise InputError(f"{self.name} codes have {self.n_bits} bits, values must be in "
                             f"[0, {(1 << self.n_bits) - 1}]; got [{c.min()}, {c.max()}]")
        return c.astype(np.int64)

    # -- Format ---------------------------------------------------------------------------
    def bits_per_weight(self, **opts) -> float:
        return float(self.n_bits)

    def _quantize(self, x, **opts) -> QTensor:
        codes = self.encode(x, **opts)
        # stored little-endian, one code after the other (row-major)
        data = codes.reshape(-1).astype(self.code_dtype.newbyteorder("<")).view(np.uint8)
        return QTensor(self, x.shape, data, {}, dict(opts))

    def _dequantize(self, qt: QTensor) -> np.ndarray:
        codes = qt.data.view(self.code_dtype.newbyteorder("<")).reshape(qt.shape)
        return self.decode(codes.astype(self.code_dtype))

    def card(self) -> str:
        """The computed spec card: fields, bias, specials, range as hex floats."""
        specials = {"ieee": "±inf and NaNs at exponent all ones",
                    "fn": "no inf; NaN = S.1…1.1…1 only", "fnuz": "no inf, no -0; NaN = 0x80 only",
                    "none": "no inf, no NaN"}[self.specials]
        return (f"bits: S1 E{self.E} M{self.M}, bias {self.bias}; {specials}\n"
                f"max finite {hexfloat(self.max)} = {self.max:.8g} (code {self.max_code:#x}); "
                f"min normal {hexfloat(self.smallest_normal)}; "
                f"min subnormal {hexfloat(self.smallest_subnormal)}")

    def describe(self) -> str:
        return super().describe() + "\n\n" + self.card()


def minifloat_encode(x: np.ndarray, out: np.ndarray, E: int, M: int, bias: int, specials: str,
                     saturate: bool, n_threads: int = 1) -> None:
    """NumPy twin of ``quantlab.kernels._floatcast.minifloat_encode``: float32 -> <=8-bit codes.

    ``x``: float32 (1-D); ``out``: uint8 of the same length, written in place; ``specials``
    the inf/NaN policy of :class:`FloatFormat`.  The math is :meth:`FloatFormat.encode`.
    """
    if out.shape[0] != x.shape[0]:
        raise KernelError(f"minifloat_encode: out has {out.shape[0]} elements, input {x.shape[0]}")
    if n_threads < 1:
        raise KernelError(f"minifloat_encode: n_threads must be >= 1, got {n_threads}")
    if specials not in _SPECIALS or not (E >= 1 and M >= 1 and 1 + E + M <= 8):
        raise KernelError(f"minifloat_encode: need 1+E+M <= 8 bits and specials in {_SPECIALS}, "
                          f"got E={E}, M={M}, specials={specials!r}")
    out[:] = FloatFormat("minifloat", E, M, bias, specials=specials)._encode_numpy(x, saturate)


# ----------------------------------------------------------------------------- bf16
def bf16_encode(bits: np.ndarray, out: np.ndarray, n_threads: int = 1) -> None:
    """NumPy twin of ``quantlab.kernels._floatcast.bf16_encode``: float32 bits -> bf16 bits.

    ``bits``: the float32 array viewed as uint32 (1-D); ``out``: uint16 of the same length,
    written in place.  ``n_threads`` is accepted for the same signature (NumPy ignores it).
    """
    if out.shape[0] != bits.shape[0]:
        raise KernelError(f"bf16_encode: out has {out.shape[0]} elements, input {bits.shape[0]}")
    if n_threads < 1:
        raise KernelError(f"bf16_encode: n_threads must be >= 1, got {n_threads}")
    u = bits.astype(np.uint32, copy=False)
    # NaN first: the add-bias trick would carry a NaN payload into the exponent
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    # RNE by adding a bias: 0x7FFF rounds a half down, the kept lowest bit tips ties to even
    rne = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out[:] = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x0040), rne).astype(np.uint16)


class BF16(FloatFormat):
    """bfloat16: the top half of a float32 (spec §1).

    ==== = === === ==== =============================== ========== ============ =====
    fmt  S  E   M  bias max finite                      min normal min subnorm. +inf
    ==== = === === ==== =============================== ========== ============ =====
    bf16 1  8   7  127  0x1.fep+127 ≈ 3.3895314e38 7F7F 0x1p-126   0x1p-133     7F80
    ==== = === === ==== =============================== ========== ============ =====

    Same range as fp32, 8 significant bits.  qNaN 0x7FC0.

    Rounding (``mode="rne"``, default), exactly ``ml_dtypes.bfloat16`` and llama.cpp::

        u = bits32(x)
        NaN:   (u >> 16) | 0x0040                  # quiet, sign and top payload kept
        else:  (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # add-bias round-to-nearest-even

    so values >= 0x1.fe8p+127 (bits 0x7F7F8000, the midpoint above max) become inf.
    ``mode="truncate"`` keeps the top 16 bits (round toward zero; never makes inf from a
    finite value; biased toward zero).  float64 input is first rounded to float32, as
    ml_dtypes does.  Storage: 16 bits per weight.  Where used: training and most LLM
    checkpoints; ggml type BF16.
    """

    options = {"mode": "rne"}
    oracle = "ml_dtypes"

    def encode(self, x, saturate: bool = False, mode: str = "rne") -> np.ndarray:
        """float -> bf16 codes (uint16); ``mode`` "rne" (compiled kernel when built) or "truncate"."""
        if mode not in ("rne", "truncate"):
            raise FormatError(f"bf16 mode must be 'rne' or 'truncate', got {mode!r}")
        x32 = self._encode_input(x)
        if saturate:
            x32 = np.clip(x32, np.float32(-self.max), np.float32(self.max))
        u = np.ascontiguousarray(x32).reshape(-1).view(np.uint32)     # (n,)
        if mode == "truncate":
            nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
            out = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), u >> np.uint32(16))
            return out.astype(np.uint16).reshape(x32.shape)
        out = np.empty(u.shape, dtype=np.uint16)
        kern = backend.kernel("_floatcast")
        if kern is not None:
            kern.bf16_encode(u, out, backend.n_threads(u.size))
        else:
            bf16_encode(u, out)
        return out.reshape(x32.shape)

    def _quantize(self, x, **opts) -> QTensor:
        return super()._quantize(x, mode=opts["mode"])


fp32 = register(FloatFormat("fp32", 8, 23, summary="IEEE binary32: the reference precision"))
fp16 = register(FloatFormat("fp16", 5, 10,
                            summary="IEEE binary16 half: 5-bit exponent, 10-bit mantissa, max 65504"))
bf16 = register(BF16("bf16", 8, 7, cast_via_float32=True,
                     summary="bfloat16: float32's exponent, 7-bit mantissa, RNE or truncate"))


# ----------------------------------------------------------------------------- helpers
def _float_format(fmt) -> FloatFormat:
    f = get(fmt)
    if not isinstance(f, FloatFormat):
        from .base import formats
        floats = [n for n in formats() if isinstance(get(n), FloatFormat)]
        raise FormatError(f"{f.name!r} is not an element-wise float format; bits()/from_bits() "
                          f"take one of: {', '.join(floats)}")
    return f


def bits(fmt, x, **encode_options) -> FloatBits:
    """Encode ``x`` with float format ``fmt`` (no scaling) and split the codes into fields.

    >>> bits("fp16", [1.0, -2.0]).exponent      # doctest: +SKIP
    array([15, 16])
    """
    f = _float_format(fmt)
    return f.split(f.encode(x, **encode_options))


def from_bits(fmt, sign, exponent, mantissa) -> np.ndarray:
    """Assemble codes from (sign, biased exponent, mantissa) integer fields and decode to float32."""
    f = _float_format(fmt)
    return f.decode(f.join(sign, exponent, mantissa))
