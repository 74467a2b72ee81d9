# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twins of ggml's reference quantizers of the 32-element types (no imatrix).

``quantize_ref(ggml_type, xb, n_threads)`` mirrors ``<Q4_0|Q4_1|Q5_0|Q5_1|Q8_0>.quantize_ref(xb)``
in ``quantlab/formats/ggml/legacy.py`` (ggml's ``quantize_row_<type>_ref``): (nb, 32) float32
blocks -> (nb, type_size) uint8, byte for byte.  Overflowing scales are written as ggml writes
them; the caller (``_Legacy32.quantize_rows``) refuses them afterwards, as for the NumPy path.

    Q4_0  d = m/-8,  q = min(15, (int8)(x·id + 8.5))        m: first element of largest |x|
    Q5_0  d = m/-16, q = min(31, (int8)(x·id + 16.5))
    Q4_1  d = (max-min)/15, q = min(15, (int8)((x-min)·id + 0.5)), stores d and min
    Q5_1  d = (max-min)/31, q = (uint8)((x-min)·id + 0.5)
    Q8_0  d = max|x|/127,   q = roundf(x·id)
    with id = d ? 1/d : 0 and C's float -> int conversion (truncation; out of range -> INT32_MIN)
"""
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, int8_t, uint16_t, int32_t, uint32_t
from libc.math cimport fabsf, roundf
from quantlab.kernels._vec cimport ql_fp16_bits

import numpy as np

from quantlab.errors import KernelError
from quantlab.kernels._checks import buffer, threads

TYPES = {2: ("Q4_0", 18), 3: ("Q4_1", 20), 6: ("Q5_0", 22), 7: ("Q5_1", 24), 8: ("Q8_0", 34)}

cdef extern from *:
    """
    #include <stdint.h>
    /* (int8_t) of a float as x86-64 does it: cvttss2si, then the low 8 bits */
    static inline int ql_c_int8(float v) {
        int32_t i = (fabsf(v) < 2147483648.0f) ? (int32_t)v : INT32_MIN;
        return (int8_t)(uint8_t)(uint32_t)i;
    }
    """
    int ql_c_int8(float v) noexcept nogil


cdef inline void put16(uint8_t *p, float v) noexcept nogil:
    cdef uint16_t h = ql_fp16_bits(v)
    p[0] = h & 0xFF
    p[1] = h >> 8


cdef inline float inverse(float d) noexcept nogil:
    return 1 / d if d != 0 else 0


cdef inline void pack(const int *q, uint8_t *qs, uint8_t *qh) noexcept nogil:
    # qs[j] = q_j & 15 | (q_{j+16} & 15) << 4 ; qh (if any): uint32 LE, bit e = bit 4 of q_e
    cdef int j
    cdef uint32_t h = 0
    for j in range(16):
        qs[j] = (q[j] & 15) | ((q[j + 16] & 15) << 4)
    if qh != NULL:
        for j in range(32):
            h |= (<uint32_t>((q[j] >> 4) & 1)) << j
        for j in range(4):
            qh[j] = (h >> (8 * j)) & 0xFF


cdef void quantize_block(int typ, const float *x, uint8_t *y) noexcept nogil:
    cdef float amax = 0, m = 0, lo, hi, d, ident
    cdef int q[32]
    cdef int j
    if typ == 3 or typ == 7:                        # asymmetric: strict min/max scan
        lo = 3.4028234663852886e38
        hi = -3.4028234663852886e38
        for j in range(32):
            if x[j] < lo: lo = x[j]
            if x[j] > hi: hi = x[j]
        d = (hi - lo) / (15 if typ == 3 else 31)
        ident = inverse(d)
        for j in range(32):
            q[j] = ql_c_int8((x[j] - lo) * ident + <float>0.5)
            q[j] = min(15, q[j]) if typ == 3 else (q[j] & 0xFF)
        put16(y, d)
        put16(y + 2, lo)
        pack(q, y + (4 if typ == 3 else 8), NULL if typ == 3 else y + 4)
        return
    if typ == 8:                                    # Q8_0: max |x|, roundf
        for j in range(32):
            amax = max(amax, fabsf(x[j]))
        d = amax / 127
        ident = inverse(d)
        put16(y, d)
        for j in range(32):
            y[2 + j] = <uint8_t>ql_c_int8(roundf(x[j] * ident))
        return
    for j in range(32):                             # Q4_0 / Q5_0: first element of largest |x|
        if fabsf(x[j]) > amax:
            amax = fabsf(x[j])
            m = x[j]
    d = m / (-8 if typ == 2 else -16)
    ident = inverse(d)
    for j in range(32):
        if typ == 2:
            q[j] = min(15, ql_c_int8(x[j] * ident + <float>8.5))
        else:
            q[j] = min(31, ql_c_int8(x[j] * ident + <float>16.5))
    put16(y, d)
    pack(q, y + (2 if typ == 2 else 6), NULL if typ == 2 else y + 2)


def quantize_ref(ggml_type, xb, n_threads=1):
    """Twin of ``<type>.quantize_ref(xb)``: (nb, 32) float32 -> (nb, type_size) uint8."""
    try:
        name, ts = TYPES[ggml_type]
    except (KeyError, TypeError):
        raise KernelError(f"quantize_ref: no compiled reference quantizer for ggml type "
                          f"{ggml_type!r}; supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0") from None
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    buffer(xb, np.float32, (None, 32), "xb", f"quantize_ref {name}")
    out = np.empty((xb.shape[0], ts), np.uint8)
    _run(ggml_type, xb, out, threads(n_threads, "quantize_ref"))
    return out


cdef void _run(int typ, const float[:, ::1] xb, uint8_t[:, ::1] out, int n_threads):
    cdef Py_ssize_t b, nb = xb.shape[0]
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        quantize_block(typ, &xb[b, 0], &out[b, 0])
