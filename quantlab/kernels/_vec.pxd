# Small C helpers shared by several kernels: cimport them from here, like _openmp.pxd, so each
# exists once.
from libc.stdint cimport uint8_t, uint16_t

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    #if defined(__F16C__)
    #include <immintrin.h>
    #endif
    /* float32 -> IEEE half bits, round to nearest even, overflow to inf, NaN -> 0x7E00|sign
       (ggml_compute_fp32_to_fp16; numpy's astype(float16) for every non-NaN input). */
    static inline uint16_t ql_fp16_bits(float f) {
        uint32_t x; memcpy(&x, &f, 4);
        uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
        uint32_t a = x & 0x7FFFFFFFu;
        if (a > 0x7F800000u) return sign | 0x7E00;
    #if defined(__F16C__)
        return (uint16_t)_cvtss_sh(f, 0);
    #else
        if (a >= 0x477FF000u) return sign | 0x7C00;            /* |f| >= 65520 -> inf */
        if (a >= 0x38800000u) {                                 /* normal half: rebias, RNE */
            uint32_t r = a - 0x38000000u;
            r += 0x0FFFu + ((r >> 13) & 1u);
            return sign | (uint16_t)(r >> 13);
        }
        if (a < 0x33000000u) return sign;                       /* < 2^-25 -> ±0 */
        uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u;  /* subnormal: round m·2^(e-126) */
        uint32_t sh = 126 - e, q = m >> sh, rem = m & ((1u << sh) - 1), hw = 1u << (sh - 1);
        if (rem > hw || (rem == hw && (q & 1u))) q++;
        return sign | (uint16_t)q;
    #endif
    }
    /* Ask for a later row's cache lines now (into L2: prefetcht1): the decode mat-vec streams
       the weights from DRAM once, and overlapping the fetch with this row's arithmetic
       doubles its speed on one core here.  (A non-temporal prefetch into L1 made it slower.) */
    static inline void ql_prefetch(const uint8_t *p, Py_ssize_t nbytes) {
        for (Py_ssize_t k = 0; k < nbytes; k += 64) __builtin_prefetch(p + k, 0, 2);
    }
    /* Σ a[k]·b[k] in float32 with 16 independent lane accumulators (so the compiler can use
       SIMD without reassociating), then the lanes and the tail added in a fixed order. */
    static inline float ql_dot_f32(const float *a, const float *b, Py_ssize_t n) {
        float acc[16] = {0};
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16)
            for (int k = 0; k < 16; k++) acc[k] += a[i + k] * b[i + k];
        float s = 0.0f;
        for (int k = 0; k < 16; k++) s += acc[k];
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }
    """
    uint16_t ql_fp16_bits(float f) noexcept nogil
    float ql_dot_f32(const float *a, const float *b, Py_ssize_t n) noexcept nogil
    void ql_prefetch(const uint8_t *p, Py_ssize_t nbytes) noexcept nogil
