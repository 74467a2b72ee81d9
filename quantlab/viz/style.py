"""The house style: one style sheet, one fixed colour per format, one way to get an axis.

Every plot function in :mod:`quantlab.viz` follows the same contract::

    ax = plot_something(data, ax=None)   # draws on ``ax`` (or a new figure) and returns it

and draws inside :func:`style` — a ``plt.style.context`` over the packaged
``quantlab.mplstyle`` — so importing quantlab never touches global ``rcParams``.

Colours are fixed per format across every lesson (``fp16`` is always the same teal,
``q4_k`` always the same purple), so a reader learns the legend once.
"""
from __future__ import annotations

import zlib
from importlib import resources

__all__ = ["STYLE", "style", "format_color", "FORMAT_COLORS", "ROLE_COLORS", "new_axes"]

STYLE = str(resources.files("quantlab.viz").joinpath("quantlab.mplstyle"))
"""Path of the packaged style sheet (``plt.style.use(quantlab.viz.STYLE)`` to adopt it)."""

# One colour per format, grouped by family so that related formats look related.
FORMAT_COLORS: dict[str, str] = {
    # IEEE floats: greys and teals
    "fp32": "#333333", "f32": "#333333", "fp16": "#1b9e9e", "f16": "#1b9e9e",
    "bf16": "#2c7fb8",
    # FP8 / FP4 / microscaling: oranges and reds
    "fp8_e4m3": "#e6550d", "fp8_e5m2": "#fd8d3c", "fp8_e4m3fnuz": "#a63603",
    "fp8_e5m2fnuz": "#fdae6b", "fp4_e2m1": "#de2d26", "mxfp4": "#fb6a4a", "mxfp8_e4m3": "#cb181d",
    "nvfp4": "#a50f15",
    # integers: greens
    "int8": "#006d2c", "int4": "#31a354", "int3": "#74c476", "int2": "#a1d99b",
    # NF4 family: magentas
    "nf4": "#c51b8a", "bnb_fp4": "#f768a1",
    # ggml legacy: browns
    "q8_0": "#543005", "q5_0": "#8c510a", "q5_1": "#a6611a", "q4_0": "#bf812d", "q4_1": "#dfc27d",
    # ggml K-quants: purples
    "q8_k": "#3f007d", "q6_k": "#54278f", "q5_k": "#6a51a3", "q4_k": "#807dba",
    "q3_k": "#9e9ac8", "q2_k": "#bcbddc",
    # ggml others
    "iq4_nl": "#01665e", "iq4_xs": "#35978f", "tq1_0": "#737373", "tq2_0": "#969696",
    "mxfp4_ggml": "#fb6a4a",
    # llama.cpp file types (mixes)
    "q4_k_m": "#807dba", "q4_k_s": "#9e9ac8", "q5_k_m": "#6a51a3", "q3_k_m": "#9e9ac8",
    "q2_k_s": "#bcbddc",
}

# Colours of the parts of a stored number (bit boxes, byte maps).
ROLE_COLORS: dict[str, str] = {
    "sign": "#e15759", "exponent": "#59a14f", "mantissa": "#4e79a7",
    "scale": "#b07aa1", "min": "#f28e2b", "zero": "#f28e2b", "high bits": "#edc948",
    "quants": "#76b7b2", "other": "#bab0ac",
}

_FALLBACK = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
             "#ff9da7", "#9c755f", "#bab0ac"]


def format_color(name: str) -> str:
    """The fixed colour of format ``name`` (case-insensitive); unknown names get a stable one."""
    key = str(name).lower()
    if key in FORMAT_COLORS:
        return FORMAT_COLORS[key]
    # crc32, not hash(): the colour must not change between Python processes
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


def style():
    """Context manager applying the house style (``with style(): ...``)."""
    import matplotlib.pyplot as plt
    return plt.style.context(STYLE)


def new_axes(ax=None, figsize=None):
    """Return ``ax`` if given, else the axis of a new pyplot figure.

    Call inside :func:`style` so the new figure picks up the style.  Figures come from
    pyplot so that in JupyterLab they show at the end of the cell like any plot; scripts
    and tests close them (``plt.close(ax.figure)``).
    """
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=figsize)
    return ax
