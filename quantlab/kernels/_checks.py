"""Argument checks shared by every compiled kernel's Python entry point.

A typed memoryview would reject a wrong dtype with a bare ``ValueError`` and happily read
past the end of a buffer that is too short for the shape the caller claims, so each kernel
``def`` first runs its arrays through :func:`buffer` and raises :class:`KernelError` naming
the argument, what it got and what is accepted.
"""
from __future__ import annotations

import numpy as np

from ..errors import KernelError

__all__ = ["buffer", "threads"]


def buffer(a, dtype, shape, name: str, what: str, *, out: bool = False) -> np.ndarray:
    """Check that ``a`` is a C-contiguous, aligned ndarray of ``dtype`` and ``shape``.

    ``shape`` is a tuple whose entries are ints or None (any length).  ``out=True`` also
    requires the array to be writeable.  Returns ``a`` unchanged (never copies).  The happy
    path is a handful of attribute reads: it runs before every mat-vec of a decode step.
    """
    if not isinstance(a, np.ndarray):
        raise KernelError(f"{what}: {name} must be a NumPy array of {np.dtype(dtype)}, "
                          f"got {type(a).__name__}")
    if a.dtype != dtype:
        raise KernelError(f"{what}: {name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    ash = a.shape
    if len(ash) != len(shape) or _shape_differs(ash, shape):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise KernelError(f"{what}: {name} must have shape {want}, got {ash}")
    flags = a.flags
    if not flags.c_contiguous:
        raise KernelError(f"{what}: {name} must be C-contiguous (use np.ascontiguousarray)")
    if not flags.aligned:
        raise KernelError(f"{what}: {name} is not aligned to {a.dtype.alignment} bytes")
    if out and not flags.writeable:
        raise KernelError(f"{what}: {name} is read-only; the kernel writes its result there")
    return a


def _shape_differs(ash, shape) -> bool:
    for s, n in zip(shape, ash):
        if s is not None and s != n:
            return True
    return False


def threads(n, what: str) -> int:
    """``n`` as a thread count >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise KernelError(f"{what}: n_threads must be an integer >= 1, got {n!r}")
    return int(n)
