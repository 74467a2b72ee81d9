"""Hyper-parameters of a Llama-architecture GGUF, read from its metadata (llama2.c's ``Config``).

    cfg = Config.from_gguf(g)      # g: quantlab.io.gguf.GGUFFile
    cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.vocab_size

GGUF key (``<arch>.`` prefix, here ``llama.``)   ->  field (llama2.c name)
    embedding_length                             ->  dim           model width (576 for SmolLM2-135M)
    feed_forward_length                          ->  hidden_dim    SwiGLU width (1536)
    block_count                                  ->  n_layers      (30)
    attention.head_count                         ->  n_heads       query heads (9)
    attention.head_count_kv                      ->  n_kv_heads    key/value heads (3; = n_heads without GQA)
    attention.key_length                         ->  head_dim      (default dim // n_heads = 64)
    context_length                               ->  seq_len       trained context (8192)
    attention.layer_norm_rms_epsilon             ->  norm_eps      RMSNorm epsilon (1e-5)
    rope.freq_base                               ->  rope_theta    (100000; default 10000)
    rope.dimension_count                         ->  n_rot         rotated dims per head (default head_dim)
    rope.scaling.type / .factor                  ->  rope_freq_scale (linear scaling: positions × 1/factor)
    vocab_size (or len(tokenizer.ggml.tokens))   ->  vocab_size    (49152)

Other architectures (``general.architecture`` not in :data:`ARCHITECTURES`) raise
:class:`~quantlab.ModelError`: their forward pass differs (biases, norms, rope layout).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError

__all__ = ["Config", "ARCHITECTURES"]

# architectures whose tensors and forward pass are exactly Llama's (RMSNorm, normal-mode RoPE on
# GGUF-permuted Q/K, GQA, SwiGLU, no biases)
ARCHITECTURES = ("llama",)


@dataclass(frozen=True)
class Config:
    dim: int             # transformer width
    hidden_dim: int      # FFN width
    n_layers: int
    n_heads: int         # query heads
    n_kv_heads: int      # key/value heads (GQA when < n_heads)
    vocab_size: int
    seq_len: int         # trained context length
    head_dim: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    n_rot: int = 0       # rotated dimensions per head (0 -> head_dim)
    rope_freq_scale: float = 1.0
    arch: str = "llama"

    @property
    def kv_dim(self) -> int:
        """Width of K and V: ``n_kv_heads * head_dim`` (192 for SmolLM2-135M)."""
        return self.n_kv_heads * self.head_dim

    @property
    def kv_mul(self) -> int:
        """Query heads sharing one KV head (3 for SmolLM2-135M)."""
        return self.n_heads // self.n_kv_heads

    @staticmethod
    def architecture(g) -> str:
        """``general.architecture`` of GGUF ``g``, refused unless quantlab runs it."""
        arch = g.metadata.get("general.architecture")
        if arch not in ARCHITECTURES:
            raise ModelError(f"{g.path}: architecture {arch!r} is not supported; quantlab's NumPy "
                             f"model runs {', '.join(ARCHITECTURES)} (Llama-style) GGUF files")
        return arch

    @classmethod
    def from_gguf(cls, g) -> "Config":
        md = g.metadata
        arch = cls.architecture(g)

        def get(key, default=None, kind=int):
            v = md.get(f"{arch}.{key}", default)
            if v is None:
                raise ModelError(f"{g.path}: metadata key {arch}.{key} is missing")
            if isinstance(v, list):  # per-layer arrays (some GGUFs): all layers must agree
                if len(set(v)) != 1:
                    raise ModelError(f"{g.path}: {arch}.{key} differs per layer ({v[:4]}…); "
                                     "quantlab supports uniform layers only")
                v = v[0]
            return kind(v)

        dim, n_heads = get("embedding_length"), get("attention.head_count")
        n_kv_heads = get("attention.head_count_kv", n_heads)
        head_dim = get("attention.key_length", dim // n_heads if n_heads else 0)
        vocab = md.get(f"{arch}.vocab_size") or len(md.get("tokenizer.ggml.tokens") or [])
        if not vocab:
            raise ModelError(f"{g.path}: vocabulary size unknown (no {arch}.vocab_size and no "
                             "tokenizer.ggml.tokens)")
        scaling = md.get(f"{arch}.rope.scaling.type", "none")
        if scaling not in ("none", "linear"):
            raise ModelError(f"{g.path}: RoPE scaling {scaling!r} is not supported (none, linear)")
        factor = float(md.get(f"{arch}.rope.scaling.factor", 1.0) or 1.0) if scaling == "linear" else 1.0
        cfg = cls(dim=dim, hidden_dim=get("feed_forward_length"), n_layers=get("block_count"),
                  n_heads=n_heads, n_kv_heads=n_kv_heads, vocab_size=int(vocab),
                  seq_len=get("context_length", 2048), head_dim=head_dim,
                  norm_eps=get("attention.layer_norm_rms_epsilon", 1e-5, float),
                  rope_theta=get("rope.freq_base", 10000.0, float),
                  n_rot=get("rope.dimension_count", head_dim), rope_freq_scale=1.0 / factor, arch=arch)
        cfg.check(str(g.path))
        return cfg

    def check(self, where: str = "config") -> None:
        """Refuse inconsistent hyper-parameters with a clear message."""
        if min(self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads,
               self.head_dim, self.vocab_size) <= 0:
            raise ModelError(f"{where}: hyper-parameters must be positive: {self}")
        if self.n_heads % self.n_kv_heads:
            raise ModelError(f"{where}: {self.n_heads} query heads are not a multiple of "
                             f"{self.n_kv_heads} KV heads (grouped-query attention needs it)")
        if self.n_rot > self.head_dim or self.n_rot % 2:
            raise ModelError(f"{where}: rope.dimension_count {self.n_rot} must be even and "
                             f"<= head_dim {self.head_dim}")
