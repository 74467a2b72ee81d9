"""The packed-weight path: every matrix product straight from the GGUF bytes.

The reference :class:`~quantlab.model.weights.Linear` dequantizes each weight once and keeps a
float32 copy (SmolLM2-135M: ~540 MB for a 100 MB file).  Here the weights stay as stored:

=========================  ==============================================================
``PackedLinear``           ``y = x @ Wᵀ`` on W's ggml bytes.  Float mode (default): the
                           fused kernel ``_matvec.matmul_f32`` for a few tokens, and for a
                           long prompt W dequantized one panel of rows at a time into a small
                           scratch buffer for a BLAS product.  ``act_quant=True``: llama.cpp's
                           mode — x quantized to the type's partner (Q8_0/Q8_1/Q8_K) and
                           integer dot products (:mod:`quantlab.formats.ggml.dot`).
``PackedTableLinear``      the same for NF4 / bnb FP4 / INTn weights (``quantlab.quantize``
                           QTensors, e.g. via ``Model.with_weights``): float activations
``PackedEmbedding``        the token table in its bytes; ``table[tokens]`` decodes only the
                           looked-up rows (ggml's ``get_rows``)
=========================  ==============================================================

``load_model`` uses this path automatically when the kernels are compiled
(``quantlab.show_config()`` says so); ``QUANTLAB_PURE_NUMPY=1`` keeps the float32 reference —
except with ``act_quant=True``, whose reference is the NumPy emulation in ``dot.py``.
F32 weights are used in place (a view of the file): BLAS for a long prompt, the fused kernel
for a few tokens — so decoding runs no BLAS call whose idle threads would keep spinning next
to the kernels' OpenMP team.  F16/BF16 weights are widened one row at a time by the same
kernel; in ``act_quant`` mode they see activations rounded to F16/BF16 first, as llama.cpp's
``vec_dot_type`` for them does.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..formats.base import QTensor
from ..formats.ggml.base import GGMLFormat
from ..formats.ggml import dot
from .weights import Linear, as_float32

__all__ = ["PackedLinear", "PackedTableLinear", "PackedEmbedding", "embedding_table", "pack",
           "dequantize_rows"]

SMALL_T = 8                 # up to this many tokens the fused kernel beats dequantize + BLAS
PANEL_FLOATS = 1 << 20      # scratch panel size (4 MB of float32) for the long-prompt path


def _ggml(source) -> bool:
    return isinstance(source, QTensor) and isinstance(source.format, GGMLFormat)


def dequantize_rows(fmt: GGMLFormat, raw: np.ndarray, out: np.ndarray | None = None,
                    n_threads: int | None = None) -> np.ndarray:
    """(rows, row bytes) uint8 -> (rows, n) float32 through the kernel or the NumPy twin."""
    raw = np.ascontiguousarray(raw, np.uint8)
    n = raw.shape[1] // fmt.type_size * fmt.block_size
    k = backend.kernel("_dequant")
    if k is None:
        return fmt.dequantize_blocks(raw.reshape(-1, fmt.type_size)).reshape(raw.shape[0], n)
    out = np.empty((raw.shape[0], n), np.float32) if out is None else out
    k.dequantize(fmt.ggml_type, raw.reshape(-1, fmt.type_size), out.reshape(-1, fmt.block_size),
                 backend.n_threads(out.size) if n_threads is None else n_threads)
    return out


class PackedEmbedding:
    """A token-embedding table kept in its ggml bytes; ``table[tokens]`` -> (T, dim) float32."""

    def __init__(self, source: QTensor):
        self.source = source
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __getitem__(self, tokens) -> np.ndarray:
        rows = np.asarray(self.source.data)[np.asarray(tokens)]          # (T, row bytes)
        return dequantize_rows(self.source.format, rows.reshape(-1, rows.shape[-1])).reshape(
            *np.shape(tokens), self.shape[1])

    def __array__(self, dtype=None, copy=None):
        w = dequantize_rows(self.source.format, self.source.data)       # the whole table
        return w if dtype is None else w.astype(dtype)

    def __repr__(self) -> str:
        return f"PackedEmbedding({self.shape}, {self.source.format.name})"


def embedding_table(source):
    """What ``TransformerWeights`` stores as the token table: a ggml tensor stays packed (its
    rows decode to the same floats through the kernel or the NumPy twin), others float32."""
    if _ggml(source):
        return PackedEmbedding(source)
    return source if isinstance(source, PackedEmbedding) else as_float32(source)


class PackedLinear(Linear):
    """``y = x @ Wᵀ`` computed from W's ggml bytes (no float32 copy of W)."""

    def __init__(self, name: str, source: QTensor, act_quant: bool = False):
        super().__init__(name, source)
        self.act_quant = act_quant
        self.fmt = source.format
        self.packed = np.ascontiguousarray(np.asarray(source.data).reshape(source.shape[0], -1))
        if self.fmt.name in dot.PARTNER:        # the activation format, looked up once
            act = dot.partner(self.fmt)
            self._act = (act.ggml_type, act.row_bytes(source.shape[-1]))

    def uses_blas(self, T: int) -> bool:
        """A long prompt in float mode runs BLAS on dequantized panels; everything else is kernels."""
        return T > SMALL_T and not (self.act_quant and self.fmt.name in dot.PARTNER)

    def matmul(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)                            # (T, n)
        name = self.fmt.name
        if name == "ggml_f32" and x.shape[0] > SMALL_T:     # in place, BLAS (as the reference)
            return x @ self.packed.view(np.float32).T
        if self.act_quant and name in dot.PARTNER:
            return self._integer(x)
        if self.act_quant and name in ("ggml_f16", "ggml_bf16"):
            x = _round_activations(x, name)
        return self._float(x)

    def _integer(self, x):
        """llama.cpp's mode: quantize x to the partner format, integer dot products."""
        mv = backend.kernel("_matvec")
        aq = None if mv is None else backend._load("_actquant")      # same switch as _matvec
        if mv is None or aq is None:
            return dot.matmul_act_quant(self.fmt, self.packed, x)          # the NumPy twin
        act_type, act_row = self._act
        nt = backend.n_threads(self.packed.size)
        a = np.empty((x.shape[0], act_row), np.uint8)
        aq.quantize_rows(act_type, x, a, nt if x.shape[0] > 1 else 1)   # one row: no team
        out = np.empty((x.shape[0], self.packed.shape[0]), np.float32)
        mv.matmul_q8(self.fmt.ggml_type, self.packed, a, out, nt)
        return out

    def _float(self, x):
        mv = backend.kernel("_matvec")
        if mv is None:
            return dot.matmul_f32(self.fmt, self.packed, x)
        n_out, n = self.shape
        out = np.empty((x.shape[0], n_out), np.float32)
        if x.shape[0] <= SMALL_T:                          # a few tokens: the fused kernel
            mv.matmul_f32(self.fmt.ggml_type, self.packed, x, out, backend.n_threads(self.packed.size))
            return out
        rows = max(1, PANEL_FLOATS // n)                                   # W, a panel at a time
        panel = np.empty((min(rows, n_out), n), np.float32)
        for o in range(0, n_out, rows):
            # one thread: BLAS runs its own threads next, and an OpenMP team spinning after
            # its region would compete with them for the cores
            p = dequantize_rows(self.fmt, self.packed[o:o + rows], panel[:min(rows, n_out - o)], 1)
            out[:, o:o + rows] = x @ p.T
        return out


class PackedTableLinear(Linear):
    """``y = x @ Wᵀ`` on NF4 / bitsandbytes FP4 / INTn codes (fused kernels in
    ``_dequant_tables``; without kernels: the NumPy dequantize, then the product)."""

    KINDS = ("nf4", "bnb_fp4", "int2", "int3", "int4", "int5", "int6", "int7", "int8")

    def __init__(self, name: str, source: QTensor):
        super().__init__(name, source)
        fmt, qt = source.format, source
        self.codes = np.ascontiguousarray(qt.data, np.uint8).reshape(-1)
        if fmt.name in ("nf4", "bnb_fp4"):
            self.kind, self.bits = "lookup", 4
            absmax = qt.meta["absmax"]
            if qt.options["double_quant"]:         # absmax' = dynamic[q8]·absmax2 + offset
                from ..formats.nf4 import dequantize_blockwise_8bit
                absmax = dequantize_blockwise_8bit(qt.meta["absmax"], qt.meta["absmax2"]) + qt.meta["offset"]
            self.scale = np.ascontiguousarray(absmax, np.float32).reshape(-1)
            self.table = np.ascontiguousarray(fmt._decode_table(qt.shape), np.float32)
            self.group = qt.options["blocksize"]
        else:
            self.kind, self.bits = "affine", fmt.bits
            s, z = fmt.params(qt)
            gran = qt.options["granularity"]
            self.group = (qt.size if gran == "tensor" else
                          qt.shape[-1] if gran == "channel" else qt.options["group_size"])
            self.scale = np.ascontiguousarray(s, np.float64).reshape(-1)
            self.zero = None if qt.options["symmetric"] else np.ascontiguousarray(z, np.int64).reshape(-1)
            self.signed = bool(qt.options["symmetric"])

    def uses_blas(self, T: int) -> bool:
        return T > SMALL_T                                 # panels + BLAS, as matmul does

    def matmul(self, x: np.ndarray) -> np.ndarray:
        k = backend.kernel("_dequant_tables")
        if k is None:
            return x @ self.weight.T                       # the reference (dequantize once)
        x = np.ascontiguousarray(x, np.float32)
        out = np.empty((x.shape[0], self.shape[0]), np.float32)
        nt = backend.n_threads(self.codes.size)
        n_out, n = self.shape
        if x.shape[0] > SMALL_T and n % self.group == 0 and (n * self.bits) % 8 == 0:
            rows = max(1, PANEL_FLOATS // n)                  # long prompt: panels + BLAS
            panel = np.empty(min(rows, n_out) * n, np.float32)
            for o in range(0, n_out, rows):
                r = min(rows, n_out - o)
                codes = self.codes[o * n * self.bits // 8:(o + r) * n * self.bits // 8]
                scale = self.scale[o * n // self.group:(o + r) * n // self.group]
                if self.kind == "lookup":        # one thread: see PackedLinear._float
                    k.lookup(codes, 4, True, self.table, scale, self.group, False, panel[:r * n], 1)
                else:
                    zero = None if self.zero is None else self.zero[o * n // self.group:(o + r) * n // self.group]
                    k.affine(codes, self.bits, self.signed, scale, zero, self.group, panel[:r * n], 1)
                out[:, o:o + r] = x @ panel[:r * n].reshape(r, n).T
            return out
        if self.kind == "lookup":
            k.matmul_lookup(self.codes, 4, True, self.table, self.scale, self.group, x, out, nt)
        else:
            k.matmul_affine(self.codes, self.bits, self.signed, self.scale, self.zero, self.group,
                            x, out, nt)
        return out


def _round_activations(x: np.ndarray, name: str) -> np.ndarray:
    """Activations as llama.cpp converts them for F16 / BF16 weights (RNE)."""
    if name == "ggml_f16":
        return x.astype(np.float16).astype(np.float32)
    u = x.view(np.uint32)
    return (((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def _packed(lin: Linear, act_quant: bool) -> Linear:
    src = lin.source.source if isinstance(lin.source, PackedEmbedding) else lin.source
    if (isinstance(src, QTensor) and src.format.name in PackedTableLinear.KINDS
            and len(src.shape) == 2 and backend.kernel("_dequant_tables") is not None):
        new = PackedTableLinear(lin.name, src)
    elif not _ggml(src):
        return lin                          # a float32 weight: the reference Linear is the path
    else:
        new = PackedLinear(lin.name, src, act_quant)
    new.hook = lin.hook
    return new


def pack(weights, act_quant: bool = False):
    """Swap every ``Linear`` of ``weights`` for a :class:`PackedLinear` (in place; returns it).

    Without compiled kernels and without ``act_quant`` the float32 reference is kept.
    """
    if backend.kernel("_matvec") is None and not act_quant:
        return weights
    for layer in weights.layers:
        for f in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
            setattr(layer, f, _packed(getattr(layer, f), act_quant))
    weights.output = _packed(weights.output, act_quant)
    return weights
