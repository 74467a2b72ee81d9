"""ggml's plain float storage types: F32, F16, BF16 (spec §2) — one element per "block".

Registered as ``ggml_f32``, ``ggml_f16``, ``ggml_bf16`` because ``fp32``/``fp16``/``bf16``
name the IEEE formats themselves (:mod:`quantlab.formats.ieee`); these are the same numbers
*as ggml writes them into a GGUF file*, with ggml's conversion rules and llama-quantize's
validation (it refuses F16/BF16/F32 data containing inf or NaN).
"""
from __future__ import annotations

import numpy as np

from .. import ieee
from ..base import register
from .base import GGMLFormat
from .common import check_scales, refuse_overflow
from .numerics import f32, fp16

__all__ = ["F32", "F16", "BF16"]


class _Storage(GGMLFormat):
    """One element per block: the "quantization" is a float conversion (imatrix ignored)."""

    block_size = 1
    bits: tuple[int, int, int] = (1, 8, 23)          # sign, exponent, mantissa bits

    def block_fields(self, block):
        code = int(np.asarray(block, np.uint8).copy().view(f"<u{self.type_size}")[0])
        _, e, m = self.bits
        value = self.dequantize_blocks(np.asarray(block, np.uint8).reshape(1, -1))[0, 0]
        return {"value": value, "bits": np.array(code), "sign": np.array(code >> (e + m)),
                "exponent": np.array((code >> m) & ((1 << e) - 1)),
                "mantissa": np.array(code & ((1 << m) - 1)), "q": np.array(code)}


class F32(_Storage):
    """F32 — IEEE binary32, 4 bytes little-endian per element (ggml type 0).

    ======  ====  =================================
    offset  size  field
    ======  ====  =================================
    0       4     ``value`` float32, little-endian
    ======  ====  =================================

    bits/weight = 32.  Sign 1, exponent 8 (bias 127), mantissa 23; max 0x1.fffffep+127.
    Quantizing is a plain copy.  GGUF files keep norms and biases in F32.
    """

    name, ggml_name, ggml_type, type_size = "ggml_f32", "F32", 0, 4
    oracle = "numpy (a byte copy)"
    summary = "ggml F32 storage: raw IEEE binary32 (32 bpw)"
    layout = (("value", 4, "IEEE binary32, little-endian"),)

    def quantize_rows(self, x, imatrix):
        return np.ascontiguousarray(x, dtype="<f4").view(np.uint8)

    def dequantize_blocks(self, blocks):
        return np.ascontiguousarray(blocks).view("<f4").astype(f32)


class F16(_Storage):
    """F16 — IEEE binary16, 2 bytes little-endian per element (ggml type 1).

    ======  ====  =================================
    offset  size  field
    ======  ====  =================================
    0       2     ``value`` binary16, little-endian
    ======  ====  =================================

    bits/weight = 16.  Sign 1, exponent 5 (bias 15), mantissa 10; max 65504 (0x1.ffcp+15),
    smallest normal 0x1p-14, smallest subnormal 0x1p-24.  Encoding
    (``ggml_fp32_to_fp16_row``): round to nearest even, gradual underflow, |x| ≥ 65520 -> inf,
    which llama-quantize rejects (so does quantlab: FormatError).  Decoding is exact; a NaN
    comes back quiet (ggml sets bit 22).  ``llama-quantize … F16`` writes every matrix so.
    """

    name, ggml_name, ggml_type, type_size = "ggml_f16", "F16", 1, 2
    summary = "ggml F16 storage: IEEE binary16, round to nearest even (16 bpw)"
    layout = (("value", 2, "IEEE binary16, little-endian"),)
    bits = (1, 5, 10)

    def quantize_rows(self, x, imatrix):
        h = fp16(x)                                                     # (rows, n) uint16
        check_scales(self.ggml_name, value=h)
        return h.astype("<u2").view(np.uint8)

    def dequantize_blocks(self, blocks):
        u = np.ascontiguousarray(blocks).view("<u2")[:, 0].view(np.float16).astype(f32).view(np.uint32)
        # ggml_compute_fp16_to_fp32: a NaN is returned quiet (bit 22 set); numpy keeps it signalling
        u = np.where((u & 0x7FFFFFFF) > 0x7F800000, u | 0x00400000, u).astype(np.uint32)
        return u.view(f32).reshape(-1, 1)


class BF16(_Storage):
    """BF16 — bfloat16, the top half of a float32, 2 bytes little-endian (ggml type 30).

    ======  ====  =================================
    offset  size  field
    ======  ====  =================================
    0       2     ``value`` bfloat16, little-endian
    ======  ====  =================================

    bits/weight = 16.  Sign 1, exponent 8 (bias 127), mantissa 7; max 0x1.fep+127, the
    float32 exponent range (subnormals kept).  Encoding (``ggml_fp32_to_bf16_row_ref``, spec
    §0.4) is exactly quantlab's ``bf16`` rule, so it is reused (:mod:`quantlab.formats.ieee`)::

        NaN:       (u >> 16) | 0x0040                   u = float32 bits
        otherwise: (u + 0x7FFF + ((u >> 16) & 1)) >> 16  round to nearest even

    Values that round to inf are refused as llama-quantize refuses them.  Decoding:
    ``bits << 16`` (exact).
    """

    name, ggml_name, ggml_type, type_size = "ggml_bf16", "BF16", 30, 2
    summary = "ggml BF16 storage: top 16 bits of float32, round to nearest even (16 bpw)"
    layout = (("value", 2, "bfloat16 (float32 >> 16), little-endian"),)
    bits = (1, 8, 7)

    def quantize_rows(self, x, imatrix):
        h = ieee.bf16.encode(x)                                         # (rows, n) uint16
        refuse_overflow(self.ggml_name, "value", (h & 0x7F80) == 0x7F80, "bf16 max ~3.39e38")
        return h.astype("<u2").view(np.uint8)

    def dequantize_blocks(self, blocks):
        u = np.ascontiguousarray(blocks).view("<u2")[:, 0].astype(np.uint32) << 16
        return u.view(f32).reshape(-1, 1)


for _cls in (F32, F16, BF16):
    register(_cls())
