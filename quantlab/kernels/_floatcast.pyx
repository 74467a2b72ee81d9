# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twins of the float-narrowing loops in :mod:`quantlab.formats.ieee`.

Each ``def`` validates its buffers and documents the NumPy function it mirrors; the work
runs without the GIL in an OpenMP ``prange`` over elements.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint16_t, uint32_t
cimport quantlab.kernels._openmp as _omp

from quantlab.errors import KernelError

OPENMP = bool(_omp.QL_OPENMP)
try:
    from quantlab.kernels._build_info import BUILD_INFO
except ImportError:  # built without setup.py's build_ext (should not happen)
    BUILD_INFO = {}


cdef inline uint16_t _bf16_rne(uint32_t u) noexcept nogil:
    # NaN first: the add-bias trick would carry a NaN payload into the exponent.
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return <uint16_t>((u >> 16) | 0x0040)
    return <uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16)


def bf16_encode(const uint32_t[::1] bits, uint16_t[::1] out, int n_threads=1):
    """Twin of ``quantlab.formats.ieee.bf16_encode``: float32 bits -> bf16 bits, RNE.

    ``bits`` is the float32 array viewed as uint32 (contiguous), ``out`` a uint16 buffer
    of the same length, written in place.
    """
    cdef Py_ssize_t i, n = bits.shape[0]
    if out.shape[0] != n:
        raise KernelError(f"bf16_encode: out has {out.shape[0]} elements, input {n}")
    if n_threads < 1:
        raise KernelError(f"bf16_encode: n_threads must be >= 1, got {n_threads}")
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = _bf16_rne(bits[i])
