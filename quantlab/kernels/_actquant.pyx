# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twins of the activation quantizers Q8_0, Q8_1 (legacy.py) and Q8_K (kquants_sym.py).

``quantize_rows(ggml_type, x, out, n_threads)`` mirrors
``quantlab.get("q8_0" | "q8_1" | "q8_k").quantize_rows(x, None)`` byte for byte: ggml's
``quantize_row_q8_0_ref`` / ``_q8_1_ref`` / ``_q8_K_ref``.  The integer-mode mat-vec
(``_matvec.matmul_q8``) consumes its output; llama.cpp runs the same step before every
quantized matrix product.

    Q8_0/Q8_1  d = max|x|/127, id = d ? 1/d : 0, q = roundf(x·id) (C roundf: ties away from 0)
               Q8_1 adds s = fp16((float)Σq · d) with the float32 d
    Q8_K       m = first element of largest |x|, iscale = -127/m,
               q = min(127, nearest_int(iscale·x)), bsums = 16-element sums, d = 1/iscale
"""
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, int8_t, int16_t, uint16_t, int32_t
from libc.math cimport fabsf, roundf
cimport quantlab.kernels._openmp as _omp
from quantlab.kernels._vec cimport ql_fp16_bits

import numpy as np

from quantlab.errors import KernelError
from quantlab.kernels._checks import buffer, threads

OPENMP = bool(_omp.QL_OPENMP)
ACT_TYPES = {8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 15: ("Q8_K", 256, 292)}

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    /* C float -> int as x86-64 does it (cvttss2si: out of range or NaN -> INT32_MIN). */
    static inline int32_t ql_c_int(float v) {
        return (fabsf(v) < 2147483648.0f) ? (int32_t)v : INT32_MIN;
    }
    static inline void ql_put_f32(uint8_t *p, float f) { memcpy(p, &f, 4); }
    /* ggml nearest_int: add 1.5·2^23 and keep the low mantissa bits */
    static inline int32_t ql_nearest_int(float v) {
        float s = v + 12582912.0f; int32_t i; memcpy(&i, &s, 4);
        return (i & 0x007FFFFF) - 0x00400000;
    }
    """
    int32_t ql_c_int(float v) noexcept nogil
    int32_t ql_nearest_int(float v) noexcept nogil
    void ql_put_f32(uint8_t *p, float f) noexcept nogil


cdef inline void _put16(uint8_t *p, uint16_t h) noexcept nogil:
    p[0] = h & 0xFF
    p[1] = h >> 8


cdef inline void q8_block(const float *x, uint8_t *y, bint with_s) noexcept nogil:
    # Q8_0: [d:2][qs:32]   Q8_1: [d:2][s:2][qs:32]
    cdef float amax = 0, d, ident
    cdef int j, s = 0, qi
    cdef int8_t *qs = <int8_t *>(y + (4 if with_s else 2))
    for j in range(32):
        amax = max(amax, fabsf(x[j]))             # a maximum is exact in any order
    d = amax / 127.0
    ident = 1.0 / d if d != 0 else 0.0
    _put16(y, ql_fp16_bits(d))
    for j in range(32):
        qi = <int8_t>ql_c_int(roundf(x[j] * ident))
        qs[j] = qi
        s = s + qi
    if with_s:
        _put16(y + 2, ql_fp16_bits(<float>s * d))


cdef inline void q8k_block(const float *x, uint8_t *y) noexcept nogil:
    # [d:4 float32][qs:256 int8][bsums:16 int16]
    cdef float amax = 0, m = 0, iscale, d
    cdef int j, k, bs
    cdef int8_t *qs = <int8_t *>(y + 4)
    cdef int16_t bsum
    for j in range(256):                          # first element of largest magnitude
        if fabsf(x[j]) > amax:
            amax = fabsf(x[j])
            m = x[j]
    if amax == 0:
        for j in range(292):
            y[j] = 0
        return
    iscale = -127.0 / m
    for j in range(256):
        qs[j] = <int8_t>min(127, ql_nearest_int(iscale * x[j]))
    for j in range(16):
        bs = 0
        for k in range(16):
            bs = bs + qs[16 * j + k]
        bsum = <int16_t>bs
        y[260 + 2 * j] = (<uint16_t>bsum) & 0xFF
        y[261 + 2 * j] = (<uint16_t>bsum) >> 8
    d = 1.0 / iscale
    ql_put_f32(y, d)


def quantize_rows(ggml_type, x, out, n_threads=1):
    """Twin of ``quantlab.get(<q8 type>).quantize_rows(x, None)``, written into ``out``.

    x    (rows, n) float32, n a multiple of the block (32 for Q8_0/Q8_1, 256 for Q8_K)
    out  (rows, n // block * type_size) uint8, overwritten
    """
    try:
        name, bs, ts = ACT_TYPES[ggml_type]
    except (KeyError, TypeError):
        raise KernelError(f"quantize_rows: ggml type {ggml_type!r} is not an activation format; "
                          "supported: Q8_0 (8), Q8_1 (9), Q8_K (15)") from None
    what = f"quantize_rows {name}"
    buffer(x, np.float32, (None, None), "x", what)
    if x.shape[1] == 0 or x.shape[1] % bs:
        raise KernelError(f"{what}: row length {x.shape[1]} is not a positive multiple of {bs}")
    buffer(out, np.uint8, (x.shape[0], x.shape[1] // bs * ts), "out", what, out=True)
    _quantize(ggml_type, x, out, threads(n_threads, what))


cdef void _quantize(int typ, const float[:, ::1] x, uint8_t[:, ::1] out, int n_threads):
    cdef Py_ssize_t r, b, rows = x.shape[0], nb
    if rows == 0:
        return
    if typ == 15:
        nb = x.shape[1] // 256
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            for b in range(nb):
                q8k_block(&x[r, 0] + 256 * b, &out[r, 0] + 292 * b)
    else:
        nb = x.shape[1] // 32
        for r in prange(rows, nogil=True, schedule="static", num_threads=n_threads):
            for b in range(nb):
                q8_block(&x[r, 0] + 32 * b, &out[r, 0] + (36 if typ == 9 else 34) * b, typ == 9)
