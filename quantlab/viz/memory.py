"""Memory arithmetic (lesson 1): what the weights and the KV cache of a model cost.

    weights  = parameters × bits per weight / 8                       bytes
    KV cache = 2 (K and V) × layers × kv_dim × context × bits / 8     bytes

:func:`memory_rows` evaluates both for three ways to run a model (everything FP16,
weight-only 4-bit, W8A8 with an 8-bit cache); :func:`plot_memory` draws them as stacked bars
and :func:`memory_explorer` puts a context-length slider on top.
"""
from __future__ import annotations

from ..errors import InputError
from .style import format_color, new_axes, style
from .widgets import interactive

__all__ = ["LLAMA2_7B", "kv_cache_bytes", "memory_rows", "plot_memory", "memory_explorer"]

LLAMA2_7B = {"name": "Llama-2-7B", "n_params": 7e9, "n_layers": 32, "kv_dim": 4096}
"""The shape the lesson uses: 7 B parameters, 32 layers, 32 heads × 128 = 4096 K/V columns."""


def kv_cache_bytes(n_layers: int, kv_dim: int, ctx: int, bits: float) -> float:
    """Bytes of the K and V caches: ``2 · n_layers · kv_dim · ctx · bits / 8``."""
    for name, v in (("n_layers", n_layers), ("kv_dim", kv_dim), ("ctx", ctx), ("bits", bits)):
        if not v > 0:
            raise InputError(f"{name} must be positive, got {v!r}")
    return 2 * n_layers * kv_dim * ctx * bits / 8


def memory_rows(ctx: int, shape: dict = LLAMA2_7B) -> dict[str, tuple[float, float]]:
    """``{setup: (weights GB, KV cache GB)}`` at context ``ctx`` (GB = 10⁹ bytes).

    Setups: FP16 weights and cache; 4-bit weights (Q4_K's 4.5 bits/weight, scales included)
    with an FP16 cache (weight-only quantization); 8-bit weights and an 8-bit cache (W8A8).
    """
    n, layers, kv = shape["n_params"], shape["n_layers"], shape["kv_dim"]
    setups = {"FP16 everything": (16, 16),
              "4-bit weights (weight-only)": (4.5, 16),
              "W8A8 (weights + KV in 8 bits)": (8, 8)}
    return {name: (n * wb / 8 / 1e9, kv_cache_bytes(layers, kv, ctx, kb) / 1e9)
            for name, (wb, kb) in setups.items()}


def plot_memory(ctx: int, ax=None, shape: dict = LLAMA2_7B):
    """Stacked horizontal bars, weights + KV cache, for each setup of :func:`memory_rows`."""
    rows = memory_rows(ctx, shape)
    names = list(rows)
    weights = [rows[k][0] for k in names]
    kv = [rows[k][1] for k in names]
    with style():
        ax = new_axes(ax, figsize=(7, 2.4))
        ax.barh(names, weights, color=format_color("q4_k"), label="weights")
        ax.barh(names, kv, left=weights, color=format_color("fp16"), label="KV cache")
        ax.invert_yaxis()                                   # first setup on top
        ax.set_xlabel("memory (GB)")
        ax.set_title(f"{shape['name']} shape, context {ctx:,} tokens")
        ax.legend(loc="lower right")
    return ax


def memory_explorer(contexts=(512, 2048, 4096, 16384, 65536), value: int = 4096,
                    shape: dict = LLAMA2_7B):
    """A context-length slider over :func:`plot_memory` (``.last`` = :func:`memory_rows`)."""
    import ipywidgets as W

    def draw(ax, ctx):
        plot_memory(ctx, ax, shape)
        return memory_rows(ctx, shape)

    return interactive(draw, figsize=(7, 2.4),
                       ctx=W.SelectionSlider(options=list(contexts), value=value,
                                             description="context"))
