"""The weights of a Llama model and the one matmul abstraction every projection goes through.

``Linear`` holds a weight ``W`` (d, n) as stored — a :class:`~quantlab.QTensor` straight from the
GGUF bytes, or a float32 array — and computes ``y = x @ Wᵀ``.  This reference path dequantizes W
once through quantlab's own format classes and keeps the float32 copy (SmolLM2-135M: ~540 MB);
a fast path can subclass :class:`Linear` and override :meth:`Linear.matmul` with a kernel on the
packed bytes (``source.data``).  ``hook`` (used by :mod:`quantlab.model.imatrix`) sees every
input before the product.

GGUF tensor names and their llama2.c names::

    token_embd.weight      token_embedding (vocab, dim)    output_norm.weight   output_norm (dim,)
    output.weight          output (vocab, dim)             — absent when tied to token_embd
    blk.{l}.attn_norm      attn_norm (dim,)                blk.{l}.ffn_norm     ffn_norm (dim,)
    blk.{l}.attn_q         wq (n_heads*hd, dim)            blk.{l}.ffn_gate     w1 (hidden, dim)
    blk.{l}.attn_k         wk (kv_dim, dim)                blk.{l}.ffn_down     w2 (dim, hidden)
    blk.{l}.attn_v         wv (kv_dim, dim)                blk.{l}.ffn_up       w3 (hidden, dim)
    blk.{l}.attn_output    wo (dim, n_heads*hd)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ModelError
from ..formats.base import QTensor
from .config import Config

__all__ = ["Linear", "LayerWeights", "TransformerWeights", "as_float32"]


def as_float32(w) -> np.ndarray:
    """A weight as a float32 array: QTensors are dequantized through their format."""
    if isinstance(w, QTensor):
        w = w.dequantize()
    return np.ascontiguousarray(w, dtype=np.float32)


class Linear:
    """``y = x @ Wᵀ`` for a weight W (d, n), stored float32 or quantized (QTensor)."""

    def __init__(self, name: str, source):
        self.name = name                 # GGUF tensor name, e.g. "blk.0.attn_q.weight"
        self.source = source             # what was loaded: QTensor or float array
        self._w: np.ndarray | None = None
        self.hook: Callable[[str, np.ndarray], None] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.source.shape)

    @property
    def weight(self) -> np.ndarray:
        """W as float32 (d, n), dequantized on first use and cached."""
        if self._w is None:
            self._w = as_float32(self.source)
        return self._w

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """x (T, n) -> (T, d).  The reference: a float32 BLAS product with the dequantized W."""
        return x @ self.weight.T

    def uses_blas(self, T: int) -> bool:
        """Whether a product with T tokens goes through BLAS (the reference always does)."""
        return True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.hook is not None:
            self.hook(self.name, x)
        return self.matmul(x)

    def __repr__(self) -> str:
        kind = self.source.format.name if isinstance(self.source, QTensor) else "float32"
        return f"Linear({self.name!r}, {self.shape}, {kind})"


@dataclass
class LayerWeights:
    attn_norm: np.ndarray   # (dim,)
    wq: Linear              # (n_heads*hd, dim)
    wk: Linear              # (kv_dim, dim)
    wv: Linear              # (kv_dim, dim)
    wo: Linear              # (dim, n_heads*hd)
    ffn_norm: np.ndarray    # (dim,)
    w1: Linear              # (hidden_dim, dim)  gate
    w2: Linear              # (dim, hidden_dim)  down
    w3: Linear              # (hidden_dim, dim)  up


# llama2.c field -> GGUF name inside blk.{l}.
_LAYER_TENSORS = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
                  "wo": "attn_output", "ffn_norm": "ffn_norm", "w1": "ffn_gate", "w2": "ffn_down",
                  "w3": "ffn_up"}


@dataclass
class TransformerWeights:
    token_embedding: np.ndarray   # (vocab, dim) float32 (rows are gathered, never multiplied)
    layers: list[LayerWeights]
    output_norm: np.ndarray       # (dim,)
    output: Linear                # (vocab, dim); shares token_embd's data when tied
    tied: bool

    def linears(self) -> list[Linear]:
        out = [getattr(L, f) for L in self.layers for f in ("wq", "wk", "wv", "wo", "w1", "w3", "w2")]
        return out + [self.output]

    @staticmethod
    def expected_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
        """Every tensor a Llama GGUF must hold, with its NumPy shape (output.weight optional)."""
        hd = cfg.head_dim
        per_layer = {"attn_norm": (cfg.dim,), "attn_q": (cfg.n_heads * hd, cfg.dim),
                     "attn_k": (cfg.kv_dim, cfg.dim), "attn_v": (cfg.kv_dim, cfg.dim),
                     "attn_output": (cfg.dim, cfg.n_heads * hd), "ffn_norm": (cfg.dim,),
                     "ffn_gate": (cfg.hidden_dim, cfg.dim), "ffn_down": (cfg.dim, cfg.hidden_dim),
                     "ffn_up": (cfg.hidden_dim, cfg.dim)}
        shapes = {"token_embd.weight": (cfg.vocab_size, cfg.dim), "output_norm.weight": (cfg.dim,)}
        for l in range(cfg.n_layers):
            shapes.update({f"blk.{l}.{t}.weight": s for t, s in per_layer.items()})
        return shapes

    @classmethod
    def from_tensors(cls, cfg: Config, tensors: dict, where: str = "model") -> "TransformerWeights":
        """Build from ``{gguf name: QTensor or float array}`` (extra names are ignored).

        Shapes are checked against ``cfg``; a missing tensor raises :class:`ModelError`.
        """
        shapes = cls.expected_shapes(cfg)
        if "output.weight" in tensors:
            shapes["output.weight"] = (cfg.vocab_size, cfg.dim)
        for name, shape in shapes.items():
            if name not in tensors:
                raise ModelError(f"{where}: tensor {name!r} is missing (a Llama GGUF with "
                                 f"{cfg.n_layers} layers needs {len(shapes)} tensors)")
            if tuple(tensors[name].shape) != shape:
                raise ModelError(f"{where}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                                 f"the config implies {shape}")
        layers = []
        for l in range(cfg.n_layers):
            fields = {}
            for field, t in _LAYER_TENSORS.items():
                name = f"blk.{l}.{t}.weight"
                fields[field] = (as_float32(tensors[name]) if t.endswith("norm")
                                 else Linear(name, tensors[name]))
            layers.append(LayerWeights(**fields))
        from .packed import embedding_table          # packed rows, decoded on lookup
        embedding = embedding_table(tensors["token_embd.weight"])
        tied = "output.weight" not in tensors
        output = Linear("output.weight", embedding if tied else tensors["output.weight"])
        return cls(embedding, layers, as_float32(tensors["output_norm.weight"]), output, tied)

    @classmethod
    def from_gguf(cls, g, cfg: Config) -> "TransformerWeights":
        """The weights of a GGUF file as QTensors over its memory-mapped bytes."""
        names = [n for n in g.tensors if n in cls.expected_shapes(cfg) or n == "output.weight"]
        return cls.from_tensors(cfg, {n: g.qtensor(n) for n in names}, str(g.path))
