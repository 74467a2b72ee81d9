# cython: language_level=3
# Shared by the ggml kernels (_dequant, _matvec): scale decoding, lookup tables, and one
# ``deq_<type>(block, y)`` per ggml block type that writes ONE block's float32 values.
#
# Each ``deq_<type>`` is the C twin of ``<Format>.dequantize_blocks`` in
# quantlab/formats/ggml/{legacy,kquants,iq4,ternary,mxfp4}.py and of ggml's
# ``dequantize_row_<type>``: the same float32 operations in the same order (the module is
# compiled with -ffp-contract=off, so ``a*b - c`` is two roundings, never an FMA).
# Offsets and formulas: spec ggml-quants.md §3 (legacy), §4.6-4.8 (packings), §5 (K), §6 (IQ4).
from libc.stdint cimport uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <string.h>
    /* IEEE half bits -> float32, exact: move the 15 magnitude bits under the float32
       exponent and rescale by 2^112 (this also normalises half subnormals exactly);
       Inf/NaN get the all-ones exponent back.  Same values as numpy's float16 -> float32. */
    #if defined(__F16C__) || defined(__SSSE3__)
    #include <immintrin.h>
    #endif
    static inline float ql_half(const uint8_t *p) {
        uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    #if defined(__F16C__)
        return _cvtsh_ss(h);              /* the same exact widening, in one instruction */
    #endif
        union { uint32_t u; float f; } o;
        o.u = (uint32_t)(h & 0x7FFF) << 13;
        o.f *= 0x1p112f;
        if ((h & 0x7C00) == 0x7C00) o.u |= 0x7F800000u;
        o.u |= (uint32_t)(h & 0x8000) << 16;
        return o.f;
    }
    static inline float ql_f32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
    static inline uint32_t ql_u32(const uint8_t *p) { uint32_t u; memcpy(&u, p, 4); return u; }
    static inline int16_t ql_i16(const uint8_t *p) { int16_t u; memcpy(&u, p, 2); return u; }
    /* ggml_e8m0_to_fp32_half: 2^(e-128) as float32 (half of the E8M0 scale 2^(e-127)). */
    static inline float ql_e8m0_half(uint8_t e) {
        union { uint32_t u; float f; } o;
        o.u = (e < 2) ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
        return o.f;
    }
    static const int8_t QL_IQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1, 13, 25, 38, 53, 69, 89, 113};
    static const int8_t QL_MXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    static const uint8_t QL_POW3[5] = {1, 3, 9, 27, 81};
    static inline float ql_bf16(const uint8_t *p) {
        union { uint32_t u; float f; } o;
        o.u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
        return o.f;
    }
    /* n F16 / BF16 values widened to float32 (exact; F16C: 8 per instruction). */
    static inline void ql_row_f16(const uint8_t *p, float *y, Py_ssize_t n) {
        Py_ssize_t i = 0;
    #if defined(__F16C__) && defined(__AVX__)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    #endif
        for (; i < n; i++) y[i] = ql_half(p + 2 * i);
    }
    static inline void ql_row_bf16(const uint8_t *p, float *y, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) y[i] = ql_bf16(p + 2 * i);
    }
    /* 16 packed bytes -> 32 levels: low nibbles are elements 0..15, high nibbles 16..31;
       then either subtract off (table == NULL) or look each nibble up in a 16-entry table. */
    static inline void ql_nibbles(const uint8_t *qs, int8_t *q, int off, const int8_t *table) {
    #if defined(__SSSE3__)
        const __m128i m = _mm_set1_epi8(15);
        __m128i b = _mm_loadu_si128((const __m128i *)qs);
        __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        if (table) {
            __m128i t = _mm_loadu_si128((const __m128i *)table);
            lo = _mm_shuffle_epi8(t, lo);
            hi = _mm_shuffle_epi8(t, hi);
        } else {
            lo = _mm_sub_epi8(lo, _mm_set1_epi8((char)off));
            hi = _mm_sub_epi8(hi, _mm_set1_epi8((char)off));
        }
        _mm_storeu_si128((__m128i *)q, lo);
        _mm_storeu_si128((__m128i *)(q + 16), hi);
    #else
        for (int j = 0; j < 16; j++) {
            q[j] = table ? table[qs[j] & 15] : (int8_t)((qs[j] & 15) - off);
            q[j + 16] = table ? table[qs[j] >> 4] : (int8_t)((qs[j] >> 4) - off);
        }
    #endif
    }
    /* 32 five-bit levels of a Q5_0/Q5_1 block: nibbles as ql_nibbles, plus 16 where bit e of
       qh is set (element e), minus off.  AVX2: spread qh's bytes, test one bit per byte. */
    static inline void ql_fives(const uint8_t *qs, uint32_t qh, int8_t *q, int off) {
    #if defined(__AVX2__)
        const __m128i m = _mm_set1_epi8(15);
        __m128i b = _mm_loadu_si128((const __m128i *)qs);
        __m256i lo4 = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
        __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                        _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                           0x0202020202020202LL, 0x0303030303030303LL));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        v = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
        v = _mm256_sub_epi8(_mm256_or_si256(lo4, v), _mm256_set1_epi8((char)off));
        _mm256_storeu_si256((__m256i *)q, v);
    #else
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((qs[j] & 15) | (((qh >> j) << 4) & 0x10)) - off);
            q[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - off);
        }
    #endif
    }
    /* 16 int8 levels as float32: y[k] = a·q[k] - b (two roundings, no FMA; b = 0 leaves
       a·q[k] unchanged, -0.0 included). */
    #if defined(__AVX2__)
    static inline void ql_scale16v(__m128i v, float a, float b, float *y) {
        const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
        _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(va, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))), vb));
        _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(va, _mm256_cvtepi32_ps(
                             _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))), vb));
    }
    #endif
    static inline void ql_scale16(const int8_t *q, float a, float b, float *y) {
    #if defined(__AVX2__)
        ql_scale16v(_mm_loadu_si128((const __m128i *)q), a, b, y);
    #else
        for (int k = 0; k < 16; k++) y[k] = a * (float)q[k] - b;
    #endif
    }
    /* Q2_K: the 2-bit levels (q[l] >> shift) & 3 of 16 bytes, then a·L - b as ql_scale16. */
    static inline void ql_q2_16(const uint8_t *q, int shift, float a, float b, float *y) {
    #if defined(__AVX2__)
        ql_scale16v(_mm_and_si128(_mm_srl_epi16(_mm_loadu_si128((const __m128i *)q), _mm_cvtsi32_si128(shift)),
                                  _mm_set1_epi8(3)), a, b, y);
    #else
        for (int k = 0; k < 16; k++) y[k] = a * (float)((q[k] >> shift) & 3) - b;
    #endif
    }
    /* 32 table values as float32 times d: y[j] = d·table[nibble j] (low nibbles are
       elements 0..15, high nibbles 16..31).  Products are exact-rounded either way. */
    static inline void ql_lookup_f32(const uint8_t *qs, float *y, float d, const int8_t *table) {
    #if defined(__AVX2__)
        const __m128i m = _mm_set1_epi8(15);
        __m128i b = _mm_loadu_si128((const __m128i *)qs);
        __m128i t = _mm_loadu_si128((const __m128i *)table);
        __m128i lo = _mm_shuffle_epi8(t, _mm_and_si128(b, m));
        __m128i hi = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16(b, 4), m));
        __m256 vd = _mm256_set1_ps(d);
        _mm256_storeu_ps(y,      _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
        _mm256_storeu_ps(y + 8,  _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
    #else
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)table[qs[j] & 15];
            y[j + 16] = d * (float)table[qs[j] >> 4];
        }
    #endif
    }
    """
    float ql_half(const uint8_t *p) noexcept nogil
    float ql_f32(const uint8_t *p) noexcept nogil
    uint32_t ql_u32(const uint8_t *p) noexcept nogil
    int16_t ql_i16(const uint8_t *p) noexcept nogil
    float ql_e8m0_half(uint8_t e) noexcept nogil
    const int8_t QL_IQ4NL[16]
    const int8_t QL_MXFP4[16]
    const uint8_t QL_POW3[5]
    float ql_bf16(const uint8_t *p) noexcept nogil
    void ql_row_f16(const uint8_t *p, float *y, Py_ssize_t n) noexcept nogil
    void ql_row_bf16(const uint8_t *p, float *y, Py_ssize_t n) noexcept nogil
    void ql_nibbles(const uint8_t *qs, int8_t *q, int off, const int8_t *table) noexcept nogil
    void ql_lookup_f32(const uint8_t *qs, float *y, float d, const int8_t *table) noexcept nogil
    void ql_scale16(const int8_t *q, float a, float b, float *y) noexcept nogil
    void ql_q2_16(const uint8_t *q, int shift, float a, float b, float *y) noexcept nogil
    void ql_fives(const uint8_t *qs, uint32_t qh, int8_t *q, int off) noexcept nogil

ctypedef void (*deq_fn)(const uint8_t *b, float *y) noexcept nogil


# ---------------------------------------------------------------- K-quant scale unpacking
cdef inline void scale_min_k4(int j, const uint8_t *S, int *sc, int *mn) noexcept nogil:
    # §4.6  S0..S3: sc_0..3 | hi2(sc_4..7) << 6    S4..S7: mn_0..3 | hi2(mn_4..7) << 6
    #       S8..S11: lo4(sc_4..7) | lo4(mn_4..7) << 4
    if j < 4:
        sc[0] = S[j] & 63
        mn[0] = S[j + 4] & 63
    else:
        sc[0] = (S[j + 4] & 15) | ((S[j - 4] >> 6) << 4)
        mn[0] = (S[j + 4] >> 4) | ((S[j] >> 6) << 4)


cdef inline int q3_scale(int j, const uint8_t *S) noexcept nogil:
    # §4.7  low nibble from S[j] (j < 8) or S[j-8] >> 4; top two bits from S[8 + j%4]
    cdef int low = (S[j] & 15) if j < 8 else (S[j - 8] >> 4)
    cdef int high = (S[8 + j % 4] >> (2 * (j // 4))) & 3
    return (low | (high << 4)) - 32


# ---------------------------------------------------------------- 32-element types (§3)
cdef inline void deq_q4_0(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][qs:16]   y = (q - 8)·d ; byte j holds elements j (low) and j+16 (high)
    cdef float d = ql_half(b)
    cdef int j
    for j in range(16):
        y[j] = <float>((b[2 + j] & 15) - 8) * d
        y[j + 16] = <float>((b[2 + j] >> 4) - 8) * d


cdef inline void deq_q4_1(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][m:2][qs:16]   y = q·d + m
    cdef float d = ql_half(b), m = ql_half(b + 2)
    cdef int j
    for j in range(16):
        y[j] = <float>(b[4 + j] & 15) * d + m
        y[j + 16] = <float>(b[4 + j] >> 4) * d + m


cdef inline void deq_q5_0(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][qh:4][qs:16]   q = nibble | bit e of qh << 4 ;  y = (q - 16)·d
    cdef float d = ql_half(b)
    cdef int8_t q[32]
    cdef int j
    ql_fives(b + 6, ql_u32(b + 2), q, 16)
    for j in range(32):
        y[j] = <float>q[j] * d


cdef inline void deq_q5_1(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][m:2][qh:4][qs:16]   y = q·d + m
    cdef float d = ql_half(b), m = ql_half(b + 2)
    cdef int8_t q[32]
    cdef int j
    ql_fives(b + 8, ql_u32(b + 4), q, 0)
    for j in range(32):
        y[j] = <float>q[j] * d + m


cdef inline void deq_q8_0(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][qs:32 int8]   y = q·d
    cdef float d = ql_half(b)
    cdef int j
    for j in range(32):
        y[j] = <float>(<int8_t>b[2 + j]) * d


cdef inline void deq_q8_1(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][s:2][qs:32 int8]   y = q·d   (s = d·Σq only serves dot products)
    cdef float d = ql_half(b)
    cdef int j
    for j in range(32):
        y[j] = <float>(<int8_t>b[4 + j]) * d


cdef inline void deq_iq4_nl(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][qs:16]   y = d·K[idx]
    ql_lookup_f32(b + 2, y, ql_half(b), QL_IQ4NL)


cdef inline void deq_mxfp4(const uint8_t *b, float *y) noexcept nogil:
    # [e:1][qs:16]   y = E2M1(idx)·2^(e-127), computed as (2·E2M1)·2^(e-128) like ggml
    ql_lookup_f32(b + 1, y, ql_e8m0_half(b[0]), QL_MXFP4)


# ---------------------------------------------------------------- K-quants (§5), 256 elements
cdef inline void deq_q2_k(const uint8_t *b, float *y) noexcept nogil:
    # [scales:16][qs:64][d:2][dmin:2]   y = (d·a_j)·L - dmin·b_j ; 2-bit planes (§4.8)
    cdef float d = ql_half(b + 80), dmin = ql_half(b + 82)
    cdef int n, j, sub
    cdef uint8_t sc
    for n in range(2):
        for j in range(4):
            for sub in range(2):
                sc = b[8 * n + 2 * j + sub]
                ql_q2_16(b + 16 + 32 * n + 16 * sub, 2 * j, d * <float>(sc & 15), dmin * <float>(sc >> 4),
                         y + 128 * n + 32 * j + 16 * sub)


cdef inline void deq_q3_k(const uint8_t *b, float *y) noexcept nogil:
    # [hmask:32][qs:64][scales:12][d:2]   q = low2 - (hbit ? 0 : 4) ; y = (d·sc_j)·q
    cdef float d = ql_half(b + 108)
    cdef const uint8_t *hm = b
    cdef const uint8_t *q = b + 32
    cdef int8_t L[16]
    cdef int n, j, l, sub, e
    for n in range(2):
        for j in range(4):
            for sub in range(2):
                for l in range(16):
                    e = 16 * sub + l
                    # hbit set: q = low2 ; clear: q = low2 - 4   (branch-free for SIMD)
                    L[l] = ((q[32 * n + e] >> (2 * j)) & 3) - 4 + (((hm[e] >> (4 * n + j)) & 1) << 2)
                ql_scale16(L, d * <float>q3_scale(8 * n + 2 * j + sub, b + 96), 0.0,
                           y + 128 * n + 32 * j + 16 * sub)


cdef inline void deq_q4_k(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][dmin:2][scales:12][qs:128]   y = (d·sc_j)·L - dmin·mn_j
    cdef float d = ql_half(b), dmin = ql_half(b + 2), d1, m1, d2, m2
    cdef const uint8_t *q = b + 16
    cdef int c, l, sc, mn
    for c in range(4):
        scale_min_k4(2 * c, b + 4, &sc, &mn)
        d1 = d * <float>sc
        m1 = dmin * <float>mn
        scale_min_k4(2 * c + 1, b + 4, &sc, &mn)
        d2 = d * <float>sc
        m2 = dmin * <float>mn
        for l in range(32):
            y[64 * c + l] = d1 * <float>(q[32 * c + l] & 15) - m1
            y[64 * c + 32 + l] = d2 * <float>(q[32 * c + l] >> 4) - m2


cdef inline void deq_q5_k(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][dmin:2][scales:12][qh:32][qs:128]   L = low4 + 16·hbit
    cdef float d = ql_half(b), dmin = ql_half(b + 2), d1, m1, d2, m2
    cdef const uint8_t *qh = b + 16
    cdef const uint8_t *q = b + 48
    cdef int c, l, sc, mn
    for c in range(4):
        scale_min_k4(2 * c, b + 4, &sc, &mn)
        d1 = d * <float>sc
        m1 = dmin * <float>mn
        scale_min_k4(2 * c + 1, b + 4, &sc, &mn)
        d2 = d * <float>sc
        m2 = dmin * <float>mn
        for l in range(32):
            y[64 * c + l] = d1 * <float>((q[32 * c + l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4)) - m1
            y[64 * c + 32 + l] = d2 * <float>((q[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2


cdef inline void deq_q6_k(const uint8_t *b, float *y) noexcept nogil:
    # [ql:128][qh:64][scales:16 int8][d:2]   q = (low4 | high2 << 4) - 32 ; y = (d·sc)·q
    cdef float d = ql_half(b + 208), d0, d1, d2, d3
    cdef const uint8_t *ql
    cdef const uint8_t *qh
    cdef const int8_t *sc
    cdef float *o
    cdef int n, h, l
    for n in range(2):
        ql = b + 64 * n
        qh = b + 128 + 32 * n
        sc = <const int8_t *>(b + 192 + 8 * n)
        for h in range(2):              # l in 16h..16h+15 shares the four scales sc[h + 2k]
            d0 = d * <float>sc[h]
            d1 = d * <float>sc[h + 2]
            d2 = d * <float>sc[h + 4]
            d3 = d * <float>sc[h + 6]
            o = y + 128 * n + 16 * h
            for l in range(16 * h, 16 * h + 16):
                o[l - 16 * h] = d0 * <float>(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32)
                o[l - 16 * h + 32] = d1 * <float>(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32)
                o[l - 16 * h + 64] = d2 * <float>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32)
                o[l - 16 * h + 96] = d3 * <float>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32)


cdef inline void deq_q8_k(const uint8_t *b, float *y) noexcept nogil:
    # [d:4 float32][qs:256 int8][bsums:32]   y = d·q
    cdef float d = ql_f32(b)
    cdef int j
    for j in range(256):
        y[j] = d * <float>(<int8_t>b[4 + j])


cdef inline void deq_iq4_xs(const uint8_t *b, float *y) noexcept nogil:
    # [d:2][scales_h:2][scales_l:4][qs:128]   c_b 6-bit ; y = (d·(c_b - 32))·K[idx]
    cdef float d = ql_half(b), dl
    cdef uint32_t sh = b[2] | (b[3] << 8)
    cdef int ib, ls
    for ib in range(8):
        ls = ((b[4 + ib // 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4)
        dl = d * <float>(ls - 32)
        ql_lookup_f32(b + 8 + 16 * ib, y + 32 * ib, dl, QL_IQ4NL)


# ---------------------------------------------------------------- ternary (TQ1_0, TQ2_0)
cdef inline float _trit(uint8_t byte, int p) noexcept nogil:
    # ggml: q = byte·3^p (mod 256) ; trit = (q·3) >> 8 ; value = trit - 1
    cdef uint8_t q = <uint8_t>(byte * QL_POW3[p])
    return <float>(((<uint16_t>q * 3) >> 8) - 1)


cdef inline void deq_tq1_0(const uint8_t *b, float *y) noexcept nogil:
    # [qs:48 (5 trits/byte)][qh:4 (4 trits/byte)][d:2]
    cdef float d = ql_half(b + 52)
    cdef int n, m
    for n in range(5):
        for m in range(32):
            y[32 * n + m] = _trit(b[m], n) * d
    for n in range(5):
        for m in range(16):
            y[160 + 16 * n + m] = _trit(b[32 + m], n) * d
    for n in range(4):
        for m in range(4):
            y[240 + 4 * n + m] = _trit(b[48 + m], n) * d


cdef inline void deq_tq2_0(const uint8_t *b, float *y) noexcept nogil:
    # [qs:64 (4 x 2-bit)][d:2]   y = (q - 1)·d
    cdef float d = ql_half(b + 64)
    cdef int j, l, m
    for j in range(2):
        for l in range(4):
            for m in range(32):
                y[128 * j + 32 * l + m] = <float>(((b[32 * j + m] >> (2 * l)) & 3) - 1) * d


# ---------------------------------------------------------------- plain storage
cdef inline void deq_f32(const uint8_t *b, float *y) noexcept nogil:
    y[0] = ql_f32(b)


cdef inline void deq_f16(const uint8_t *b, float *y) noexcept nogil:
    y[0] = ql_half(b)


cdef inline void deq_bf16(const uint8_t *b, float *y) noexcept nogil:
    y[0] = ql_bf16(b)


cdef inline deq_fn deq_for(int ggml_type) noexcept nogil:
    """The block dequantizer for a ggml type id, or NULL."""
    if ggml_type == 0: return deq_f32
    if ggml_type == 1: return deq_f16
    if ggml_type == 2: return deq_q4_0
    if ggml_type == 3: return deq_q4_1
    if ggml_type == 6: return deq_q5_0
    if ggml_type == 7: return deq_q5_1
    if ggml_type == 8: return deq_q8_0
    if ggml_type == 9: return deq_q8_1
    if ggml_type == 10: return deq_q2_k
    if ggml_type == 11: return deq_q3_k
    if ggml_type == 12: return deq_q4_k
    if ggml_type == 13: return deq_q5_k
    if ggml_type == 14: return deq_q6_k
    if ggml_type == 15: return deq_q8_k
    if ggml_type == 20: return deq_iq4_nl
    if ggml_type == 23: return deq_iq4_xs
    if ggml_type == 30: return deq_bf16
    if ggml_type == 34: return deq_tq1_0
    if ggml_type == 35: return deq_tq2_0
    if ggml_type == 39: return deq_mxfp4
    return NULL
