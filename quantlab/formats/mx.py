"""Microscaling block floats (spec §2): ``mxfp4``, ``mxfp8_e4m3`` (OCP MX v1.0) and ``nvfp4``.

A block of consecutive elements along the last axis shares one scale; the elements are
minifloats (:mod:`quantlab.formats.minifloat`).  MX stores a power of two (E8M0 byte) per 32
elements, NVFP4 an E4M3 scale per 16 elements plus one float32 scale per tensor.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..kernels import formats as kernel_formats   # compiled twins (None when off)
from .base import Format, QTensor, register
from .minifloat import (E8M0_BIAS, Minifloat, e8m0_decode, fp4_e2m1, fp8_e4m3, pack_nibbles,
                        unpack_nibbles)

__all__ = ["MXFormat", "NVFP4", "mx_shared_exponent", "to_blocks"]


def to_blocks(x: np.ndarray, block: int, name: str) -> np.ndarray:
    """(..., n) -> (..., n/block, block) float32 view of consecutive elements of the last axis."""
    if x.ndim == 0 or x.shape[-1] % block:
        got = "a scalar" if x.ndim == 0 else f"shape {x.shape}"
        raise ShapeError(f"{name} quantizes blocks of {block} consecutive elements along the "
                         f"last axis; its length must be a multiple of {block}, got {got} "
                         "(pad the row, or pick a format with a smaller block)")
    return x.astype(np.float32).reshape(*x.shape[:-1], x.shape[-1] // block, block)


def mx_shared_exponent(amax: np.ndarray, emax_elem: int) -> np.ndarray:
    """OCP MX "minimal" scale: ``clamp(floor(log2 amax) - emax_elem, -127, 127)`` (int32).

    ``emax_elem`` is the exponent of the element format's largest power of two (E2M1: 2,
    E4M3: 8).  amax == 0 (or below 2^-126, where torchao reads the float32 exponent
    field as -127) clamps to -127.  This is torchao ``to_mx`` with ``ScaleCalculationMode.FLOOR``.
    """
    _, ex = np.frexp(amax)                              # amax = m·2^ex, m in [0.5, 1)
    return np.clip(np.where(amax > 0, ex - 1, -127) - emax_elem, -127, 127).astype(np.int32)


class MXFormat(Format):
    """OCP Microscaling (MX v1.0): 32 elements share one power-of-two scale.

    ========== ======================= ================= ===================== ======
    format     element                 scale per 32      block bytes           bpw
    ========== ======================= ================= ===================== ======
    mxfp4      FP4 E2M1 (max 6, emax 2) E8M0, 1 byte     1 + 32·4/8 = 17       4.25
    mxfp8_e4m3 FP8 E4M3 (max 448, emax 8) E8M0, 1 byte   1 + 32 = 33           8.25
    ========== ======================= ================= ===================== ======

    Scale ("FLOOR", the spec's minimal conversion; torchao ``to_mx`` default)::

        amax       = max_i |V_i|                                   per block of 32
        shared_exp = clamp(floor(log2 amax) - emax_elem, -127, 127)   (amax = 0 -> -127)
        X          = 2^shared_exp,  stored E8M0 byte = shared_exp + 127
        P_i        = cast_saturating(V_i / X)      RNE, clamp to ±element max
        V_hat_i    = X · P_i

    Because of the floor, amax/X lies in [2^emax, 2^(emax+1)) and can exceed the element
    max (FP4: up to <8 vs 6; E4M3: <512 vs 448): the largest elements of a block clip.
    Blocks run along the last axis (its length must be a multiple of 32); input is
    rounded to float32 first, as torchao does.  data = the element codes, row-major (FP4:
    two per byte, element 2k in the low nibble); meta ``scale_e8m0`` uint8 of shape
    (..., n/32).  NaN/Inf input is refused (the spec would set the block's byte to 0xFF).
    Older torchao releases clamped the float scale to 2^-126 (pytorch#125557) and so
    divided blocks whose byte is 0 (amax < 2^-124 for FP4, 2^-118 for E4M3) by 2^-126;
    current torchao multiplies by the exact 2^127, like the spec and quantlab.
    Where used: OCP MX hardware (NVIDIA Blackwell, AMD MI355), gpt-oss weights (MXFP4).
    """

    family = "mx"
    block_size = 32
    oracle = "ml_dtypes casts; torchao to_mx (FLOOR)"
    options: dict = {}

    def __init__(self, name: str, element: Minifloat, emax_elem: int, summary: str):
        self.name, self.element, self.emax_elem, self.summary = name, element, emax_elem, summary

    def bits_per_weight(self, **opts) -> float:
        # bpw = element bits + 8 scale bits / 32
        return self.element.code_bits + 8 / self.block_size

    def _quantize(self, x, **opts) -> QTensor:
        V = to_blocks(x, self.block_size, self.name)                   # (..., nb, 32)
        amax = np.max(np.abs(V), axis=-1)                               # (..., nb)
        shared_exp = mx_shared_exponent(amax, self.emax_elem)          # (..., nb)
        # V / X with X a power of two: exact (ldexp), then the saturating element cast
        P = self.element.encode(np.ldexp(V, -shared_exp[..., None]), saturate=True)
        data = pack_nibbles(P) if self.element.code_bits == 4 else P.reshape(-1)
        scale = (shared_exp + E8M0_BIAS).astype(np.uint8)
        return QTensor(self, x.shape, data, {"scale_e8m0": scale}, {})

    def _dequantize(self, qt: QTensor) -> np.ndarray:
        if (fast := kernel_formats.mx(self, qt)) is not None:          # same bits, compiled
            return fast
        n = qt.size
        codes = unpack_nibbles(qt.data, n) if self.element.code_bits == 4 else qt.data
        X = e8m0_decode(qt.meta["scale_e8m0"])                         # (..., nb) float32
        P = self.element.decode(codes).reshape(*X.shape, self.block_size)
        return (P * X[..., None]).reshape(qt.shape)                     # V_hat = X · P (exact)


E4M3_EPS = 2.0 ** -6      # torchao nvfp4: torch.finfo(float8_e4m3fn).tiny, the smallest normal
G_MIN = 2.0 ** -126       # floor on the tensor scale: float32's smallest normal
F4_MAX, F8_MAX = 6.0, 448.0


class NVFP4(Format):
    """NVIDIA NVFP4: FP4 E2M1 elements, an E4M3 scale per 16, one float32 scale per tensor.

    Layout per block of 16: 16·4 bits of E2M1 codes + 8 bits of E4M3 scale = 9 bytes,
    bpw = 4 + 8/16 = **4.5** (+ 32 bits per tensor for the float32 tensor scale).

    torchao ``nvfp4_quantize`` (all float32 arithmetic; ``tensor_scale=True`` is its
    two-level mode with ``per_tensor_amax_to_scale``)::

        g      = amax_tensor / (448·6)                      per-tensor float32 scale
        s_b    = cast_e4m3(clip((amax_b / 6) / g, 2^-6, 448))   block scale, RNE
        P_i    = cast_e2m1(clip(x_i / (g · float(s_b)), -6, 6))    RNE
        x_hat  = P_i · (g · float(s_b))

    ``tensor_scale=False``: g = 1 (single level).  The lower clip 2^-6 is torchao's
    ``E4M3_EPS`` (E4M3's smallest *normal*), so blocks much smaller than the tensor max
    get a coarser scale; an all-zero block decodes to zeros.  quantlab floors g at 2^-126
    (float32's smallest normal) so that g·s_b never underflows to 0; torchao does not (an
    all-zero tensor gives g = 0 and 0/0 = NaN there) — the two differ only for tensors
    with amax < 2688·2^-126 ≈ 3.2e-35.  Blocks of 16 run along the last axis; input is
    rounded to float32 first.  data = packed E2M1 codes (element 2k in the low nibble),
    meta ``scale_e4m3`` uint8 (..., n/16) and ``tensor_scale`` float32 ().
    Where used: NVIDIA Blackwell FP4 tensor cores (TensorRT-LLM, ModelOpt checkpoints).
    """

    name = "nvfp4"
    family = "mx"
    block_size = 16
    oracle = "ml_dtypes casts; torchao nvfp4_quantize"
    summary = "NVIDIA FP4: E2M1 + E4M3 scale per 16 + float32 tensor scale, 4.5 bpw"
    options = {"tensor_scale": True}

    def bits_per_weight(self, **opts) -> float:
        self.resolve_options(opts)
        # bpw = 4 + 8/16  (the tensor scale adds 32/size)
        return 4 + 8 / self.block_size

    def _quantize(self, x, tensor_scale: bool) -> QTensor:
        f32 = np.float32
        V = to_blocks(x, self.block_size, self.name)                   # (..., nb, 16)
        amax_b = np.max(np.abs(V), axis=-1)                             # (..., nb)
        block_scale = amax_b / f32(F4_MAX)                              # float32
        meta = {}
        if tensor_scale:
            g = np.max(amax_b) / f32(F8_MAX * F4_MAX)                   # float32 () scale
            g = np.maximum(g, f32(G_MIN))                               # see docstring
            block_scale = block_scale / g
            meta["tensor_scale"] = np.asarray(g, dtype=f32)
        else:
            g = f32(1)
        s_b = fp8_e4m3.encode(np.clip(block_scale, f32(E4M3_EPS), f32(F8_MAX)))   # uint8 codes
        total = (g * fp8_e4m3.decode(s_b)).astype(f32)                 # (..., nb)
        P = fp4_e2m1.encode(np.clip(V / total[..., None], f32(-F4_MAX), f32(F4_MAX)))
        meta = {"scale_e4m3": s_b, **meta}
        return QTensor(self, x.shape, pack_nibbles(P), meta, {"tensor_scale": bool(tensor_scale)})

    def _dequantize(self, qt: QTensor) -> np.ndarray:
        s_b = qt.meta["scale_e4m3"]
        g = qt.meta.get("tensor_scale", np.float32(1))
        total = (g * fp8_e4m3.decode(s_b)).astype(np.float32)          # (..., nb)
        if (fast := kernel_formats.nvfp4(self, qt, total)) is not None:  # same bits, compiled
            return fast
        P = fp4_e2m1.decode(unpack_nibbles(qt.data, qt.size)).reshape(*s_b.shape, self.block_size)
        return (P * total[..., None]).reshape(qt.shape)                 # x_hat = P · (g·s_b)


mxfp4 = register(MXFormat("mxfp4", fp4_e2m1, 2,
                          "OCP MXFP4: E2M1 elements, E8M0 power-of-two scale per 32, 4.25 bpw"))
mxfp8_e4m3 = register(MXFormat("mxfp8_e4m3", fp8_e4m3, 8,
                               "OCP MXFP8: E4M3 elements, E8M0 power-of-two scale per 32, 8.25 bpw"))
nvfp4 = register(NVFP4())
