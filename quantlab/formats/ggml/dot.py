"""llama.cpp's integer dot products: packed weights × activations quantized to Q8_0/Q8_1/Q8_K.

On the CPU, llama.cpp never turns a quantized weight back into float32 for a matrix product.
It first quantizes the *activation* row to the weight type's partner format (``vec_dot_type``)
and then runs ``ggml_vec_dot_<type>_<partner>``: integer products summed exactly in int32,
scaled by the two blocks' float factors and accumulated in float32::

    y_o = Σ_blocks  (d_w · d_a) · Σ_e q_w[e]·q_a[e]   (+ offset terms for Q4_1/Q5_1/K-quant mins)

This is why a Q4_1 model scores differently in llama.cpp (PPL 11.6700 on SmolLM2, golden
README) than its own weights do in float32 (11.6409): the activations lose precision too.

==========  ==========  =====  ============================================================
weight      partner     group  float combination per block, in ggml's operand order
==========  ==========  =====  ============================================================
Q4_0        Q8_0        32     ``acc += (S·d_w)·d_a``                 (q_w = nibble − 8)
Q5_0        Q8_0        32     ``acc += (d_w·d_a)·S``                 (q_w = 5-bit − 16)
Q8_0        Q8_0        32     ``acc += S·(d_w·d_a)``
IQ4_NL      Q8_0        32     ``acc += (d_a·d_w)·S``                 (q_w = K[idx])
MXFP4       Q8_0        32     ``acc += (d_a·2^(e−128))·S``           (q_w = 2·E2M1)
Q4_1, Q5_1  Q8_1        32     ``acc += ((d_w·d_a)·S + m_w·s_a)``     (s_a = d_a·Σq_a)
Q2_K        Q8_K        16     ``acc += (d_a·d)·isum − (d_a·dmin)·summs``
Q4_K, Q5_K  Q8_K        32     ``acc += (d·d_a)·isum − (dmin·d_a)·summs``
Q3_K, Q6_K  Q8_K        16     ``acc += (d·d_a)·isum``
IQ4_XS      Q8_K        32     per sub-block: ``acc += ((d·d_a)·(c−32))·S``
==========  ==========  =====  ============================================================

``S`` is one group's exact integer sum ``Σ q_w·q_a``; for K-quants ``isum = Σ_j sc_j·S_j``
over the super-block's groups and ``summs = Σ_j bsums_j·mn_j`` (Q8_K's 16-element sums
times the min codes).  Integers are exact, so only the float steps need an order.  Each
block's term is computed with the table's operands in ggml's generic-C order
(``ggml-cpu/quants.c``), and the terms are added:

* 32-element types: into **8 float lanes**, block ``b`` into lane ``b mod 8``, and the lanes
  then as ``((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))``.  ggml's generic C uses one accumulator;
  its AVX2 code also keeps 8 float lanes (over other terms).  Eight independent sums let the
  compiled kernel work on 8 blocks at once instead of waiting on one chain of additions.
* K-quants and IQ4_XS: one accumulator, super-block after super-block (the chain is 8 times
  shorter).  Q4_K/Q5_K/Q3_K/Q6_K's generic C spreads the same integers over 8 float lanes;
  quantlab uses the single-accumulator form of Q2_K for them.

llama.cpp's AVX2 paths accumulate in yet another order (and fuse multiply-adds), so results
agree with llama.cpp to float rounding, and bit-for-bit with quantlab's compiled twin
``quantlab.kernels._matvec.matmul_q8``.
Activations are quantized by the registered ``q8_0``/``q8_1``/``q8_k`` formats (ggml's
``_ref`` quantizers; llama.cpp's AVX2 activation quantizer differs from them only on ties).
"""
from __future__ import annotations

import numpy as np

from ...errors import FormatError, ShapeError
from ..base import get
from .mxfp4 import e8m0_half
from .numerics import f32

__all__ = ["PARTNER", "partner", "quantize_activations", "group_sums", "matmul_q8",
           "matmul_act_quant", "matmul_f32"]

# weight type -> activation format of its vec_dot (ggml type_traits_cpu[...].vec_dot_type)
PARTNER = {"q4_0": "q8_0", "q5_0": "q8_0", "q8_0": "q8_0", "iq4_nl": "q8_0", "ggml_mxfp4": "q8_0",
           "q4_1": "q8_1", "q5_1": "q8_1",
           "q2_k": "q8_k", "q3_k": "q8_k", "q4_k": "q8_k", "q5_k": "q8_k", "q6_k": "q8_k",
           "iq4_xs": "q8_k"}
GROUP = {"q2_k": 16, "q3_k": 16, "q6_k": 16}        # integer-sum group length; 32 otherwise
MXFP4_2X = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.int8)
_CHUNK = 1 << 22                                    # float32 elements per partial-sum chunk
LANES = 8                                           # float accumulators of the 32-element types


def partner(fmt):
    """The activation format (Q8_0, Q8_1 or Q8_K) that ``fmt``'s integer dot product uses."""
    fmt = get(fmt)
    if fmt.name not in PARTNER:
        raise FormatError(f"{fmt.name} has no integer dot product in quantlab; "
                          f"types with one: {', '.join(PARTNER)}")
    return get(PARTNER[fmt.name])


def quantize_activations(x, fmt) -> np.ndarray:
    """(T, n) float32 -> (T, partner row bytes) uint8: ``x`` in ``fmt``'s partner format."""
    x = np.ascontiguousarray(x, dtype=f32)
    return partner(fmt).quantize_rows(x.reshape(-1, x.shape[-1]), None)


def _fields(fmt, raw: np.ndarray, n: int) -> dict:
    """Decoded fields of (rows, row bytes) -> arrays with leading (rows, blocks) axes."""
    rows = raw.shape[0]
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, fmt.type_size)
    decode = getattr(fmt, "decode", None) or fmt._decode
    with np.errstate(all="ignore"):
        f = decode(blocks)
    return {k: v.reshape(rows, n // fmt.block_size, *v.shape[1:]) for k, v in f.items()}


def _levels(fmt, f) -> np.ndarray:
    """(rows, blocks, block_size) integer levels exactly as the dot product multiplies them."""
    q = f["q"].astype(np.int16)
    if fmt.name == "q4_0":
        return q - 8
    if fmt.name == "q5_0":
        return q - 16
    if fmt.name in ("iq4_nl", "iq4_xs"):
        return f["k"].astype(np.int16)
    if fmt.name == "ggml_mxfp4":
        return MXFP4_2X[f["q"]].astype(np.int16)
    return q                          # Q8_0 int8, Q4_1/Q5_1/Q2_K/Q4_K/Q5_K unsigned, Q3_K/Q6_K signed


def group_sums(wq: np.ndarray, aq: np.ndarray, group: int) -> np.ndarray:
    """Exact ``S[t, o, j] = Σ_{e in group j} aq[t, e]·wq[o, e]`` as int64.

    wq (n_out, n) and aq (T, n) hold small integers (|q| ≤ 128), so every partial sum of a
    group of ≤ 32 products is an integer below 2^24 and float32 BLAS computes it exactly, in
    any summation order.  (n_out, n), (T, n) -> (T, n_out, n // group).
    """
    G = wq.shape[1] // group
    w = np.ascontiguousarray(wq.reshape(-1, G, group).transpose(1, 2, 0), dtype=f32)  # (G, g, n_out)
    a = np.ascontiguousarray(aq.reshape(-1, G, group).transpose(1, 0, 2), dtype=f32)  # (G, T, g)
    return np.rint(np.matmul(a, w)).astype(np.int64).transpose(1, 2, 0)              # (T, n_out, G)


def matmul_q8(fmt, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``out[t, o] = vec_dot(w[o], a[t])``: packed weights (n_out, row bytes) uint8 times
    quantized activations (T, partner row bytes) uint8 -> (T, n_out) float32.

    The NumPy twin of ``quantlab.kernels._matvec.matmul_q8`` (bit-identical).
    """
    fmt, act = get(fmt), partner(fmt)
    w, a = np.asarray(w, np.uint8), np.asarray(a, np.uint8)
    n = w.shape[1] // fmt.type_size * fmt.block_size
    if w.ndim != 2 or a.ndim != 2 or a.shape[1] != act.row_bytes(n) or w.shape[1] != fmt.row_bytes(n):
        raise ShapeError(f"matmul_q8 {fmt.name}: weights (n_out, {fmt.name} row bytes) and "
                         f"activations (T, {act.name} row bytes) must describe the same row "
                         f"length; got {w.shape} and {a.shape}")
    fa = _fields(act, a, n)
    aq = fa["q"].reshape(a.shape[0], n).astype(np.int16)                   # (T, n)
    out = np.empty((a.shape[0], w.shape[0]), f32)
    step = max(1, _CHUNK // max(1, a.shape[0] * (n // 16)))
    with np.errstate(over="ignore", invalid="ignore"):
        for o in range(0, w.shape[0], step):              # rows in chunks: bounded memory
            fw = _fields(fmt, w[o:o + step], n)
            S = group_sums(_levels(fmt, fw).reshape(-1, n), aq, GROUP.get(fmt.name, 32))
            out[:, o:o + step] = _combine(fmt.name, fw, fa, S)
    return out


def _combine(name: str, fw: dict, fa: dict, S: np.ndarray) -> np.ndarray:
    """Scale and accumulate the exact group sums S (T, n_out, G), block by block in order."""
    T, n_out, _ = S.shape
    acc = np.zeros((T, n_out), f32)
    dw = fw.get("d")                                      # (n_out, nb) float32
    da = fa["d"][:, :, None]                              # (T, nb_a, 1)
    if name in ("q4_0", "q5_0", "q8_0", "iq4_nl", "ggml_mxfp4", "q4_1", "q5_1"):
        lane = [np.zeros((T, n_out), f32) for _ in range(LANES)]
        for b in range(S.shape[2]):
            s, x, y = S[:, :, b].astype(f32), dw[:, b] if dw is not None else None, da[:, b]
            if name == "q4_0":
                term = (s * x) * y                        # sumi*d_x*d_y
            elif name in ("q5_0", "q8_0"):
                term = (x * y) * s                        # (d_x*d_y)*sumi
            elif name == "iq4_nl":
                term = (y * x) * s                        # d = d_y*d_x ; d*sumi
            elif name == "ggml_mxfp4":
                term = (y * e8m0_half(fw["e"][:, b])) * s         # d_y * 2^(e-128)
            else:                                         # q4_1, q5_1
                term = (x * y) * s + fw["m"][:, b] * fa["s"][:, b, None]
            lane[b % LANES] += term                       # block b -> lane b mod 8
        return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))
    # K-quants and IQ4_XS: one super-block (256) = G groups of S
    per = 16 if name in GROUP else 8
    for B in range(S.shape[2] // per):
        Sb = S[:, :, B * per:(B + 1) * per]                              # (T, n_out, per)
        x, y = dw[:, B], da[:, B]
        if name == "iq4_xs":
            for j in range(per):                          # d1 = d4d8*(ls-32) ; sumf += d1*S
                d1 = (x * y) * fw["scales"][:, B, j].astype(f32)
                acc = acc + d1 * Sb[:, :, j].astype(f32)
            continue
        isum = (Sb * fw["scales"][None, :, B, :].astype(np.int64)).sum(-1).astype(f32)
        if name in ("q3_k", "q6_k"):
            acc = acc + (x * y) * isum
            continue
        mins = fw["mins"][:, B].astype(np.int64)                           # (n_out, 16 or 8)
        if name != "q2_k":
            mins = np.repeat(mins, 2, axis=1)             # Q4_K/Q5_K: bsums_j·mins[j/2]
        summs = (fa["bsums"][:, B].astype(np.int64) @ mins.T).astype(f32)   # (T, n_out)
        acc = acc + ((x * y) * isum - (fw["dmin"][:, B] * y) * summs)
    return acc


def matmul_act_quant(fmt, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """llama.cpp's mode: quantize ``x`` (T, n) to the partner format, then :func:`matmul_q8`."""
    return matmul_q8(fmt, w, quantize_activations(x, fmt))


def matmul_f32(fmt, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Float-activation twin of ``_matvec.matmul_f32``: ``x @ dequantize(w).T`` (float tolerance)."""
    fmt = get(fmt)
    w = np.ascontiguousarray(w, np.uint8)
    n = w.shape[1] // fmt.type_size * fmt.block_size
    deq = fmt.dequantize_blocks(w.reshape(-1, fmt.type_size)).reshape(w.shape[0], n)
    return np.asarray(x, f32).reshape(-1, n) @ deq.T
