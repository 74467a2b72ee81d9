"""n-bit affine integers (spec §3): ``int8``, ``int4`` and ``int2`` ... ``int7``.

A real ``x`` is stored as an integer code ``q`` on an evenly spaced grid of step ``s``
(scale) shifted by an integer zero-point ``z``::

    q     = clip(round(x / s) + z, qmin, qmax)      round = half to even (np.rint)
    x_hat = s * (q - z)

Symmetric (default): signed codes, ``z = 0``, ``s = amax / qmax``.  Asymmetric: unsigned
codes ``[0, 2^b - 1]`` fitting ``[lo, hi]``, the range forced to contain 0 so that 0 is exact.
Statistics are shared per tensor, per channel (one per leading index = per output row of
``W``, reduced over the last axis) or per group of ``group_size`` consecutive elements of
the last axis.  Lessons call :func:`affine_params` and :func:`fake_quant` directly.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, ShapeError
from ..kernels import formats as kernel_formats   # compiled twins (None when off)
from .base import Format, QTensor, as_float_array, register

__all__ = ["IntFormat", "affine_params", "params_from_range", "quantize_codes",
           "dequantize_codes", "fake_quant", "pack_bits", "unpack_bits", "code_range"]

GRANULARITIES = ("tensor", "channel", "group")
SCALE_DTYPES = {"float16": np.float16, "float32": np.float32}
DEFAULT_GROUP = 128


# --------------------------------------------------------------------------- the math
def code_range(bits: int, symmetric: bool = True, restricted: bool = False) -> tuple[int, int]:
    """``(qmin, qmax)``: signed ``[-2^(b-1), 2^(b-1)-1]`` (restricted: ``-qmax``) when
    symmetric, unsigned ``[0, 2^b - 1]`` otherwise."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise FormatError(f"bits must be an integer from 2 to 8, got {bits!r}")
    if not symmetric:
        if restricted:
            raise FormatError("restricted=True applies to signed (symmetric) grids only; "
                              "asymmetric codes use the full unsigned range [0, 2^bits - 1]")
        return 0, 2 ** bits - 1
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if restricted else -qmax - 1), qmax


def params_from_range(lo, hi, bits: int, symmetric: bool = True, restricted: bool = False,
                      eps: float = np.finfo(np.float32).smallest_subnormal):
    """Scale and zero-point for a given clip range (e.g. a calibrated one), float64.

    symmetric:   s = max(|lo|, |hi|) / qmax,                       z = 0
    asymmetric:  lo = min(lo, 0); hi = max(hi, 0)                    (0 stays exact)
                 s = (hi - lo) / (qmax - qmin),   z = clip(qmin - round(lo / s), qmin, qmax)
    ``s = max(s, eps)`` so an all-zero group gets a tiny positive scale (codes z, value 0).
    Returns ``(scale, zero, qmin, qmax)``.
    """
    qmin, qmax = code_range(bits, symmetric, restricted)
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    if symmetric:
        s = np.maximum(np.maximum(-lo, hi) / qmax, eps)
        return s, np.zeros(s.shape, np.int64), qmin, qmax
    s = np.maximum((hi - lo) / (qmax - qmin), eps)
    z = np.clip(qmin - np.rint(lo / s), qmin, qmax).astype(np.int64)
    return s, z, qmin, qmax


def _grouped(x: np.ndarray, granularity: str, group_size: int | None) -> np.ndarray:
    """View ``x`` as (rows, groups, elements): the statistic is taken over the last axis."""
    if granularity == "tensor":
        return x.reshape(1, 1, -1)
    if granularity == "channel":
        n = x.shape[-1] if x.ndim else 1
        return x.reshape(-1, 1, n)
    if x.ndim == 0 or x.shape[-1] % group_size:
        got = "a scalar" if x.ndim == 0 else f"last axis of length {x.shape[-1]}"
        raise ShapeError(f"group granularity needs the last axis to be a multiple of "
                         f"group_size={group_size}, got {got} (shape {x.shape})")
    n = x.shape[-1]
    return x.reshape(-1, n // group_size, group_size)


def _stat_shape(shape: tuple[int, ...], granularity: str, group_size: int | None):
    if granularity == "tensor":
        return ()
    if granularity == "channel":
        return shape[:-1]
    return shape[:-1] + (shape[-1] // group_size,)


def affine_params(x, bits: int, symmetric: bool = True, *, granularity: str = "tensor",
                  group_size: int | None = None, restricted: bool = False):
    """``(scale, zero, qmin, qmax)`` from the data: min/max (or amax) per tensor / channel /
    group, in float64.  ``scale`` and ``zero`` have the statistic's shape: ``()``,
    ``x.shape[:-1]`` or ``x.shape[:-1] + (n // group_size,)``."""
    x = as_float_array(x, what="input to affine_params")
    granularity, group_size = _check_granularity(granularity, group_size)
    g = _grouped(x.astype(np.float64), granularity, group_size)        # (rows, groups, elems)
    s, z, qmin, qmax = params_from_range(g.min(axis=-1), g.max(axis=-1), bits, symmetric,
                                         restricted)
    shape = _stat_shape(x.shape, granularity, group_size)
    return s.reshape(shape), z.reshape(shape), qmin, qmax


def quantize_codes(x, scale, zero, qmin: int, qmax: int, granularity: str = "tensor",
                   group_size: int | None = None) -> np.ndarray:
    """``q = clip(rint(x / s) + z, qmin, qmax)`` (int64, shape of ``x``; math in float64)."""
    x = np.asarray(x, dtype=np.float64)
    g = _grouped(x, granularity, group_size)
    s = np.asarray(scale, np.float64).reshape(g.shape[0], g.shape[1], 1)
    z = np.asarray(zero, np.int64).reshape(g.shape[0], g.shape[1], 1)
    q = np.clip(np.rint(g / s) + z, qmin, qmax)
    return q.astype(np.int64).reshape(x.shape)


def dequantize_codes(q, scale, zero, granularity: str = "tensor",
                     group_size: int | None = None) -> np.ndarray:
    """``x_hat = s * (q - z)`` as float32 (one rounding: the float64 product is exact)."""
    q = np.asarray(q, dtype=np.int64)
    g = _grouped(q, granularity, group_size)
    s = np.asarray(scale, np.float64).reshape(g.shape[0], g.shape[1], 1)
    z = np.asarray(zero, np.int64).reshape(g.shape[0], g.shape[1], 1)
    return (s * (g - z)).astype(np.float32).reshape(q.shape)


def fake_quant(x, bits: int, symmetric: bool = True, *, granularity: str = "tensor",
               group_size: int | None = None, restricted: bool = False,
               clip_range=None) -> np.ndarray:
    """Quantize-dequantize (QDQ) ``x`` in float64 math, float32 result.

    ``clip_range`` (static quantization) replaces the data statistics: an amax (symmetric)
    or a ``(lo, hi)`` pair, scalars or arrays of the statistic's shape, e.g. from
    :mod:`quantlab.formats.calibrate`.
    """
    x = as_float_array(x, what="input to fake_quant")
    granularity, group_size = _check_granularity(granularity, group_size)
    if clip_range is None:
        s, z, qmin, qmax = affine_params(x, bits, symmetric, granularity=granularity,
                                         group_size=group_size, restricted=restricted)
    else:
        lo, hi = clip_range if isinstance(clip_range, tuple) else (-np.abs(clip_range),
                                                                  np.abs(clip_range))
        s, z, qmin, qmax = params_from_range(lo, hi, bits, symmetric, restricted)
    q = quantize_codes(x, s, z, qmin, qmax, granularity, group_size)
    return dequantize_codes(q, s, z, granularity, group_size)


def _check_granularity(granularity: str, group_size):
    if granularity not in GRANULARITIES:
        raise FormatError(f"granularity must be one of {', '.join(GRANULARITIES)}, "
                          f"got {granularity!r}")
    if granularity == "group":
        if group_size is None:
            group_size = DEFAULT_GROUP
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) \
                or group_size < 1:
            raise FormatError(f"group_size must be a positive integer, got {group_size!r}")
        return granularity, int(group_size)
    if group_size is not None:
        raise FormatError(f"group_size={group_size!r} only applies to granularity='group' "
                          f"(got granularity={granularity!r}); pass one or the other")
    return granularity, None


# --------------------------------------------------------------------------- bit packing
def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack b-bit fields (ints in [0, 2^b)) into bytes as one LSB-first bit stream.

    Code ``i`` occupies stream bits ``[i*b, (i+1)*b)``; stream bit ``k`` is bit ``k % 8``
    of byte ``k // 8``.  For b = 4 this is "low nibble first" (torchao); b = 8 is bytes::

        b=4  byte 0 = [ q1 q1 q1 q1 | q0 q0 q0 q0 ]         (bit 7 ... bit 0)
        b=3  byte 0 = [ q2 q2 | q1 q1 q1 | q0 q0 q0 ],  byte 1 = [ ... q3 q3 q3 | q2 ]
    """
    c = np.asarray(codes).reshape(-1).astype(np.uint8)
    if bits == 8:
        return c.copy()
    if bits == 4:
        c = np.append(c, np.uint8(0)) if c.size % 2 else c
        return (c[0::2] | (c[1::2] << 4)).astype(np.uint8)
    stream = ((c[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).reshape(-1)   # (n*b,) bits
    return np.packbits(stream, bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` b-bit fields as uint8."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return p[:n].copy()
    if bits == 4:
        return np.stack([p & 0x0F, p >> 4], axis=1).reshape(-1)[:n]
    stream = np.unpackbits(p, bitorder="little")[:n * bits].reshape(n, bits)
    return (stream << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint16).astype(np.uint8)


# --------------------------------------------------------------------------- the format
class IntFormat(Format):
    """intN — b-bit affine integers with per-tensor / per-channel / per-group scales.

    Spec card
    ---------
    bits        b = 2...8 per weight; symmetric: signed two's-complement codes in
                [-2^(b-1), 2^(b-1)-1] ([-qmax, qmax] with restricted=True), z = 0;
                asymmetric: unsigned codes [0, 2^b - 1] and a b-bit zero-point per statistic
    options     symmetric=True | granularity "tensor" | "channel" | "group" |
                group_size (implies "group"; default 128) | restricted=False |
                scale_dtype "float16" | "float32" (default: float16 for groups, as GPTQ/AWQ
                checkpoints store them, float32 otherwise)
    defaults    int8: symmetric, per channel, float32 scales (LLM.int8/SmoothQuant style);
                int2 ... int7: symmetric, groups of 128, float16 scales (GPTQ style)
    layout      data = codes of the row-major flattened tensor as one LSB-first bit stream
                (b=8: one byte each; b=4: low nibble first, like torchao); meta["scale"] in
                scale_dtype with the statistic's shape; meta["zero"] (asymmetric only) = the
                zero-points packed the same way
    bpw         b + (scale bits + zero bits)/g per group: int4 g128 fp16 symmetric = 4.125,
                asymmetric = 4 + (16 + 4)/128 = 4.156; per channel b + 32/n
    formula     s = amax/qmax (sym) or (hi - lo)/(qmax - qmin), z = clip(qmin - rint(lo/s));
                q = clip(rint(x/s) + z, qmin, qmax); x_hat = s * (q - z); s rounded to
                scale_dtype BEFORE the codes are computed, so x_hat uses the stored scale
    rounding    round half to even (np.rint); math in float64
    zero group  s = max(s, eps), eps = smallest subnormal of scale_dtype: codes z, x_hat = 0
    used in     int8: LLM.int8(), SmoothQuant, TensorRT; int4/int3/int2 groups: GPTQ, AWQ
    """

    family = "integer"
    oracle = "float64 re-computation of the formulas (spec §3)"

    def __init__(self, bits: int, granularity: str, group_size: int | None, summary: str):
        self.bits = bits
        self.name = f"int{bits}"
        self.summary = summary
        self.block_size = group_size or 1
        self.options = {"symmetric": True, "granularity": granularity, "group_size": group_size,
                        "restricted": False, "scale_dtype": None}

    def resolve_options(self, opts) -> dict:
        """Passing ``group_size`` implies group granularity; choosing "tensor"/"channel"
        drops the default group size; ``scale_dtype=None`` picks float16 for groups."""
        o = super().resolve_options(opts)
        if opts.get("group_size") is not None and "granularity" not in opts:
            o["granularity"] = "group"
        elif "granularity" in opts and "group_size" not in opts and o["granularity"] != "group":
            o["group_size"] = None
        o["granularity"], o["group_size"] = _check_granularity(o["granularity"], o["group_size"])
        if not isinstance(o["symmetric"], (bool, np.bool_)) or \
                not isinstance(o["restricted"], (bool, np.bool_)):
            raise FormatError(f"{self.name}: symmetric and restricted must be True or False")
        code_range(self.bits, o["symmetric"], o["restricted"])
        sd = o["scale_dtype"]
        if sd is None:
            sd = "float16" if o["granularity"] == "group" else "float32"
        sd = np.dtype(sd).name if isinstance(sd, type) or isinstance(sd, np.dtype) else sd
        if sd not in SCALE_DTYPES:
            raise FormatError(f"{self.name}: scale_dtype must be 'float16' or 'float32', got {sd!r}")
        o["scale_dtype"] = sd
        return o

    def bits_per_weight(self, **opts) -> float:
        """b + metadata/g for groups; per tensor/channel the metadata is amortised over the
        whole tensor/row and not counted here (``QTensor.bits_per_weight`` counts it)."""
        o = self.resolve_options(opts)
        if o["granularity"] != "group":
            return float(self.bits)
        meta = 8 * np.dtype(SCALE_DTYPES[o["scale_dtype"]]).itemsize + \
            (0 if o["symmetric"] else self.bits)
        return self.bits + meta / o["group_size"]

    def _quantize(self, x, symmetric, granularity, group_size, restricted, scale_dtype) -> QTensor:
        sdt = SCALE_DTYPES[scale_dtype]
        eps = float(np.finfo(sdt).smallest_subnormal)
        s, z, qmin, qmax = affine_params(x, self.bits, symmetric, granularity=granularity,
                                         group_size=group_size, restricted=restricted)
        s = np.maximum(s, eps)
        if np.any(s > np.finfo(sdt).max):
            raise FormatError(f"{self.name}: scale {float(s.max()):.4g} overflows {scale_dtype} "
                              f"(max {float(np.finfo(sdt).max):.5g}); use scale_dtype='float32'")
        s_stored = s.astype(sdt)                            # round the scale to its storage dtype
        if not symmetric:                                   # ... and refit z to the stored scale
            g = _grouped(x.astype(np.float64), granularity, group_size)
            lo = np.minimum(g.min(axis=-1), 0).reshape(s.shape)
            z = np.clip(qmin - np.rint(lo / s_stored.astype(np.float64)), qmin, qmax).astype(np.int64)
        q = quantize_codes(x, s_stored, z, qmin, qmax, granularity, group_size)
        mask = (1 << self.bits) - 1
        data = pack_bits(q & mask, self.bits)               # signed codes as b-bit two's complement
        meta = {"scale": s_stored}
        if not symmetric:
            meta["zero"] = pack_bits(z.reshape(-1), self.bits)
        opts = {"symmetric": bool(symmetric), "granularity": granularity,
                "group_size": group_size, "restricted": bool(restricted), "scale_dtype": scale_dtype}
        return QTensor(self, x.shape, data, meta, opts)

    def params(self, qt: QTensor) -> tuple[np.ndarray, np.ndarray]:
        """``(scale as float64, zero as int64)`` of a QTensor, in the statistic's shape."""
        s = qt.meta["scale"].astype(np.float64)
        if qt.options["symmetric"]:
            return s, np.zeros(s.shape, np.int64)
        z = unpack_bits(qt.meta["zero"], self.bits, s.size).astype(np.int64)
        return s, z.reshape(s.shape)

    def codes(self, qt: QTensor) -> np.ndarray:
        """The integer codes ``q`` (int64, shape of the tensor), sign-extended if symmetric."""
        q = unpack_bits(qt.data, self.bits, qt.size).astype(np.int64)
        if qt.options["symmetric"]:
            q = np.where(q >= 1 << (self.bits - 1), q - (1 << self.bits), q)
        return q.reshape(qt.shape)

    def _dequantize(self, qt: QTensor) -> np.ndarray:
        if (fast := kernel_formats.integer(self, qt)) is not None:     # same bits, compiled
            return fast
        s, z = self.params(qt)
        return dequantize_codes(self.codes(qt), s, z, qt.options["granularity"],
                                qt.options["group_size"])


# Registration order: the public contract names first, then the rest.
register(IntFormat(8, "channel", None, "8-bit affine integer, per-channel float32 scales (symmetric)"))
register(IntFormat(4, "group", DEFAULT_GROUP, "4-bit affine integer, groups of 128, float16 scales"))
for _b in (2, 3, 5, 6, 7):
    register(IntFormat(_b, "group", DEFAULT_GROUP,
                       f"{_b}-bit affine integer, groups of 128, float16 scales"))
del _b
