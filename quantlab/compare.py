"""``quantlab compare``: one model, many formats — size, weight error, perplexity, speed.

    rows = compare(formats=["F32", "Q8_0", "Q4_K_M", "nf4"], chunks=2)
    write_report(rows, "out/compare")          # compare.csv, compare.md, ppl_vs_bpw.png

For every format the model's weights are quantized, decoded back and run through the
reference (float32) forward pass; the table reports

    size, bpw       bytes of every weight as stored (norms stay F32) and 8·bytes / parameters
    rmse, sqnr_db   error of the decoded weights against the F32 weights, over all matrices:
                    rmse = sqrt(Σ(ŵ − w)² / N),  sqnr = 10·log10(Σw² / Σ(ŵ − w)²)
    ppl, dppl_%     llama-perplexity's method on the first ``chunks`` chunks of ``ctx`` tokens
                    (relative change against the F32 row)
    tok_s, path     decode speed (tokens/s, one token at a time after a short prompt; the best
                    of a few tokens): "packed" = matrix products on the stored bytes with the
                    compiled kernels (:mod:`quantlab.model.packed`; smaller weights read less
                    memory), "float32" = dequantized weights (the same speed for every format:
                    no kernel for that format, or none compiled)

Format names:

* a llama.cpp **file type** (``Q8_0``, ``Q6_K``, ``Q5_K_M``, ``Q4_K_M``, ``Q4_0``, ``IQ4_NL``,
  ``Q3_K_M``, ``Q2_K``, ``BF16``, ``F16``…; upper case): llama-quantize's per-tensor mix
  (:func:`quantlab.formats.ggml.mixes.choose_types`), with its fall-backs for rows of 576;
* ``F32``: the reference, the weights of the shipped file decoded to float32;
* any registered quantlab format (``nf4``, ``int4``, ``fp8_e4m3``, ``mxfp4``…; see
  ``quantlab formats``), optionally with options ``int4:group_size=64``: applied to every 2-D
  weight matrix (token embedding included); norms stay F32.

Quantized weights are decoded once; perplexities therefore differ from llama.cpp's figures for
quantized files, where activations are also quantized (Q8) inside every mat-vec (golden README).
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import FormatError, InputError

__all__ = ["DEFAULT_FORMATS", "CompareRow", "compare", "quantize_weights", "parse_format",
           "write_report", "format_table"]

# Default set: each family once.  INT4 uses groups of 64: SmolLM2's rows of 576 are not a
# multiple of 128.  ~4-6 minutes on 2 cores (IQ4_NL's scale search is the slowest, ~35 s).
DEFAULT_FORMATS = ["F32", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "IQ4_NL", "nf4",
                   "int4:group_size=64", "fp8_e4m3", "mxfp4", "Q3_K_M", "Q2_K"]
DEFAULT_CTX, DEFAULT_CHUNKS = 512, 2


@dataclass
class CompareRow:
    format: str          # as given
    kind: str            # "reference", "llama.cpp mix" or "quantlab format"
    size_mb: float       # all weights as stored, MiB (2^20 bytes)
    bpw: float           # 8 · bytes / parameters (all weights, norms included)
    rmse: float
    sqnr_db: float
    ppl: float
    dppl_pct: float      # 100 · (ppl / ppl_F32 − 1)
    tok_s: float         # decode tokens/s of the path that ran
    path: str            # "packed" (kernels on the stored bytes) or "float32" — module doc
    quant_s: float       # seconds spent quantizing
    types: str           # tensor types used, e.g. "Q4_K×30 Q6_K×31 Q5_0×151 …"


def parse_format(spec: str) -> tuple[str, str, dict]:
    """``"Q4_K_M"`` -> ("mix", "Q4_K_M", {}); ``"int4:group_size=64"`` -> ("format", "int4", {...})."""
    from .formats import get
    from .formats.ggml.mixes import ALIASES, FTYPES
    spec = spec.strip()
    name, _, opts = spec.partition(":")
    if name == "F32":
        return "reference", "F32", {}
    if name in FTYPES or name in ALIASES:
        if opts:
            raise FormatError(f"{spec!r}: llama.cpp file types take no options")
        return "mix", ALIASES.get(name, name), {}
    fmt = get(name)                 # FormatError lists the known names
    options = {}
    for item in filter(None, opts.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise FormatError(f"{spec!r}: options are key=value pairs separated by commas")
        options[key.strip()] = _parse_value(value.strip())
    fmt.resolve_options(options)    # unknown option names raise here, before any work
    return "format", fmt.name, options


def _format_options(spec: str) -> dict:
    from .formats import get
    kind, name, _ = parse_format(spec)
    return get(name).options if kind == "format" else {}


def _parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def quantize_weights(reference: dict, spec: str, metadata: dict | None = None,
                     progress: bool = False, imatrix: dict | None = None) -> tuple[dict, dict]:
    """Quantize ``{name: float32 array}`` with ``spec``; returns ``({name: QTensor or array},
    {name: type name})``.  1-D tensors (norms) stay float32.

    ``imatrix`` (``{name: importance}``, e.g. :func:`quantlab.io.imatrix.load_imatrix`): passed
    to every ggml type for the tensors it covers, and the mix rules see an imatrix (as
    ``llama-quantize --imatrix``); formats without an ``imatrix`` option ignore it.
    """
    from tqdm.auto import tqdm
    from .formats import get
    from .formats.ggml import by_type
    from .formats.ggml.mixes import choose_types, model_params
    kind, name, options = parse_format(spec)
    if kind == "reference":
        return dict(reference), {n: "F32" for n in reference}
    if kind == "mix":
        types = choose_types([(n, w.shape, "F32") for n, w in reference.items()], name,
                             has_imatrix=imatrix is not None, **model_params(metadata or {}))
    else:
        types = {n: (name if w.ndim == 2 else "F32") for n, w in reference.items()}
    out = {}
    for n in tqdm(list(reference), desc=f"quantize {spec}", unit="tensor", disable=not progress,
                  leave=False):
        t, w = types[n], reference[n]
        if t == "F32" or w.ndim < 2:
            out[n] = w
        else:
            fmt = by_type(t) if kind == "mix" else get(t)
            extra = ({"imatrix": imatrix[n]} if imatrix is not None and n in imatrix
                     and "imatrix" in fmt.options else {})
            out[n] = fmt.quantize(w, **options, **extra)
    return out, types


def _type_summary(types: dict, reference: dict) -> str:
    counts: dict[str, int] = {}
    for n, t in types.items():
        if reference[n].ndim == 2:
            counts[t] = counts.get(t, 0) + 1
    return " ".join(f"{t}×{c}" for t, c in sorted(counts.items(), key=lambda kv: -kv[1]))


def _weight_error(reference: dict, quantized: dict, decoded: dict) -> tuple[float, float, int]:
    """(rmse, sqnr_db, stored bytes) over all tensors (2-D matrices for the error)."""
    from .formats.base import QTensor
    err = sig = 0.0
    n = nbytes = 0
    for name, w in reference.items():
        q = quantized[name]
        nbytes += q.nbytes if isinstance(q, QTensor) else w.size * 4
        if w.ndim == 2:
            d = decoded[name] - w                                  # float32 difference
            err += float(np.einsum("ij,ij->", d, d, dtype=np.float64))
            sig += float(np.einsum("ij,ij->", w, w, dtype=np.float64))
            n += w.size
    rmse = math.sqrt(err / n)
    sqnr = 10 * math.log10(sig / err) if err > 0 else math.inf
    return rmse, sqnr, nbytes


def decode_speed(model, prompt_ids, n: int = 8) -> float:
    """Tokens/s of greedy decoding after ``prompt_ids`` (prefill not timed): ``1 / min`` of the
    ``n`` per-token times, which is robust against other programs sharing the CPU."""
    cache = model.new_cache(len(prompt_ids) + n + 1)
    logits = model.forward(np.asarray(prompt_ids), 0, cache, logits_from=len(prompt_ids) - 1)
    best = math.inf
    for _ in range(n):
        nxt = int(np.argmax(logits[-1]))
        t0 = time.perf_counter()
        logits = model.forward(np.array([nxt]), cache.pos, cache)
        best = min(best, time.perf_counter() - t0)
    return 1.0 / best


def _packed_variant(model, quantized: dict):
    """The variant on its stored bytes with the packed-weight kernels, or None without them."""
    from .model.packed import pack
    from .model.weights import Linear
    variant = model.with_weights(quantized)
    pack(variant.weights)
    if any(type(lin) is Linear for lin in variant.linears()):
        return None              # some matrix has no kernel (or none is compiled): float32 path
    return variant


def compare(model=None, formats=None, text: str | None = None, ctx: int = DEFAULT_CTX,
            chunks: int = DEFAULT_CHUNKS, speed_tokens: int = 8, progress: bool = True,
            on_row=None, imatrix=None) -> list[CompareRow]:
    """Quantize ``model`` (default: the embedded SmolLM2) into each format and measure it.

    ``imatrix``: an imatrix file path or ``{name: importance}`` used by the ggml types.
    """
    from tqdm.auto import tqdm
    from .model import load_model
    from .model.text import default_text
    formats = list(DEFAULT_FORMATS if formats is None else formats)
    if not formats:
        raise InputError("compare needs at least one format")
    for f in formats:
        parse_format(f)                                     # fail fast on a bad name
    model = load_model(model) if model is None or isinstance(model, (str, Path)) else model
    if isinstance(imatrix, (str, Path)):
        from .io.imatrix import load_imatrix
        imatrix = load_imatrix(imatrix)
    text = default_text() if text is None else text
    tokens = model.tokenizer.encode(text, parse_special=False)
    if len(tokens) < 2 * ctx:
        raise InputError(f"the text tokenizes to {len(tokens)} tokens; perplexity with ctx {ctx} "
                         f"needs at least {2 * ctx}")
    from .model.perplexity import perplexity
    from .model.weights import as_float32
    reference = {n: as_float32(w) for n, w in model.tensors().items()}   # the F32 model
    n_params = sum(w.size for w in reference.values())
    rows: list[CompareRow] = []
    # the F32 reference runs first (if asked for) so every row can show its ΔPPL at once
    order = sorted(formats, key=lambda f: parse_format(f)[0] != "reference")
    base_ppl = None
    for spec in tqdm(order, desc="compare", unit="format", disable=not progress):
        kind = parse_format(spec)[0]
        t0 = time.perf_counter()
        quantized, types = quantize_weights(reference, spec, model.metadata, progress, imatrix)
        quant_s = time.perf_counter() - t0
        decoded = {n: (q if isinstance(q, np.ndarray) else q.dequantize()) for n, q in quantized.items()}
        rmse, sqnr, nbytes = _weight_error(reference, quantized, decoded)
        variant = model.with_weights(decoded)               # float32: the reference forward
        r = perplexity(variant, tokens=tokens, ctx=ctx, chunks=chunks, progress=False)
        del variant, decoded
        fast = _packed_variant(model, quantized) if kind != "reference" else None
        path = "packed" if fast is not None else "float32"
        tok_s = (decode_speed(fast or model.with_weights(reference), tokens[:16], speed_tokens)
                 if speed_tokens else float("nan"))
        del fast, quantized
        if kind == "reference":
            base_ppl = r.ppl
        label = {"reference": "reference", "mix": "llama.cpp mix", "format": "quantlab format"}[kind]
        if imatrix is not None and kind != "reference" and (kind == "mix" or "imatrix" in
                                                            _format_options(spec)):
            label += " +imatrix"
        row = CompareRow(spec, label,
                         nbytes / 2**20, 8 * nbytes / n_params, rmse, sqnr, r.ppl,
                         100 * (r.ppl / base_ppl - 1) if base_ppl else float("nan"),
                         tok_s, path, quant_s, _type_summary(types, reference))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


# ----------------------------------------------------------------------------- reports
_COLUMNS = [("format", "format", ""), ("kind", "kind", ""), ("size_mb", "size MiB", ".1f"),
            ("bpw", "bpw", ".3f"), ("rmse", "rmse", ".3e"), ("sqnr_db", "SQNR dB", ".2f"),
            ("ppl", "PPL", ".4f"), ("dppl_pct", "ΔPPL %", "+.2f"), ("tok_s", "tok/s", ".1f"), ("path", "path", ""),
            ("quant_s", "quant s", ".1f")]


def format_table(rows: list[CompareRow], markdown: bool = False) -> str:
    """The table as aligned text (or a Markdown table)."""
    cells = [[format(getattr(r, k), spec) for k, _, spec in _COLUMNS] for r in rows]
    heads = [h for _, h, _ in _COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    return "\n".join(lines + ["  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip()
                              for c in cells])


def write_report(rows: list[CompareRow], out, note: str = "",
                 title: str = "perplexity vs storage") -> dict[str, Path]:
    """Write ``compare.csv``, ``compare.md`` and ``ppl_vs_bpw.png`` into folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "compare.csv", "md": out / "compare.md", "png": out / "ppl_vs_bpw.png"}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    md = ["# quantlab compare", "", note, "", format_table(rows, markdown=True), "",
          "Tensor types per format:", ""] + [f"- **{r.format}**: {r.types}" for r in rows]
    paths["md"].write_text("\n".join(md) + "\n")
    plot_ppl_vs_bpw(rows, paths["png"], title)
    return paths


def plot_ppl_vs_bpw(rows: list[CompareRow], path, title: str = "perplexity vs storage") -> Path:
    """Perplexity against bits per weight, the Pareto front joined (quantlab.viz house style)."""
    from matplotlib.figure import Figure        # no pyplot: nothing global changes
    from .viz import plot_pareto, style
    with style():
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.add_subplot()
        plot_pareto([asdict(r) for r in rows], ax, x="bpw", y="ppl", label="format",
                    ylabel="perplexity (lower is better)")
        ax.set_xscale("log", base=2)            # 2 … 32 bits: equal room for each doubling
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter("{x:g}")
        ax.yaxis.set_major_formatter("{x:g}")
        ax.yaxis.set_minor_formatter("{x:g}")
        ax.set_title(title)
        fig.savefig(path, dpi=120)
    return Path(path)
