# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``GGMLFormat.dequantize_blocks`` for every ggml block type.

``dequantize(ggml_type, blocks, out, n_threads)`` mirrors
``quantlab.formats.ggml.by_type(ggml_type).dequantize_blocks(blocks)`` (the NumPy reference
in legacy.py / kquants.py / iq4.py / ternary.py / mxfp4.py), writing into a caller-provided
float32 buffer instead of allocating one.  The per-block C routines live in
``_ggml_blocks.pxd`` and follow ggml's ``dequantize_row_<type>`` operation by operation, so
the result is bit-identical to ggml's own ``to_float`` (tested against the golden files).

Blocks are independent: an OpenMP ``prange`` hands each thread a static, contiguous range
of blocks, so the result does not depend on the number of threads.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint8_t
cimport quantlab.kernels._openmp as _omp
from quantlab.kernels._ggml_blocks cimport deq_fn, deq_for, ql_row_f16, ql_row_bf16

import numpy as np

from quantlab.errors import KernelError
from quantlab.kernels._checks import buffer, threads

OPENMP = bool(_omp.QL_OPENMP)
DEF RUN = 4096              # F16/BF16 values per scheduling unit

# ggml type id -> (name, elements per block, bytes per block); spec ggml-quants.md §1.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2),
    2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    20: ("IQ4_NL", 32, 18), 23: ("IQ4_XS", 256, 136),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}


def type_info(ggml_type, str what="dequantize"):
    """(name, block_size, type_size) of a ggml type id; KernelError for unsupported ids."""
    try:
        return GGML_TYPES[ggml_type]
    except (KeyError, TypeError):
        raise KernelError(f"{what}: ggml type id {ggml_type!r} has no compiled kernel; supported: "
                          + ", ".join(f"{v[0]} ({k})" for k, v in sorted(GGML_TYPES.items()))) from None


def dequantize(ggml_type, blocks, out, n_threads=1):
    """Twin of ``by_type(ggml_type).dequantize_blocks(blocks)``, written into ``out``.

    blocks  (n_blocks, type_size) uint8, C-contiguous: the stored bytes
    out     (n_blocks, block_size) float32, C-contiguous: overwritten with the values
    """
    name, bs, ts = type_info(ggml_type)
    what = f"dequantize {name}"
    buffer(blocks, np.uint8, (None, ts), "blocks", what)
    buffer(out, np.float32, (blocks.shape[0], bs), "out", what, out=True)
    _dequantize(ggml_type, blocks, out, threads(n_threads, what))


cdef void _dequantize(int ggml_type, const uint8_t[:, ::1] blocks, float[:, ::1] out, int n_threads):
    cdef deq_fn fn = deq_for(ggml_type)
    cdef Py_ssize_t i, n = blocks.shape[0], ts = blocks.shape[1], bs = out.shape[1]
    if n == 0:
        return
    cdef const uint8_t *src = &blocks[0, 0]
    cdef float *dst = &out[0, 0]
    cdef Py_ssize_t c, m
    if ggml_type == 1 or ggml_type == 30:       # one value per "block": whole runs at a time
        for c in prange((n + RUN - 1) // RUN, nogil=True, schedule="static", num_threads=n_threads):
            m = min(RUN, n - c * RUN)
            if ggml_type == 1:
                ql_row_f16(src + 2 * RUN * c, dst + RUN * c, m)
            else:
                ql_row_bf16(src + 2 * RUN * c, dst + RUN * c, m)
        return
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        fn(src + i * ts, dst + i * bs)
