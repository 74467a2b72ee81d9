"""quantlab — LLM quantization by doing it for real.

Every format readable and exact (FP16/BF16/FP8/FP4, MX, NVFP4, INT-n affine, NF4, ggml's
block types), a NumPy Llama that runs real GGUF models, and lessons that show what each
format does to a model's weights, memory, speed and quality.

    >>> import quantlab as ql
    >>> qt = ql.quantize(x, "nf4")        # doctest: +SKIP
    >>> qt.dequantize(), qt.bits_per_weight  # doctest: +SKIP
"""
__version__ = "0.1.0"

from .errors import (FormatError, GGUFError, InputError, KernelError, ModelError,  # noqa: E402
                     QuantlabError, ShapeError)
from .formats import Format, QTensor, describe, formats, get, quantize  # noqa: E402
from .formats import calibrate  # noqa: E402,F401  activation calibration (minmax, percentile, mse, kl)
from .formats.ggml.inspect import inspect  # noqa: E402
from .formats.ieee import bits, from_bits  # noqa: E402
from .metrics import cosine, error_report, max_abs_error, rmse, sqnr_db  # noqa: E402
from .config import config, show_config  # noqa: E402
from .model import load_model, perplexity  # noqa: E402  NumPy Llama from GGUF, llama-perplexity

__all__ = [
    "__version__",
    # errors
    "QuantlabError", "FormatError", "ShapeError", "InputError", "GGUFError", "ModelError",
    "KernelError",
    # formats
    "Format", "QTensor", "formats", "get", "quantize", "describe", "calibrate", "inspect",
    "bits", "from_bits",
    # metrics
    "rmse", "max_abs_error", "sqnr_db", "cosine", "error_report",
    # configuration
    "config", "show_config",
    # model
    "load_model", "perplexity",
]
