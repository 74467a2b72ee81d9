# cython: language_level=3
# The float-activation mat-vec (_matvec.matmul_f32) writes every ggml weight as
#
#     w_e = a_g · q_e + b_g          (q_e: the int8 level of _ggml_dots.unpack_<type>, group g)
#
# so that a row times x is  Σ_g a_g·(Σ_{e∈g} q_e·x_e) + b_g·(Σ_{e∈g} x_e)  — no float copy of
# the row.  ``scales_<type>(row, a, b, nb)`` fills a_g, b_g for the nb blocks of one row, with
# the products of ggml's dequantize_row_<type> (d·sc, dmin·mn, ...).  Group length: GROUP_OF.
from libc.stdint cimport uint8_t, int8_t, uint32_t
from quantlab.kernels._ggml_blocks cimport ql_half, ql_e8m0_half, scale_min_k4, q3_scale

ctypedef void (*scales_fn)(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil


cdef inline void scales_legacy(const uint8_t *x, float *a, float *b, Py_ssize_t nb, Py_ssize_t ts,
                               bint has_min) noexcept nogil:
    # Q4_0/Q5_0/Q8_0/IQ4_NL: a = d (levels already signed / table values);  Q4_1/Q5_1: b = m
    cdef Py_ssize_t i
    for i in range(nb):
        a[i] = ql_half(x + ts * i)
        b[i] = ql_half(x + ts * i + 2) if has_min else 0


cdef inline void scales_q4_0(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    scales_legacy(x, a, b, nb, 18, False)


cdef inline void scales_q4_1(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    scales_legacy(x, a, b, nb, 20, True)


cdef inline void scales_q5_0(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    scales_legacy(x, a, b, nb, 22, False)


cdef inline void scales_q5_1(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    scales_legacy(x, a, b, nb, 24, True)


cdef inline void scales_q8_0(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    scales_legacy(x, a, b, nb, 34, False)


cdef inline void scales_iq4_nl(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    scales_legacy(x, a, b, nb, 18, False)


cdef inline void scales_mxfp4(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t i                   # levels are 2·E2M1, so the scale is 2^(e-128)
    for i in range(nb):
        a[i] = ql_e8m0_half(x[17 * i])
        b[i] = 0


cdef inline void scales_q2_k(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t i
    cdef int j
    cdef float d, dmin
    for i in range(nb):                 # 16 groups of 16: (d·sc_j)·L − dmin·mn_j
        d = ql_half(x + 84 * i + 80)
        dmin = ql_half(x + 84 * i + 82)
        for j in range(16):
            a[16 * i + j] = d * <float>(x[84 * i + j] & 15)
            b[16 * i + j] = -(dmin * <float>(x[84 * i + j] >> 4))


cdef inline void _scales_q45_k(const uint8_t *x, float *a, float *b, Py_ssize_t nb,
                               Py_ssize_t ts) noexcept nogil:
    cdef Py_ssize_t i
    cdef int j, sc, mn
    cdef float d, dmin
    for i in range(nb):                 # 8 groups of 32: (d·sc_j)·L − dmin·mn_j
        d = ql_half(x + ts * i)
        dmin = ql_half(x + ts * i + 2)
        for j in range(8):
            scale_min_k4(j, x + ts * i + 4, &sc, &mn)
            a[8 * i + j] = d * <float>sc
            b[8 * i + j] = -(dmin * <float>mn)


cdef inline void scales_q4_k(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    _scales_q45_k(x, a, b, nb, 144)


cdef inline void scales_q5_k(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    _scales_q45_k(x, a, b, nb, 176)


cdef inline void scales_q3_k(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t i
    cdef int j
    cdef float d
    for i in range(nb):                 # 16 groups of 16: (d·sc_j)·q, q signed
        d = ql_half(x + 110 * i + 108)
        for j in range(16):
            a[16 * i + j] = d * <float>q3_scale(j, x + 110 * i + 96)
            b[16 * i + j] = 0


cdef inline void scales_q6_k(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t i
    cdef int j
    cdef float d
    for i in range(nb):                 # 16 groups of 16: (d·sc_j)·q, sc int8
        d = ql_half(x + 210 * i + 208)
        for j in range(16):
            a[16 * i + j] = d * <float>(<const int8_t *>(x + 210 * i + 192))[j]
            b[16 * i + j] = 0


cdef inline void scales_iq4_xs(const uint8_t *x, float *a, float *b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t i
    cdef int j, ls
    cdef float d
    cdef uint32_t sh
    for i in range(nb):                 # 8 groups of 32: (d·(c_j − 32))·K[idx]
        d = ql_half(x + 136 * i)
        sh = x[136 * i + 2] | (x[136 * i + 3] << 8)
        for j in range(8):
            ls = ((x[136 * i + 4 + j // 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)
            a[8 * i + j] = d * <float>(ls - 32)
            b[8 * i + j] = 0
