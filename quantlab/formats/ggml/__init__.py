"""llama.cpp's ggml block types, bit-exact with ggml (spec ``ggml-quants.md``).

legacy   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and F32/F16/BF16 storage (§2, §3)
search   the shared scale searches QX, Q3S, QKX, QP and the 6-bit scale packings (§4)
kquants  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (§5)
iq4      IQ4_NL, IQ4_XS (§6)
ternary  TQ1_0, TQ2_0
mxfp4    ggml's MXFP4 block (E8M0 + E2M1)
"""
from .base import GGMLFormat

from . import legacy  # noqa: F401,E402
from . import kquants  # noqa: F401,E402
from . import iq4  # noqa: F401,E402
from . import ternary  # noqa: F401,E402
from . import mxfp4  # noqa: F401,E402

__all__ = ["GGMLFormat"]


def by_type(t) -> GGMLFormat:
    """The registered ggml format for a ggml type id (int) or name ("Q4_K", "q4_k", "F32")."""
    from ...errors import FormatError
    from ..base import _REGISTRY
    for f in _REGISTRY.values():
        if isinstance(f, GGMLFormat) and (f.ggml_type == t or
                                          (isinstance(t, str) and f.ggml_name.lower() == t.lower())):
            return f
    known = sorted(f.ggml_name for f in _REGISTRY.values() if isinstance(f, GGMLFormat))
    raise FormatError(f"ggml type {t!r} is not supported; supported: {', '.join(known)}")


__all__ += ["by_type"]
