# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twins of ggml's slow quantizer searches, bit-identical to the NumPy reference.

=====================================================  ==============================================
kernel (same arguments + ``n_threads``)                NumPy twin
=====================================================  ==============================================
``qx_quants(x, nmax, weights)``                        ``formats.ggml.search.qx_quants``   (§4.1)
``q3_quants(x, nmax)``                                 ``formats.ggml.search.q3_quants``   (§4.2)
``qkx_quants(x, weights, nmax, rmin, rdelta, nstep,    ``formats.ggml.search.qkx_quants``  (§4.3)
use_mad, variant)``
``qp_quants(x, nmax, weights)``                        ``formats.ggml.search.qp_quants``   (§4.4)
``iq4_scales(xb, w)``                                  ``formats.ggml.iq4.iq4_scales``     (§6.1)
=====================================================  ==============================================

One block per row of ``x``; blocks are independent and split statically over threads.  Inside
a block every float32 operation is the C source's, in its order: sequential sums, operands in
the same order, no FMA (this module is compiled with -ffp-contract=off).
"""
from cython.parallel cimport prange
from libc.stdint cimport int32_t
from libc.math cimport fabsf
from libc.stdlib cimport malloc, free
cimport quantlab.kernels._openmp as _omp

import numpy as np

from quantlab.errors import KernelError
from quantlab.kernels._checks import buffer, threads

OPENMP = bool(_omp.QL_OPENMP)
DEF MAXN = 256                  # the longest block any search sees (Q8_K-sized)

cdef extern from *:
    """
    #include <string.h>
    /* ggml nearest_int: add 1.5·2^23 and keep the low mantissa bits (round half to even) */
    static inline int ql_rne(float v) {
        float s = v + 12582912.0f; int i; memcpy(&i, &s, 4);
        return (i & 0x007FFFFF) - 0x00400000;
    }
    static const float QL_K4[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1, 13, 25, 38, 53, 69, 89, 113};
    /* ggml best_index_int8: nearest table entry, ties to the upper one, NaN -> 15 */
    static inline int ql_best_index(float x) {
        if (x <= QL_K4[0]) return 0;
        if (x >= QL_K4[15]) return 15;
        int ml = 0, mu = 15;
        while (mu - ml > 1) { int mav = (ml + mu) / 2; if (x < QL_K4[mav]) mu = mav; else ml = mav; }
        return x - QL_K4[mu - 1] < QL_K4[mu] - x ? mu - 1 : mu;
    }
    """
    int ql_rne(float v) noexcept nogil
    const float QL_K4[16]
    int ql_best_index(float x) noexcept nogil


cdef inline int clampi(int v, int lo, int hi) noexcept nogil:
    return lo if v < lo else (hi if v > hi else v)


cdef inline float first_max(const float *x, int n) noexcept nogil:
    # the signed first element of largest magnitude (0 if all are zero)
    cdef float amax = 0, m = 0
    cdef int i
    for i in range(n):
        if fabsf(x[i]) > amax:
            amax = fabsf(x[i])
            m = x[i]
    return m


# ------------------------------------------------------------------ QX (make_qx_quants, rmse 1)
cdef float qx_block(const float *x, const float *w, int n, int nmax, int32_t *L) noexcept nogil:
    cdef float wx[MAXN]
    cdef int l[MAXN]
    cdef float m = first_max(x, n), iscale, sumlx, suml2, scale, best
    cdef int i, k
    if fabsf(m) < 1e-15:
        for i in range(n):
            L[i] = 0
        return 0
    for i in range(n):
        wx[i] = w[i] * x[i]
    scale = 0
    best = 0
    for k in range(-10, 10):            # k = -10 stands for the first candidate -nmax/m
        if k == 0:
            continue
        iscale = (-nmax / m) if k == -10 else (-(nmax + <float>0.1 * k) / m)
        sumlx = 0
        suml2 = 0
        for i in range(n):
            l[i] = clampi(ql_rne(iscale * x[i]), -nmax, nmax - 1)
            sumlx = sumlx + wx[i] * l[i]
            suml2 = suml2 + (w[i] * l[i]) * l[i]
        if k == -10:
            scale = sumlx / suml2 if suml2 != 0 else 0
            best = scale * sumlx
        elif not (suml2 > 0 and sumlx * sumlx > best * suml2):
            continue
        else:
            scale = sumlx / suml2
            best = scale * sumlx
        for i in range(n):
            L[i] = l[i] + nmax
    return scale


# ------------------------------------------------------------------ Q3S (make_q3_quants)
cdef float q3_block(const float *x, int n, int nmax, int32_t *L) noexcept nogil:
    cdef float w[MAXN]
    cdef float wx[MAXN]
    cdef float m = first_max(x, n), iscale, sumlx = 0, suml2 = 0, slx, sl2
    cdef int i, it, changed, nl
    if fabsf(m) < 1e-15:
        for i in range(n):
            L[i] = 0
        return 0
    iscale = -nmax / m
    for i in range(n):
        w[i] = x[i] * x[i]
        wx[i] = w[i] * x[i]
        L[i] = clampi(ql_rne(iscale * x[i]), -nmax, nmax - 1)
        sumlx = sumlx + wx[i] * L[i]
        suml2 = suml2 + (w[i] * L[i]) * L[i]
    for it in range(5):
        changed = 0
        for i in range(n):
            slx = sumlx - wx[i] * L[i]
            if slx > 0:
                sl2 = suml2 - (w[i] * L[i]) * L[i]
                nl = clampi(ql_rne((x[i] * sl2) / slx), -nmax, nmax - 1)
                if nl != L[i]:
                    slx = slx + wx[i] * nl
                    sl2 = sl2 + (w[i] * nl) * nl
                    if sl2 > 0 and (slx * slx) * suml2 > (sumlx * sumlx) * sl2:
                        L[i] = nl
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
        if not changed:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > 0 else 0


# ------------------------------------------------------------------ QKX (make_qkx2/3_quants)
cdef float qkx_block(const float *x, const float *w, int n, int nmax, float rmin, float rdelta,
                     int nstep, bint use_mad, int variant, int32_t *L, float *the_min) noexcept nogil:
    cdef int A[MAXN]
    cdef float lo = x[0], hi = x[0], sw = w[0], sx = w[0] * x[0], iscale, scale, best, e, E
    cdef float sl, sl2, sxl, D, sc, mn, v
    cdef int i, k
    for i in range(1, n):               # strict scans, running sums
        if x[i] < lo: lo = x[i]
        if x[i] > hi: hi = x[i]
        sw = sw + w[i]
        sx = sx + w[i] * x[i]
    if lo > 0:
        lo = 0
    if (hi == lo) if variant == 2 else (hi <= lo):
        for i in range(n):
            L[i] = 0
        the_min[0] = -lo
        return 0
    iscale = nmax / (hi - lo)
    scale = 1 / iscale
    best = 0
    for i in range(n):
        L[i] = clampi(ql_rne(iscale * (x[i] - lo)), 0, nmax)
        E = (scale * L[i] + lo) - x[i]
        best = best + w[i] * (fabsf(E) if use_mad else E * E)
    for k in range(nstep + 1 if nstep >= 1 else 0):
        iscale = ((rmin + rdelta * k) + nmax) / (hi - lo)      # with the current lo
        sl = 0
        sl2 = 0
        sxl = 0
        for i in range(n):
            v = iscale * (x[i] - lo)
            if variant == 2:
                A[i] = clampi(ql_rne(v), 0, nmax)
            else:
                A[i] = ql_rne(min(v, <float>nmax)) if v > 0 else 0
            sl = sl + w[i] * A[i]
            sl2 = sl2 + (w[i] * A[i]) * A[i]
            sxl = sxl + (w[i] * A[i]) * x[i]
        D = sw * sl2 - sl * sl
        if D > 0:
            sc = (sw * sxl - sx * sl) / D
            mn = (sl2 * sx - sl * sxl) / D
            if mn > 0:
                mn = 0
                sc = sxl / sl2
            e = 0
            for i in range(n):
                E = (sc * A[i] + mn) - x[i]
                e = e + w[i] * (fabsf(E) if use_mad else E * E)
            if e < best:
                for i in range(n):
                    L[i] = A[i]
                best = e
                scale = sc
                lo = mn
    the_min[0] = -lo
    return scale


# ------------------------------------------------------------------ QP (make_qp_quants)
cdef inline float qp_mse(const float *x, const float *w, int n, int nmax, float isc,
                         bint clamp_top, bint store, int32_t *L) noexcept nogil:
    # Σ (w·E)·E with E = x - (1/isc)·l, l = rne(isc·x) (min nmax if clamp_top); L = l mod 256
    cdef float sc = 1 / isc, E, acc = 0
    cdef int i, l
    for i in range(n):
        l = ql_rne(isc * x[i])
        if clamp_top:
            l = min(nmax, l)
        if store:
            L[i] = l
        E = x[i] - sc * <float>(l & 0xFF if not clamp_top else l)
        acc = acc + (w[i] * E) * E
    return acc


cdef float qp_block(const float *x, const float *w, int n, int nmax, int32_t *L) noexcept nogil:
    cdef float wx[MAXN]
    cdef float hi = 0, iscale, isc, best, e, sumlx = 0, suml2 = 0, slx0, sl20, slx, sl2, Li
    cdef int i, k, it, changed, nl, l
    for i in range(n):
        hi = hi if hi > x[i] else x[i]
    if hi < 1e-15:
        for i in range(n):
            L[i] = 0
        return 0
    iscale = nmax / hi
    best = qp_mse(x, w, n, nmax, iscale, False, False, L)      # first guess: levels mod 256
    for k in range(-4, 5):
        if k == 0:
            continue
        isc = (<float>0.1 * k + nmax) / hi
        e = qp_mse(x, w, n, nmax, isc, True, False, L)
        if e < best:
            best = e
            iscale = isc
    for i in range(n):
        wx[i] = w[i] * x[i]
        l = min(nmax, ql_rne(iscale * x[i]))
        L[i] = l & 0xFF                                          # ggml keeps uint8 levels
        sumlx = sumlx + wx[i] * l
        suml2 = suml2 + (w[i] * l) * l
    for it in range(5):
        changed = 0
        for i in range(n):
            Li = L[i]
            slx0 = sumlx - wx[i] * Li
            sl20 = suml2 - (w[i] * Li) * Li
            if slx0 > 0 and sl20 > 0:
                nl = min(nmax, ql_rne((x[i] * sl20) / slx0))
                if nl != L[i]:
                    slx = slx0 + wx[i] * nl
                    sl2 = sl20 + (w[i] * nl) * nl
                    if (slx * slx) * suml2 > (sumlx * sumlx) * sl2:
                        L[i] = nl & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
        if not changed:
            break
    return sumlx / suml2 if suml2 > 0 else 0


# ------------------------------------------------------------------ IQ4 (quantize_row_iq4_nl_impl)
cdef inline void iq4_fit(const float *x, const float *w, float ident, float *sqx, float *sq2) noexcept nogil:
    cdef float q, wq, a = 0, b = 0
    cdef int i
    for i in range(32):
        q = QL_K4[ql_best_index(ident * x[i])]
        wq = w[i] * q
        a = a + wq * x[i]
        b = b + wq * q
    sqx[0] = a
    sq2[0] = b


cdef float iq4_block(const float *x, const float *w) noexcept nogil:
    cdef float m = first_max(x, 32), d, s, best, sqx, sq2
    cdef int t
    if fabsf(m) < 1e-15:
        return 0
    d = (-m) / <float>-127                                   # maps m to +127 (entry 113)
    iq4_fit(x, w, 1 / d, &sqx, &sq2)
    s = sqx / sq2 if sq2 > 0 else 0
    best = s * sqx
    for t in range(-7, 8):
        iq4_fit(x, w, <float>(t - 127) / m, &sqx, &sq2)
        if sq2 > 0 and sqx * sqx > best * sq2:
            s = sqx / sq2
            best = s * sqx
    return s


# ------------------------------------------------------------------ Python entry points
def _blocks(x, weights, what, n_max=MAXN):
    """Like the NumPy twins, accept any real array: as C-contiguous float32 (nb, n), checked."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    buffer(x, np.float32, (None, None), "x", what)
    if not 0 < x.shape[1] <= n_max:
        raise KernelError(f"{what}: blocks of 1..{n_max} elements, got {x.shape[1]}")
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        buffer(weights, np.float32, x.shape, "weights", what)
    return x, weights


def qx_quants(x, nmax, weights=None, rmse_type=1, n_threads=1):
    """Twin of ``search.qx_quants``: x (nb, n) float32 -> (scale (nb,), L (nb, n) int32)."""
    x, weights = _blocks(x, weights, "qx_quants")
    if rmse_type != 1:
        raise KernelError("qx_quants: only rmse_type=1 is implemented (as in the NumPy twin)")
    w = x * x if weights is None else weights
    scale = np.empty(x.shape[0], np.float32)
    L = np.empty(x.shape, np.int32)
    _run(0, x, w, int(nmax), 0, 0, 0, 0, 2, scale, scale, L, threads(n_threads, "qx_quants"))
    return scale, L


def q3_quants(x, nmax=4, n_threads=1):
    """Twin of ``search.q3_quants``: x (nb, n) float32 -> (scale, L int32)."""
    x, _ = _blocks(x, None, "q3_quants")
    scale = np.empty(x.shape[0], np.float32)
    L = np.empty(x.shape, np.int32)
    _run(1, x, x, int(nmax), 0, 0, 0, 0, 2, scale, scale, L, threads(n_threads, "q3_quants"))
    return scale, L


def qkx_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad, variant=2, n_threads=1):
    """Twin of ``search.qkx_quants``: -> (scale (nb,), the_min (nb,), L (nb, n) int32)."""
    x, weights = _blocks(x, weights, "qkx_quants")
    if weights is None:
        weights = x * x                 # the twin's default
    if variant not in (2, 3):
        raise KernelError(f"qkx_quants: variant must be 2 or 3, got {variant!r}")
    scale = np.empty(x.shape[0], np.float32)
    the_min = np.empty(x.shape[0], np.float32)
    L = np.empty(x.shape, np.int32)
    _run(2, x, weights, int(nmax), rmin, rdelta, int(nstep), bool(use_mad), int(variant),
         scale, the_min, L, threads(n_threads, "qkx_quants"))
    return scale, the_min, L


def qp_quants(x, nmax, weights, n_threads=1):
    """Twin of ``search.qp_quants``: -> (scale (nb,), L (nb, n) int32 levels mod 256)."""
    x, weights = _blocks(x, weights, "qp_quants")
    scale = np.empty(x.shape[0], np.float32)
    L = np.empty(x.shape, np.int32)
    _run(3, x, weights, int(nmax), 0, 0, 0, 0, 2, scale, scale, L, threads(n_threads, "qp_quants"))
    return scale, L


def iq4_scales(xb, w, n_threads=1):
    """Twin of ``iq4.iq4_scales``: xb, w (nb, 32) float32 -> (nb,) float32 best scales."""
    xb, w = _blocks(xb, w, "iq4_scales", 32)
    buffer(xb, np.float32, (None, 32), "xb", "iq4_scales")
    scale = np.empty(xb.shape[0], np.float32)
    L = np.empty((0, 0), np.int32)
    _run(4, xb, w, 0, 0, 0, 0, 0, 2, scale, scale, L, threads(n_threads, "iq4_scales"))
    return scale


cdef void _run(int which, const float[:, ::1] x, const float[:, ::1] w, int nmax, float rmin,
               float rdelta, int nstep, bint use_mad, int variant, float[::1] scale,
               float[::1] the_min, int32_t[:, ::1] L, int n_threads):
    cdef Py_ssize_t b, nb = x.shape[0]
    cdef int n = x.shape[1]
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        if which == 0:
            scale[b] = qx_block(&x[b, 0], &w[b, 0], n, nmax, &L[b, 0])
        elif which == 1:
            scale[b] = q3_block(&x[b, 0], n, nmax, &L[b, 0])
        elif which == 2:
            scale[b] = qkx_block(&x[b, 0], &w[b, 0], n, nmax, rmin, rdelta, nstep, use_mad,
                                 variant, &L[b, 0], &the_min[b])
        elif which == 3:
            scale[b] = qp_block(&x[b, 0], &w[b, 0], n, nmax, &L[b, 0])
        else:
            scale[b] = iq4_block(&x[b, 0], &w[b, 0])
