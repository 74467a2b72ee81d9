# cython: language_level=3
# C twins of quantlab/formats/ggml/dot.py: ggml's vec_dot_<type>_<partner> on one weight
# row and one quantized activation row.  Two steps per weight row, so that a row shared by
# many tokens is unpacked once:
#
#   unpack_<type>(w_row, q, nb)            the integer level of every weight, as int8
#   vd_<type>(w_row, q, a_row, nb) -> f32  per block: exact int32 group sums Σ q·q_a, then
#                                          the float steps in dot.py's order (see its table)
#
# Integer sums are exact, so the SIMD helper ql_dot_i8 may add in any order; every float
# operation is scalar and in dot.py's order (compiled with -ffp-contract=off: no FMA).
from libc.stdint cimport uint8_t, int8_t, int16_t, int32_t, uint32_t
from quantlab.kernels._ggml_blocks cimport (ql_half, ql_f32, ql_u32, ql_i16, ql_e8m0_half,
                                            ql_nibbles, ql_fives, QL_IQ4NL, QL_MXFP4, scale_min_k4, q3_scale)

cdef extern from *:
    """
    #if defined(__AVX2__)
    #include <immintrin.h>
    #endif
    /* Σ_{k<n} a[k]·b[k] over int8, n = 16 or 32: exact int32 (|sum| <= 32·128·128). */
    static inline int ql_dot_i8(const int8_t *a, const int8_t *b, int n) {
    #if defined(__AVX2__)
        /* widen to int16, multiply pairs into int32 lanes (vpmaddwd), add the lanes */
        __m256i s = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a)),
                                      _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b)));
        if (n == 32)
            s = _mm256_add_epi32(s, _mm256_madd_epi16(
                    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + 16))),
                    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)))));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        return _mm_cvtsi128_si32(h);
    #else
        int s = 0;
        for (int k = 0; k < n; k++) s += a[k] * b[k];
        return s;
    #endif
    }
    """
    int ql_dot_i8(const int8_t *a, const int8_t *b, int n) noexcept nogil

ctypedef void (*unpack_fn)(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil
ctypedef float (*vd_fn)(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil


# ------------------------------------------------------------------ unpack: levels as int8
cdef inline void _nibbles(const uint8_t *qs, int8_t *q, int off) noexcept nogil:
    # byte j: element j in the low nibble, element j+16 in the high nibble (§3)
    ql_nibbles(qs, q, off, NULL)


cdef inline void _fives(const uint8_t *qs, uint32_t qh, int8_t *q, int off) noexcept nogil:
    ql_fives(qs, qh, q, off)        # nibble | bit e of qh << 4, minus off (SIMD in C)


cdef inline void unpack_q4_0(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(nb):
        _nibbles(x + 18 * b + 2, q + 32 * b, 8)


cdef inline void unpack_q4_1(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(nb):
        _nibbles(x + 20 * b + 4, q + 32 * b, 0)


cdef inline void unpack_q5_0(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(nb):
        _fives(x + 22 * b + 6, ql_u32(x + 22 * b + 2), q + 32 * b, 16)


cdef inline void unpack_q5_1(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(nb):
        _fives(x + 24 * b + 8, ql_u32(x + 24 * b + 4), q + 32 * b, 0)


cdef inline void unpack_q8_0(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    pass                            # Q8_0 levels are the stored bytes: vd_q8_0 reads them in place


cdef inline void unpack_q8_0_levels(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b               # a real copy, for the float-activation path (_matvec)
    cdef int j
    for b in range(nb):
        for j in range(32):
            q[32 * b + j] = <int8_t>x[34 * b + 2 + j]


cdef inline void unpack_iq4_nl_16(const uint8_t *qs, int8_t *q) noexcept nogil:
    ql_nibbles(qs, q, 0, QL_IQ4NL)      # K[idx] for the 32 nibbles


cdef inline void unpack_iq4_nl(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(nb):
        unpack_iq4_nl_16(x + 18 * b + 2, q + 32 * b)


cdef inline void unpack_mxfp4(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(nb):
        ql_nibbles(x + 17 * b + 1, q + 32 * b, 0, QL_MXFP4)


cdef inline void unpack_q2_k(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    # 2-bit planes (§4.8): element 128h + 32g + l sits in bits 2g of qs[32h + l]
    cdef Py_ssize_t b
    cdef int h, g, l
    for b in range(nb):
        for h in range(2):
            for g in range(4):
                for l in range(32):
                    q[256 * b + 128 * h + 32 * g + l] = (x[84 * b + 16 + 32 * h + l] >> (2 * g)) & 3


cdef inline void unpack_q3_k(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    # low 2 bits from the planes, minus 4 where the hmask bit (byte e%32, bit e//32) is clear
    cdef Py_ssize_t b
    cdef int h, g, l
    cdef const uint8_t *xb
    for b in range(nb):
        xb = x + 110 * b
        for h in range(2):
            for g in range(4):
                for l in range(32):
                    q[256 * b + 128 * h + 32 * g + l] = <int8_t>(((xb[32 + 32 * h + l] >> (2 * g)) & 3)
                                                                 - (0 if (xb[l] >> (4 * h + g)) & 1 else 4))


cdef inline void unpack_q4_k(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    # chunk c: qs[32c + l] = L[64c + l] | L[64c + 32 + l] << 4
    cdef Py_ssize_t b
    cdef int c, l
    for b in range(nb):
        for c in range(4):
            for l in range(32):
                q[256 * b + 64 * c + l] = x[144 * b + 16 + 32 * c + l] & 15
                q[256 * b + 64 * c + 32 + l] = x[144 * b + 16 + 32 * c + l] >> 4


cdef inline void unpack_q5_k(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int c, l
    cdef const uint8_t *xb
    for b in range(nb):
        xb = x + 176 * b
        for c in range(4):
            for l in range(32):
                q[256 * b + 64 * c + l] = (xb[48 + 32 * c + l] & 15) | (((xb[16 + l] >> (2 * c)) & 1) << 4)
                q[256 * b + 64 * c + 32 + l] = (xb[48 + 32 * c + l] >> 4) | (((xb[16 + l] >> (2 * c + 1)) & 1) << 4)


cdef inline void unpack_q6_k(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    # §5.5: low4 from ql, high2 from qh, minus 32
    cdef Py_ssize_t b
    cdef int h, l
    cdef const uint8_t *ql
    cdef const uint8_t *qh
    cdef int8_t *o
    for b in range(nb):
        for h in range(2):
            ql = x + 210 * b + 64 * h
            qh = x + 210 * b + 128 + 32 * h
            o = q + 256 * b + 128 * h
            for l in range(32):
                o[l] = <int8_t>(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32)
                o[l + 32] = <int8_t>(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32)
                o[l + 64] = <int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32)
                o[l + 96] = <int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32)


cdef inline void unpack_iq4_xs(const uint8_t *x, int8_t *q, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int ib
    for b in range(nb):
        for ib in range(8):
            unpack_iq4_nl_16(x + 136 * b + 8 + 16 * ib, q + 256 * b + 32 * ib)



# ------------------------------------------------------------------ 32-element blocks × Q8_0 / Q8_1
cdef inline float vd_q4_0(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    for b in range(nb):             # sumi*d_x*d_y
        acc = acc + (<float>ql_dot_i8(q + 32 * b, <const int8_t *>(y + 34 * b + 2), 32)
                     * ql_half(x + 18 * b)) * ql_half(y + 34 * b)
    return acc


cdef inline float vd_q5_0(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    for b in range(nb):             # (d_x*d_y)*sumi
        acc = acc + (ql_half(x + 22 * b) * ql_half(y + 34 * b)) * <float>ql_dot_i8(
            q + 32 * b, <const int8_t *>(y + 34 * b + 2), 32)
    return acc


cdef inline float vd_q8_0(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    for b in range(nb):             # sumi*(d_x*d_y); the weight levels straight from the bytes
        acc = acc + <float>ql_dot_i8(<const int8_t *>(x + 34 * b + 2), <const int8_t *>(y + 34 * b + 2), 32) * (
            ql_half(x + 34 * b) * ql_half(y + 34 * b))
    return acc


cdef inline float vd_iq4_nl(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    for b in range(nb):             # d = d_y*d_x ; d*sumi
        acc = acc + (ql_half(y + 34 * b) * ql_half(x + 18 * b)) * <float>ql_dot_i8(
            q + 32 * b, <const int8_t *>(y + 34 * b + 2), 32)
    return acc


cdef inline float vd_mxfp4(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    for b in range(nb):             # d = d_y*2^(e-128) ; d*sumi
        acc = acc + (ql_half(y + 34 * b) * ql_e8m0_half(x[17 * b])) * <float>ql_dot_i8(
            q + 32 * b, <const int8_t *>(y + 34 * b + 2), 32)
    return acc


cdef inline float vd_q4_1(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    return _vd_q8_1(x, 20, q, y, nb)


cdef inline float vd_q5_1(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    return _vd_q8_1(x, 24, q, y, nb)


cdef inline float _vd_q8_1(const uint8_t *x, Py_ssize_t ts, const int8_t *q, const uint8_t *y,
                           Py_ssize_t nb) noexcept nogil:
    # (d_x*d_y)*sumi + m_x*s_y      (y = Q8_1: d @0, s @2, qs @4)
    cdef float acc = 0
    cdef Py_ssize_t b
    cdef const uint8_t *xb
    cdef const uint8_t *yb
    for b in range(nb):
        xb = x + ts * b
        yb = y + 36 * b
        acc = acc + ((ql_half(xb) * ql_half(yb)) * <float>ql_dot_i8(q + 32 * b, <const int8_t *>(yb + 4), 32)
                     + ql_half(xb + 2) * ql_half(yb + 2))
    return acc


# ------------------------------------------------------------------ 256-element blocks × Q8_K
# Q8_K block: d float32 @0, qs int8[256] @4, bsums int16[16] @260
cdef inline float vd_q2_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0, yd
    cdef Py_ssize_t b
    cdef int j, isum, summs
    cdef const uint8_t *xb
    cdef const uint8_t *yb
    for b in range(nb):
        xb = x + 84 * b
        yb = y + 292 * b
        isum = 0
        summs = 0
        for j in range(16):         # scales byte j: low nibble scale, high nibble min
            isum = isum + (xb[j] & 15) * ql_dot_i8(q + 256 * b + 16 * j, <const int8_t *>(yb + 4 + 16 * j), 16)
            summs = summs + (xb[j] >> 4) * ql_i16(yb + 260 + 2 * j)
        yd = ql_f32(yb)
        acc = acc + ((ql_half(xb + 80) * yd) * <float>isum - (ql_half(xb + 82) * yd) * <float>summs)
    return acc


cdef inline float _vd_q45_k(const uint8_t *x, Py_ssize_t ts, const int8_t *q, const uint8_t *y,
                            Py_ssize_t nb) noexcept nogil:
    # Q4_K / Q5_K: d @0, dmin @2, 6-bit scale/min codes @4; 8 groups of 32
    cdef float acc = 0, yd
    cdef Py_ssize_t b
    cdef int j, sc, mn, isum, summs
    cdef const uint8_t *xb
    cdef const uint8_t *yb
    for b in range(nb):
        xb = x + ts * b
        yb = y + 292 * b
        isum = 0
        summs = 0
        for j in range(8):          # bsums cover 16 elements: two per group of 32
            scale_min_k4(j, xb + 4, &sc, &mn)
            isum = isum + sc * ql_dot_i8(q + 256 * b + 32 * j, <const int8_t *>(yb + 4 + 32 * j), 32)
            summs = summs + mn * (ql_i16(yb + 260 + 4 * j) + ql_i16(yb + 262 + 4 * j))
        yd = ql_f32(yb)
        acc = acc + ((ql_half(xb) * yd) * <float>isum - (ql_half(xb + 2) * yd) * <float>summs)
    return acc


cdef inline float vd_q4_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    return _vd_q45_k(x, 144, q, y, nb)


cdef inline float vd_q5_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    return _vd_q45_k(x, 176, q, y, nb)


cdef inline float vd_q3_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    cdef int j, isum
    cdef const uint8_t *yb
    for b in range(nb):             # signed 6-bit scales (§4.7) @96, d @108
        yb = y + 292 * b
        isum = 0
        for j in range(16):
            isum = isum + q3_scale(j, x + 110 * b + 96) * ql_dot_i8(
                q + 256 * b + 16 * j, <const int8_t *>(yb + 4 + 16 * j), 16)
        acc = acc + (ql_half(x + 110 * b + 108) * ql_f32(yb)) * <float>isum
    return acc


cdef inline float vd_q6_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    cdef int j, isum
    cdef const uint8_t *yb
    for b in range(nb):             # int8 scales @192, d @208
        yb = y + 292 * b
        isum = 0
        for j in range(16):
            isum = isum + (<const int8_t *>(x + 210 * b + 192))[j] * ql_dot_i8(
                q + 256 * b + 16 * j, <const int8_t *>(yb + 4 + 16 * j), 16)
        acc = acc + (ql_half(x + 210 * b + 208) * ql_f32(yb)) * <float>isum
    return acc


cdef inline float vd_iq4_xs(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0, d4d8
    cdef Py_ssize_t b
    cdef int j, ls
    cdef uint32_t sh
    cdef const uint8_t *xb
    cdef const uint8_t *yb
    for b in range(nb):
        xb = x + 136 * b
        yb = y + 292 * b
        d4d8 = ql_half(xb) * ql_f32(yb)
        sh = xb[2] | (xb[3] << 8)
        for j in range(8):          # d1 = d4d8*(ls-32) ; acc += d1*sumi, per group of 32
            ls = ((xb[4 + j // 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)
            acc = acc + (d4d8 * <float>(ls - 32)) * <float>ql_dot_i8(
                q + 256 * b + 32 * j, <const int8_t *>(yb + 4 + 32 * j), 32)
    return acc
