"""Plots and widgets the lessons call — in the package so they are tested, not in cells.

Every ``plot_*`` function draws in the house style (:data:`STYLE`, applied with
``plt.style.context``; global rcParams are never touched), takes ``ax=`` and returns it.
Every widget builder has a pure callback beside it (``flip_state`` for ``bit_flipper`` ...)
that computes what the widget shows, so tests drive widgets without a browser.

Needs the ``lab`` extra (matplotlib, ipywidgets); ``import quantlab`` does not import this.
"""
from .style import FORMAT_COLORS, ROLE_COLORS, STYLE, format_color, new_axes, style
from .bits import bit_flipper, encode_one, flip_state, float_format, plot_bit_boxes
from .grids import plot_levels_on_hist, plot_number_line, plot_relative_error, relative_error_curve
from .widgets import (block_normalize, block_scale_explorer, block_view, codebook_explorer,
                      codebook_usage, interactive, plot_block_scales, plot_codebook_fit)
from .blocks import (block_inspector, field_role, inspect_row_block, plot_block_layout,
                     plot_type_map, type_grid)
from .calib import clipping_curve, clipping_error, clipping_explorer, plot_clipping
from .explorer import (DEFAULT_FORMATS, error_explorer, format_records, plot_error_view,
                       quantize_with, size_option)
from .errorplots import (block_errors, cmp, pareto_front, plot_block_errors, plot_error_hist,
                         plot_pareto, plot_sizes, plot_sqnr_vs_bpw)
from .memory import LLAMA2_7B, kv_cache_bytes, memory_explorer, memory_rows, plot_memory
from .tokens import (continue_text, kl_divergence, next_token_explorer, next_token_probs,
                     next_token_view, plot_next_token, text_generator)

__all__ = ["STYLE", "style", "format_color", "FORMAT_COLORS", "ROLE_COLORS", "new_axes",
           "float_format", "flip_state", "encode_one", "plot_bit_boxes", "bit_flipper",
           "plot_number_line", "relative_error_curve", "plot_relative_error", "plot_levels_on_hist",
           "cmp", "block_errors", "plot_error_hist", "plot_block_errors", "plot_sqnr_vs_bpw",
           "pareto_front", "plot_pareto", "plot_sizes",
           "interactive", "block_view", "plot_block_scales", "block_scale_explorer",
           "block_normalize", "codebook_usage", "plot_codebook_fit", "codebook_explorer",
           "field_role", "plot_block_layout", "type_grid", "plot_type_map", "inspect_row_block",
           "block_inspector",
           "clipping_error", "clipping_curve", "plot_clipping", "clipping_explorer",
           "DEFAULT_FORMATS", "size_option", "quantize_with", "format_records", "plot_error_view",
           "error_explorer",
           "LLAMA2_7B", "kv_cache_bytes", "memory_rows", "plot_memory", "memory_explorer",
           "next_token_probs", "kl_divergence", "next_token_view", "plot_next_token",
           "next_token_explorer", "continue_text", "text_generator"]
