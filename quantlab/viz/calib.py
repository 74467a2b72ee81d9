"""Calibration made visible (lesson 4): move the clipping range, watch the error.

Clipping at ``c < max|x|`` trades a *clipping error* (values beyond ±c are clamped) for a
finer grid (step ``c / qmax``) for everything else.  :func:`clipping_curve` computes the
mean squared error of ``fake_quant(x, bits, clip_range=c)`` over a range of ``c``;
:func:`plot_clipping` shows the histogram with the grid and the curve; the widget moves ``c``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .style import format_color, style

__all__ = ["clipping_error", "clipping_curve", "plot_clipping", "clipping_explorer"]


def clipping_error(x, bits: int, clip: float) -> float:
    """Mean squared error of symmetric ``bits``-bit quantization of ``x`` clipped at ``±clip``."""
    from ..formats.integer import fake_quant
    if not clip > 0:
        raise InputError(f"clip must be > 0, got {clip!r}")
    x = np.asarray(x, dtype=np.float32)
    d = fake_quant(x, bits, clip_range=float(clip)).astype(np.float64) - x
    return float(np.mean(d * d))


def clipping_curve(x, bits: int, fractions=None):
    """``(clips, mse)`` for clip values ``fractions · max|x|`` (default 60 log-spaced 1/64…1)."""
    x = np.asarray(x, dtype=np.float32)
    amax = float(np.abs(x).max())
    if amax == 0:
        raise InputError("clipping needs data that is not all zero")
    fr = np.geomspace(1 / 64, 1, 60) if fractions is None else np.asarray(fractions, float)
    clips = fr * amax
    return clips, np.array([clipping_error(x, bits, c) for c in clips])


def plot_clipping(x, clip: float, bits: int, axes=None, *, methods: dict | None = None,
                  curve=None):
    """Left: histogram of ``x`` (log counts), the ±clip range and the grid; right: MSE vs clip.

    ``methods`` = ``{label: clip value}`` (e.g. min-max, percentile, MSE) marked on the curve;
    ``curve`` = a precomputed :func:`clipping_curve` (widgets pass it to stay fast).
    Returns the axes; ``axes[1].lines[1]`` is the current point.
    """
    import matplotlib.pyplot as plt
    x = np.asarray(x, dtype=np.float32).ravel()
    clips, err = curve if curve is not None else clipping_curve(x, bits)
    now = clipping_error(x, bits, clip)
    with style():
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        a, b = axes
        a.hist(x, bins=200, color="#bbbbbb", log=True)
        qmax = 2 ** (bits - 1) - 1
        grid = np.arange(-qmax, qmax + 1) * (clip / qmax)
        if grid.size <= 64:
            a.vlines(grid, 0.5, 3, color=format_color(f"int{bits}"), lw=0.6)
        lo, hi = x.min(), x.max()
        a.axvspan(min(lo, -clip), -clip, color="#e15759", alpha=0.15)
        a.axvspan(clip, max(hi, clip), color="#e15759", alpha=0.15, label="clipped")
        a.set_xlabel("value")
        a.set_ylabel("count (log)")
        a.set_title(f"INT{bits}, clip ±{clip:.3g}: {np.mean(np.abs(x) > clip):.3%} clipped")
        a.legend(loc="upper right")
        b.plot(clips, err, color=format_color(f"int{bits}"), label=f"INT{bits} MSE")
        b.plot([clip], [now], "o", color="black", ms=6, label=f"now: {now:.3g}")
        for k, (label, c) in enumerate((methods or {}).items()):
            b.axvline(c, color=["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"][k % 4], ls="--",
                      lw=1, label=f"{label}: {c:.3g}")
        b.set_xscale("log")
        b.set_yscale("log")
        b.set_xlabel("clipping value c (log)")
        b.set_ylabel("mean squared error (log)")
        b.legend(fontsize=7)
    return axes


def clipping_explorer(x, *, bits: int = 8, methods: dict | None = None):
    """A clip slider (fraction of max|x|, log scale) and a bit-width picker over :func:`plot_clipping`.

    ``.last`` = ``{"clip", "bits", "mse"}`` of the current view.
    """
    import ipywidgets as W
    from .widgets import interactive
    x = np.asarray(x, dtype=np.float32).ravel()
    amax = float(np.abs(x).max())
    curves = {}

    def draw(axes, fraction, bits):
        if bits not in curves:
            curves[bits] = clipping_curve(x, bits)
        clip = fraction * amax
        plot_clipping(x, clip, bits, axes, methods=methods, curve=curves[bits])
        return {"clip": clip, "bits": bits, "mse": clipping_error(x, bits, clip)}

    return interactive(
        draw, ncols=2, figsize=(10, 3.2),
        fraction=W.FloatLogSlider(value=1.0, base=2, min=-6, max=0, step=0.25,
                                  description="clip / max", readout_format=".3f"),
        bits=W.SelectionSlider(options=[2, 3, 4, 5, 6, 7, 8], value=bits, description="bits"))
