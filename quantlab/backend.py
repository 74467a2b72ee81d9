"""One place decides which implementation runs: compiled kernel twin or NumPy reference.

Every Cython kernel in :mod:`quantlab.kernels` mirrors a NumPy function of the same name.
:func:`kernel` returns the compiled module when it was built and is not disabled, else
``None`` and the caller uses its NumPy twin.  ``QUANTLAB_PURE_NUMPY=1`` forces NumPy
(the test suite runs both ways), like msgpack's ``MSGPACK_PUREPYTHON``.

:func:`n_threads` picks the OpenMP thread count (honours ``OMP_NUM_THREADS``, caps at the
CPUs this process may use, one thread for small work), as scikit-learn does.
:func:`xp` picks the array module (NumPy or CuPy) from the inputs.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os

__all__ = ["pure_numpy", "kernel", "compiled_kernels", "n_threads", "xp"]

_KERNEL_MODULES = ("_floatcast", "_dequant", "_matvec", "_actquant", "_quantize", "_quantize_legacy", "_dequant_tables")   # extended as kernels are added (see quantlab/kernels/)
_cache: dict[str, object] = {}


def pure_numpy() -> bool:
    """True when ``QUANTLAB_PURE_NUMPY`` is set to a true value (1/true/yes)."""
    return os.environ.get("QUANTLAB_PURE_NUMPY", "").strip().lower() in {"1", "true", "yes", "on"}


def _load(name: str):
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"quantlab.kernels.{name}")
        except ImportError:
            _cache[name] = None
    return _cache[name]


def kernel(name: str):
    """The compiled kernel module ``quantlab.kernels.<name>``, or None (not built / disabled)."""
    return None if pure_numpy() else _load(name)


def compiled_kernels() -> dict[str, bool]:
    """Which kernel modules are compiled and importable (independent of QUANTLAB_PURE_NUMPY)."""
    return {name: _load(name) is not None for name in _KERNEL_MODULES}


@functools.lru_cache(maxsize=1)
def _usable_cpus() -> int:
    """CPUs this process may run on, read once (a system call; decode asks ~200 times a token)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def n_threads(work: int | None = None, min_work_per_thread: int = 1 << 16) -> int:
    """Threads for a kernel: ``OMP_NUM_THREADS`` if set, else the usable CPUs; 1 for small work."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    n = int(env) if env.isdigit() and int(env) > 0 else _usable_cpus()
    if work is not None:
        n = min(n, max(1, work // min_work_per_thread))
    return max(1, n)


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:             # optional in spirit: without it the block below is a no-op
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def blas_on_one_thread():
    """Run BLAS on one thread inside the block (threadpoolctl; a no-op without it).

    OpenBLAS's idle threads keep spinning for a while after each call.  When quantlab's OpenMP
    kernels run next on the same cores, the two thread pools fight: a 128-token prompt in
    ``act_quant`` mode on 2 cores ran at 87 tok/s, and at 317 with BLAS kept to one thread.
    The model uses this for forwards whose heavy products all run in the kernels (BLAS then
    only serves attention's small products).
    """
    ctl = _blas_controller()
    if ctl is None:
        yield
        return
    with ctl.limit(limits=1, user_api="blas"):
        yield


def xp(*arrays):
    """NumPy, or CuPy when any argument is a CuPy array (CuPy is never imported otherwise)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    import numpy
    return numpy
