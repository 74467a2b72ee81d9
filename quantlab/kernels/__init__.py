"""Compiled (Cython + OpenMP) twins of quantlab's NumPy reference functions.

Each module here mirrors NumPy functions elsewhere in the package, function by function,
and is tested equal to them.  Nothing imports these modules directly: :mod:`quantlab.backend`
picks the compiled twin when it was built (and ``QUANTLAB_PURE_NUMPY`` is not set) and the
NumPy twin otherwise, so quantlab works without a compiler.
"""
