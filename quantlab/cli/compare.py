"""``quantlab compare``: quantize a model into many formats; one table of size, error, PPL, speed.

    quantlab compare                                  # defaults: 13 formats, 2 chunks of 512
    quantlab compare --formats F32,Q4_K_M,nf4,int4:group_size=64 --chunks 4 --out out/cmp
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import InputError


def run(args) -> int:
    from .. import compare as cmp
    from ..model import load_model
    from ..model.text import default_text, process_escapes
    formats = [f for f in args.formats.split(",") if f.strip()] if args.formats else cmp.DEFAULT_FORMATS
    for f in formats:
        cmp.parse_format(f)                       # a bad name fails before the model loads
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        text = process_escapes(path.read_bytes().decode("utf-8", errors="replace"))
        source = str(path)
    else:
        text, source = default_text(), "pydoc topics (quantlab's default text)"
    imatrix = None
    if args.imatrix:                              # read (and checked) before the model loads
        from ..io.imatrix import load_imatrix
        imatrix = load_imatrix(args.imatrix)
    model = load_model(args.model)
    name = Path(str(model.path)).name.split(".")[0]          # SmolLM2-135M-Instruct
    note = (f"Model {Path(str(model.path)).name}; perplexity on the first {args.chunks} chunk(s) of "
            f"{args.ctx} tokens of {source} (llama-perplexity's method, "
            f"{args.chunks * (args.ctx // 2 - 1)} tokens scored): a quick comparison, not the "
            "full-text figure. Weights are quantized, decoded and run in float32 (activations are "
            "not quantized, unlike llama.cpp's quantized mat-vecs). llama.cpp mixes keep the tied "
            "embedding/output at 6-8 bits; quantlab formats quantize every matrix, that one "
            "included. tok/s: decode speed, 'packed' = kernels on the stored bytes, 'float32' = "
            "dequantized weights (noisy when other programs share the CPU).")
    if args.imatrix:
        note += f" ggml types quantized with the importance matrix {args.imatrix}."
    print(note, file=sys.stderr)
    t0 = time.perf_counter()

    def show(row):
        print(f"  {row.format:22s} {row.bpw:6.3f} bpw  PPL {row.ppl:9.4f} ({row.dppl_pct:+.2f} %)  "
              f"SQNR {row.sqnr_db:6.2f} dB", file=sys.stderr)

    rows = cmp.compare(model, formats, text, ctx=args.ctx, chunks=args.chunks,
                       progress=not args.quiet, on_row=show, imatrix=imatrix)
    print(cmp.format_table(rows))
    paths = cmp.write_report(rows, args.out, note, title=f"{name}: perplexity vs bits per weight")
    print(f"\n{note}\nwrote {', '.join(str(p) for p in paths.values())} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


def add_parser(sub) -> None:
    from ..compare import DEFAULT_CHUNKS, DEFAULT_CTX, DEFAULT_FORMATS
    p = sub.add_parser("compare", help="quantize a model into many formats and compare them",
                       description="Size, bits/weight, weight RMSE/SQNR, perplexity and tokens/s "
                                   "for each format; writes CSV, Markdown and a PPL-vs-bpw plot.")
    p.add_argument("--model", metavar="GGUF", help="model file (default: embedded SmolLM2-135M)")
    p.add_argument("--formats", metavar="LIST",
                   help="comma-separated llama.cpp file types (Q4_K_M …), F32, or quantlab formats "
                        f"with options (int4:group_size=64); default {','.join(DEFAULT_FORMATS)}")
    p.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS,
                   help=f"perplexity chunks per format (default {DEFAULT_CHUNKS})")
    p.add_argument("-c", "--ctx", type=int, default=DEFAULT_CTX,
                   help=f"tokens per chunk (default {DEFAULT_CTX})")
    p.add_argument("--text", metavar="FILE", help="evaluation text (default: pydoc topics)")
    p.add_argument("--imatrix", metavar="FILE",
                   help="importance matrix (llama-imatrix / quantlab imatrix file) for the ggml types")
    p.add_argument("--out", default="out/compare", help="output folder (default out/compare)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
