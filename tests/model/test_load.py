"""Loading GGUF files: SmolLM2's hyper-parameters, a tiny Llama GGUF written with gguf.GGUFWriter,
and clear ModelErrors for other architectures, missing tokenizer metadata or missing tensors."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

import quantlab as ql
from quantlab.io.gguf import GGUFFile
from quantlab.model import Config, default_model_path, load_model

from model_helpers import tiny_config, tiny_llama, tiny_tensors, write_gguf


def test_smollm2_config_from_metadata():
    g = GGUFFile(default_model_path())
    cfg = Config.from_gguf(g)
    r = gguf.GGUFReader(default_model_path())            # the gguf package as the oracle

    def field(key):
        return r.fields[key].contents()
    assert (cfg.dim, cfg.hidden_dim, cfg.n_layers) == (field("llama.embedding_length"),
                                                       field("llama.feed_forward_length"),
                                                       field("llama.block_count")) == (576, 1536, 30)
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.kv_mul, cfg.kv_dim) == (9, 3, 64, 3, 192)
    assert cfg.vocab_size == len(field("tokenizer.ggml.tokens")) == 49152
    assert cfg.rope_theta == 100000.0 and cfg.norm_eps == pytest.approx(1e-5) and cfg.n_rot == 64
    assert cfg.seq_len == 8192


def test_tiny_llama_gguf_runs(tmp_path):
    cfg = tiny_config()
    tensors = tiny_tensors(cfg, seed=3)
    path = write_gguf(tmp_path / "tiny.gguf", cfg=cfg, tensors=tensors)
    m = load_model(path, packed=False)                    # float32 weights, as built in memory
    assert m.config.norm_eps == pytest.approx(cfg.norm_eps)    # stored as float32
    assert m.config == Config(**{**cfg.__dict__, "norm_eps": m.config.norm_eps})
    ids = m.tokenizer.encode("AB A<|im_end|>")   # "AB", " A" (ĠA), special
    assert ids == [48, 47, 49] and m.tokenizer.decode(ids) == "AB A<|im_end|>"
    ref = tiny_llama(seed=3)                              # same weights, built in memory
    np.testing.assert_array_equal(m.logits(ids), ref.forward(np.array(ids), 0, ref.new_cache(8)))
    text = "".join(m.generate("AB", n=5))
    assert text == "".join(m.generate("AB", n=5))        # greedy: deterministic


def test_other_architecture_is_refused(tmp_path):
    with pytest.raises(ql.ModelError, match="architecture 'gpt2' is not supported"):
        load_model(write_gguf(tmp_path / "gpt2.gguf", arch="gpt2"))


def test_missing_tokenizer_is_refused(tmp_path):
    with pytest.raises(ql.ModelError, match="no tokenizer metadata"):
        load_model(write_gguf(tmp_path / "notok.gguf", tokenizer=False))


def test_missing_tensor_is_refused(tmp_path):
    with pytest.raises(ql.ModelError, match="blk.1.ffn_down.weight"):
        load_model(write_gguf(tmp_path / "short.gguf", drop=("blk.1.ffn_down.weight",)))


def test_not_a_gguf_is_refused(tmp_path):
    p = tmp_path / "junk.gguf"
    p.write_bytes(b"not a gguf at all")
    with pytest.raises(ql.QuantlabError):
        load_model(p)
    with pytest.raises(ql.QuantlabError):
        load_model(tmp_path / "missing.gguf")
