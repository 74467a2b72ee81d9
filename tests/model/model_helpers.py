"""Shared helpers for the model tests: the embedded SmolLM2 (loaded once) and tiny random Llamas.

Tests import from here: ``from model_helpers import smollm2, tiny_llama, golden``.
"""
from __future__ import annotations

from functools import lru_cache

import gguf
import numpy as np

from quantlab.model.config import Config
from quantlab.model.llama import Llama
from quantlab.model.tokenizer import bytes_to_unicode
from quantlab.model.weights import TransformerWeights


from qltest import golden  # noqa: E402,F401  re-exported


@lru_cache(maxsize=1)
def smollm2():
    """The embedded SmolLM2-135M-Instruct on the float32 reference path (every weight dequantized
    once), shared by all tests.  The packed path is tested against it in tests/kernels."""
    import quantlab as ql
    return ql.load_model(packed=False)


def tiny_config(**kw) -> Config:
    base = dict(dim=32, hidden_dim=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50,
                seq_len=64, head_dim=8, norm_eps=1e-5, rope_theta=10000.0, n_rot=8)
    base.update(kw)
    return Config(**base)


def tiny_tensors(cfg: Config, seed: int = 0, tied: bool = True) -> dict[str, np.ndarray]:
    """Random float32 weights with the shapes a Llama GGUF holds (NumPy order)."""
    rng = np.random.default_rng(seed)
    shapes = TransformerWeights.expected_shapes(cfg)
    if not tied:
        shapes["output.weight"] = (cfg.vocab_size, cfg.dim)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            out[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    return out


def tiny_llama(seed: int = 0, tied: bool = True, **kw) -> Llama:
    cfg = tiny_config(**kw)
    return Llama(cfg, TransformerWeights.from_tensors(cfg, tiny_tensors(cfg, seed, tied)))


def write_gguf(path, arch="llama", cfg=None, tensors=None, tokenizer=True, drop=()):
    cfg = cfg or tiny_config()
    tensors = tiny_tensors(cfg) if tensors is None else tensors
    w = gguf.GGUFWriter(str(path), arch)
    w.add_uint32(f"{arch}.block_count", cfg.n_layers)
    w.add_uint32(f"{arch}.context_length", cfg.seq_len)
    w.add_uint32(f"{arch}.embedding_length", cfg.dim)
    w.add_uint32(f"{arch}.feed_forward_length", cfg.hidden_dim)
    w.add_uint32(f"{arch}.attention.head_count", cfg.n_heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", cfg.n_kv_heads)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.norm_eps)
    w.add_float32(f"{arch}.rope.freq_base", cfg.rope_theta)
    if tokenizer:
        # 50 tokens: 47 byte-characters (printable ASCII 'A'…) plus two merges and one special
        chars = [bytes_to_unicode()[b] for b in [32, *range(65, 65 + 46)]]
        tokens = chars + ["Ġ" + "A", "AB", "<|im_end|>"]
        tokens += [f"<extra_{i}>" for i in range(cfg.vocab_size - len(tokens))]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_types([1] * 49 + [3] * (len(tokens) - 49))
        w.add_token_merges(["Ġ A", "A B"])
        w.add_eos_token_id(49)
    for name, arr in tensors.items():
        if name not in drop:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
