# cython: language_level=3
# C twins of quantlab/formats/ggml/dot.py: ggml's vec_dot_<type>_<partner> on one weight
# row and one quantized activation row.
#
#   32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4): vd32_<type> reads the
#       levels straight from the packed bytes (no unpack step), the activation row split
#       once per call into levels and float scales (ql_split_partner).  Eight
#       blocks at a time: their exact int32 sums, then the float steps of dot.py's table on
#       8 lanes, block b accumulating into lane b % 8 (dot.py's order, scalar without AVX2).
#   K-quants, IQ4_XS: two steps per weight row, so that a row shared by many tokens is
#       unpacked once:
#         unpack_<type>(w_row, q, nb)            the integer level of every weight, as int8
#         vd_<type>(w_row, q, a_row, nb) -> f32  per super-block: exact int32 group sums,
#                                                then the float steps in dot.py's order
#
# Integer sums are exact, so the SIMD helpers may add them in any order; every float
# operation is one IEEE operation in dot.py's order, lane by lane (compiled with
# -ffp-contract=off: no FMA).
from libc.stdint cimport uint8_t, int8_t, int16_t, int32_t, uint32_t
from quantlab.kernels._ggml_blocks cimport (ql_half, ql_f32, ql_u32, ql_i16, ql_e8m0_half,
                                            ql_nibbles, ql_fives, QL_IQ4NL, QL_MXFP4, scale_min_k4, q3_scale)

cdef extern from *:
    """
    #include <string.h>
    #if defined(__AVX2__)
    #include <immintrin.h>
    #endif
    #if defined(__AVX2__) && defined(__F16C__)
    #define QL_VD_SIMD 1
    #else
    #define QL_VD_SIMD 0
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
    #if defined(__AVX2__)
    /* 8 vectors of 8 int32 lanes -> one vector whose lane k is the sum of v[k]'s lanes. */
    static inline __m256i ql_hsum8x8(const __m256i *v) {
        __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
        return _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20),
                                _mm256_permute2x128_si256(a, c, 0x31));
    }
    /* Σ a·b over 16 int8 pairs into 8 int32 lanes (widened first: exact for every byte). */
    static inline __m256i ql_madd16(__m128i a, const int8_t *b) {
        return _mm256_madd_epi16(_mm256_cvtepi8_epi16(a),
                                 _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b)));
    }
    /* 16 packed bytes -> 32 nibbles in a register (low nibbles are elements 0..15, high
       16..31), each looked up in a 16-entry table unless table == NULL, plus add (bytewise). */
    static inline __m256i ql_nibbles_v(const uint8_t *qs, const int8_t *table, int add) {
        const __m128i m = _mm_set1_epi8(15);
        const __m128i b = _mm_loadu_si128((const __m128i *)qs);
        __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        if (table) {
            const __m128i k = _mm_loadu_si128((const __m128i *)table);
            lo = _mm_shuffle_epi8(k, lo);
            hi = _mm_shuffle_epi8(k, hi);
        }
        return _mm256_add_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8((char)add));
    }
    #endif
    /* With AVX-VNNI one vpdpbusd (unsigned × signed bytes, 4 products per int32 lane) does 32
       products.  It needs unsigned levels, so a level q is passed as u = q + off (off a power
       of two, or 0: u in 0..255) and off·Σy is subtracted again, Σy from a second vpdpbusd
       with bytes of 1.  Exact. */
    #if defined(__AVXVNNI__)
    #define QL_DPBUSD(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    #elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
    #define QL_DPBUSD(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    #endif
    #if defined(QL_DPBUSD)
    static inline __m256i ql_dpbusd_off(__m256i u, const int8_t *y, int off) {
        const __m256i yv = _mm256_loadu_si256((const __m256i *)y);
        if (off == 0) return QL_DPBUSD(u, yv);
        return _mm256_sub_epi32(QL_DPBUSD(u, yv),
                                _mm256_slli_epi32(QL_DPBUSD(_mm256_set1_epi8(1), yv), __builtin_ctz(off)));
    }
    #endif
    /* S[j] = Σ_{k<g} q[g·j+k]·y[g·j+k] for j < ng (g = 16 or 32, ng a multiple of 8), exact.
       off: what makes the levels unsigned for vpdpbusd (0 for Q2_K/Q4_K/Q5_K, 4 for Q3_K,
       32 for Q6_K); the other paths multiply the signed levels and ignore it. */
    static inline void ql_group_sums(const int8_t *q, const int8_t *y, int g, int ng, int off, int32_t *S) {
    #if defined(QL_DPBUSD)
    #define QL_U(p) _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(p)), _mm256_set1_epi8((char)off))
        if (g == 32) {
            for (int j = 0; j < ng; j += 8) {
                __m256i v[8];
                for (int k = 0; k < 8; k++) v[k] = ql_dpbusd_off(QL_U(q + 32 * (j + k)), y + 32 * (j + k), off);
                _mm256_storeu_si256((__m256i *)(S + j), ql_hsum8x8(v));
            }
            return;
        }
        /* g == 16: 32 bytes hold groups 2c (lanes 0-3) and 2c+1 (lanes 4-7); two hadd levels
           give [g0 g2 g4 g6 | g1 g3 g5 g7], one permute puts them in order */
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (int j = 0; j < ng; j += 8) {
            __m256i r[4];
            for (int c = 0; c < 4; c++) r[c] = ql_dpbusd_off(QL_U(q + 16 * j + 32 * c), y + 16 * j + 32 * c, off);
            __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(r[0], r[1]), _mm256_hadd_epi32(r[2], r[3]));
            _mm256_storeu_si256((__m256i *)(S + j), _mm256_permutevar8x32_epi32(h, order));
        }
    #undef QL_U
    #elif defined(__AVX2__)
        for (int j = 0; j < ng; j += 8) {
            __m256i v[8];
            for (int k = 0; k < 8; k++) {
                const int8_t *qq = q + g * (j + k), *yy = y + g * (j + k);
                v[k] = ql_madd16(_mm_loadu_si128((const __m128i *)qq), yy);
                if (g == 32)
                    v[k] = _mm256_add_epi32(v[k], ql_madd16(_mm_loadu_si128((const __m128i *)(qq + 16)), yy + 16));
            }
            _mm256_storeu_si256((__m256i *)(S + j), ql_hsum8x8(v));
        }
    #else
        for (int j = 0; j < ng; j++) S[j] = ql_dot_i8(q + g * j, y + g * j, g);
    #endif
    }

    /* The 8 float terms t_j = (d4d8·(ls_j − 32))·S_j of one IQ4_XS super-block xb (sub-block
       j: 6-bit scale ls_j, nibbles at xb + 8 + 16j), S_j = Σ K[nibble]·y exact, straight from
       the packed bytes (the table lookup is one pshufb); each lane is the scalar's IEEE ops. */
    static inline void ql_iq4_xs_terms(const uint8_t *xb, const int8_t *y, float d4d8, float *t) {
        const uint32_t sh = (uint32_t)(xb[2] | (xb[3] << 8));
    #if defined(__AVX2__)
        __m256i v[8];
        for (int j = 0; j < 8; j++) {
    #if defined(QL_DPBUSD)                      /* K + 128 in 1..241: unsigned */
            v[j] = ql_dpbusd_off(ql_nibbles_v(xb + 8 + 16 * j, QL_IQ4NL, 128), y + 32 * j, 128);
    #else
            const __m256i q = ql_nibbles_v(xb + 8 + 16 * j, QL_IQ4NL, 0);
            v[j] = _mm256_add_epi32(ql_madd16(_mm256_castsi256_si128(q), y + 32 * j),
                                    ql_madd16(_mm256_extracti128_si256(q, 1), y + 32 * j + 16));
    #endif
        }
        const __m256 S = _mm256_cvtepi32_ps(ql_hsum8x8(v));
        const __m256i ls = _mm256_or_si256(        /* low 4 bits from scales_l, high 2 from sh */
            _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)ql_u32(xb + 4)),
                                               _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)), _mm256_set1_epi32(15)),
            _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sh),
                                               _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), _mm256_set1_epi32(3)), 4));
        const __m256 d1 = _mm256_mul_ps(_mm256_set1_ps(d4d8), _mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32))));
        _mm256_storeu_ps(t, _mm256_mul_ps(d1, S));
    #else
        int8_t q[32];
        for (int j = 0; j < 8; j++) {
            const int ls = ((xb[4 + j / 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4);
            ql_nibbles(xb + 8 + 16 * j, q, 0, QL_IQ4NL);
            t[j] = (d4d8 * (float)(ls - 32)) * (float)ql_dot_i8(q, y + 32 * j, 32);
        }
    #endif
    }

    /* ---- 32-element blocks: ggml type t, block bytes xb, partner block yb (Q8_0: d, qs @2;
       Q8_1: d, s @2, qs @4) */
    static inline void ql_levels32(int t, const uint8_t *xb, int8_t *q) {
        switch (t) {
        case 2:  ql_nibbles(xb + 2, q, 8, NULL); break;                 /* Q4_0: nibble - 8 */
        case 3:  ql_nibbles(xb + 4, q, 0, NULL); break;                 /* Q4_1: nibble */
        case 6:  ql_fives(xb + 6, ql_u32(xb + 2), q, 16); break;        /* Q5_0: 5-bit - 16 */
        case 7:  ql_fives(xb + 8, ql_u32(xb + 4), q, 0); break;         /* Q5_1: 5-bit */
        case 8:  memcpy(q, xb + 2, 32); break;                          /* Q8_0: the bytes */
        case 20: ql_nibbles(xb + 2, q, 0, QL_IQ4NL); break;             /* IQ4_NL: K[nibble] */
        default: ql_nibbles(xb + 1, q, 0, QL_MXFP4); break;             /* MXFP4: 2·E2M1 */
        }
    }
    /* A block's scale and offset as float32: d (MXFP4: 2^(e-128)) and m (Q4_1/Q5_1; else 0). */
    static inline float ql_dx32(int t, const uint8_t *xb) { return t == 39 ? ql_e8m0_half(xb[0]) : ql_half(xb); }
    static inline float ql_mx32(int t, const uint8_t *xb) { return (t == 3 || t == 7) ? ql_half(xb + 2) : 0.0f; }
    /* One block's float term from its exact sum S, in dot.py's operand order (dx, mx: the
       weight block's d and m; dy, sy: the activation block's d and s). */
    static inline float ql_term32(int t, float dx, float mx, float dy, float sy, int S) {
        const float s = (float)S;
        switch (t) {
        case 2:  return (s * dx) * dy;
        case 6: case 8: return (dx * dy) * s;
        case 20: case 39: return (dy * dx) * s;
        default: return (dx * dy) * s + mx * sy;                       /* Q4_1, Q5_1 */
        }
    }
    #if QL_VD_SIMD
    /* The halves at p, p + stride, ..., p + 7·stride as 8 floats (exact): gather 32 bits at
       each (inside the block: blocks are >= 17 bytes), keep the low 16, widen. */
    static inline __m256 ql_half8(const uint8_t *p, int stride) {
        const __m256i at = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
        __m256i g = _mm256_i32gather_epi32((const int *)p, at, 1);
        g = _mm256_shuffle_epi8(g, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                                     0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
        return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(g, 0x08)));
    }
    /* The 32 levels of a block plus QL_OFF32(t), all in 0..255 as vpdpbusd wants them
       (Q4_0 and Q5_0: the raw nibble / 5-bit value; Q8_0: the byte with its sign bit
       flipped; IQ4_NL, MXFP4: table + 128); ql_levels32_v: the signed levels themselves. */
    #define QL_OFF32(t) ((t) == 2 ? 8 : (t) == 6 ? 16 : ((t) == 3 || (t) == 7) ? 0 : 128)
    static inline __m256i ql_levels32_u(int t, const uint8_t *xb) {
        if (t == 8)
            return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xb + 2)), _mm256_set1_epi8((char)0x80));
        if (t == 6 || t == 7) {
            int8_t q[32];
            ql_fives(xb + (t == 6 ? 6 : 8), ql_u32(xb + (t == 6 ? 2 : 4)), q, 0);
            return _mm256_loadu_si256((const __m256i *)q);
        }
        if (t == 20 || t == 39)
            return ql_nibbles_v(xb + (t == 39 ? 1 : 2), t == 20 ? QL_IQ4NL : QL_MXFP4, 128);
        return ql_nibbles_v(xb + (t == 3 ? 4 : 2), NULL, 0);       /* Q4_0, Q4_1: the nibbles */
    }
    static inline __m256i ql_levels32_v(int t, const uint8_t *xb) {      /* wraps back exactly */
        return _mm256_sub_epi8(ql_levels32_u(t, xb), _mm256_set1_epi8((char)QL_OFF32(t)));
    }
    /* ql_term32 of 8 consecutive blocks, lane k = block k (the same IEEE operations). */
    static inline __m256 ql_term32x8(int t, __m256 dx, __m256 mx, __m256 dy, __m256 sy, __m256 s) {
        switch (t) {
        case 2:  return _mm256_mul_ps(_mm256_mul_ps(s, dx), dy);
        case 6: case 8: return _mm256_mul_ps(_mm256_mul_ps(dx, dy), s);
        case 20: case 39: return _mm256_mul_ps(_mm256_mul_ps(dy, dx), s);
        default: return _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(dx, dy), s), _mm256_mul_ps(mx, sy));
        }
    }
    /* d (and m) of the 8 blocks at x, x + ts, ... */
    static inline __m256 ql_dx32x8(int t, const uint8_t *x, int ts) {
        if (t != 39) return ql_half8(x, ts);
        float e[8];
        for (int k = 0; k < 8; k++) e[k] = ql_e8m0_half(x[k * ts]);
        return _mm256_loadu_ps(e);
    }
    #endif
    /* One activation row in the partner format (Q8_0: d, qs @2 per 34 bytes; Q8_1: d, s,
       qs @4 per 36 bytes), split once per call: levels q[n]; per block d and s as float32
       and the exact level sum Σq (int32). */
    typedef struct { int8_t *q; float *d; float *s; int32_t *sum; } ql_act32;
    static inline void ql_split_partner(int t, const uint8_t *y, Py_ssize_t nb, ql_act32 *a) {
        const int ys = (t == 3 || t == 7) ? 36 : 34;
        for (Py_ssize_t b = 0; b < nb; b++) {
            const int8_t *yq = (const int8_t *)(y + ys * b + ys - 32);
            int32_t sum = 0;
            for (int k = 0; k < 32; k++) sum += yq[k];
            memcpy(a->q + 32 * b, yq, 32);
            a->d[b] = ql_half(y + ys * b);
            a->s[b] = ys == 36 ? ql_half(y + ys * b + 2) : 0.0f;
            a->sum[b] = sum;
        }
    }
    /* A weight row decoded once, when several tokens share it: levels q[n], d and m per block. */
    typedef struct { int8_t *q; float *dx; float *mx; } ql_row32;
    static inline void ql_decode_row32(int t, int ts, const uint8_t *x, Py_ssize_t nb, ql_row32 *r) {
        for (Py_ssize_t b = 0; b < nb; b++) {
            ql_levels32(t, x + ts * b, r->q + 32 * b);
            r->dx[b] = ql_dx32(t, x + ts * b);
            r->mx[b] = ql_mx32(t, x + ts * b);
        }
    }
    /* vec_dot of one weight row of nb blocks (type t, ts bytes each) — its bytes x, or when
       r != NULL its decoded form — and one split partner row a. */
    static inline float ql_vd32_core(int t, int ts, const uint8_t *x, const ql_row32 *r,
                                     const ql_act32 *a, Py_ssize_t nb) {
        const int8_t *ya_q = a->q;
        float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        Py_ssize_t b = 0;
    #if QL_VD_SIMD
        __m256 acc = _mm256_setzero_ps();
        for (; b + 8 <= nb; b += 8) {
            __m256i v[8];
    #if defined(QL_DPBUSD)          /* Σ(q + off)·y in one instruction, then - off·Σy */
            for (int k = 0; k < 8; k++) {
                const __m256i u = r ? _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(r->q + 32 * (b + k))),
                                                      _mm256_set1_epi8((char)QL_OFF32(t)))
                                    : ql_levels32_u(t, x + ts * (b + k));
                v[k] = QL_DPBUSD(u, _mm256_loadu_si256((const __m256i *)(ya_q + 32 * (b + k))));
            }
            __m256i S = ql_hsum8x8(v);
            if (QL_OFF32(t))
                S = _mm256_sub_epi32(S, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(a->sum + b)),
                                                          __builtin_ctz(QL_OFF32(t))));
            const __m256 s = _mm256_cvtepi32_ps(S);
    #else
            for (int k = 0; k < 8; k++) {
                const __m256i q = r ? _mm256_loadu_si256((const __m256i *)(r->q + 32 * (b + k)))
                                    : ql_levels32_v(t, x + ts * (b + k));
                const int8_t *yy = ya_q + 32 * (b + k);
                v[k] = _mm256_add_epi32(ql_madd16(_mm256_castsi256_si128(q), yy),
                                        ql_madd16(_mm256_extracti128_si256(q, 1), yy + 16));
            }
            const __m256 s = _mm256_cvtepi32_ps(ql_hsum8x8(v));
    #endif
            const __m256 dx = r ? _mm256_loadu_ps(r->dx + b) : ql_dx32x8(t, x + ts * b, ts);
            const __m256 mx = (t != 3 && t != 7) ? _mm256_setzero_ps()
                            : r ? _mm256_loadu_ps(r->mx + b) : ql_half8(x + ts * b + 2, ts);
            acc = _mm256_add_ps(acc, ql_term32x8(t, dx, mx, _mm256_loadu_ps(a->d + b), _mm256_loadu_ps(a->s + b), s));
        }
        _mm256_storeu_ps(lane, acc);
    #endif
        for (; b < nb; b++) {                   /* the tail (and everything without AVX2) */
            int8_t q[32];
            const int8_t *qb = q;
            if (r) qb = r->q + 32 * b; else ql_levels32(t, x + ts * b, q);
            const int S = ql_dot_i8(qb, ya_q + 32 * b, 32);
            const float dx = r ? r->dx[b] : ql_dx32(t, x + ts * b), mx = r ? r->mx[b] : ql_mx32(t, x + ts * b);
            lane[b & 7] = lane[b & 7] + ql_term32(t, dx, mx, a->d[b], a->s[b], S);
        }
        return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
    /* Two specialisations: straight from the bytes (r == NULL), or from a decoded row. */
    static inline float ql_vd32(int t, int ts, const uint8_t *x, const ql_row32 *r, const ql_act32 *a,
                                Py_ssize_t nb) {
        return r ? ql_vd32_core(t, ts, NULL, r, a, nb) : ql_vd32_core(t, ts, x, NULL, a, nb);
    }
    """
    int ql_dot_i8(const int8_t *a, const int8_t *b, int n) noexcept nogil
    void ql_group_sums(const int8_t *q, const int8_t *y, int g, int ng, int off, int32_t *S) noexcept nogil
    void ql_iq4_xs_terms(const uint8_t *xb, const int8_t *y, float d4d8, float *t) noexcept nogil
    ctypedef struct ql_act32:
        int8_t *q
        float *d
        float *s
        int32_t *sum
    ctypedef struct ql_row32:
        int8_t *q
        float *dx
        float *mx
    void ql_split_partner(int t, const uint8_t *y, Py_ssize_t nb, ql_act32 *a) noexcept nogil
    void ql_decode_row32(int t, int ts, const uint8_t *x, Py_ssize_t nb, ql_row32 *r) noexcept nogil
    float ql_vd32(int t, int ts, const uint8_t *x, const ql_row32 *r, const ql_act32 *a,
                  Py_ssize_t nb) noexcept nogil

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
    cdef Py_ssize_t b               # the stored bytes (for the float-activation path, _matvec)
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
# vd32_<type>(w_row, r, act, nb): the row's levels straight from its bytes (r == NULL: one
# token) or from the row decoded once by ql_decode_row32 into r (several tokens); the
# activation row was split once by ql_split_partner.
ctypedef float (*vd32_fn)(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil

cdef inline float vd32_q4_0(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(2, 18, x, r, a, nb)


cdef inline float vd32_q4_1(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(3, 20, x, r, a, nb)


cdef inline float vd32_q5_0(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(6, 22, x, r, a, nb)


cdef inline float vd32_q5_1(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(7, 24, x, r, a, nb)


cdef inline float vd32_q8_0(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(8, 34, x, r, a, nb)


cdef inline float vd32_iq4_nl(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(20, 18, x, r, a, nb)


cdef inline float vd32_mxfp4(const uint8_t *x, const ql_row32 *r, const ql_act32 *a, Py_ssize_t nb) noexcept nogil:
    return ql_vd32(39, 17, x, r, a, nb)


# ------------------------------------------------------------------ 256-element blocks × Q8_K
# Q8_K block: d float32 @0, qs int8[256] @4, bsums int16[16] @260
cdef inline float vd_q2_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0, yd
    cdef Py_ssize_t b
    cdef int j, isum, summs
    cdef int32_t S[16]
    cdef const uint8_t *xb
    cdef const uint8_t *yb
    for b in range(nb):
        xb = x + 84 * b
        yb = y + 292 * b
        isum = 0
        summs = 0
        ql_group_sums(q + 256 * b, <const int8_t *>(yb + 4), 16, 16, 0, S)
        for j in range(16):         # scales byte j: low nibble scale, high nibble min
            isum = isum + (xb[j] & 15) * S[j]
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
    cdef int32_t S[8]
    cdef const uint8_t *xb
    cdef const uint8_t *yb
    for b in range(nb):
        xb = x + ts * b
        yb = y + 292 * b
        isum = 0
        summs = 0
        ql_group_sums(q + 256 * b, <const int8_t *>(yb + 4), 32, 8, 0, S)
        for j in range(8):          # bsums cover 16 elements: two per group of 32
            scale_min_k4(j, xb + 4, &sc, &mn)
            isum = isum + sc * S[j]
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
    cdef int32_t S[16]
    cdef const uint8_t *yb
    for b in range(nb):             # signed 6-bit scales (§4.7) @96, d @108
        yb = y + 292 * b
        isum = 0
        ql_group_sums(q + 256 * b, <const int8_t *>(yb + 4), 16, 16, 4, S)
        for j in range(16):
            isum = isum + q3_scale(j, x + 110 * b + 96) * S[j]
        acc = acc + (ql_half(x + 110 * b + 108) * ql_f32(yb)) * <float>isum
    return acc


cdef inline float vd_q6_k(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    cdef float acc = 0
    cdef Py_ssize_t b
    cdef int j, isum
    cdef int32_t S[16]
    cdef const uint8_t *yb
    for b in range(nb):             # int8 scales @192, d @208
        yb = y + 292 * b
        isum = 0
        ql_group_sums(q + 256 * b, <const int8_t *>(yb + 4), 16, 16, 32, S)
        for j in range(16):
            isum = isum + (<const int8_t *>(x + 210 * b + 192))[j] * S[j]
        acc = acc + (ql_half(x + 210 * b + 208) * ql_f32(yb)) * <float>isum
    return acc


cdef inline float vd_iq4_xs(const uint8_t *x, const int8_t *q, const uint8_t *y, Py_ssize_t nb) noexcept nogil:
    # per sub-block of 32: d1 = d4d8*(ls-32) ; acc += d1*sumi  (q is not used: the terms come
    # straight from the packed bytes)
    cdef float acc = 0
    cdef float t[8]
    cdef Py_ssize_t b
    cdef int j
    for b in range(nb):
        ql_iq4_xs_terms(x + 136 * b, <const int8_t *>(y + 292 * b + 4),
                        ql_half(x + 136 * b) * ql_f32(y + 292 * b), t)
        for j in range(8):
            acc = acc + t[j]
    return acc
