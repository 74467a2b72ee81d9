"""Widget builders: controls + a figure redrawn by a pure drawing function.

Every widget here is ``interactive(draw, **controls)`` around a function
``draw(ax_or_axes, **values) -> dict`` that draws one state and returns the numbers it drew.
The lessons also call ``draw`` directly for the static figure shown when widgets cannot run;
tests call it over the controls' whole domain and check the returned numbers and the axes.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, ShapeError
from .style import format_color, new_axes, style

__all__ = ["interactive", "block_view", "plot_block_scales", "block_scale_explorer"]


def interactive(draw, *, ncols: int = 1, figsize=None, **controls):
    """A VBox of ``controls`` (ipywidgets) over an output that shows ``draw(axes, **values)``.

    The returned box has ``.controls`` (name -> widget), ``.last`` (what the latest ``draw``
    returned) and ``.redraw()``.  Figures are drawn inside the output and closed after
    showing, so nothing accumulates in pyplot.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    out = W.Output()
    ui = W.VBox([W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")), out])
    ui.controls, ui.last = controls, None

    def redraw(_change=None) -> None:
        values = {k: c.value for k, c in controls.items()}
        with out:
            out.clear_output(wait=True)
            with style():
                fig, axes = plt.subplots(1, ncols, figsize=figsize)
                ui.last = draw(axes, **values)
                display(fig)
                plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    ui.redraw = redraw
    redraw()
    return ui


# ----------------------------------------------------------------------------- block scales
def block_view(w, index: int, fmt: str, block: int = 32):
    """The ``index``-th block of ``block`` consecutive weights of ``w`` and its round trip.

    Returns ``(x, x_hat)``: the block (float32) and ``quantize(x, fmt).dequantize()``.
    """
    from ..formats import quantize
    flat = np.asarray(w, dtype=np.float32).ravel()
    n_blocks = flat.size // block
    if block < 1 or n_blocks == 0:
        raise ShapeError(f"cannot cut {flat.size} weights into blocks of {block}")
    if not 0 <= index < n_blocks:
        raise InputError(f"block index {index} out of range 0..{n_blocks - 1}")
    x = flat[index * block:(index + 1) * block]
    return x, quantize(x, fmt).dequantize()


def plot_block_scales(w, index: int, ax=None, *, formats=("mxfp4", "nvfp4"), block: int = 32):
    """Stems of one block of real weights and each format's reconstruction (dots)."""
    with style():
        ax = new_axes(ax)
        x = None
        result = {"index": index, "rmse": {}}
        for k, fmt in enumerate(formats):
            x, xh = block_view(w, index, fmt, block)
            off = (k - (len(formats) - 1) / 2) * 0.18
            ax.plot(np.arange(block) + off, xh, "o", ms=4, color=format_color(fmt),
                    label=f"{fmt} (rmse {np.sqrt(np.mean((xh - x) ** 2)):.2e})")
            result["rmse"][fmt] = float(np.sqrt(np.mean((xh.astype(np.float64) - x) ** 2)))
        ax.vlines(np.arange(block), 0, x, color="#999999", lw=1.2, label="weights")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel(f"position in block {index}")
        ax.set_ylabel("weight value")
        ax.legend(loc="upper right")
    return ax if not isinstance(ax, dict) else ax


def block_scale_explorer(w, *, formats=("mxfp4", "nvfp4"), block: int = 32):
    """Slider over the blocks of ``w``; draws :func:`plot_block_scales` for the chosen block."""
    import ipywidgets as W
    n_blocks = np.asarray(w).size // block

    def draw(ax, index):
        plot_block_scales(w, index, ax, formats=formats, block=block)
        return {fmt: block_view(w, index, fmt, block) for fmt in formats}

    return interactive(draw, index=W.IntSlider(0, 0, n_blocks - 1, description="block"))
