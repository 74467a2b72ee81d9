"""Every number format, one small class (or family class) per module.

Importing this package registers all formats.  Order = the order of the lessons:
IEEE floats -> FP8/FP4 -> microscaling block floats -> integers -> NF4 -> ggml block types.
"""
from .base import Format, QTensor, as_float_array, describe, formats, get, quantize, register

# Each module registers its formats on import (the order is the table order).
from . import ieee  # noqa: F401,E402  fp32, fp16, bf16
from . import minifloat  # noqa: F401,E402  fp8_e4m3, fp8_e5m2, fnuz variants, fp4_e2m1
from . import mx  # noqa: F401,E402  mxfp4, mxfp8_e4m3, nvfp4
from . import integer  # noqa: F401,E402  int8, int4, intN affine
from . import nf4  # noqa: F401,E402  nf4, bnb_fp4 (+ double quantization)
from . import ggml  # noqa: F401,E402  q4_0 … q8_k, iq4_nl, iq4_xs, tq1_0, tq2_0, ggml mxfp4

__all__ = ["Format", "QTensor", "as_float_array", "describe", "formats", "get", "quantize",
           "register"]
