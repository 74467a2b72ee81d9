"""The tensor-by-tensor quantize driver and the ``quantize`` / ``info`` commands.

Oracles: gguf-py (``gguf.quants.dequantize`` of the shipped model's Q4_1/Q8_0 bytes, its
``quantize`` for Q4_0, its reader for our outputs), the golden llama-quantize mixes, and
quantlab's registered block formats for the bytes of each converted tensor (the driver must
only plumb: decode, pick the type, encode, stream).

The F32 model (~513 MiB) is written once per module; tests that quantize use small files
holding a few of its tensors, built with the GGUF writer.
"""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest

import quantlab as ql
from quantlab.formats.ggml import by_type
from qltest import golden, model_path, sha256_of as sha
from quantlab.cli import main
from quantlab.errors import FormatError, GGUFError, InputError, ShapeError
from quantlab.formats.ggml.mixes import choose_types, llama_order, model_params
from quantlab.io.gguf import GGUFFile, GGUFValue, ValueType
from quantlab.io.gguf_write import TensorSpec, write_gguf
from quantlab.io.imatrix import load_imatrix, save_imatrix
from quantlab.io.quantize_file import quantize_file

QT = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def f32(tmp_path_factory):
    """The shipped Q4_1 model decoded to F32 (``quantlab quantize IN OUT F32``), plus its report."""
    src = model_path()
    before = (sha(src), src.stat().st_mtime_ns)
    out = tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf"
    report = quantize_file(src, out, "F32", progress=False)
    assert (sha(src), src.stat().st_mtime_ns) == before          # input untouched
    return out, report


def subset(src: Path, dst: Path, names) -> Path:
    """A GGUF with the metadata of ``src`` minus the tokenizer (slow for gguf-py to parse)
    and only the named tensors (bytes copied)."""
    g = GGUFFile(src)
    ts = [g.tensors[n] for n in names]
    kv = {k: v for k, v in g.kv.items() if not k.startswith("tokenizer.")}
    write_gguf(dst, kv, [TensorSpec(t.name, t.type_name, t.shape) for t in ts],
               [t.data for t in ts])
    return dst


LAYER0 = ["output_norm.weight"] + [f"blk.0.{k}.weight" for k in (
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
    "ffn_norm")]


# ---------------------------------------------------------------------------- F32 decode
def test_f32_decode_matches_gguf_py(f32):
    out, report = f32
    src, g = GGUFFile(model_path()), GGUFFile(out)
    assert list(g.tensors) == llama_order(src.tensors)
    assert all(t.type_name == "F32" for t in g.tensors.values())
    assert report.ftype == "F32" and report.file_type == 0
    assert {r.action for r in report.records if len(r.shape) == 1} == {"copy"}
    for name in ("blk.0.attn_q.weight", "blk.29.ffn_down.weight", "blk.7.attn_v.weight"):
        ref = gguf.quants.dequantize(src.tensors[name].data.reshape(src.tensors[name].shape[0], -1),
                                     QT.Q4_1)
        assert np.array_equal(g.tensors[name].data.view(np.float32).reshape(ref.shape), ref), name
    emb = src.tensors["token_embd.weight"]                           # Q8_0 in the shipped file
    ref = gguf.quants.dequantize(emb.data.reshape(emb.shape[0], -1)[:300], QT.Q8_0)
    assert np.array_equal(g.tensors["token_embd.weight"].data.view(np.float32)[:ref.size],
                          ref.reshape(-1))
    # metadata: copied in order, then quantization_version and file_type re-appended last
    keys = [k for k in src.kv if k not in ("general.quantization_version", "general.file_type")]
    assert list(g.kv) == keys + ["general.quantization_version", "general.file_type"]
    assert g.kv["general.file_type"] == GGUFValue(ValueType.UINT32, 0)
    assert g.kv["general.quantization_version"] == GGUFValue(ValueType.UINT32, 2)
    assert report.bytes_out == sum(t.nbytes for t in g.tensors.values())
    assert report.n_elements == sum(t.n_elements for t in src.tensors.values())


@pytest.mark.parametrize("imatrix", [False, True])
def test_dry_run_on_f32_model_chooses_llama_quantize_mixes(f32, imatrix):
    out, _ = f32
    name = "llama-quantize-mixes-imatrix.json" if imatrix else "llama-quantize-mixes.json"
    mixes = json.loads(golden(name).read_text())["mixes"]
    # every mix is checked in tests/ggml/test_mixes.py; here the driver's plumbing, on a few
    for ftype in (["Q4_0", "IQ4_XS"] if imatrix else ["Q4_K_M", "IQ4_XS", "Q2_K", "BF16"]):
        expected = mixes[ftype]
        report = quantize_file(out, out.parent / "never.gguf", ftype, dry_run=True,
                               imatrix=golden("imatrix-smollm2-pydoc.gguf") if imatrix else None)
        assert {r.name: r.type_out for r in report.records} == expected, ftype
        assert [r.name for r in report.records] == list(expected)
    assert not (out.parent / "never.gguf").exists()


# ---------------------------------------------------------------------------- quantize
def test_q4_0_pure_equals_format_and_gguf_py(f32, tmp_path):
    part = subset(f32[0], tmp_path / "part.gguf", LAYER0)
    out = tmp_path / "q4_0.gguf"
    report = quantize_file(part, out, "Q4_0", pure=True, progress=False)
    src, g, ref = GGUFFile(part), GGUFFile(out), gguf.GGUFReader(out)
    ref_t = {t.name: t for t in ref.tensors}
    assert g.kv["general.file_type"].value == 2
    for r in report.records:
        t = g.tensors[r.name]
        assert t.type_name == r.type_out and t.nbytes == r.bytes_out
        x = src.tensors[r.name].data.view(np.float32).reshape(r.shape)
        if len(r.shape) == 1:
            assert r.type_out == "F32" and np.array_equal(t.data.view(np.float32), x)
            continue
        assert r.type_out == "Q4_0"
        assert np.array_equal(t.data.reshape(r.shape[0], -1), ql.quantize(x, "q4_0").data)
        if r.name not in ("blk.0.attn_k.weight", "blk.0.ffn_down.weight"):
            continue                                  # the independent oracles on two tensors
        assert np.array_equal(t.data.reshape(r.shape[0], -1), gguf.quants.quantize(x, QT.Q4_0))
        ours = g.dequantize(r.name)
        theirs = gguf.quants.dequantize(np.asarray(ref_t[r.name].data), QT.Q4_0)
        assert np.array_equal(ours, theirs.reshape(ours.shape)), r.name


def test_q4_k_m_mix_bytes_follow_the_chosen_formats(f32, tmp_path):
    part = subset(f32[0], tmp_path / "part.gguf", LAYER0)
    out = tmp_path / "q4km.gguf"
    report = quantize_file(part, out, "Q4_K_M", progress=False)
    src, g = GGUFFile(part), GGUFFile(out)
    assert {r.name: r.type_out for r in report.records} == choose_types(
        [(t.name, t.shape, t.type_name) for t in src.tensors.values()], "Q4_K_M",
        **model_params(src.metadata))
    types = {r.type_out for r in report.records}
    assert {"Q6_K", "Q8_0", "Q5_0"} <= types                  # attn_v/ffn_down bumps, fallbacks
    for r in report.records:
        if r.action == "quantize":
            x = src.tensors[r.name].data.view(np.float32).reshape(r.shape)
            want = by_type(r.type_out).quantize(x).data
            assert np.array_equal(g.tensors[r.name].data.reshape(want.shape), want), r.name
    assert gguf.GGUFReader(out).tensors[0].name == "output_norm.weight"


def test_imatrix_changes_q4_0_mix_and_is_used(f32, tmp_path):
    part = subset(f32[0], tmp_path / "part.gguf", LAYER0)
    out = tmp_path / "q4_0-im.gguf"
    im_path = golden("imatrix-smollm2-pydoc.gguf")
    report = quantize_file(part, out, "Q4_0", imatrix=im_path, progress=False)
    imp, src, g = load_imatrix(im_path), GGUFFile(part), GGUFFile(out)
    rec = {r.name: r for r in report.records}
    assert rec["blk.0.ffn_down.weight"].type_out == "Q4_1"       # first eighth of ffn_down
    for name in ("blk.0.ffn_down.weight", "blk.0.attn_q.weight"):
        assert rec[name].imatrix
        x = src.tensors[name].data.view(np.float32).reshape(rec[name].shape)
        want = by_type(rec[name].type_out).quantize(x, imatrix=imp[name]).data
        assert np.array_equal(g.tensors[name].data.reshape(want.shape), want), name
    kv = g.kv
    assert kv["quantize.imatrix.file"] == GGUFValue(ValueType.STRING, str(im_path)[:127])
    assert kv["quantize.imatrix.entries_count"] == GGUFValue(ValueType.UINT32, 210)
    assert kv["quantize.imatrix.chunks_count"] == GGUFValue(ValueType.UINT32, 10)
    assert kv["quantize.imatrix.dataset"].value.startswith("pydoc_data.topics")
    assert list(kv)[-6:-4] == ["general.quantization_version", "general.file_type"]


def test_same_type_is_copied_and_requantize_needs_permission(tmp_path):
    part = subset(model_path(), tmp_path / "q41.gguf",
                  ["token_embd.weight", "blk.0.attn_k.weight", "blk.0.attn_norm.weight"])
    out = tmp_path / "q8.gguf"
    with pytest.raises(InputError, match=r"blk.0.attn_k.weight.*already quantized.*--allow-requantize"):
        quantize_file(part, out, "Q8_0", progress=False)
    assert not out.exists()
    report = quantize_file(part, out, "Q8_0", allow_requantize=True, progress=False)
    src, g = GGUFFile(part), GGUFFile(out)
    assert {r.name: r.action for r in report.records} == {
        "token_embd.weight": "copy", "blk.0.attn_k.weight": "quantize",
        "blk.0.attn_norm.weight": "copy"}
    assert np.array_equal(g.tensors["token_embd.weight"].data, src.tensors["token_embd.weight"].data)
    x = src.dequantize("blk.0.attn_k.weight")
    assert np.array_equal(g.tensors["blk.0.attn_k.weight"].data.reshape(192, -1),
                          ql.quantize(x, "q8_0").data)


def test_streaming_keeps_memory_small(f32, tmp_path):
    """Peak traced memory stays far below the F32 input and the output (nothing held whole)."""
    names = LAYER0 + [n.replace("blk.0.", "blk.1.") for n in LAYER0[1:]]
    part = subset(f32[0], tmp_path / "part.gguf", names)
    tracemalloc.start()
    try:
        report = quantize_file(part, tmp_path / "q8.gguf", "Q8_0", progress=False,
                               chunk_elements=1 << 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.bytes_out > 7_000_000 and report.bytes_in > 25_000_000
    assert peak < 3_000_000, f"peak {peak} bytes"


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_and_leave_no_output(f32, tmp_path):
    part = subset(f32[0], tmp_path / "part.gguf", LAYER0)
    out = tmp_path / "out.gguf"
    out.write_bytes(b"keep me")
    before = sha(out)
    wrong_len = save_imatrix(tmp_path / "wrong.gguf", {"blk.0.attn_q.weight": (np.ones(100), 5)})
    other = save_imatrix(tmp_path / "other.gguf", {"layers.0.q_proj": (np.ones(576), 5)})
    q2ks = tmp_path / "q2ks.gguf"            # a 256-wide tensor gets Q2_K in a Q2_K_S file
    write_gguf(q2ks, {"general.architecture": "llama", "llama.block_count": 1},
               [TensorSpec("blk.0.ffn_gate.weight", "F32", (4, 256))], [np.ones(1024, np.float32)])
    odd = tmp_path / "odd.gguf"              # rows of 100: no 32-element type can hold them
    write_gguf(odd, {"general.architecture": "llama"},
               [TensorSpec("blk.0.attn_q.weight", "F32", (2, 100))], [np.ones(200, np.float32)])
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(part.read_bytes()[:-1000])
    cases = [
        (dict(src=corrupt, type_name="Q8_0"), GGUFError, "corrupt.gguf.*truncated"),
        (dict(type_name="Q4_0", imatrix=wrong_len), ShapeError,
         r"blk.0.attn_q.weight.*imatrix entry has 100 values, the tensor needs 576"),
        (dict(type_name="Q4_0", imatrix=other), InputError, "another model"),
        (dict(type_name="Q9_9"), FormatError, "unknown TYPE 'Q9_9'"),
        (dict(type_name="Q4_K"), None, None),                    # alias: fine (checked below)
        (dict(type_name="Q8_K"), FormatError, "no llama.cpp file type|unknown TYPE"),
        (dict(type_name="MXFP4"), FormatError, "use --pure"),
        (dict(type_name="Q4_K_M", token_embedding_type="ZZZ"), FormatError, "not supported"),
        (dict(type_name="Q4_0", pure=True, output_tensor_type="Q4_K"), None, None),
        (dict(src=q2ks, type_name="Q2_K_S"), InputError,
         r"blk.0.ffn_gate.weight.*needs an importance matrix"),
        (dict(type_name="Q8_0", dst=part), GGUFError, "is the input file"),
        (dict(src=odd, type_name="Q4_0"), ShapeError,
         r"odd.gguf: tensor 'blk.0.attn_q.weight': row length 100 is not a multiple of Q4_0"),
    ]
    for kw, exc, match in cases:
        src, dst = kw.pop("src", part), kw.pop("dst", out)
        if exc is None:
            quantize_file(src, tmp_path / "ok.gguf", dry_run=True, **kw)
            continue
        with pytest.raises(exc, match=match):
            quantize_file(src, dst, progress=False, **kw)
        assert sha(out) == before, kw
    # a per-tensor override the row length cannot hold: 576 is not a multiple of 256
    big = subset(model_path(), tmp_path / "emb.gguf", ["token_embd.weight"])
    with pytest.raises(ShapeError, match=r"token_embd.weight.*576 does not fit Q4_K"):
        quantize_file(big, out, "Q8_0", token_embedding_type="Q4_K", allow_requantize=True)
    assert sha(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------------- CLI
def test_cli_quantize_and_info(f32, tmp_path, capsys):
    part = subset(f32[0], tmp_path / "part.gguf", LAYER0)
    out = tmp_path / "cli.gguf"
    assert main(["quantize", str(part), str(out), "q5_0", "--pure", "-q"]) == 0
    text = capsys.readouterr().out
    assert "quant size" in text and "Q5_0 (file type 8)" in text
    assert {t.type_name for t in GGUFFile(out).tensors.values()} == {"Q5_0", "F32"}
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "blk.0.ffn_down.weight" in text and "Q5_0" in text and "total (10 tensors)" in text
    from quantlab.cli.info import info
    d = info(out)
    rec = {r["name"]: r for r in d["tensors"]}
    assert rec["blk.0.ffn_down.weight"]["shape"] == (576, 1536)
    assert rec["blk.0.ffn_down.weight"]["bpw"] == 5.5
    assert d["total"]["bytes"] == sum(r["bytes"] for r in d["tensors"])
    assert d["metadata"]["general.file_type"] == 8
    assert main(["quantize", str(part), str(out), "Q4_K_M", "--dry-run", "-q"]) == 0
    assert "Q6_K" in capsys.readouterr().out
    assert main(["quantize", str(part), str(part), "Q8_0", "-q"]) == 2
    assert "quantlab: error:" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.gguf")]) == 2


# ---------------------------------------------------------------------------- every type
def _tiny_model(path: Path, rng) -> Path:
    """A 2-layer llama-shaped F32 model with 256-wide rows (no fallbacks), untied output."""
    shapes = {"token_embd.weight": (64, 256), "output.weight": (64, 256), "output_norm.weight": (256,)}
    for i in range(2):
        shapes.update({f"blk.{i}.attn_norm.weight": (256,), f"blk.{i}.attn_q.weight": (256, 256),
                       f"blk.{i}.attn_k.weight": (64, 256), f"blk.{i}.attn_v.weight": (64, 256),
                       f"blk.{i}.attn_output.weight": (256, 256), f"blk.{i}.ffn_norm.weight": (256,),
                       f"blk.{i}.ffn_gate.weight": (512, 256), f"blk.{i}.ffn_up.weight": (512, 256),
                       f"blk.{i}.ffn_down.weight": (256, 512)})
    md = {"general.architecture": "llama", "llama.block_count": GGUFValue(ValueType.UINT32, 2),
          "llama.attention.head_count": GGUFValue(ValueType.UINT32, 4),
          "llama.attention.head_count_kv": GGUFValue(ValueType.UINT32, 1)}
    write_gguf(path, md, [TensorSpec(n, "F32", s) for n, s in shapes.items()],
               [(rng.standard_normal(s) * 0.02).astype(np.float32) for s in shapes.values()])
    return path


@pytest.mark.parametrize("type_name,pure", [(ft, False) for ft in (
    "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q5_K_S", "Q5_K_M", "Q6_K",
    "Q4_1", "Q5_1", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "F16", "BF16")] +
    [("MXFP4", True), ("Q4_K", True)])
def test_every_file_type_writes_what_gguf_py_decodes(tmp_path, type_name, pure):
    rng = np.random.default_rng(7)
    src = _tiny_model(tmp_path / "tiny.gguf", rng)
    g_src = GGUFFile(src)
    sums = {n: (rng.random(t.shape[-1]) * 3, 10) for n, t in g_src.tensors.items()
            if n.startswith("blk.") and len(t.shape) == 2}
    im = save_imatrix(tmp_path / "im.gguf", sums, dataset="random", chunks=1)
    out = tmp_path / "out.gguf"
    report = quantize_file(src, out, type_name, pure=pure, progress=False,
                           imatrix=im if type_name == "Q2_K_S" else None)
    g, ref = GGUFFile(out), gguf.GGUFReader(out)
    assert g.kv["general.file_type"].value == report.file_type
    for t in ref.tensors:
        rec = next(r for r in report.records if r.name == t.name)
        assert t.tensor_type.name == rec.type_out
        theirs = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(rec.shape)
        assert np.array_equal(g.dequantize(t.name), theirs, equal_nan=True), t.name
        if rec.action == "quantize":                                 # bytes = the format's
            x = g_src.tensors[t.name].data.view(np.float32).reshape(rec.shape)
            qw = load_imatrix(im).get(t.name) if type_name == "Q2_K_S" else None
            want = by_type(rec.type_out).quantize(x, imatrix=qw).data
            assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8).reshape(want.shape),
                                  want), t.name
    types = set(report.type_counts())
    if not pure and type_name.startswith(("Q3_K_M", "Q5_K_M")):
        assert "Q6_K" in types or "Q5_K" in types                   # the mix really mixes
