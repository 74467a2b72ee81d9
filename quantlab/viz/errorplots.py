"""Quantization error and its price: histograms, per-block errors, SQNR vs bits, Pareto.

Pure helpers compute the numbers (tests check them); ``plot_*`` functions draw them::

    block_errors(x, x_hat, 32)        -> (n_blocks,) RMSE of each block of 32 along the row
    pareto_front(records, "bpw", "ppl") -> the records no other record beats on both axes
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, ShapeError
from .style import format_color, new_axes, style

__all__ = ["cmp", "block_errors", "plot_error_hist", "plot_block_errors", "plot_sqnr_vs_bpw",
           "pareto_front", "plot_pareto", "plot_sizes"]


def cmp(label: str, got, ref) -> str:
    """One aligned line comparing ``got`` with ``ref``: exact / close / max error (and prints it).

    ``exact`` means bit-identical float values; ``close`` means ``np.allclose`` at its defaults.
    """
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        raise ShapeError(f"cmp {label!r}: shapes differ, {g.shape} vs {r.shape}")
    exact = bool(np.array_equal(g, r, equal_nan=True))
    close = bool(np.allclose(g, r, equal_nan=True))
    both = np.isfinite(g) & np.isfinite(r)
    maxdiff = float(np.max(np.abs(g[both] - r[both]))) if both.any() else 0.0
    line = f"{label:<28s} | exact: {exact!s:5} | close: {close!s:5} | max error: {maxdiff:.3g}"
    print(line)
    return line


def block_errors(x, x_hat, block_size: int) -> np.ndarray:
    """RMSE of every block of ``block_size`` consecutive elements along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.shape != x_hat.shape:
        raise ShapeError(f"x and x_hat differ in shape: {x.shape} vs {x_hat.shape}")
    if block_size < 1 or x.shape[-1] % block_size:
        raise ShapeError(f"row length {x.shape[-1]} is not a multiple of block size {block_size}")
    d = (x - x_hat).reshape(-1, block_size)        # (n_blocks, block_size)
    return np.sqrt(np.mean(d * d, axis=1))


def plot_error_hist(x, x_hats: dict, ax=None, *, bins: int = 101, log: bool = True):
    """Histogram of the error ``x̂ - x`` for each ``{format: x̂}`` (same bins for all)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    errs = {k: np.asarray(v, dtype=np.float64).ravel() - x for k, v in x_hats.items()}
    lim = max(float(np.max(np.abs(e))) for e in errs.values()) or 1.0
    edges = np.linspace(-lim, lim, bins + 1)
    with style():
        ax = new_axes(ax)
        for name, e in errs.items():
            ax.hist(e, bins=edges, histtype="step", lw=1.3, color=format_color(name),
                    label=f"{name} (rmse {np.sqrt(np.mean(e * e)):.2e})")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("error x̂ − x")
        ax.set_ylabel("count")
        ax.legend()
    return ax


def plot_block_errors(x, x_hat, block_size: int, ax=None, *, worst: int = 5, name: str = ""):
    """Per-block RMSE as bars, the ``worst`` blocks highlighted and labelled with their index."""
    err = block_errors(x, x_hat, block_size)
    top = np.argsort(err, kind="stable")[::-1][:worst]
    with style():
        ax = new_axes(ax)
        colors = np.full(err.size, "#bbbbbb", dtype=object)
        colors[top] = format_color(name) if name else "#e15759"
        ax.bar(np.arange(err.size), err, width=1.0, color=list(colors))
        for i in top:
            ax.annotate(str(i), (i, err[i]), ha="center", va="bottom", fontsize=7)
        ax.set_xlabel(f"block index (blocks of {block_size})")
        ax.set_ylabel("block RMSE")
        ax.set_title(f"{name + ': ' if name else ''}worst blocks {', '.join(map(str, top))}")
    return ax


def _column(records, key):
    try:
        return np.array([float(r[key]) for r in records])
    except KeyError:
        raise InputError(f"records need a {key!r} field; got fields {sorted(records[0])}") from None


def plot_sqnr_vs_bpw(records, ax=None, *, highlight=(), x: str = "bits_per_weight",
                     y: str = "sqnr_db"):
    """Scatter of SQNR (dB) against bits per weight, one labelled point per record.

    ``records`` are dicts with ``format``, ``bits_per_weight`` and ``sqnr_db``; formats in
    ``highlight`` get a bigger outlined marker.  The dashed line is the ideal uniform
    reference slope of a uniform quantizer, 6.02 dB per bit, drawn through the median point.
    """
    if not records:
        raise InputError("plot_sqnr_vs_bpw needs at least one record")
    xs, ys = _column(records, x), _column(records, y)
    with style():
        ax = new_axes(ax)
        for r, xv, yv in zip(records, xs, ys):
            big = r["format"] in highlight
            ax.scatter(xv, yv, s=60 if big else 22, color=format_color(r["format"]),
                       edgecolor="black" if big else "none", zorder=3)
            ax.annotate(r["format"], (xv, yv), xytext=(3, 3), textcoords="offset points",
                        fontsize=7)
        b = np.linspace(max(1.0, xs.min() - 0.5), xs.max() + 0.5, 10)
        offset = float(np.median(ys[np.isfinite(ys)] - 6.02 * xs[np.isfinite(ys)]))
        ax.plot(b, 6.02 * b + offset, "--", color="#999999", lw=0.8, label="slope 6.02 dB / bit")
        ax.set_xlabel("bits per weight (incl. scales)")
        ax.set_ylabel("SQNR (dB)")
        ax.legend(loc="lower right")
    return ax


def pareto_front(records, x: str, y: str) -> list:
    """Records not dominated on (smaller ``x``, smaller ``y``), sorted by ``x``."""
    _column(records, x), _column(records, y)          # a missing field is an InputError
    rs = sorted(records, key=lambda r: (float(r[x]), float(r[y])))
    front, best = [], np.inf
    for r in rs:
        if float(r[y]) < best:
            front.append(r)
            best = float(r[y])
    return front


def plot_pareto(records, ax=None, *, x: str = "bits_per_weight", y: str = "ppl",
                xlabel: str = "bits per weight", ylabel: str = "perplexity (lower is better)",
                label: str = "format"):
    """Quality against size for each record; the Pareto front joined by a line."""
    if not records:
        raise InputError("plot_pareto needs at least one record")
    front = pareto_front(records, x, y)
    with style():
        ax = new_axes(ax)
        for r in records:
            ax.scatter(float(r[x]), float(r[y]), color=format_color(r[label]), s=28, zorder=3)
            ax.annotate(str(r[label]), (float(r[x]), float(r[y])), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
        ax.plot([float(r[x]) for r in front], [float(r[y]) for r in front], "-",
                color="#555555", lw=1, zorder=2, label="Pareto front")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
    return ax


def plot_sizes(sizes: dict, ax=None, *, unit: str = "GB"):
    """Grouped bars: ``{model: {format: size}}`` on a log axis (lesson 1's memory table)."""
    models = list(sizes)
    fmts = list(dict.fromkeys(f for m in models for f in sizes[m]))
    width = 0.8 / len(fmts)
    with style():
        ax = new_axes(ax)
        for j, f in enumerate(fmts):
            xs = [i + (j - (len(fmts) - 1) / 2) * width for i in range(len(models))]
            ax.bar(xs, [sizes[m].get(f, np.nan) for m in models], width, label=f,
                   color=format_color(f))
        ax.set_xticks(range(len(models)), models)
        ax.set_yscale("log")
        ax.set_ylabel(f"size ({unit}, log scale)")
        ax.legend(ncol=min(4, len(fmts)))
    return ax
