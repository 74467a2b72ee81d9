# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fused mat-vec and small mat-mat on packed ggml weights: the weight stays in its bytes.

``out[t, o] = Σ_e W[o, e]·x[t, e]`` for weights ``w`` of shape (n_out, row bytes) in a ggml
block type, without a float32 copy of the matrix: each thread takes a static range of
output rows and decodes one row at a time into a small private buffer, which all T tokens
then share.

==========================================  ==================================================
kernel                                      NumPy twin (quantlab/formats/ggml/dot.py)
==========================================  ==================================================
``matmul_q8(type, w, a, out, n_threads)``   ``matmul_q8(fmt, w, a)``: activations already in
                                            the partner format (Q8_0/Q8_1/Q8_K); integer dot
                                            products, bit-identical to the twin
``matmul_f32(type, w, x, out, n_threads)``  ``matmul_f32(fmt, w, x)``: float32 activations,
                                            ``x @ dequantize(w).T`` within float tolerance
==========================================  ==================================================

Each output element is computed by one thread in a fixed order, so results do not depend
on the number of threads.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint8_t, int8_t, int32_t
from libc.stdlib cimport malloc, free
cimport quantlab.kernels._openmp as _omp
from quantlab.kernels._vec cimport ql_dot_f32, ql_prefetch
from quantlab.kernels._ggml_blocks cimport deq_fn, deq_for, ql_row_f16, ql_row_bf16
from quantlab.kernels._ggml_dots cimport *
from quantlab.kernels._ggml_scales cimport *

import numpy as np

from quantlab.errors import KernelError
from quantlab.kernels._checks import buffer, threads
from quantlab.kernels._dequant import GGML_TYPES, type_info

OPENMP = bool(_omp.QL_OPENMP)
DEF PREFETCH_ROWS = 4           # rows ahead whose bytes are prefetched

# weight type id -> partner (activation) type id, as ggml's vec_dot_type
PARTNER = {2: 8, 6: 8, 8: 8, 20: 8, 39: 8, 3: 9, 7: 9, 10: 15, 11: 15, 12: 15, 13: 15, 14: 15, 23: 15}

cdef extern from *:
    """
    #if defined(__AVX2__)
    #include <immintrin.h>
    #endif
    /* One row of w_e = a_g·q_e + b_g times x, without storing the row: 16 lanes accumulate
       ((float)q_e·a_g)·x_e (the dequantized weight, as ggml rounds it, times x); the offsets
       add b_g·Σ_{e∈g} x_e from the precomputed group sums xs (NULL when every b_g is 0). */
    static inline float ql_dot_levels(const int8_t *q, const float *x, const float *a,
                                      const float *b, const float *xs, Py_ssize_t ng, int g) {
        float lane[16] = {0}, off = 0.0f;
    #if defined(__AVX2__)
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (Py_ssize_t j = 0; j < ng; j++) {
            const __m256 va = _mm256_set1_ps(a[j]);
            for (int e = 0; e < g; e += 16) {
                __m128i q16 = _mm_loadu_si128((const __m128i *)(q + j * g + e));
                __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q16));
                __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q16, 8)));
                acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(_mm256_mul_ps(f0, va), _mm256_loadu_ps(x + j * g + e)));
                acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(_mm256_mul_ps(f1, va), _mm256_loadu_ps(x + j * g + e + 8)));
            }
            if (xs) off += b[j] * xs[j];
        }
        _mm256_storeu_ps(lane, acc0);
        _mm256_storeu_ps(lane + 8, acc1);
    #else
        for (Py_ssize_t j = 0; j < ng; j++) {
            const float aj = a[j];
            const int8_t *qq = q + j * g;
            const float *xx = x + j * g;
            for (int e = 0; e < g; e += 16)
                for (int k = 0; k < 16; k++) lane[k] += ((float)qq[e + k] * aj) * xx[e + k];
            if (xs) off += b[j] * xs[j];
        }
    #endif
        float s = 0.0f;
        for (int k = 0; k < 16; k++) s += lane[k];
        return s + off;
    }
    """
    float ql_dot_levels(const int8_t *q, const float *x, const float *a, const float *b,
                        const float *xs, Py_ssize_t ng, int g) noexcept nogil


cdef unpack_fn _unpack_for(int t) noexcept nogil:
    if t == 2: return unpack_q4_0
    if t == 3: return unpack_q4_1
    if t == 6: return unpack_q5_0
    if t == 7: return unpack_q5_1
    if t == 8: return unpack_q8_0
    if t == 20: return unpack_iq4_nl
    if t == 39: return unpack_mxfp4
    if t == 10: return unpack_q2_k
    if t == 11: return unpack_q3_k
    if t == 12: return unpack_q4_k
    if t == 13: return unpack_q5_k
    if t == 14: return unpack_q6_k
    if t == 23: return unpack_iq4_xs
    return NULL


cdef scales_fn _scales_for(int t) noexcept nogil:
    if t == 2: return scales_q4_0
    if t == 3: return scales_q4_1
    if t == 6: return scales_q5_0
    if t == 7: return scales_q5_1
    if t == 8: return scales_q8_0
    if t == 20: return scales_iq4_nl
    if t == 39: return scales_mxfp4
    if t == 10: return scales_q2_k
    if t == 11: return scales_q3_k
    if t == 12: return scales_q4_k
    if t == 13: return scales_q5_k
    if t == 14: return scales_q6_k
    if t == 23: return scales_iq4_xs
    return NULL


cdef vd_fn _vd_for(int t) noexcept nogil:
    if t == 10: return vd_q2_k
    if t == 11: return vd_q3_k
    if t == 12: return vd_q4_k
    if t == 13: return vd_q5_k
    if t == 14: return vd_q6_k
    if t == 23: return vd_iq4_xs
    return NULL


cdef vd32_fn _vd32_for(int t) noexcept nogil:
    if t == 2: return vd32_q4_0
    if t == 3: return vd32_q4_1
    if t == 6: return vd32_q5_0
    if t == 7: return vd32_q5_1
    if t == 8: return vd32_q8_0
    if t == 20: return vd32_iq4_nl
    if t == 39: return vd32_mxfp4
    return NULL


def _weights(ggml_type, w, what):
    """Validate packed weights; returns (n_blocks per row, row length n)."""
    name, bs, ts = type_info(ggml_type, what)
    buffer(w, np.uint8, (None, None), "w", what)
    if w.shape[1] == 0 or w.shape[1] % ts:
        raise KernelError(f"{what}: w rows must be whole {name} blocks ({ts} bytes each), "
                          f"got {w.shape[1]} bytes per row")
    return w.shape[1] // ts, w.shape[1] // ts * bs


def matmul_q8(ggml_type, w, a, out, n_threads=1):
    """Twin of ``dot.matmul_q8``: ``out[t, o] = vec_dot(w[o], a[t])`` in integers.

    w    (n_out, row bytes) uint8: packed weights of a type in ``PARTNER``
    a    (T, partner row bytes) uint8: activations quantized to the partner format
    out  (T, n_out) float32, overwritten
    """
    what = "matmul_q8"
    if ggml_type not in PARTNER:
        raise KernelError(f"{what}: no integer dot product for ggml type {ggml_type!r}; "
                          f"supported: {', '.join(GGML_TYPES[t][0] for t in PARTNER)}")
    nb, n = _weights(ggml_type, w, what)
    pname, pbs, pts = GGML_TYPES[PARTNER[ggml_type]]
    if n % pbs:
        raise KernelError(f"{what}: row length {n} is not a multiple of {pname}'s block {pbs}")
    buffer(a, np.uint8, (None, n // pbs * pts), f"a ({pname} activations)", what)
    buffer(out, np.float32, (a.shape[0], w.shape[0]), "out", what, out=True)
    if not _matmul_q8(ggml_type, w, a, out, nb, n, threads(n_threads, what)):
        raise MemoryError(f"{what}: could not allocate a {n}-byte row buffer")


cdef bint _matmul_q8(int typ, const uint8_t[:, ::1] w, const uint8_t[:, ::1] a, float[:, ::1] out,
                     Py_ssize_t nb, Py_ssize_t n, int n_threads):
    cdef vd32_fn vd32 = _vd32_for(typ)
    if vd32 != NULL:
        return _matmul_q8_32(typ, vd32, w, a, out, nb, n, n_threads)
    cdef unpack_fn unpack = _unpack_for(typ)
    cdef vd_fn vd = _vd_for(typ)
    cdef Py_ssize_t o, t, n_out = w.shape[0], T = a.shape[0]
    cdef int8_t *q
    cdef int failed = 0
    cdef int *flag = &failed            # shared: written through the pointer by any thread
    if n_out == 0 or T == 0:
        return True
    with nogil, parallel(num_threads=n_threads):
        q = <int8_t *>malloc(n)
        if q == NULL:
            flag[0] = 1
        else:
            for o in prange(n_out, schedule="static"):
                if PREFETCH_ROWS > 0 and o + PREFETCH_ROWS < n_out:
                    ql_prefetch(&w[o + PREFETCH_ROWS, 0], w.shape[1])
                if typ != 23:                           # (IQ4_XS's vd reads the bytes)
                    unpack(&w[o, 0], q, nb)             # the row's levels, once for all tokens
                for t in range(T):
                    out[t, o] = vd(&w[o, 0], q, &a[t, 0], nb)
            free(q)
    return failed == 0


cdef bint _matmul_q8_32(int typ, vd32_fn vd32, const uint8_t[:, ::1] w, const uint8_t[:, ::1] a,
                        float[:, ::1] out, Py_ssize_t nb, Py_ssize_t n, int n_threads):
    # 32-element types: each activation row split once (levels, d, s, Σq per block); one
    # token reads every weight row straight from its bytes, several share its decoded form
    cdef Py_ssize_t o, t, n_out = w.shape[0], T = a.shape[0], ts = w.shape[1] // nb
    if n_out == 0 or T == 0:
        return True
    cdef ql_act32 *act = <ql_act32 *>malloc(T * sizeof(ql_act32))
    cdef int8_t *q = <int8_t *>malloc(T * n)
    cdef float *ds = <float *>malloc(2 * T * nb * sizeof(float))
    cdef int32_t *sums = <int32_t *>malloc(T * nb * sizeof(int32_t))
    cdef ql_row32 *row                  # per thread (assigned inside the parallel block)
    cdef int failed = 0
    cdef int *flag = &failed            # shared: written through the pointer by any thread
    if act == NULL or q == NULL or ds == NULL or sums == NULL:
        free(act)
        free(q)
        free(ds)
        free(sums)
        return False
    with nogil:
        for t in range(T):
            act[t].q, act[t].d, act[t].s, act[t].sum = q + t * n, ds + t * nb, ds + (T + t) * nb, sums + t * nb
            ql_split_partner(typ, &a[t, 0], nb, &act[t])
        if T == 1:
            for o in prange(n_out, schedule="static", num_threads=n_threads):
                if PREFETCH_ROWS > 0 and o + PREFETCH_ROWS < n_out:
                    ql_prefetch(&w[o + PREFETCH_ROWS, 0], w.shape[1])
                out[0, o] = vd32(&w[o, 0], NULL, &act[0], nb)
        else:
            with parallel(num_threads=n_threads):
                row = <ql_row32 *>malloc(sizeof(ql_row32))
                if row != NULL:
                    row.q = <int8_t *>malloc(n)
                    row.dx = <float *>malloc(2 * nb * sizeof(float))
                if row == NULL or row.q == NULL or row.dx == NULL:
                    flag[0] = 1
                else:
                    row.mx = row.dx + nb
                    for o in prange(n_out, schedule="static"):
                        ql_decode_row32(typ, ts, &w[o, 0], nb, row)
                        for t in range(T):
                            out[t, o] = vd32(&w[o, 0], row, &act[t], nb)
                if row != NULL:
                    free(row.q)
                    free(row.dx)
                free(row)
    free(act)
    free(q)
    free(ds)
    free(sums)
    return failed == 0


def matmul_f32(ggml_type, w, x, out, n_threads=1):
    """Twin of ``dot.matmul_f32``: ``out = x @ dequantize(w).T`` with float32 activations.

    w    (n_out, row bytes) uint8: packed weights of any type ``_dequant`` knows
    x    (T, n) float32
    out  (T, n_out) float32, overwritten
    """
    what = "matmul_f32"
    nb, n = _weights(ggml_type, w, what)
    buffer(x, np.float32, (None, n), "x", what)
    buffer(out, np.float32, (x.shape[0], w.shape[0]), "out", what, out=True)
    nt = threads(n_threads, what)
    if ggml_type in PARTNER:            # a level format: fused, no float copy of the row
        ok = _matmul_f32_levels(ggml_type, w, x, out, nb, n, 16 if ggml_type in (10, 11, 14) else 32, nt)
    else:
        ok = _matmul_f32(ggml_type, w, x, out, nb, n, nt)
    if not ok:
        raise MemoryError(f"{what}: could not allocate a {n}-float row buffer")


cdef bint _matmul_f32(int typ, const uint8_t[:, ::1] w, const float[:, ::1] x, float[:, ::1] out,
                      Py_ssize_t nb, Py_ssize_t n, int n_threads):
    cdef deq_fn deq = deq_for(typ)
    cdef Py_ssize_t o, t, b, n_out = w.shape[0], T = x.shape[0]
    cdef Py_ssize_t ts = w.shape[1] // nb, bs = n // nb
    cdef float *row
    cdef int failed = 0
    cdef int *flag = &failed            # shared: written through the pointer by any thread
    if n_out == 0 or T == 0:
        return True
    with nogil, parallel(num_threads=n_threads):
        row = <float *>malloc(n * sizeof(float))
        if row == NULL:
            flag[0] = 1
        else:
            for o in prange(n_out, schedule="static"):
                if PREFETCH_ROWS > 0 and o + PREFETCH_ROWS < n_out:
                    ql_prefetch(&w[o + PREFETCH_ROWS, 0], w.shape[1])
                if typ == 0:                            # F32: the stored row is the row
                    for t in range(T):
                        out[t, o] = ql_dot_f32(<const float *>&w[o, 0], &x[t, 0], n)
                    continue
                if typ == 1:                            # decode the row once for all tokens
                    ql_row_f16(&w[o, 0], row, n)
                elif typ == 30:
                    ql_row_bf16(&w[o, 0], row, n)
                else:
                    for b in range(nb):
                        deq(&w[o, 0] + b * ts, row + b * bs)
                for t in range(T):
                    out[t, o] = ql_dot_f32(row, &x[t, 0], n)
            free(row)
    return failed == 0


cdef bint _matmul_f32_levels(int typ, const uint8_t[:, ::1] w, const float[:, ::1] x,
                             float[:, ::1] out, Py_ssize_t nb, Py_ssize_t n, int g, int n_threads):
    # w_e = a_g·q_e + b_g (see _ggml_scales.pxd): levels and group scales per row, then
    # Σ_g ((q·a_g)·x) + b_g·Σx for each token; the group sums of x are computed once
    cdef unpack_fn unpack = _unpack_for(typ)
    cdef scales_fn scales = _scales_for(typ)
    cdef Py_ssize_t o, t, j, e, n_out = w.shape[0], T = x.shape[0], ng = n // g
    cdef bint has_min = typ in (3, 7, 10, 12, 13)
    cdef int8_t *q
    cdef float *a
    cdef float *b
    cdef float *xs = NULL
    cdef float acc
    cdef int failed = 0
    cdef int *flag = &failed
    if n_out == 0 or T == 0:
        return True
    if has_min:
        xs = <float *>malloc(T * ng * sizeof(float))
        if xs == NULL:
            return False
        for t in range(T):
            for j in range(ng):
                acc = 0
                for e in range(g):
                    acc = acc + x[t, j * g + e]
                xs[t * ng + j] = acc
    with nogil, parallel(num_threads=n_threads):
        q = <int8_t *>malloc(n)
        a = <float *>malloc(ng * sizeof(float))
        b = <float *>malloc(ng * sizeof(float))
        if q == NULL or a == NULL or b == NULL:
            flag[0] = 1
        else:
            for o in prange(n_out, schedule="static"):
                if o + PREFETCH_ROWS < n_out:
                    ql_prefetch(&w[o + PREFETCH_ROWS, 0], w.shape[1])
                unpack(&w[o, 0], q, nb)
                scales(&w[o, 0], a, b, nb)
                for t in range(T):
                    out[t, o] = ql_dot_levels(q, &x[t, 0], a, b, (xs + t * ng) if has_min else NULL, ng, g)
        free(q)
        free(a)
        free(b)
    free(xs)
    return failed == 0
