"""The contract every format follows: :class:`Format`, :class:`QTensor` and the registry.

A *format* turns a float array into stored bytes (plus any scales, zero-points or other
metadata) and back::

    qt = quantlab.quantize(x, "nf4", blocksize=64)   # -> QTensor
    qt.data            # uint8 bytes/codes, laid out exactly as the original stores them
    qt.meta            # named metadata arrays in their storage dtype (absmax, scales, ...)
    qt.dequantize()    # float32 array of x's shape
    qt.nbytes          # data + metadata bytes: the real storage cost
    qt.bits_per_weight # 8 * nbytes / number of weights

A format is one small class (or one instance of a small family class) that registers
itself with :func:`register`.  The base class owns what every format repeats: name lookup,
option checking, input validation and the storage accounting; subclasses write only the
math, in :meth:`Format._quantize` and :meth:`Format._dequantize`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import FormatError, InputError

__all__ = ["Format", "QTensor", "register", "get", "formats", "quantize", "describe",
           "as_float_array"]


# ----------------------------------------------------------------------------- QTensor
@dataclass(frozen=True, eq=False)
class QTensor:
    """A quantized tensor: stored bytes + metadata + enough to decode it.

    ``data`` is always ``uint8`` (multi-byte codes are viewed as little-endian bytes) so
    that what you see is what is stored.  ``meta`` holds every other stored quantity in
    the dtype it is stored in (e.g. ``float16`` scales), so ``nbytes`` is honest.
    """

    format: "Format"
    shape: tuple[int, ...]
    data: np.ndarray
    meta: Mapping[str, np.ndarray] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of weights (elements of the original array)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of storage: data plus every metadata array."""
        return int(self.data.nbytes + sum(np.asarray(v).nbytes for v in self.meta.values()))

    @property
    def bits_per_weight(self) -> float:
        """``8 * nbytes / size`` — counts scales, zero-points and second-level constants."""
        return 8.0 * self.nbytes / self.size

    def dequantize(self) -> np.ndarray:
        """Decode to a float32 array of the original shape."""
        return self.format.dequantize(self)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (f"QTensor({self.format.name}{', ' + opts if opts else ''}; shape={self.shape}, "
                f"{self.nbytes} bytes, {self.bits_per_weight:.4g} bits/weight)")


# ----------------------------------------------------------------------------- Format
class Format(ABC):
    """Base class of every format.  Subclasses set the class attributes below.

    Attributes
    ----------
    name        registry key, lower case (``"fp8_e4m3"``, ``"q4_k"``)
    family      group shown in tables (``"ieee"``, ``"fp8"``, ``"integer"``, ``"ggml"``, ...)
    block_size  elements that share metadata (1 for element-wise formats)
    oracle      what quantlab is tested exact against (``"ml_dtypes"``, ``"ggml"``, ...)
    summary     one line for ``quantlab formats``
    options     accepted keyword options of :meth:`quantize` and their defaults
    """

    name: str = ""
    family: str = ""
    block_size: int = 1
    oracle: str = ""
    summary: str = ""
    options: Mapping[str, Any] = {}

    # -- public API -------------------------------------------------------------------
    def quantize(self, x, **opts) -> QTensor:
        """Quantize ``x`` (a float array) with this format; see :attr:`options`."""
        return self._quantize(self._check_input(x), **self.resolve_options(opts))

    def dequantize(self, qt: QTensor) -> np.ndarray:
        """Decode a :class:`QTensor` made by this format to float32 of its shape."""
        if qt.format is not self:
            raise FormatError(f"QTensor of format {qt.format.name!r} passed to {self.name!r}")
        return self._dequantize(qt)

    @abstractmethod
    def bits_per_weight(self, **opts) -> float:
        """Storage cost in bits per weight for these options (for large tensors)."""

    def describe(self) -> str:
        """Human text: the spec card (class docstring) plus computed facts."""
        doc = (type(self).__doc__ or "").strip()
        facts = [f"name: {self.name}", f"family: {self.family}",
                 f"bits/weight: {self.bits_per_weight():.4g} (default options)",
                 f"block size: {self.block_size}", f"exact against: {self.oracle or '-'}"]
        if self.options:
            facts.append("options: " + ", ".join(f"{k}={v!r}" for k, v in self.options.items()))
        return f"{self.name} — {self.summary}\n\n" + "\n".join(facts) + (f"\n\n{doc}" if doc else "")

    # -- helpers for subclasses -------------------------------------------------------
    def resolve_options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``opts`` over the defaults; unknown names raise :class:`FormatError`."""
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) or "none"
            raise FormatError(f"format {self.name!r} does not take option(s) "
                              f"{', '.join(unknown)}; accepted: {accepted}")
        return {**self.options, **opts}

    allow_nonfinite: bool = False
    """Element-wise casts define a result for NaN/Inf (e.g. the NaN code); scaled formats do not."""

    def _check_input(self, x) -> np.ndarray:
        return as_float_array(x, allow_nonfinite=self.allow_nonfinite, what=f"input to {self.name}")

    @abstractmethod
    def _quantize(self, x: np.ndarray, **opts) -> QTensor:
        """The math: ``x`` is a validated float array, ``opts`` complete."""

    @abstractmethod
    def _dequantize(self, qt: QTensor) -> np.ndarray:
        """Decode ``qt`` (made by this format) to float32 of ``qt.shape``."""

    def __repr__(self) -> str:
        return f"<format {self.name} ({self.family})>"


def as_float_array(x, *, allow_nonfinite: bool = False, what: str = "input") -> np.ndarray:
    """Check that ``x`` is a non-empty real floating array and return it as an ndarray.

    Integer, boolean, complex and object arrays are refused (they are almost always a
    mistake: quantizing codes instead of values).  NaN/Inf are refused unless the caller
    defines a result for them.  The input is never modified.
    """
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise InputError(f"{what} must be a floating-point array (float16/32/64), "
                         f"got dtype {arr.dtype}; convert codes with .astype(np.float32) "
                         "only if they really are values")
    if arr.size == 0:
        raise InputError(f"{what} is empty (shape {arr.shape}); nothing to quantize")
    if not allow_nonfinite:
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), arr.shape)
            raise InputError(f"{what} contains {int(bad.sum())} NaN/Inf value(s), first at "
                             f"index {tuple(int(i) for i in idx)} ({arr[idx]!r}); this format "
                             "needs finite values (scales would be poisoned)")
    return arr


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format instance to the registry (its ``name`` must be new and lower case)."""
    key = fmt.name.lower()
    if not key or key != fmt.name:
        raise FormatError(f"format names are non-empty lower case, got {fmt.name!r}")
    if key in _REGISTRY:
        raise FormatError(f"format {key!r} is registered twice")
    _REGISTRY[key] = fmt
    return fmt


def formats(family: str | None = None) -> list[str]:
    """Names of the registered formats (optionally of one family), in registration order."""
    return [n for n, f in _REGISTRY.items() if family is None or f.family == family]


def get(name: str | Format) -> Format:
    """Look a format up by name (case-insensitive)."""
    if isinstance(name, Format):
        return name
    if not isinstance(name, str):
        raise FormatError(f"format name must be a string, got {type(name).__name__}")
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; known formats: "
                          f"{', '.join(_REGISTRY)}") from None


def quantize(x, name: str | Format, **opts) -> QTensor:
    """Quantize float array ``x`` with the format called ``name``; see ``describe(name)``."""
    return get(name).quantize(x, **opts)


def describe(name: str | Format) -> str:
    """Human description of a format: layout, bits per weight, formula, where it is used."""
    return get(name).describe()
