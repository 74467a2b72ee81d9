"""Activation calibration for static quantization (spec §3): choose the clip range once,
offline, from sample batches, then quantize every later activation with it.

Each method returns a clip range: ``amax`` (symmetric) or ``(lo, hi)`` (asymmetric), ready
for ``integer.fake_quant(x, bits, clip_range=...)`` / ``integer.params_from_range``::

    minmax       amax = max |x|                               (every outlier kept)
    percentile   amax = p-th percentile of |x|                (p = 99.9 / 99.99 / 99.999)
    mse          amax = argmin_c  sum |x - fakequant_c(x)|^2.4  over c = (1 - i/100)·amax, i < 80
                 (the grid search of GPTQ's reference quantizer: grid=100, maxshrink=0.8, norm=2.4)
    kl           TensorRT "entropy": the histogram cut that loses least information (KL)

:class:`Calibrator` accumulates over batches: a running min/max, and a histogram of
``|x|`` (2048 bins over ``[0, amax seen]``, widened with bins of the same width when a
later batch is larger, as NVIDIA's pytorch-quantization ``HistogramCalibrator`` does).
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, InputError
from .base import as_float_array
from .integer import fake_quant

__all__ = ["minmax", "percentile", "mse", "kl", "kl_from_histogram", "Calibrator", "METHODS"]

METHODS = ("minmax", "percentile", "mse", "kl")


def _data(x) -> np.ndarray:
    return as_float_array(x, what="calibration data").astype(np.float64).reshape(-1)


def minmax(x, symmetric: bool = True):
    """``max |x|`` (symmetric) or ``(min x, max x)``."""
    x = _data(x)
    return float(np.abs(x).max()) if symmetric else (float(x.min()), float(x.max()))


def percentile(x, p: float = 99.99, symmetric: bool = True):
    """p-th percentile of ``|x|`` (NumPy's linear interpolation), or ``(P_{100-p}(x), P_p(x))``."""
    if not 0 < p <= 100:
        raise FormatError(f"percentile p must be in (0, 100], got {p!r}")
    x = _data(x)
    if symmetric:
        return float(np.percentile(np.abs(x), p))
    return float(np.percentile(x, 100 - p)), float(np.percentile(x, p))


def mse(x, bits: int = 8, symmetric: bool = True, grid: int = 100, maxshrink: float = 0.8,
        norm: float = 2.4, weights=None):
    """Grid search of the clip range minimising ``sum w·|x - fakequant(x)|^norm``.

    Candidates shrink the min/max range: ``c_i = (1 - i/grid)·range`` for
    ``i = 0 .. int(maxshrink·grid) - 1`` (80 candidates by default, the widest first); the
    first strict minimum wins, as in ``IST-DASLab/gptq: quant.py``.  ``weights`` (optional,
    e.g. histogram counts) weight each value's error.
    """
    x = _data(x)
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    full = minmax(x, symmetric)
    best, best_err = full, np.inf
    for i in range(int(maxshrink * grid)):
        shrink = 1 - i / grid
        c = shrink * full if symmetric else (shrink * full[0], shrink * full[1])
        err = np.sum(w * np.abs(x - fake_quant(x, bits, symmetric, clip_range=c)) ** norm)
        if err < best_err:
            best, best_err = c, err
    return best


def kl_from_histogram(hist, edges, bits: int = 8, unsigned: bool = False, start_bin: int = 128,
                      stride: int = 1) -> float:
    """TensorRT-style entropy calibration on a histogram of ``|x|`` (``edges[0] = 0``).

    For each candidate cut ``i`` (``start_bin .. len(hist)``, step ``stride``)::

        P = hist[:i], with the clipped tail sum(hist[i:]) folded into P[i-1]
        Q = hist[:i] squeezed into 2^(bits-1) (2^bits if unsigned) equal chunks, each chunk's
            mass spread evenly over its non-empty bins (empty bins stay 0)
        D_i = KL(P/|P| || Q/|Q|)

    and ``amax = edges[i*]`` (the right edge of the last kept bin) for the LAST ``i`` with
    the smallest divergence.  ``hist[0]`` is replaced by ``hist[1]`` first (the spike of
    exact zeros would dominate).  Same loop as pytorch-quantization
    ``_compute_amax_entropy``, vectorised within each candidate.
    """
    bins = np.asarray(hist, dtype=np.float64).copy()
    edges = np.asarray(edges, dtype=np.float64)
    if bins.ndim != 1 or edges.shape != (bins.size + 1,) or bins.size < 2:
        raise InputError(f"kl needs a 1-D histogram and len(hist)+1 edges, got {bins.shape} "
                         f"and {edges.shape}")
    if start_bin < 1 or start_bin > bins.size:
        raise FormatError(f"start_bin must be in 1..{bins.size} (the number of bins), got {start_bin}")
    bins[0] = bins[1]
    nq = 1 << (bits - 1 + int(unsigned))                  # quantized bins: 128 for signed int8
    cuts = np.arange(start_bin, bins.size + 1, stride)
    div = np.empty(cuts.size)
    for k, i in enumerate(cuts):
        p = bins[:i].copy()                               # (i,) reference distribution P
        p[i - 1] += bins[i:].sum()
        chunk = np.digitize(np.arange(i), np.linspace(0, i, nq + 1)) - 1   # chunk of each bin
        full = bins[:i] != 0
        mass = np.bincount(chunk, weights=bins[:i], minlength=nq)          # (nq,)
        count = np.bincount(chunk, weights=full, minlength=nq)             # non-empty bins
        q = np.where(full, mass[chunk] / np.maximum(count[chunk], 1), 0.0)  # (i,) candidate Q
        p, q = p / p.sum(), q / q.sum()
        ratio = np.divide(p, q, out=np.full(i, np.inf), where=q > 0)   # P > 0 = Q: KL is inf
        div[k] = np.sum(p * np.log(np.where(p > 0, ratio, 1.0)))    # sum p log(p/q), 0 log 0 = 0
    last_min = div.size - 1 - int(np.argmin(div[::-1]))
    return float(edges[cuts[last_min]])


def kl(x, bits: int = 8, num_bins: int = 2048, start_bin: int = 128, stride: int = 1,
       unsigned: bool = False) -> float:
    """Entropy calibration of ``x``: histogram ``|x|`` into ``num_bins`` over ``[0, max|x|]``,
    then :func:`kl_from_histogram`."""
    a = np.abs(_data(x))
    hist, edges = np.histogram(a, bins=num_bins, range=(0.0, float(a.max()) or 1.0))
    return kl_from_histogram(hist, edges, bits, unsigned, start_bin, stride)


class Calibrator:
    """Accumulate activation statistics over batches, then :meth:`compute_range`.

    ``method``: "minmax" (running min/max), "percentile" (``edges[k]`` for the first bin
    ``k`` whose cumulative share of the |x| histogram reaches p/100 -- the left edge of the
    bin holding the quantile, as pytorch-quantization reads it), "kl", or "mse" (grid search
    on the histogram's bin centres weighted by their counts).

        cal = Calibrator("kl")
        for batch in batches: cal.update(batch)
        amax = cal.compute_range()
    """

    def __init__(self, method: str = "minmax", *, bits: int = 8, symmetric: bool = True,
                 p: float = 99.99, num_bins: int = 2048, start_bin: int = 128):
        if method not in METHODS:
            raise FormatError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
        if method in ("percentile", "kl", "mse") and not symmetric:
            raise FormatError(f"Calibrator({method!r}) keeps a histogram of |x| and returns an "
                              "amax; use symmetric=True (or method='minmax' for (lo, hi))")
        self.method, self.bits, self.symmetric, self.p = method, bits, symmetric, p
        self.num_bins, self.start_bin = num_bins, start_bin
        self.lo, self.hi = np.inf, -np.inf
        self.hist: np.ndarray | None = None
        self.edges: np.ndarray | None = None
        self.batches = 0

    def update(self, x) -> None:
        """Add one batch (any shape)."""
        x = _data(x)
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        self.batches += 1
        if self.method == "minmax":
            return
        a = np.abs(x)
        top = float(a.max())
        if self.hist is None:
            self.edges = np.linspace(0.0, top or 1.0, self.num_bins + 1)
            self.hist = np.zeros(self.num_bins)
        elif top > self.edges[-1]:
            # widen with bins of the same width (the old counts keep their bins)
            width = self.edges[1] - self.edges[0]
            extra = int(np.ceil((top - self.edges[-1]) / width))
            self.edges = np.concatenate([self.edges, self.edges[-1] + width * np.arange(1, extra + 1)])
            self.hist = np.concatenate([self.hist, np.zeros(extra)])
        counts, _ = np.histogram(a, bins=self.edges)
        self.hist += counts

    def compute_range(self):
        """The clip range: amax, or ``(lo, hi)`` for asymmetric minmax."""
        if self.batches == 0:
            raise InputError("Calibrator has seen no data; call update(batch) first")
        if self.method == "minmax":
            return max(-self.lo, self.hi) if self.symmetric else (self.lo, self.hi)
        if self.method == "kl":
            return kl_from_histogram(self.hist, self.edges, self.bits, start_bin=self.start_bin)
        if self.method == "percentile":
            cdf = np.cumsum(self.hist) / self.hist.sum()
            return float(self.edges[int(np.searchsorted(cdf, self.p / 100))])
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        used = self.hist > 0
        return mse(centres[used], self.bits, True, weights=self.hist[used])
