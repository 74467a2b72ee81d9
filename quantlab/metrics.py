"""Error and storage metrics used everywhere (tables, tests, lessons).

All error metrics are computed in float64 so that the metric itself adds no error.

* RMSE           ``sqrt(mean((x - x̂)²))``
* max abs error  ``max |x - x̂|``
* SQNR (dB)      ``10·log10(Σ x² / Σ (x - x̂)²)``  (signal-to-quantization-noise ratio; +inf if exact)
* cosine         ``⟨x, x̂⟩ / (‖x‖·‖x̂‖)``
"""
from __future__ import annotations

import numpy as np

from .errors import ShapeError

__all__ = ["rmse", "max_abs_error", "sqnr_db", "cosine", "error_report"]


def _pair(x, x_hat):
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise ShapeError(f"metric needs equal shapes, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ShapeError("metric of empty arrays is undefined")
    return a, b


def rmse(x, x_hat) -> float:
    """Root mean squared error ``sqrt(mean((x - x̂)²))``."""
    a, b = _pair(x, x_hat)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def max_abs_error(x, x_hat) -> float:
    """Largest absolute difference ``max |x - x̂|``."""
    a, b = _pair(x, x_hat)
    return float(np.max(np.abs(a - b)))


def sqnr_db(x, x_hat) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10·log10(Σx² / Σ(x - x̂)²)``; inf if exact."""
    a, b = _pair(x, x_hat)
    noise = np.sum((a - b) ** 2)
    signal = np.sum(a ** 2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def cosine(x, x_hat) -> float:
    """Cosine similarity of the flattened arrays (1.0 when both are all zero)."""
    a, b = _pair(x, x_hat)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))


def error_report(x, x_hat) -> dict[str, float]:
    """All error metrics at once: ``{"rmse", "max_abs", "sqnr_db", "cosine"}``."""
    return {"rmse": rmse(x, x_hat), "max_abs": max_abs_error(x, x_hat),
            "sqnr_db": sqnr_db(x, x_hat), "cosine": cosine(x, x_hat)}
