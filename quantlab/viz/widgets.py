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

__all__ = ["interactive", "block_view", "plot_block_scales", "block_scale_explorer",
           "block_normalize", "codebook_usage", "plot_codebook_fit", "codebook_explorer"]


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
        for k, fmt in enumerate(formats):
            x, xh = block_view(w, index, fmt, block)
            off = (k - (len(formats) - 1) / 2) * 0.18
            ax.plot(np.arange(block) + off, xh, "o", ms=4, color=format_color(fmt),
                    label=f"{fmt} (rmse {np.sqrt(np.mean((xh - x) ** 2)):.2e})")
        ax.vlines(np.arange(block), 0, x, color="#999999", lw=1.2, label="weights")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel(f"position in block {index}")
        ax.set_ylabel("weight value")
        ax.legend(loc="upper right")
    return ax


def block_scale_explorer(w, *, formats=("mxfp4", "nvfp4"), block: int = 32):
    """Slider over the blocks of ``w``; draws :func:`plot_block_scales` for the chosen block."""
    import ipywidgets as W
    n_blocks = np.asarray(w).size // block

    def draw(ax, index):
        plot_block_scales(w, index, ax, formats=formats, block=block)
        return {fmt: block_view(w, index, fmt, block) for fmt in formats}

    return interactive(draw, index=W.IntSlider(0, 0, n_blocks - 1, description="block"))


# ----------------------------------------------------------------------------- codebooks
def block_normalize(w, blocksize: int) -> np.ndarray:
    """``w`` flattened row-major, cut in blocks of ``blocksize``, each divided by its absmax.

    Returns values in [-1, 1] (a partial last block is dropped; all-zero blocks give 0).
    """
    flat = np.asarray(w, dtype=np.float64).ravel()
    n = flat.size // blocksize * blocksize
    if blocksize < 1 or n == 0:
        raise ShapeError(f"cannot cut {flat.size} weights into blocks of {blocksize}")
    blocks = flat[:n].reshape(-1, blocksize)                   # (n_blocks, blocksize)
    absmax = np.abs(blocks).max(axis=1, keepdims=True)
    return np.divide(blocks, absmax, out=np.zeros_like(blocks), where=absmax > 0).ravel()


def codebook_usage(w, levels, blocksize: int):
    """How often each of ``levels`` is the nearest to a block-normalized weight.

    Returns ``(fractions, entropy_bits)``: the share of weights per level and the entropy
    ``-Σ p·log2 p`` — 4.0 bits would mean all 16 levels are used equally.
    """
    u = block_normalize(w, blocksize)
    levels = np.sort(np.asarray(levels, dtype=np.float64).ravel())
    mids = (levels[1:] + levels[:-1]) / 2
    idx = np.searchsorted(mids, u)                             # nearest level (ties go up)
    p = np.bincount(idx, minlength=levels.size) / u.size
    nz = p[p > 0]
    return p, float(-(nz * np.log2(nz)).sum())


def plot_codebook_fit(w, levels, blocksize: int, ax=None, *, name: str = "nf4"):
    """Histogram of block-normalized weights with the codebook's levels; title = entropy."""
    u = block_normalize(w, blocksize)
    p, h = codebook_usage(w, levels, blocksize)
    from .grids import plot_levels_on_hist
    ax = plot_levels_on_hist(u, levels, ax, name=name, bins=161)
    with style():
        ax.set_xlabel(f"weight / absmax of its block of {blocksize}")
        ax.set_title(f"{name}, blocks of {blocksize}")
        ax.text(0.02, 0.97, f"levels carry {h:.2f} of 4 bits\nleast used level: {p.min():.1%}",
                transform=ax.transAxes, va="top", fontsize=8)
    return ax


def codebook_explorer(w, levels, *, name: str = "nf4",
                      blocksizes=(32, 64, 128, 256, 512, 1024, 2048, 4096)):
    """A block-size slider over :func:`plot_codebook_fit` (``.last`` = (fractions, entropy))."""
    import ipywidgets as W

    def draw(ax, blocksize):
        plot_codebook_fit(w, levels, blocksize, ax, name=name)
        return codebook_usage(w, levels, blocksize)

    return interactive(draw, blocksize=W.SelectionSlider(options=list(blocksizes), value=64,
                                                         description="block size"))
