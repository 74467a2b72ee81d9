"""Importance matrix collection as ``llama-imatrix`` does it (spec ``algorithms.md`` §13).

    r = collect_imatrix(model, text, ctx=512, chunks=10)
    r.sums["blk.0.attn_q.weight"]      # (576,) Σ over tokens of x_j² for the input column j
    r.counts["blk.0.attn_q.weight"]    # tokens summed (5120 for 10 chunks of 512)
    r.importance()                     # {name: sums / counts}, the mean squared activation
    r.save("smollm2.imatrix.gguf")     # llama.cpp's GGUF imatrix file (quantlab.io.imatrix)

For every matrix multiplication ``y = x @ Wᵀ`` of the forward pass, with activation rows x
(one per token), accumulate per input column j::

    in_sum2[j] += x[j]²        counts += number of rows

``attn_q``, ``attn_k`` and ``attn_v`` see the same input, so their sums are equal.  Only
``blk.*`` weights are collected unless ``process_output=True`` (llama-imatrix's
``--process-output``; with tied embeddings the product uses ``token_embd.weight``, the name
recorded, as in current llama.cpp).  Products of fewer than 16 token rows are skipped, as
llama-imatrix skips them.  The text is cut into chunks exactly as for perplexity (at least ``2·ctx`` tokens,
``len // ctx`` chunks, each from an empty cache, every token of a chunk collected), and the
chunks' perplexity is reported too, as llama-imatrix prints it.

Sums are accumulated in float64 and stored as float32 (llama.cpp accumulates in float32; the
difference is far below the run-to-run noise of the activations themselves).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .perplexity import PerplexityResult, perplexity

__all__ = ["ImatrixResult", "collect_imatrix"]


@dataclass
class ImatrixResult:
    sums: dict[str, np.ndarray]            # name -> (n_in,) float32, Σ x_j²
    counts: dict[str, int]                 # name -> rows (tokens) summed
    chunks: int
    ctx: int
    ppl: PerplexityResult | None = None
    dataset: str = ""
    order: list[str] = field(default_factory=list)

    def importance(self) -> dict[str, np.ndarray]:
        """``{name: sums / counts}`` float32, what the quantizers weight each column by."""
        return {n: (s / np.float32(self.counts[n])).astype(np.float32) for n, s in self.sums.items()}

    def save(self, path):
        """Write llama.cpp's GGUF imatrix file through :func:`quantlab.io.imatrix.save_imatrix`."""
        from ..io.imatrix import save_imatrix
        entries = {n: (self.sums[n], self.counts[n]) for n in self.sums}
        return save_imatrix(path, entries, dataset=self.dataset, chunks=self.chunks,
                            chunk_size=self.ctx)


def collect_imatrix(model, text: str | None = None, *, tokens=None, ctx: int = 512,
                    chunks: int | None = None, process_output: bool = False,
                    dataset: str = "", progress: bool = True) -> ImatrixResult:
    """Run ``text`` (or ``tokens``) through ``model`` and collect every matmul's input statistics."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    order: list[str] = []
    linears = [lin for lin in model.linears() if lin.name.startswith("blk.")]
    if process_output:
        out = model.weights.output
        linears.append(out)
    names = {id(lin): lin.name for lin in linears}
    if process_output and model.weights.tied:
        names[id(model.weights.output)] = "token_embd.weight"

    def hook_for(lin):
        name = names[id(lin)]

        def hook(_, x):                                     # x (T, n_in)
            if x.shape[0] < 16:       # llama-imatrix skips products of < 16 rows (its own
                return                # comment asks "why?"); mirrored so counts agree
            x64 = x.astype(np.float64)
            if name not in sums:
                sums[name] = np.zeros(x.shape[-1], np.float64)
                counts[name] = 0
                order.append(name)
            sums[name] += np.einsum("tj,tj->j", x64, x64)   # Σ_t x_tj²
            counts[name] += x.shape[0]
        return hook

    previous = [lin.hook for lin in linears]
    for lin in linears:
        lin.hook = hook_for(lin)
    try:
        result = perplexity(model, text, ctx=ctx, chunks=chunks, tokens=tokens, progress=progress,
                            all_logits=process_output)
    finally:
        for lin, h in zip(linears, previous):
            lin.hook = h
    if not sums:
        raise InputError(f"no matrix product had 16 or more token rows (ctx {ctx}); llama-imatrix "
                         "ignores smaller batches, so use ctx >= 16")
    bad = [n for n, s in sums.items() if not np.all(np.isfinite(s))]
    if bad:   # llama-imatrix aborts on non-finite sums too
        raise InputError(f"non-finite activations in {bad[:3]}: the model overflows on this text")
    return ImatrixResult({n: s.astype(np.float32) for n, s in sums.items()}, counts,
                         result.chunks, result.ctx, result, dataset, order)
