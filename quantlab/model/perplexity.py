"""Perplexity exactly as ``llama-perplexity`` computes it (``tools/perplexity/perplexity.cpp``).

    r = perplexity(model, text, ctx=512, chunks=None)
    r.running    # running PPL after each chunk, what llama-perplexity prints as [1]…,[2]…
    r.ppl, r.stderr

Method:

1. ``tokens = tokenize(text)`` with the model's BOS rule and special tokens *not* parsed
   (``common_tokenize(ctx, prompt, add_special=true, parse_special=false)``).
2. At least ``2·ctx`` tokens are required (llama-perplexity refuses fewer).
3. The stream is cut into ``n = len(tokens) // ctx`` consecutive chunks of ``ctx`` tokens
   (at most ``chunks`` of them); each runs from an empty KV cache.  With a BOS-adding model
   the chunk's first token is *replaced* by BOS.
4. Only the second half is scored: the logits at positions ``first = ctx/2`` … ``ctx−2``
   predict the tokens at ``first+1`` … ``ctx−1`` (``ctx − first − 1`` tokens per chunk), so
   every scored token has at least ``ctx/2`` tokens of context.
5. ``nll = −log softmax(logits)[next]`` per scored token; after each chunk the running
   ``PPL = exp(Σ nll / count)``.  Final: ``PPL ± stderr`` with
   ``stderr = PPL · sqrt((mean(nll²) − mean(nll)²) / (count − 1))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

__all__ = ["PerplexityResult", "perplexity", "token_nll"]


@dataclass
class PerplexityResult:
    running: list[float]                  # running PPL after each chunk
    ppl: float                            # final estimate (= running[-1])
    stderr: float                         # its standard error (llama-perplexity's "+/-")
    n_tokens: int                         # tokens scored
    ctx: int
    chunks: int
    seconds: float = 0.0                  # wall time of the forward passes
    nll: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # per scored token

    @property
    def tokens_per_second(self) -> float:
        """Tokens run through the model per second (ctx per chunk, prompt processing)."""
        return self.ctx * self.chunks / self.seconds if self.seconds else float("nan")

    def format_running(self) -> str:
        """The line llama-perplexity prints: ``[1]17.7365,[2]12.6063,…``"""
        return ",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(self.running)) + ","

    def __str__(self) -> str:
        return f"Final estimate: PPL = {self.ppl:.4f} +/- {self.stderr:.5f}"


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``−log softmax(logits)[target]`` per row, as llama.cpp's log_softmax (max-shifted, double sum).

    logits (N, vocab) float32, targets (N,) -> (N,) float64
    """
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)                     # (N, vocab), <= 0
    log_sum = np.log(np.sum(np.exp(shifted), axis=-1, dtype=np.float64))      # (N,)
    return log_sum - shifted[np.arange(len(targets)), targets].astype(np.float64)


def perplexity(model, text=None, ctx: int = 512, chunks: int | None = None, *, tokens=None,
               progress: bool = True, all_logits: bool = False) -> PerplexityResult:
    """llama-perplexity's figure for ``text`` (or pre-tokenized ``tokens``) on ``model``.

    ``all_logits=True`` runs the output head on every position, not only the scored half
    (llama-imatrix does, so its ``--process-output`` statistics cover every token).
    """
    import time
    from tqdm.auto import tqdm

    ctx = int(ctx)
    if ctx < 4:
        raise InputError(f"ctx must be >= 4 tokens (the second half of each chunk is scored), got {ctx}")
    if ctx > model.config.seq_len:
        raise InputError(f"ctx {ctx} is longer than the model's trained context {model.config.seq_len}")
    if tokens is None:
        if not isinstance(text, str):
            raise InputError("perplexity needs a text (str) or tokens")
        tokens = model.tokenizer.encode(text, parse_special=False)
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.size < 2 * ctx:
        raise InputError(f"perplexity with a context of {ctx} needs at least {2 * ctx} tokens "
                         f"(llama-perplexity's rule); the text tokenizes to only {tokens.size}. "
                         "Use a longer text or a smaller ctx.")
    n_chunk = tokens.size // ctx if chunks is None or chunks < 0 else min(int(chunks), tokens.size // ctx)
    if n_chunk < 1:
        raise InputError(f"chunks must be >= 1 (or None for all), got {chunks}")
    first = ctx // 2
    bos = model.tokenizer.bos_id if model.tokenizer.add_bos else None

    nll_sum = nll2_sum = 0.0
    count, running, all_nll, seconds = 0, [], [], 0.0
    for i in tqdm(range(n_chunk), desc=f"perplexity (ctx {ctx})", unit="chunk", disable=not progress):
        chunk = tokens[i * ctx:(i + 1) * ctx].copy()                 # (ctx,)
        if bos is not None:
            chunk[0] = bos
        t0 = time.perf_counter()
        cache = model.new_cache(ctx)
        logits = model.forward(chunk, 0, cache, logits_from=0 if all_logits else first)
        logits = logits[-(ctx - first):]                             # (ctx - first, vocab)
        seconds += time.perf_counter() - t0
        # logits at first … ctx-2 score the *original* tokens first+1 … ctx-1
        nll = token_nll(logits[:-1], tokens[i * ctx + first + 1:(i + 1) * ctx])
        nll_sum += float(nll.sum())
        nll2_sum += float(np.square(nll).sum())
        count += nll.size
        all_nll.append(nll)
        running.append(math.exp(nll_sum / count))
    mean, mean2 = nll_sum / count, nll2_sum / count
    var = mean2 - mean * mean
    ppl = math.exp(mean)
    stderr = ppl * math.sqrt(var / (count - 1)) if var > 0 else float("nan")
    return PerplexityResult(running, ppl, stderr, count, ctx, n_chunk, seconds, np.concatenate(all_nll))
