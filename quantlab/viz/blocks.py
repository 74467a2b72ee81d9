"""ggml blocks made visible: a block's byte layout, a tensor-type map, a block inspector widget.

* :func:`plot_block_layout` — one block as a strip of bytes coloured by field (scales,
  mins, high bits, quants), from :func:`quantlab.inspect`'s view of a real block.
* :func:`type_grid` / :func:`plot_type_map` — which ggml type llama-quantize gives every
  tensor of every layer (``{name: type}`` from ``mixes.choose_types``).
* :func:`inspect_row_block` / :func:`block_inspector` — quantize only the row that holds a
  block (ggml rows are independent) and show it byte by byte.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import InputError, ShapeError
from .style import ROLE_COLORS, format_color, new_axes, style
from .widgets import interactive

__all__ = ["field_role", "plot_block_layout", "type_grid", "plot_type_map", "inspect_row_block",
           "block_inspector"]


def field_role(name: str) -> str:
    """Colour role of a block field by its ggml name: d/dmin/scales -> scale, qh -> high bits..."""
    n = name.lower()
    if n in ("d", "d_e8m0", "e") or n.startswith("scales") or n.startswith("sc"):
        return "scale"
    if n in ("dmin", "m") or n.startswith("min"):
        return "min"
    if n in ("qh", "hmask"):
        return "high bits"
    if n in ("qs", "ql", "q"):
        return "quants"
    return "other"


def plot_block_layout(view, ax=None):
    """One block (a :func:`quantlab.inspect` view) as a strip of its bytes, coloured by field."""
    from matplotlib.patches import Rectangle
    size = int(view.raw.size)
    per_row = 48                  # fixed, so block sizes compare across formats
    with style():
        ax = new_axes(ax, figsize=(8, 1.8))
        seen = set()
        for f in view.fields:
            role = field_role(f.name)
            for j in range(f.size):
                b = f.offset + j
                r, c = divmod(b, per_row)
                label = f"{f.name} ({f.size} B)" if f.name not in seen else None
                seen.add(f.name)
                ax.add_patch(Rectangle((c, -r), 0.95, 0.9, color=ROLE_COLORS[role], label=label))
        ax.set_xlim(-0.5, per_row + 0.5)
        ax.set_ylim(-4.6, 1.2)                                  # room for 210-byte blocks
        ax.set_axis_off()
        ax.set_title(f"{view.format.ggml_name}: {size} bytes for {view.format.block_size} weights "
                     f"= {8 * size / view.format.block_size:.4g} bits/weight")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    return ax


_NAME = re.compile(r"blk\.(\d+)\.(.+)\.weight$")


def type_grid(types: dict):
    """``{gguf name: type}`` -> ``(layers, kinds, grid)`` with grid[layer][kind] a type name."""
    layers, kinds = set(), []
    for name in types:
        m = _NAME.match(name)
        if m:
            layers.add(int(m.group(1)))
            if m.group(2) not in kinds:
                kinds.append(m.group(2))
    if not layers:
        raise InputError("no per-layer tensors (blk.N.*.weight) in the type table")
    layers = sorted(layers)
    grid = [[types.get(f"blk.{layer}.{k}.weight", "") for k in kinds] for layer in layers]
    return layers, kinds, grid


def plot_type_map(types: dict, ax=None, *, title: str = ""):
    """Layers × tensor kinds, each cell coloured by the ggml type chosen for it."""
    from matplotlib.patches import Patch
    layers, kinds, grid = type_grid(types)
    names = sorted({t for row in grid for t in row if t})
    with style():
        ax = new_axes(ax, figsize=(7.5, 0.1 * len(layers) + 1.4))
        img = np.array([[_rgb(format_color(t)) if t else (1, 1, 1) for t in row] for row in grid])
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(kinds)), kinds, rotation=30, ha="right")
        ax.set_yticks(range(0, len(layers), 5), [str(layers[i]) for i in range(0, len(layers), 5)])
        ax.set_ylabel("layer")
        ax.grid(False)
        ax.legend(handles=[Patch(color=format_color(t), label=t) for t in names],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(title)
    return ax


def _rgb(hex_colour: str):
    h = hex_colour.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))


def inspect_row_block(w, fmt: str, block: int):
    """Quantize the row of 2-D ``w`` that holds flat block ``block`` with ``fmt``; inspect it."""
    from .. import inspect, quantize, get
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ShapeError(f"inspect_row_block needs a 2-D weight matrix, got shape {w.shape}")
    bs = get(fmt).block_size
    if w.shape[1] % bs:
        raise ShapeError(f"{fmt}: rows of {w.shape[1]} do not hold whole blocks of {bs}")
    per_row = w.shape[1] // bs
    if not 0 <= block < per_row * w.shape[0]:
        raise InputError(f"block {block} out of range 0..{per_row * w.shape[0] - 1}")
    row, b = divmod(block, per_row)
    qt = quantize(w[row:row + 1], fmt)                 # one row: rows are independent in ggml
    return inspect(qt, block=b)


def block_inspector(tensors: dict, *, formats=("q4_0", "q4_k", "q6_k")):
    """Pick a tensor, a format and a block: the byte map (HTML) and the layout strip.

    ``.last`` holds the current :class:`~quantlab.formats.ggml.inspect.BlockView` (``None``
    while the chosen format cannot store the tensor; the figure then says why).
    """
    import ipywidgets as W
    from IPython.display import HTML, display
    names = list(tensors)

    def draw(ax, tensor, fmt, block):
        try:
            view = inspect_row_block(tensors[tensor], fmt, block)
        except (ShapeError, InputError) as e:       # e.g. rows of 576 and a 256-weight K-quant
            ax.text(0.5, 0.5, f"{fmt} cannot store {tensor}:\n{e}", ha="center", va="center",
                    wrap=True, fontsize=9, color=ROLE_COLORS["sign"], transform=ax.transAxes)
            ax.set_axis_off()
            return None
        plot_block_layout(view, ax)
        display(HTML(view._repr_html_()))
        return view

    return interactive(draw, figsize=(8, 2.2),
                       tensor=W.Dropdown(options=names, value=names[0], description="tensor"),
                       fmt=W.Dropdown(options=list(formats), value=formats[0], description="format"),
                       block=W.IntSlider(0, 0, 47, description="block"))
