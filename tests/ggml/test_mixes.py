"""llama-quantize's per-tensor type choice against llama.cpp itself.

Oracles: the golden JSON files (types llama-quantize chose for every SmolLM2-135M tensor, with
and without an imatrix) and the spec's §10.9 size table for Llama-2-7B / Llama-3-8B shapes,
which the spec reports as identical to ``llama-quantize --dry-run``.
"""
from __future__ import annotations

import json

import pytest

from qltest import golden, model_path
from quantlab.errors import FormatError, QuantlabError, ShapeError
from quantlab.formats.ggml.mixes import (FTYPES, allows_quantization, category, choose_types,
                                         fallback, llama_order, model_params, resolve_ftype,
                                         use_more_bits)
from quantlab.io.gguf import GGUFFile, tensor_nbytes


@pytest.fixture(scope="module")
def smollm2():
    g = GGUFFile(model_path())
    return [(t.name, t.shape, t.type_name) for t in g.tensors.values()], model_params(g.metadata)


def _golden(name):
    return json.loads(golden(name).read_text())["mixes"]


@pytest.mark.parametrize("ftype", sorted(_golden("llama-quantize-mixes.json")))
def test_mix_equals_llama_quantize(smollm2, ftype):
    tensors, params = smollm2
    expected = _golden("llama-quantize-mixes.json")[ftype]
    got = choose_types(tensors, ftype, **params)
    bad = {k: (got[k], v) for k, v in expected.items() if got[k] != v}
    assert not bad, f"{ftype}: {len(bad)} tensors differ (ours, llama.cpp): {list(bad.items())[:5]}"
    assert list(got) == list(expected), "tensor order differs from llama-quantize's"


@pytest.mark.parametrize("ftype", sorted(_golden("llama-quantize-mixes-imatrix.json")))
def test_mix_with_imatrix_equals_llama_quantize(smollm2, ftype):
    tensors, params = smollm2
    expected = _golden("llama-quantize-mixes-imatrix.json")[ftype]
    got = choose_types(tensors, ftype, has_imatrix=True, **params)
    bad = {k: (got[k], v) for k, v in expected.items() if got[k] != v}
    assert not bad, f"{ftype}+imatrix: {len(bad)} differ: {list(bad.items())[:5]}"


def _llama_shapes(vocab, n_ff, n_kv):
    """Llama-2-7B / Llama-3-8B tensor list as converted from HF: F16 weights, F32 norms."""
    ts = [("token_embd.weight", (vocab, 4096), "F16"), ("output.weight", (vocab, 4096), "F16"),
          ("output_norm.weight", (4096,), "F32")]
    for i in range(32):
        p = f"blk.{i}."
        ts += [(p + "attn_norm.weight", (4096,), "F32"), (p + "ffn_norm.weight", (4096,), "F32"),
               (p + "attn_q.weight", (4096, 4096), "F16"), (p + "attn_k.weight", (n_kv, 4096), "F16"),
               (p + "attn_v.weight", (n_kv, 4096), "F16"),
               (p + "attn_output.weight", (4096, 4096), "F16"),
               (p + "ffn_gate.weight", (n_ff, 4096), "F16"), (p + "ffn_up.weight", (n_ff, 4096), "F16"),
               (p + "ffn_down.weight", (4096, n_ff), "F16")]
    return ts


# spec §10.9: (ftype, has_imatrix) -> (Llama-2-7B MiB, Llama-3-8B MiB)
SIZES = {("Q2_K", 0): (2414.82, 3024.38), ("Q2_K_S", 1): (2211.38, 2842.88),
         ("Q3_K_S", 0): (2811.02, 3487.27), ("Q3_K_M", 0): (3144.52, 3825.27),
         ("Q3_K_L", 0): (3429.77, 4114.27), ("Q4_0", 0): (3647.87, 4437.80),
         ("Q4_0", 1): (3658.62, 4451.80), ("Q4_1", 0): (4041.68, 4885.12),
         ("Q4_K_S", 0): (3677.37, 4467.80), ("Q4_K_M", 0): (3891.24, 4685.30),
         ("Q5_0", 0): (4435.49, 5332.43), ("Q5_1", 0): (4829.30, 5779.74),
         ("Q5_K_S", 0): (4435.49, 5332.43), ("Q5_K_M", 0): (4560.87, 5459.93),
         ("Q6_K", 0): (5272.34, 6282.97), ("Q8_0", 0): (6828.64, 8137.64),
         ("IQ4_NL", 0): (3669.37, 4481.80), ("IQ4_NL", 1): (3647.87, 4453.80),
         ("IQ4_XS", 0): (3477.84, 4269.15), ("IQ4_XS", 1): (3450.96, 4234.15),
         ("F16", 0): (12853.02, 15317.02), ("BF16", 0): (12853.02, 15317.02)}


@pytest.mark.parametrize("ftype,imatrix", sorted(SIZES))
def test_llama_sizes_match_dry_run_table(ftype, imatrix):
    for model, (n_ff, n_kv, vocab), mib in (("Llama-2-7B", (11008, 4096, 32000), SIZES[ftype, imatrix][0]),
                                             ("Llama-3-8B", (14336, 1024, 128256), SIZES[ftype, imatrix][1])):
        ts = _llama_shapes(vocab, n_ff, n_kv)
        types = choose_types(ts, ftype, n_layer=32, n_head=32, n_head_kv=32 * n_kv // 4096,
                             has_imatrix=bool(imatrix))
        size = sum(tensor_nbytes(types[n], s) for n, s, _ in ts)
        assert f"{size / 2**20:.2f}" == f"{mib:.2f}", f"{model} {ftype}: {size / 2**20:.2f} MiB"


def test_q4_k_m_composition_on_llama2():
    """Spec §10.9: attn_v and ffn_down are Q6_K in 16 layers {0-3, 6, 9, ..., 27, 28-31}."""
    types = choose_types(_llama_shapes(32000, 11008, 4096), "Q4_K_M", n_layer=32, n_head=32,
                         n_head_kv=32)
    six = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}
    for i in range(32):
        want = "Q6_K" if i in six else "Q4_K"
        assert types[f"blk.{i}.attn_v.weight"] == want and types[f"blk.{i}.ffn_down.weight"] == want
        assert types[f"blk.{i}.attn_q.weight"] == "Q4_K"
    assert types["token_embd.weight"] == "Q4_K" and types["output.weight"] == "Q6_K"
    assert types["output_norm.weight"] == "F32"
    assert {i for i in range(32) if use_more_bits(i, 32)} == six


def test_order_layer_number_then_bytes():
    names = ["blk.10.a.weight", "token_embd.weight", "blk.2.b.weight", "blk.2.a.weight",
             "output.weight", "output_norm.weight", "blk.1.z.weight"]
    assert llama_order(names) == ["output.weight", "output_norm.weight", "token_embd.weight",
                                  "blk.1.z.weight", "blk.2.a.weight", "blk.2.b.weight",
                                  "blk.10.a.weight"]


def test_quantizable_and_categories():
    assert not allows_quantization("blk.0.attn_norm.weight", (1, 576))     # norm, even if 2-D
    assert not allows_quantization("blk.0.ffn_gate_inp.weight", (8, 4096))  # MoE router
    assert not allows_quantization("blk.0.attn_q.bias", (576, 576))         # not *weight
    assert not allows_quantization("blk.0.attn_q.weight", (1, 576))         # 1-D once 1s dropped
    assert allows_quantization("blk.0.attn_q.weight", (576, 576))
    assert not allows_quantization("output.weight", (10, 64), leave_output_tensor=True)
    assert category("blk.3.attn_qkv.weight") == "attn_qkv"
    assert category("blk.3.ffn_down_exps.weight") == "ffn_down"
    assert category("per_layer_token_embd.weight") == "token_embd"


def test_attn_qkv_follows_attn_v_rules():
    """The dedicated attn_qkv rule in llama.cpp is unreachable: fused QKV gets attn_v's types."""
    ts = [(f"blk.{i}.attn_qkv.weight", (768, 256)) for i in range(8)] + \
         [(f"blk.{i}.attn_output.weight", (256, 256)) for i in range(8)] + \
         [("output.weight", (100, 256))]
    types = choose_types(ts, "Q3_K_M", n_layer=8)
    assert [types[f"blk.{i}.attn_qkv.weight"] for i in range(8)] == ["Q5_K"] * 2 + ["Q4_K"] * 6


def test_fallbacks():
    assert fallback("Q4_K", "t", 576) == "Q5_0"
    assert fallback("Q6_K", "t", 576) == "Q8_0"
    assert fallback("Q5_K", "t", 576) == "Q5_1"
    assert fallback("Q2_K", "t", 576) == "Q4_0"
    assert fallback("IQ4_XS", "t", 576) == "IQ4_NL"
    assert fallback("Q4_K", "t", 200) == "F16"       # 200 is not even a multiple of 32
    assert fallback("Q4_K", "t", 512) == "Q4_K"
    with pytest.raises(ShapeError, match="row length 200"):
        fallback("Q4_0", "blk.0.x.weight", 200)      # llama.cpp defines no fallback for Q4_0


def test_overrides_and_pure(smollm2):
    tensors, params = smollm2
    pure = choose_types(tensors, "Q4_K_M", pure=True, **params)
    # pure: every 2-D weight gets T (with the shape fallback: 576-long rows -> Q5_0), norms stay
    for name, shape, _ in tensors:
        if len(shape) == 1:
            assert pure[name] == "F32"
        else:
            assert pure[name] == ("Q4_K" if shape[-1] % 256 == 0 else "Q5_0"), name
    ov = choose_types(tensors, "Q4_K_M", token_embedding_type="q4_0", **params)
    assert ov["token_embd.weight"] == "Q4_0"
    # tied embeddings: --output-tensor-type applies to token_embd through the output rule
    ov = choose_types(tensors, "Q4_K_M", output_tensor_type="Q8_0", **params)
    assert ov["token_embd.weight"] == "Q8_0"
    # untied: output.weight gets the override verbatim, token_embd keeps T
    ts = [("output.weight", (64, 512)), ("token_embd.weight", (64, 512))]
    assert choose_types(ts, "Q4_K_M", n_layer=1, output_tensor_type="Q5_K") == \
        {"output.weight": "Q5_K", "token_embd.weight": "Q4_K"}
    assert choose_types(ts, "Q4_K_M", n_layer=1) == {"output.weight": "Q6_K",
                                                     "token_embd.weight": "Q4_K"}


def test_float_ftypes_keep_norms_and_convert_weights(smollm2):
    tensors, params = smollm2
    for ft in ("F32", "F16", "BF16"):
        types = choose_types(tensors, ft, **params)
        assert all(types[n] == (ft if len(s) > 1 else src) for n, s, src in tensors)


def test_ftype_names():
    assert resolve_ftype("q4_k") == "Q4_K_M" and resolve_ftype("Q5_K") == "Q5_K_M"
    assert FTYPES["Q4_K_M"] == (15, "Q4_K") and FTYPES["BF16"] == (32, "BF16")
    with pytest.raises(FormatError, match="unknown llama.cpp file type"):
        resolve_ftype("Q7_X")
    assert issubclass(FormatError, QuantlabError)


def test_moe_rules():
    """n_expert == 8 (Mixtral): attn_v and attn_k -> Q8_0, attn_output -> Q5_K; ffn_down uses
    the layer number from the name (experts are not consecutive)."""
    ts = [(f"blk.{i}.{k}.weight", (4096, 4096)) for i in range(32) for k in ("attn_v", "attn_k",
                                                                              "attn_output")]
    ts += [(f"blk.{i}.ffn_down_exps.weight", (8, 4096, 14336)) for i in (31, 0, 5)]
    types = choose_types(ts, "Q4_K_M", n_layer=32, n_head=32, n_head_kv=8, n_expert=8)
    assert types["blk.0.attn_v.weight"] == types["blk.7.attn_k.weight"] == "Q8_0"
    assert types["blk.7.attn_output.weight"] == "Q5_K"
    assert types["blk.5.ffn_down_exps.weight"] == "Q4_K"      # use_more_bits(5, 32) is false
    assert types["blk.31.ffn_down_exps.weight"] == "Q6_K"
