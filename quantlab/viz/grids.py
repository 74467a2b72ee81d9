"""Where the representable values are: number lines, relative error, codebooks on histograms.

* :func:`plot_number_line` — one row of ticks per format: the integer grid is uniform, a
  float grid is log-spaced (dense near zero, sparse far out).
* :func:`relative_error_curve` / :func:`plot_relative_error` — ``|x̂ - x| / |x|`` against
  ``|x|`` on log axes: flat for floats inside their normal range, ``∝ 1/|x|`` for integers.
* :func:`plot_levels_on_hist` — a histogram of real weights with a format's levels on top
  (NF4's 16 quantiles, an INT4 grid, a clipping range).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .style import format_color, new_axes, style

__all__ = ["plot_number_line", "relative_error_curve", "plot_relative_error",
           "plot_levels_on_hist"]


def plot_number_line(grids: dict, ax=None, *, xlim=None, xscale: str = "linear",
                     linthresh: float | None = None, annotate: bool = True):
    """One row of ticks per entry of ``grids`` (``{format name: representable values}``).

    ``xscale="symlog"`` (with ``linthresh``) shows many binades at once; the count of
    values inside ``xlim`` is printed at the end of each row.
    """
    if not grids:
        raise InputError("plot_number_line needs at least one grid")
    with style():
        ax = new_axes(ax, figsize=(7.5, 0.55 * len(grids) + 0.8))
        names = list(grids)
        for row, name in enumerate(reversed(names)):
            v = np.asarray(grids[name], dtype=np.float64).ravel()
            v = np.unique(v[np.isfinite(v)])
            if xlim is not None:
                v = v[(v >= xlim[0]) & (v <= xlim[1])]
            ax.vlines(v, row - 0.3, row + 0.3, color=format_color(name), lw=0.8)
            if annotate:
                ax.annotate(f"{v.size} values", (1.01, row), xycoords=("axes fraction", "data"),
                            va="center", fontsize=8)
        ax.set_yticks(range(len(names)), list(reversed(names)))
        ax.set_ylim(-0.6, len(names) - 0.4)
        if xscale == "symlog":
            ax.set_xscale("symlog", linthresh=linthresh or 1e-3)
        if xlim is not None:
            ax.set_xlim(*xlim)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("value")
    return ax


def relative_error_curve(x, x_hat):
    """``(|x|, |x̂ - x| / |x|)`` sorted by ``|x|``, zeros of ``x`` dropped (pure, for tests)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    x_hat = np.asarray(x_hat, dtype=np.float64).ravel()
    if x.shape != x_hat.shape:
        raise InputError(f"x and x_hat differ in size: {x.size} vs {x_hat.size}")
    keep = x != 0
    mag = np.abs(x[keep])
    rel = np.abs(x_hat[keep] - x[keep]) / mag
    order = np.argsort(mag, kind="stable")
    return mag[order], rel[order]


def plot_relative_error(curves: dict, ax=None, *, ylim=(1e-9, 2.0)):
    """Relative error against magnitude for ``{format: (x, x̂)}`` on log–log axes.

    Values that decode to zero show as relative error 1 (everything was lost: underflow);
    values that saturate show as a rising line at the right edge.
    """
    with style():
        ax = new_axes(ax)
        for name, (x, x_hat) in curves.items():
            mag, rel = relative_error_curve(x, x_hat)
            ax.plot(mag, np.clip(rel, ylim[0], None), ".", ms=1.5, color=format_color(name),
                    label=name, rasterized=True)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(*ylim)
        ax.set_xlabel("|x| (log₂ scale)")
        ax.set_ylabel("relative error |x̂ − x| / |x|")
        ax.legend(markerscale=6)
    return ax


def plot_levels_on_hist(w, levels, ax=None, *, name: str = "levels", bins: int = 120,
                        clip=None, density: bool = True):
    """Histogram of ``w`` with vertical lines at the representable ``levels``.

    ``clip=(lo, hi)`` shades what falls outside the clipping range (it will be clamped).
    """
    w = np.asarray(w, dtype=np.float64).ravel()
    levels = np.asarray(levels, dtype=np.float64).ravel()
    with style():
        ax = new_axes(ax)
        ax.hist(w, bins=bins, density=density, color="#bbbbbb", label="weights")
        for i, lv in enumerate(levels):
            ax.axvline(lv, color=format_color(name), lw=0.8, alpha=0.9,
                       label=f"{name} ({levels.size} levels)" if i == 0 else None)
        if clip is not None:
            lo, hi = clip
            ax.axvspan(min(w.min(), lo), lo, color="#e15759", alpha=0.15, label="clipped")
            ax.axvspan(hi, max(w.max(), hi), color="#e15759", alpha=0.15)
        ax.set_xlabel("weight value")
        ax.set_ylabel("density" if density else "count")
        ax.legend(loc="upper right")
    return ax
