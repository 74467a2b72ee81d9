# Small C helpers shared by the mat-vec kernels (_matvec, _dequant_tables): cimport them from
# here, like _openmp.pxd, so each exists once.
from libc.stdint cimport uint8_t

cdef extern from *:
    """
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
    float ql_dot_f32(const float *a, const float *b, Py_ssize_t n) noexcept nogil
    void ql_prefetch(const uint8_t *p, Py_ssize_t nbytes) noexcept nogil
