"""Choosing the next token from logits: greedy, temperature, top-k, top-p, with a fixed seed.

    sampler = Sampler(temperature=0.8, top_k=40, top_p=0.95, seed=42)
    next_id = sampler(logits)            # logits (vocab,) float32

Order as in llama.cpp's default sampler chain (top-k -> top-p -> temperature -> draw):

    temperature == 0        argmax (ties -> the lowest id); no randomness at all
    top-k                   keep the k largest logits (k <= 0: keep all)
    top-p (nucleus)         keep the smallest set of most likely tokens whose probability sums
                            to >= p (always at least one); p >= 1 keeps all
    p_i = softmax(logit_i / temperature)  over the kept tokens, then one draw

The draw uses ``numpy.random.default_rng(seed)``: the same seed gives the same text (the
stream is not llama.cpp's — its RNG is std::mt19937 — so sampled text differs from llama.cpp's).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["Sampler", "greedy"]


def greedy(logits: np.ndarray) -> int:
    """The most likely token (the first on ties)."""
    return int(np.argmax(logits))


class Sampler:
    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None):
        if not np.isfinite(temperature) or temperature < 0:
            raise InputError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if self.temperature == 0.0:
            return greedy(logits)
        ids = np.argsort(-logits, kind="stable")               # most likely first
        if 0 < self.top_k < ids.size:
            ids = ids[:self.top_k]
        if self.top_p < 1.0:
            # nucleus on the untempered probabilities (llama.cpp applies temperature after it):
            # keep tokens up to and including the one where the running sum reaches top_p
            p0 = np.exp(logits[ids] - logits[ids[0]])
            keep = int(np.searchsorted(np.cumsum(p0 / p0.sum()), self.top_p)) + 1
            ids = ids[:keep]
        z = logits[ids] / self.temperature
        p = np.exp(z - z[0])
        return int(ids[self.rng.choice(ids.size, p=p / p.sum())])
