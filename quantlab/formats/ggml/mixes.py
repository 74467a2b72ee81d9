"""llama-quantize's per-tensor type choice (spec ``ggml-quants.md`` §10, ``src/llama-quant.cpp``).

A llama.cpp *file type* ("ftype", e.g. Q4_K_M) is not one block format but a recipe: a
default type ``T`` plus rules that give the tensors that hurt most when quantized more bits
(``attn_v``, ``ffn_down``, the output matrix) and a shape fallback for rows that do not fill
whole 256-element super-blocks.

    types = choose_types([(name, shape, src_type), ...], "Q4_K_M", **model_params(metadata))
    types["blk.0.ffn_down.weight"]     # -> "Q6_K"

The steps for every tensor, in llama-quantize's order (:func:`llama_order`):

1. not quantizable (1-D, not ``*weight``, norms, routers, ...)  -> keeps its source type
2. ``--token-embedding-type`` / ``--output-tensor-type``          -> that type, no fallback
3. F32 / F16 / BF16 ftypes                                        -> that type
4. unless ``--pure``: the mix rule of the ftype (§10.5)           -> Q6_K for attn_v in some layers, ...
5. shape fallback (§10.6): row length not a multiple of the block -> Q4_K→Q5_0, Q6_K→Q8_0, ..., F16

Counters make the rules depend on position: ``i_v`` counts attn_v-like tensors already
seen and ``i_ffn`` ffn_down tensors, so the same name gets different types in different
layers (``use_more_bits``: the first and last eighth of the layers and every third in between).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import FormatError, ShapeError

__all__ = ["FTYPES", "ALIASES", "resolve_ftype", "choose_types", "model_params", "llama_order",
           "allows_quantization", "category", "use_more_bits", "fallback", "requires_imatrix",
           "block_size"]

# ftype name -> (number stored in general.file_type, default tensor type T)   (§10.1)
FTYPES: dict[str, tuple[int, str]] = {
    "F32": (0, "F32"), "F16": (1, "F16"), "BF16": (32, "BF16"),
    "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "Q8_0": (7, "Q8_0"),
    "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"),
    "Q2_K": (10, "Q2_K"), "Q2_K_S": (21, "Q2_K"),
    "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"),
    "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"), "Q6_K": (18, "Q6_K"),
    "IQ4_NL": (25, "IQ4_NL"), "IQ4_XS": (30, "IQ4_XS"),
    "TQ1_0": (36, "TQ1_0"), "TQ2_0": (37, "TQ2_0"), "MXFP4_MOE": (38, "MXFP4"),
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}   # as llama-quantize's CLI

_FLOAT = {"F32", "F16", "BF16"}


def resolve_ftype(name: str) -> str:
    """Canonical ftype name for a CLI spelling ("q4_k" -> "Q4_K_M")."""
    key = str(name).upper()
    key = ALIASES.get(key, key)
    if key not in FTYPES:
        raise FormatError(f"unknown llama.cpp file type {name!r}; known: "
                          f"{', '.join(list(FTYPES) + list(ALIASES))}")
    return key


def block_size(type_name: str) -> int:
    """Elements per block of a ggml type (1 for F32/F16/BF16), from the gguf package's table."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]][0]
    except KeyError:
        raise FormatError(f"unknown ggml type {type_name!r}") from None


# ---------------------------------------------------------------------------- order
def _layer(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def llama_order(names) -> list[str]:
    """llama-quantize's tensor order: by ``blk.<N>.`` number (none = −1, first), then by name."""
    return sorted(names, key=lambda n: (_layer(n), n.encode("utf-8")))


# ---------------------------------------------------------------------------- §10.2, §10.3
_NOT_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
) + tuple(f"time_mix_{k}.weight" for k in (
    "first", "w0", "w1", "w2", "v0", "v1", "v2", "a0", "a1", "a2", "g1", "g2",
    "decay_w1", "decay_w2", "lerp_fused"))
_POS_TOKEN_TYPES = ("position_embd.weight", "token_types.weight")   # BERT-style, not quantized


def _n_dims(shape) -> int:
    """``ggml_n_dims``: dimensions not counting trailing 1s of ne (= leading 1s of the shape)."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return len(dims)


def allows_quantization(name: str, shape, *, leave_output_tensor: bool = False) -> bool:
    """Is this tensor converted at all (§10.2)?  Otherwise it keeps its source type."""
    return (_n_dims(shape) >= 2 and name.endswith("weight")
            and not any(s in name for s in _NOT_QUANTIZED)
            and name not in _POS_TOKEN_TYPES
            and not (leave_output_tensor and name == "output.weight"))


def category(name: str) -> str:
    """The tensor's category (§10.3, first match wins)."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                     ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


_V_LIKE = ("attn_v", "attn_qkv", "attn_kv_b")     # all three follow the attn_v rules


def use_more_bits(i: int, n: int) -> bool:
    """First and last eighth of the layers, and every third layer in between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


# ---------------------------------------------------------------------------- §10.6
_FALLBACK = {"IQ4_XS": "IQ4_NL", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
             "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def fallback(type_name: str, name: str, row: int) -> str:
    """The type actually used for rows of ``row`` elements (§10.6)."""
    if row % block_size(type_name) == 0:
        return type_name
    if type_name not in _FALLBACK:
        raise ShapeError(f"tensor {name!r}: row length {row} is not a multiple of {type_name}'s "
                         f"block size {block_size(type_name)} and llama-quantize defines no "
                         "fallback for it")
    alt = _FALLBACK[type_name]
    # still incompatible (row not a multiple of 32): llama.cpp stores the tensor in F16
    return alt if row % block_size(alt) == 0 else "F16"


def requires_imatrix(name: str, type_name: str, ftype: str) -> bool:
    """Q2_K tensors of a Q2_K_S file (except token_embd/output) need an importance matrix."""
    return (type_name == "Q2_K" and ftype == "Q2_K_S"
            and category(name) not in ("token_embd", "output"))


# ---------------------------------------------------------------------------- §10.5
@dataclass
class _State:
    n_v: int            # V-like tensors in the model
    tied: bool          # no output.weight: token_embd doubles as the output matrix
    i_v: int = 0        # V-like tensors already handled
    i_ffn: int = 0      # ffn_down tensors already handled


def _mix_rule(name, shape, cat, T, ftype, st: _State, m: dict, has_imatrix: bool,
              output_tensor_type: str | None) -> str:
    """The ftype's recipe for one tensor (llama.cpp ``llama_tensor_get_type_impl``)."""
    falcon = m["arch"] == "falcon"
    n_gqa = m["n_head"] // m["n_head_kv"] if m["n_head_kv"] else 0
    n_expert, n = m["n_expert"], m["n_layer"]
    is_70b = m["arch"] == "llama" and n == 80 and m["n_head"] != m["n_head_kv"]

    if cat == "output" or (st.tied and cat == "token_embd"):
        # the output matrix (or the tied embedding that serves as it): 6 bits unless Q8_0
        if output_tensor_type is not None:
            return output_tensor_type
        if ftype == "MXFP4_MOE" or falcon or shape[-1] % block_size(T):
            return "Q8_0"
        return T if T == "Q8_0" else "Q6_K"
    if ftype == "MXFP4_MOE":                 # expert tensors (ne[2] > 1) MXFP4, the rest Q8_0
        return "MXFP4" if len(shape) >= 3 and shape[-3] > 1 else "Q8_0"
    if cat == "token_embd":
        return "Q4_K" if ftype in ("TQ1_0", "TQ2_0") else T
    if cat in _V_LIKE:
        i = st.i_v
        if ftype == "Q2_K":
            T = "Q4_K" if n_gqa >= 4 else "Q3_K"
        elif ftype == "Q2_K_S" and n_gqa >= 4:
            T = "Q4_K"
        elif ftype == "Q3_K_M":
            T = "Q5_K" if i < 2 else "Q4_K"
        elif ftype == "Q3_K_L":
            T = "Q5_K"
        elif ftype in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
            T = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, st.n_v):
            T = "Q6_K"
        elif ftype == "Q4_K_S" and i < 4:
            T = "Q5_K"
        if is_70b and T in ("Q3_K", "Q4_K"):
            T = "Q5_K"           # 70B: attn_v is 8x smaller than attn_q, extra bits are cheap
        if n_expert == 8:
            T = "Q8_0"
        st.i_v += 1
        return T
    if cat == "attn_k":
        return "Q8_0" if n_expert == 8 else T
    if cat == "ffn_down":
        i = _layer(name) if n_expert > 1 else st.i_ffn
        if ftype == "Q2_K":
            T = "Q3_K"
        elif ftype == "Q2_K_S":
            T = "Q4_K" if i < n // 8 else T
        elif ftype == "Q3_K_M":
            T = ("Q5_K" if i < n // 16 else
                 "Q4_K" if not falcon or use_more_bits(i, n) else "Q3_K")
        elif ftype == "Q3_K_L":
            T = "Q4_K" if falcon else "Q5_K"
        elif ftype == "Q4_K_M":
            if falcon:
                T = "Q6_K" if i < n // 16 else ("Q5_K" if use_more_bits(i, n) else "Q4_K")
            elif use_more_bits(i, n):
                T = "Q6_K"
        elif i < n // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
            T = "Q5_K"
        elif ftype == "Q5_K_M" and use_more_bits(i, n):
            T = "Q6_K"
        elif ftype == "Q4_K_S" and not falcon and i < n // 8:
            T = "Q5_K"
        elif ftype in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
            # guard the first ffn_down layers, only with an imatrix (Q4_1/Q5_1 misbehave without)
            T = "Q4_1" if ftype == "Q4_0" else "Q5_1"
        st.i_ffn += 1
        return T
    if cat == "attn_output":
        if not falcon:
            if n_expert == 8:
                if ftype in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M", "IQ4_NL", "IQ4_XS"):
                    T = "Q5_K"
            else:
                T = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ftype, T)
        elif ftype == "Q3_K_L":
            T = "Q4_K"
        return T
    return T                # attn_q, ffn_gate, ffn_up, other


# ---------------------------------------------------------------------------- driver
def model_params(metadata: dict) -> dict:
    """The hyper-parameters the rules read, from GGUF metadata (``<arch>.block_count``, ...)."""
    arch = metadata.get("general.architecture", "llama")

    def first(v, default):
        if isinstance(v, list):          # per-layer arrays (e.g. OpenELM): layer 0 counts
            return int(v[0]) if v else default
        return int(v) if v is not None else default

    n_head = first(metadata.get(f"{arch}.attention.head_count"), 1)
    return {"arch": arch,
            "n_layer": first(metadata.get(f"{arch}.block_count"), 0),
            "n_head": n_head,
            "n_head_kv": first(metadata.get(f"{arch}.attention.head_count_kv"), n_head),
            "n_expert": first(metadata.get(f"{arch}.expert_count"), 0)}


def choose_types(tensors, ftype: str, *, n_layer: int, n_head: int = 1, n_head_kv: int | None = None,
                 n_expert: int = 0, arch: str = "llama", has_imatrix: bool = False,
                 pure: bool = False, output_tensor_type: str | None = None,
                 token_embedding_type: str | None = None,
                 leave_output_tensor: bool = False) -> dict[str, str]:
    """The ggml type llama-quantize gives every tensor, in llama-quantize's order.

    ``tensors``: ``(name, shape)`` or ``(name, shape, source type)`` with NumPy shapes (last
    axis = row); the source type (default F32) is what unquantizable tensors keep.
    ``n_layer``/``n_head``/``n_head_kv``/``n_expert``/``arch``: see :func:`model_params`.
    """
    ftype = resolve_ftype(ftype)
    T0 = FTYPES[ftype][1]
    m = {"arch": arch, "n_layer": int(n_layer), "n_head": int(n_head),
         "n_head_kv": int(n_head if n_head_kv is None else n_head_kv), "n_expert": int(n_expert)}
    src, shapes = {}, {}
    for t in tensors:
        name, shape = t[0], tuple(int(d) for d in t[1])
        src[name], shapes[name] = (t[2] if len(t) > 2 else "F32"), shape
    names = llama_order(src)
    st = _State(n_v=sum(category(n) in _V_LIKE for n in names),
                tied="output.weight" not in src)
    out: dict[str, str] = {}
    for name in names:
        shape, cat = shapes[name], category(name)
        if not allows_quantization(name, shape, leave_output_tensor=leave_output_tensor):
            out[name] = src[name]
        elif token_embedding_type is not None and cat == "token_embd":
            out[name] = token_embedding_type.upper()
        elif output_tensor_type is not None and cat == "output":
            out[name] = output_tensor_type.upper()
        elif T0 in _FLOAT:
            out[name] = T0
        else:
            T = T0 if pure else _mix_rule(name, shape, cat, T0, ftype, st, m, has_imatrix,
                                          output_tensor_type and output_tensor_type.upper())
            out[name] = fallback(T, name, shape[-1])
    return out
