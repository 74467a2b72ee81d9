"""``quantlab.show_config()``: which code paths are active, because pip hides build output."""
from __future__ import annotations

import os
import platform
import sys

from . import backend


def config() -> dict:
    """Facts about this installation as a plain dict (what :func:`show_config` prints)."""
    import numpy as np
    from . import __version__
    kernels = backend.compiled_kernels()
    openmp = None
    build = {}
    mod = backend._load("_floatcast")
    if mod is not None:
        openmp = bool(getattr(mod, "OPENMP", False))
        build = dict(getattr(mod, "BUILD_INFO", {}))
    try:
        import cupy  # noqa: F401  (optional)
        cupy_version = cupy.__version__
        try:
            n_dev = cupy.cuda.runtime.getDeviceCount()
        except Exception:  # no driver / no device
            n_dev = 0
    except ImportError:
        cupy_version, n_dev = None, 0
    active = "numpy (forced by QUANTLAB_PURE_NUMPY)" if backend.pure_numpy() else (
        "compiled kernels" if any(kernels.values()) else "numpy (kernels not compiled)")
    return {
        "quantlab": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "active path": active,
        "compiled kernels": kernels,
        "openmp": openmp,
        "build flags": build.get("flags"),
        "native (-march=native)": build.get("native"),
        "threads": backend.n_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cupy": cupy_version,
        "gpu devices": n_dev,
    }


def show_config() -> None:
    """Print which path is active (compiled kernels / NumPy), OpenMP, threads and CuPy."""
    for k, v in config().items():
        if isinstance(v, dict):
            v = ", ".join(f"{n}={'yes' if ok else 'no'}" for n, ok in v.items()) or "none"
        print(f"{k:>24}: {v}")
