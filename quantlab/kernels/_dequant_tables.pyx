# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twins of the dequantizers of the non-ggml formats: codebooks and affine integers.

======================================================  =========================================
kernel                                                  NumPy twin (its ``_dequantize``)
======================================================  =========================================
``lookup(codes, bits, high_first, table, scale,         FP8/FP4 minifloats (minifloat.py: table,
group, divide, out, n_threads)``                        ``/ q_scale``), OCP MX (mx.py: table ·
                                                        2^e), NF4 / bnb FP4 (nf4.py: table ·
                                                        absmax, high nibble first)
``affine(packed, bits, is_signed, scale, zero, group,      INT2..INT8 (integer.py:
out, n_threads)``                                       ``float32(s · (q − z))``, float64 product)
``matmul_lookup(..., x, out)`` / ``matmul_affine``       ``x @ fmt.dequantize(qt).T`` (fused mat-vec
                                                        on the codes; float tolerance)
======================================================  =========================================

``out[i] = table[code_i] (· or /) scale[i // group]`` — one float32 operation, as the NumPy
code does it, so results are bit-identical (NaN codes keep their table bits).
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint8_t, int32_t, int64_t
from libc.stdlib cimport malloc, free
cimport quantlab.kernels._openmp as _omp
from quantlab.kernels._vec cimport ql_dot_f32, ql_prefetch

import numpy as np

from quantlab.errors import KernelError
from quantlab.kernels._checks import buffer, threads

OPENMP = bool(_omp.QL_OPENMP)


cdef inline int code_at(const uint8_t *p, Py_ssize_t nbytes, Py_ssize_t i, int bits,
                        bint high_first) noexcept nogil:
    # code i of a packed stream: 8-bit bytes; 4-bit nibbles (low first, or high first as
    # bitsandbytes); other widths an LSB-first bit stream (integer.pack_bits)
    cdef Py_ssize_t bit, k
    cdef unsigned v
    if bits == 8:
        return p[i]
    if bits == 4:
        if high_first:
            return (p[i >> 1] >> (0 if i & 1 else 4)) & 15
        return (p[i >> 1] >> (4 if i & 1 else 0)) & 15
    bit = i * bits
    k = bit >> 3
    v = p[k]
    if k + 1 < nbytes:
        v |= (<unsigned>p[k + 1]) << 8
    return (v >> (bit & 7)) & ((1 << bits) - 1)


def _packed(codes, bits, n, what):
    buffer(codes, np.uint8, (None,), "codes", what)
    need = (n * bits + 7) // 8
    if codes.shape[0] < need:
        raise KernelError(f"{what}: {codes.shape[0]} packed bytes hold fewer than {n} "
                          f"{bits}-bit codes (need {need})")


def lookup(codes, bits, high_first, table, scale, group, divide, out, n_threads=1):
    """``out[i] = table[code_i]``, times (or divided by, ``divide``) ``scale[i // group]``.

    codes  (bytes,) uint8 packed 8- or 4-bit codes      table  (2**bits,) float32
    scale  (ceil(n / group),) float32, or None           out    (n,) float32, overwritten
    """
    what = "lookup"
    if bits not in (4, 8):
        raise KernelError(f"{what}: codes must be 4 or 8 bits wide, got {bits!r}")
    n = out.shape[0] if isinstance(out, np.ndarray) and out.ndim == 1 else -1
    buffer(out, np.float32, (None,), "out", what, out=True)
    _packed(codes, bits, n, what)
    buffer(table, np.float32, (1 << bits,), "table", what)
    if scale is not None:
        if not isinstance(group, (int, np.integer)) or group < 1:
            raise KernelError(f"{what}: group must be a positive integer, got {group!r}")
        buffer(scale, np.float32, ((n + group - 1) // group,), "scale", what)
    nt = threads(n_threads, what)
    _lookup(codes, bits, bool(high_first), table, scale, 1 if scale is None else int(group),
            bool(divide), scale is not None, out, nt)


cdef void _lookup(const uint8_t[::1] codes, int bits, bint high_first, const float[::1] table,
                  const float[::1] scale, Py_ssize_t group, bint divide, bint scaled,
                  float[::1] out, int n_threads):
    cdef Py_ssize_t g, i, n = out.shape[0], nbytes = codes.shape[0], G
    cdef float v, s
    if n == 0:
        return
    if not scaled:
        group = 4096                    # no scales: just split the work into chunks
    G = (n + group - 1) // group
    for g in prange(G, nogil=True, schedule="static", num_threads=n_threads):
        s = scale[g] if scaled else 1
        if bits == 4 and group % 2 == 0 and (g + 1) * group <= n:
            _nibble_group(&codes[0] + g * group // 2, group // 2, high_first, &table[0], s,
                          scaled, divide, &out[0] + g * group)
            continue
        for i in range(g * group, min(n, (g + 1) * group)):
            v = table[code_at(&codes[0], nbytes, i, bits, high_first)]
            if scaled and divide:
                v = v / s
            elif scaled:
                v = v * s
            out[i] = v


cdef inline void _nibble_group(const uint8_t *p, Py_ssize_t nb, bint high_first, const float *table,
                               float s, bint scaled, bint divide, float *y) noexcept nogil:
    # a whole group of byte-aligned 4-bit codes: two elements per byte (SIMD in ql_lookup16);
    # without a scale, multiplying by 1 would turn NaN payloads quiet, so copy instead
    cdef Py_ssize_t k
    if scaled:
        ql_lookup16(p, nb, high_first, table, s, divide, y)
        return
    for k in range(nb):
        y[2 * k] = table[(p[k] >> 4) if high_first else (p[k] & 15)]
        y[2 * k + 1] = table[(p[k] & 15) if high_first else (p[k] >> 4)]


def affine(packed, bits, is_signed, scale, zero, group, out, n_threads=1):
    """``out[i] = float32(scale[g] · (q_i − zero[g]))``, g = i // group, product in float64.

    packed (bytes,) uint8 LSB-first ``bits``-bit codes (two's complement when ``is_signed``)
    scale  (groups,) float64      zero (groups,) int64 or None      out (n,) float32
    """
    what = "affine"
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise KernelError(f"{what}: bits must be 2..8, got {bits!r}")
    n = out.shape[0] if isinstance(out, np.ndarray) and out.ndim == 1 else -1
    buffer(out, np.float32, (None,), "out", what, out=True)
    _packed(packed, bits, n, what)
    if not isinstance(group, (int, np.integer)) or group < 1:
        raise KernelError(f"{what}: group must be a positive integer, got {group!r}")
    ng = (n + group - 1) // group
    buffer(scale, np.float64, (ng,), "scale", what)
    if zero is not None:
        buffer(zero, np.int64, (ng,), "zero", what)
    _affine(packed, int(bits), bool(is_signed), scale,
            zero if zero is not None else np.zeros(ng, np.int64), int(group), out,
            threads(n_threads, what))


cdef void _affine(const uint8_t[::1] packed, int bits, bint is_signed, const double[::1] scale,
                  const int64_t[::1] zero, Py_ssize_t group, float[::1] out, int n_threads):
    cdef Py_ssize_t g, i, n = out.shape[0], nbytes = packed.shape[0], G = (n + group - 1) // group
    cdef int64_t q, z
    cdef double s
    if n == 0:
        return
    for g in prange(G, nogil=True, schedule="static", num_threads=n_threads):
        s = scale[g]
        z = zero[g]
        if bits == 4 and group % 2 == 0 and (g + 1) * group <= n:
            _affine4(&packed[0] + g * group // 2, group // 2, is_signed, s, z, &out[0] + g * group)
            continue
        for i in range(g * group, min(n, (g + 1) * group)):
            q = code_at(&packed[0], nbytes, i, bits, False)
            if is_signed and q >= (1 << (bits - 1)):
                q = q - (1 << bits)
            out[i] = <float>(s * <double>(q - z))


cdef inline void _affine4(const uint8_t *p, Py_ssize_t nb, bint is_signed, double s, int64_t z,
                          float *y) noexcept nogil:
    # byte-aligned 4-bit codes, low nibble first: sign-extend, subtract z, scale in float64
    cdef Py_ssize_t k
    cdef int lo, hi
    for k in range(nb):
        lo = p[k] & 15
        hi = p[k] >> 4
        if is_signed:
            lo = lo - 16 if lo >= 8 else lo
            hi = hi - 16 if hi >= 8 else hi
        y[2 * k] = <float>(s * <double>(lo - z))
        y[2 * k + 1] = <float>(s * <double>(hi - z))


# ------------------------------------------------------------------ fused mat-vec on the codes
cdef extern from *:
    """
    /* Σ a[k]·b[k], float32, 16 lane accumulators then a fixed-order reduction (as _matvec) */
    #if defined(__AVX2__)
    #include <immintrin.h>
    #endif
    /* y[2k], y[2k+1] = table[nibbles of byte k] · s (or / s), for nb bytes; high nibble first
       (bitsandbytes) or low nibble first (OCP).  AVX2: 8 elements at a time, the 16-entry
       table looked up with two 8-lane permutes and a blend on bit 3 of the index. */
    static inline void ql_lookup16(const uint8_t *p, Py_ssize_t nb, int high_first,
                                   const float *table, float s, int divide, float *y) {
        Py_ssize_t k = 0;
    #if defined(__AVX2__)
        const __m256 tlo = _mm256_loadu_ps(table), thi = _mm256_loadu_ps(table + 8);
        const __m256 vs = _mm256_set1_ps(s);
        const __m128i m = _mm_set1_epi8(15);
        for (; k + 4 <= nb; k += 4) {
            int32_t w; memcpy(&w, p + k, 4);
            __m128i v = _mm_cvtsi32_si128(w);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m), lo = _mm_and_si128(v, m);
            __m128i pair = high_first ? _mm_unpacklo_epi8(hi, lo) : _mm_unpacklo_epi8(lo, hi);
            __m256i idx = _mm256_cvtepu8_epi32(pair);
            __m256 val = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, idx),
                                          _mm256_permutevar8x32_ps(thi, idx),
                                          _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
            val = divide ? _mm256_div_ps(val, vs) : _mm256_mul_ps(val, vs);
            _mm256_storeu_ps(y + 2 * k, val);
        }
    #endif
        for (; k < nb; k++) {
            float a = table[high_first ? (p[k] >> 4) : (p[k] & 15)];
            float b = table[high_first ? (p[k] & 15) : (p[k] >> 4)];
            y[2 * k] = divide ? a / s : a * s;
            y[2 * k + 1] = divide ? b / s : b * s;
        }
    }
    """
    void ql_lookup16(const uint8_t *p, Py_ssize_t nb, int high_first, const float *table,
                     float s, int divide, float *y) noexcept nogil


def _mm_shapes(x, out, what):
    buffer(x, np.float32, (None, None), "x", what)
    buffer(out, np.float32, (x.shape[0], None), "out", what, out=True)
    return x.shape[1], out.shape[1]


def matmul_lookup(codes, bits, high_first, table, scale, group, x, out, n_threads=1):
    """``out = x @ W.T`` where ``W`` (n_out, n) is what :func:`lookup` decodes: row by row
    into a private buffer, never the whole matrix.  Twin: ``x @ fmt.dequantize(qt).T``
    (float tolerance).  x (T, n) float32, out (T, n_out) float32."""
    what = "matmul_lookup"
    n, n_out = _mm_shapes(x, out, what)
    _packed(codes, bits, n * n_out, what)
    buffer(table, np.float32, (1 << bits,), "table", what)
    if bits not in (4, 8) or not isinstance(group, (int, np.integer)) or group < 1:
        raise KernelError(f"{what}: bits must be 4 or 8 and group >= 1, got {bits!r}, {group!r}")
    buffer(scale, np.float32, ((n * n_out + group - 1) // group,), "scale", what)
    _mm(0, codes, bits, bool(high_first), table, scale, np.zeros(1), np.zeros(1, np.int64),
        int(group), False, x, out, threads(n_threads, what))


def matmul_affine(packed, bits, is_signed, scale, zero, group, x, out, n_threads=1):
    """``out = x @ W.T`` with ``W`` what :func:`affine` decodes (row by row, never whole)."""
    what = "matmul_affine"
    n, n_out = _mm_shapes(x, out, what)
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8 or group < 1:
        raise KernelError(f"{what}: bits must be 2..8 and group >= 1, got {bits!r}, {group!r}")
    _packed(packed, bits, n * n_out, what)
    ng = (n * n_out + group - 1) // group
    buffer(scale, np.float64, (ng,), "scale", what)
    if zero is not None:
        buffer(zero, np.int64, (ng,), "zero", what)
    _mm(1, packed, int(bits), False, np.zeros(1 << 8, np.float32), np.zeros(1, np.float32), scale,
        zero if zero is not None else np.zeros(ng, np.int64), int(group), bool(is_signed), x, out,
        threads(n_threads, what))


cdef void _mm(int kind, const uint8_t[::1] codes, int bits, bint high_first, const float[::1] table,
              const float[::1] fscale, const double[::1] dscale, const int64_t[::1] zero,
              Py_ssize_t group, bint is_signed, const float[:, ::1] x, float[:, ::1] out,
              int n_threads):
    cdef Py_ssize_t o, t, i, e, n = x.shape[1], n_out = out.shape[1], T = x.shape[0]
    cdef Py_ssize_t nbytes = codes.shape[0]
    cdef float *row
    cdef int64_t q
    if n_out == 0 or T == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        row = <float *>malloc(n * sizeof(float))
        if row != NULL:
            for o in prange(n_out, schedule="static"):
                if o + 4 < n_out:                       # prefetch a later row (as _matvec)
                    ql_prefetch(&codes[0] + (o + 4) * n * bits // 8, n * bits // 8)
                if bits == 4 and n % group == 0 and group % 2 == 0:     # whole groups per row
                    for e in range(n // group):
                        i = o * n + e * group
                        if kind == 0:
                            _nibble_group(&codes[0] + i // 2, group // 2, high_first, &table[0],
                                          fscale[i // group], True, False, row + e * group)
                        else:
                            _affine4(&codes[0] + i // 2, group // 2, is_signed, dscale[i // group],
                                     zero[i // group], row + e * group)
                    for t in range(T):
                        out[t, o] = ql_dot_f32(row, &x[t, 0], n)
                    continue
                for e in range(n):              # decode row o (flat element index i)
                    i = o * n + e
                    if kind == 0:
                        row[e] = table[code_at(&codes[0], nbytes, i, bits, high_first)] * fscale[i // group]
                    else:
                        q = code_at(&codes[0], nbytes, i, bits, False)
                        if is_signed and q >= (1 << (bits - 1)):
                            q = q - (1 << bits)
                        row[e] = <float>(dscale[i // group] * <double>(q - zero[i // group]))
                for t in range(T):
                    out[t, o] = ql_dot_f32(row, &x[t, 0], n)
            free(row)
