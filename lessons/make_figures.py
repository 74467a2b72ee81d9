"""Render the static figures the lessons show in place of their widgets (``lessons/figures/``).

Lessons are committed with outputs stripped, so a reader who opens one without running it
sees no plots.  Next to every widget a markdown cell shows one of these PNGs instead: the
widget's view drawn by the same :mod:`quantlab.viz` function, on the same real data (the
embedded SmolLM2-135M where the lesson uses it).

    .venv/bin/python lessons/make_figures.py          # every figure (about a minute)
    .venv/bin/python lessons/make_figures.py 04 08    # only lessons 4 and 8

Run it by hand after changing a widget or its data, look at the PNGs, commit them.  The
output is deterministic (fixed seeds and data, no timestamp or version in the PNG metadata).
``tests/lessons`` checks that every image a lesson references exists and stays small.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import quantlab as ql  # noqa: E402
from quantlab import viz  # noqa: E402

FIGURES = Path(__file__).resolve().parent / "figures"
DPI = 80                     # small files (< 150 KB each), still sharp at notebook width


@lru_cache(maxsize=None)
def model():
    return ql.load_model()   # SmolLM2-135M-Instruct, as shipped (Q4_1 GGUF)


def weight(name: str) -> np.ndarray:
    return model().tensors()[name].dequantize()


def save(fig, name: str) -> Path:
    path = FIGURES / name
    with viz.style():                                      # the style's savefig settings too
        fig.savefig(path, dpi=DPI, metadata={"Software": None}, pil_kwargs={"optimize": True})
    plt.close(fig)
    print(f"{path.relative_to(FIGURES.parent)}: {path.stat().st_size / 1024:.0f} KB")
    return path


# ----------------------------------------------------------------------------- one per lesson
def lesson_01():
    """The memory explorer at 4,096 tokens."""
    with viz.style():
        fig, ax = plt.subplots(figsize=(7, 2.4), layout="constrained")
    viz.plot_memory(4096, ax)
    save(fig, "01-memory.png")


def lesson_02():
    """The bit-flipper's starting point: 1.0 in BF16, FP16 and FP32."""
    with viz.style():
        fig, ax = plt.subplots(figsize=(8, 1.8), layout="constrained")
    for row, fmt in enumerate(["bf16", "fp16", "fp32"]):
        viz.plot_bit_boxes(fmt, viz.encode_one(fmt, 1.0), ax=ax, y=1.1 * row)
    ax.set_title("1.0: exponent = bias, mantissa = 0 (sign red, exponent green, mantissa blue)")
    save(fig, "02-bit-flipper.png")


def lesson_03():
    """The block-scale explorer's first view: block 0 of blk.3.ffn_gate."""
    with viz.style():
        fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    viz.plot_block_scales(weight("blk.3.ffn_gate.weight"), 0, ax, formats=("mxfp4", "nvfp4"))
    save(fig, "03-block-scales.png")


def lesson_04():
    """The clipping explorer at the MSE choice, 8 bits (activations captured as in the lesson)."""
    m = model()
    captured = []
    lin = next(x for x in m.linears() if x.name == "blk.2.ffn_down.weight")
    lin.hook = lambda name, a: captured.append(a.copy())
    m.logits(m.tokenizer.encode("Quantization maps real numbers to a small set of levels. " * 3))
    lin.hook = None
    act = np.concatenate(captured).ravel()
    clips = {"min-max": ql.calibrate.minmax(act),
             "percentile 99.99": ql.calibrate.percentile(act, 99.99),
             "MSE": ql.calibrate.mse(act, bits=8)}
    with viz.style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
    viz.plot_clipping(act, clips["MSE"], 8, axes, methods=clips)
    save(fig, "04-clipping.png")


def lesson_05():
    """The codebook explorer at blocks of 64 and 1024."""
    w = weight("blk.10.ffn_up.weight")
    nf4 = ql.get("nf4").code
    with viz.style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True, layout="constrained")
    viz.plot_codebook_fit(w, nf4, 64, ax=axes[0])
    viz.plot_codebook_fit(w, nf4, 1024, ax=axes[1])
    save(fig, "05-codebook.png")


def lesson_06():
    """The block inspector's first view: block 0 of blk.0.ffn_down in Q4_0, strip + byte table."""
    view = viz.inspect_row_block(weight("blk.0.ffn_down.weight"), "q4_0", 0)
    with viz.style():
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 3.6), layout="constrained",
                                          height_ratios=[1, 1.5])
    viz.plot_block_layout(view, ax=top)
    top.set_ylim(-0.3, 1.1)                   # one row of bytes: 18 < 48 per row
    bottom.text(0, 1, str(view), family="monospace", fontsize=7, va="top", ha="left",
                transform=bottom.transAxes)
    bottom.set_axis_off()
    save(fig, "06-block-inspector.png")


def lesson_07():
    """The error explorer: INT4 with groups of 32 and 128 on the token embedding."""
    from quantlab.io.gguf import GGUFFile
    embd = GGUFFile(model().path).dequantize("token_embd.weight")[:2048].reshape(-1, 4608)
    records = viz.format_records(embd)
    with viz.style():
        fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), layout="constrained")
    for row, size in zip(axes, [32, 128]):
        viz.plot_error_view(embd, "int4", row, size=size, records=records)
        row[0].set_title(f"int4, groups of {size}")
    save(fig, "07-error-explorer.png")


def lesson_08():
    """The next-token explorer: F32 against llama.cpp's Q4_0 mix after the lesson's prompt."""
    from quantlab.compare import quantize_weights
    from quantlab.model.weights import as_float32
    m = model()
    reference = {n: as_float32(t) for n, t in m.tensors().items()}
    f32 = m.with_weights(reference)
    q4_0 = m.with_weights(quantize_weights(reference, "Q4_0", m.metadata)[0])
    view = viz.next_token_view(f32, q4_0, "The three primary colors are")
    with viz.style():
        fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    viz.plot_next_token(view, ax, names=("F32", "Q4_0"))
    save(fig, "08-next-token.png")


LESSONS = {f"{i:02d}": f for i, f in enumerate(
    [lesson_01, lesson_02, lesson_03, lesson_04, lesson_05, lesson_06, lesson_07, lesson_08], 1)}


def main(argv: list[str]) -> int:
    wanted = argv or list(LESSONS)
    unknown = [a for a in wanted if a not in LESSONS]
    if unknown:
        print(f"unknown lesson(s) {unknown}; choose from {list(LESSONS)}", file=sys.stderr)
        return 2
    FIGURES.mkdir(exist_ok=True)
    for key in wanted:
        with viz.style():                     # titles and labels set here get the house style
            LESSONS[key]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
