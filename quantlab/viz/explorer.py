"""The error explorer (lesson 7): every format on the same real tensor, one view.

    recs = format_records(w)                 # [{format, bits_per_weight, sqnr_db, rmse, ...}]
    plot_error_view(w, "q4_k", records=recs) # error histogram | SQNR vs bits | worst blocks
    error_explorer({"ffn_down": w})          # the same with a tensor / format / size picker

Formats that cannot hold the tensor's rows (K-quants need multiples of 256) are skipped and
listed in ``records`` with ``skipped`` set, never silently dropped.
"""
from __future__ import annotations

import numpy as np

from ..errors import QuantlabError
from .errorplots import block_errors, plot_block_errors, plot_error_hist, plot_sqnr_vs_bpw
from .style import style

__all__ = ["DEFAULT_FORMATS", "size_option", "quantize_with", "format_records",
           "plot_error_view", "error_explorer"]

DEFAULT_FORMATS = ("int8", "int4", "int3", "int2", "nf4", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1",
                   "mxfp4", "nvfp4", "q8_0", "q6_k", "q5_k", "q5_0", "q4_k", "q4_0", "iq4_xs",
                   "q3_k", "q2_k")


def size_option(fmt: str) -> str | None:
    """Name of the block/group-size option of ``fmt`` (``group_size``, ``blocksize``) or None."""
    from .. import get
    opts = get(fmt).options
    return next((k for k in ("group_size", "blocksize") if k in opts), None)


def quantize_with(w, fmt: str, size: int | None = None):
    """``quantize(w, fmt)`` with the block/group size set when the format has one."""
    from .. import quantize
    key = size_option(fmt)
    return quantize(w, fmt, **({key: size} if key and size else {}))


def _block_of(fmt: str, size: int | None, n: int) -> int:
    """Block length used for per-block error bars: the format's own, or the size option."""
    from .. import get
    b = size if (size and size_option(fmt)) else get(fmt).block_size
    return b if b > 1 and n % b == 0 else (32 if n % 32 == 0 else n)


def format_records(w, formats=DEFAULT_FORMATS, size: int | None = None) -> list[dict]:
    """Error and storage of every format on ``w``: bits/weight, SQNR (dB), RMSE, max error."""
    from ..metrics import error_report
    recs = []
    for fmt in formats:
        try:
            qt = quantize_with(w, fmt, size)
        except QuantlabError as exc:                   # e.g. rows of 576 for a K-quant
            recs.append({"format": fmt, "skipped": str(exc)})
            continue
        rep = error_report(w, qt.dequantize())
        recs.append({"format": fmt, "bits_per_weight": qt.bits_per_weight,
                     "sqnr_db": rep["sqnr_db"], "rmse": rep["rmse"], "max_abs": rep["max_abs"],
                     "skipped": ""})
    return recs


def plot_error_view(w, fmt: str, axes=None, *, size: int | None = None, records=None,
                    worst: int = 5):
    """Three panels for one format on ``w``: error histogram, SQNR-vs-bits, per-block errors.

    Returns ``(axes, info)`` with ``info = {"sqnr_db", "bits_per_weight", "worst_blocks"}``.
    """
    import matplotlib.pyplot as plt
    w = np.asarray(w, dtype=np.float32)
    qt = quantize_with(w, fmt, size)
    wh = qt.dequantize()
    records = records if records is not None else format_records(w, size=size)
    ok = [r for r in records if not r["skipped"]]
    block = _block_of(fmt, size, w.shape[-1])
    errs = block_errors(w, wh, block)
    with style():
        if axes is None:
            _, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        plot_error_hist(w, {fmt: wh}, axes[0])
        plot_sqnr_vs_bpw(ok, axes[1], highlight=(fmt,))
        n_show = min(errs.size, 256)                   # the first rows' blocks, readable bars
        plot_block_errors(w.reshape(-1)[:n_show * block], wh.reshape(-1)[:n_show * block], block,
                          axes[2], worst=worst, name=fmt)
    info = {"sqnr_db": float(next(r["sqnr_db"] for r in ok if r["format"] == fmt))
            if any(r["format"] == fmt for r in ok) else None,
            "bits_per_weight": qt.bits_per_weight,
            "worst_blocks": np.argsort(errs, kind="stable")[::-1][:worst].tolist()}
    return axes, info


def error_explorer(tensors: dict, *, formats=DEFAULT_FORMATS, sizes=(32, 64, 128, 256)):
    """Pick a tensor, a format and a block/group size (used by int*/nf4; ggml types are fixed).

    ``.last`` = the ``info`` dict of :func:`plot_error_view` for the current choice.
    """
    import ipywidgets as W
    from .widgets import interactive
    names = list(tensors)
    cache: dict = {}

    def draw(axes, tensor, fmt, size):
        key = (tensor, size)
        if key not in cache:
            cache[key] = format_records(tensors[tensor], formats, size)
        usable = [r["format"] for r in cache[key] if not r["skipped"]]
        if fmt not in usable:
            axes[0].set_title(f"{fmt} cannot store rows of {np.shape(tensors[tensor])[-1]}")
            return {"skipped": fmt}
        return plot_error_view(tensors[tensor], fmt, axes, size=size, records=cache[key])[1]

    return interactive(draw, ncols=3, figsize=(13, 3.4),
                       tensor=W.Dropdown(options=names, value=names[0], description="tensor"),
                       fmt=W.Dropdown(options=list(formats), value="q4_k" if "q4_k" in formats
                                      else formats[0], description="format"),
                       size=W.SelectionSlider(options=list(sizes), value=128 if 128 in sizes
                                              else sizes[0], description="block/group"))
