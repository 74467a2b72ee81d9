# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twins of the float-narrowing loops in :mod:`quantlab.formats.ieee`.

Each ``def`` validates its buffers and documents the NumPy function it mirrors; the work
runs without the GIL in an OpenMP ``prange`` over elements.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy
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


# ----------------------------------------------------------------------------- minifloats
cdef extern from "math.h" nogil:
    double frexp(double x, int* e)
    double ldexp(double x, int e)
    double rint(double x)          # round half to even in the default rounding mode
    double fabs(double x)
    bint isnan(double x)
    bint isinf(double x)

cdef enum Specials:
    IEEE = 0, FN = 1, FNUZ = 2, NONE = 3

_SPECIALS = {"ieee": IEEE, "fn": FN, "fnuz": FNUZ, "none": NONE}


cdef inline uint8_t _minifloat(float x, int E, int M, int bias, int specials, bint saturate,
                               double fmax, long max_code) noexcept nogil:
    cdef uint32_t u
    memcpy(&u, &x, 4)                           # the float's bits (no type punning)
    cdef long sign = u >> 31
    cdef long top = (1 << (E + M)) - 1          # magnitude bits all ones
    cdef long emin = 1 - bias
    cdef double a = fabs(<double>x)
    cdef long mag, k
    cdef int ex, e
    if isnan(a):
        if specials == IEEE:                    # quiet NaN, sign and top payload kept
            return <uint8_t>((sign << (E + M)) | (top - ((1 << M) - 1)) | (1 << (M - 1))
                             | ((u & 0x7FFFFF) >> (23 - M)))
        if specials == FN:
            return <uint8_t>((sign << (E + M)) | top)
        if specials == FNUZ:
            return <uint8_t>(1 << (E + M))
        return <uint8_t>((1 - sign) << (E + M))  # no NaN code: ml_dtypes' -0 stand-in
    if saturate and a > fmax:
        a = fmax                                # clamp-then-cast
    if isinf(a):
        mag = max_code + 1                      # overflow below
    elif a == 0:
        mag = 0
    else:
        # code = (e - emin)·2^M + rint(a / 2^(e-M)),  e = max(floor(log2 a), emin)
        frexp(a, &ex)
        e = ex - 1 if ex - 1 > emin else emin
        k = <long>rint(ldexp(a, M - e))
        mag = (e - emin) * (1 << M) + k
    if mag > max_code:
        if specials == IEEE:
            mag = top - ((1 << M) - 1)          # inf
        elif specials == FN:
            mag = top                           # NaN
        elif specials == FNUZ:
            return <uint8_t>(1 << (E + M))      # NaN (0x80)
        else:
            mag = max_code                      # saturate
    if specials == FNUZ and mag == 0:
        return 0                                # no -0
    return <uint8_t>((sign << (E + M)) | mag)


def minifloat_encode(const float[::1] x, uint8_t[::1] out, int E, int M, int bias,
                     str specials, bint saturate, int n_threads=1):
    """Twin of ``quantlab.formats.ieee.minifloat_encode``: float32 -> codes of <= 8 bits, RNE.

    ``specials`` is the format's inf/NaN policy ("ieee", "fn", "fnuz", "none"); ``saturate``
    clamps to ±max before rounding.  ``out`` (uint8, same length as ``x``) is written in place.
    """
    cdef Py_ssize_t i, n = x.shape[0]
    if out.shape[0] != n:
        raise KernelError(f"minifloat_encode: out has {out.shape[0]} elements, input {n}")
    if n_threads < 1:
        raise KernelError(f"minifloat_encode: n_threads must be >= 1, got {n_threads}")
    if specials not in _SPECIALS or not (1 <= E and 1 <= M and 1 + E + M <= 8):
        raise KernelError(f"minifloat_encode: need 1+E+M <= 8 bits and specials in "
                          f"{sorted(_SPECIALS)}, got E={E}, M={M}, specials={specials!r}")
    cdef int sp = _SPECIALS[specials]
    cdef long top = (1 << (E + M)) - 1
    cdef long max_code = top - (1 << M) if sp == IEEE else (top - 1 if sp == FN else top)
    # largest finite value, for the saturating clamp: decode(max_code)
    cdef long f = max_code & ((1 << M) - 1), ebits = max_code >> M
    cdef double fmax = ldexp(<double>((1 << M) + f), <int>(ebits - bias - M))
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = _minifloat(x[i], E, M, bias, sp, saturate, fmax, max_code)
