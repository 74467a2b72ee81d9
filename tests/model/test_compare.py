"""quantlab compare: format parsing, per-tensor types, the measurements (against direct
computations with the registered formats and ql.perplexity) and the written reports — on a tiny
random Llama GGUF so the whole machinery runs in seconds."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import quantlab as ql
from quantlab.cli import main
from quantlab.compare import (DEFAULT_FORMATS, compare, format_table, parse_format,
                              quantize_weights, write_report)
from quantlab.formats.ggml import by_type
from quantlab.formats.ggml.mixes import choose_types, model_params
from quantlab.model import load_model
from quantlab.model.weights import as_float32

from model_helpers import tiny_config, tiny_tensors, write_gguf

TEXT = " ".join(["AB A ABBA CAB", "DEAD BEEF", "A FACADE"] * 20)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    cfg = tiny_config(dim=64, hidden_dim=128, n_heads=4, n_kv_heads=2, head_dim=16, vocab_size=52)
    return write_gguf(tmp_path_factory.mktemp("cmp") / "tiny.gguf", cfg=cfg,
                      tensors=tiny_tensors(cfg, seed=11))


def test_parse_format():
    assert parse_format("F32") == ("reference", "F32", {})
    assert parse_format("Q4_K_M") == ("mix", "Q4_K_M", {})
    assert parse_format("Q4_K") == ("mix", "Q4_K_M", {})          # llama-quantize's alias
    assert parse_format("int4:group_size=64") == ("format", "int4", {"group_size": 64})
    assert parse_format("nf4:blocksize=128,double_quant=true") == (
        "format", "nf4", {"blocksize": 128, "double_quant": True})
    for bad in ("no_such_format", "int4:bogus=1", "int4:group_size", "Q4_K_M:x=1"):
        with pytest.raises(ql.FormatError):
            parse_format(bad)
    for f in DEFAULT_FORMATS:
        parse_format(f)


def test_quantize_weights_follows_the_mix_and_the_format(tiny_path):
    m = load_model(tiny_path)
    ref = {n: as_float32(w) for n, w in m.tensors().items()}
    q, types = quantize_weights(ref, "Q4_K_M", m.metadata)
    assert types == choose_types([(n, w.shape, "F32") for n, w in ref.items()], "Q4_K_M",
                                 **model_params(m.metadata))
    for n, t in types.items():
        if t == "F32":
            assert q[n] is ref[n]
        else:       # the bytes the registered ggml type writes for this tensor
            assert np.array_equal(q[n].data, by_type(t).quantize(ref[n]).data), n
    q, types = quantize_weights(ref, "int8", m.metadata)
    assert {types[n] for n, w in ref.items() if w.ndim == 2} == {"int8"}
    assert all(types[n] == "F32" for n, w in ref.items() if w.ndim == 1)


def test_compare_rows_against_direct_computation(tiny_path, tmp_path):
    m = load_model(tiny_path)
    rows = compare(m, ["Q8_0", "F32", "q4_0"], TEXT, ctx=16, chunks=2, speed_tokens=2,
                   progress=False)
    assert [r.format for r in rows] == ["F32", "Q8_0", "q4_0"]        # the reference first
    ref = {n: as_float32(w) for n, w in m.tensors().items()}
    n_params = sum(w.size for w in ref.values())
    f32, q8, q4 = rows
    assert f32.rmse == 0 and math.isinf(f32.sqnr_db) and f32.dppl_pct == 0
    assert f32.bpw == 32.0
    float32 = load_model(tiny_path, packed=False)          # the reference forward (module doc)
    assert f32.ppl == ql.perplexity(float32, TEXT, ctx=16, chunks=2, progress=False).ppl
    # q4_0 applied to every matrix: size, error and perplexity recomputed here
    qts = {n: ql.quantize(w, "q4_0") for n, w in ref.items() if w.ndim == 2}
    nbytes = sum(q.nbytes for q in qts.values()) + sum(w.nbytes for w in ref.values() if w.ndim == 1)
    assert q4.bpw == pytest.approx(8 * nbytes / n_params)
    d = np.concatenate([(qts[n].dequantize() - ref[n]).ravel() for n in qts]).astype(np.float64)
    assert q4.rmse == pytest.approx(math.sqrt(np.mean(d * d)), rel=1e-6)
    variant = m.with_weights({n: q.dequantize() for n, q in qts.items()})
    ppl = ql.perplexity(variant, TEXT, ctx=16, chunks=2, progress=False).ppl
    assert q4.ppl == pytest.approx(ppl, rel=1e-6)
    assert q4.dppl_pct == pytest.approx(100 * (ppl / f32.ppl - 1))
    assert q8.sqnr_db > q4.sqnr_db + 15 and q8.bpw > q4.bpw
    assert all(r.tok_s > 0 for r in rows)

    paths = write_report(rows, tmp_path / "out", "a note")
    with open(paths["csv"]) as f:
        recs = list(csv.DictReader(f))
    assert [r["format"] for r in recs] == ["F32", "Q8_0", "q4_0"]
    assert float(recs[2]["ppl"]) == pytest.approx(q4.ppl)
    md = paths["md"].read_text()
    assert "a note" in md and format_table(rows, markdown=True) in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_needs_enough_text(tiny_path):
    with pytest.raises(ql.InputError, match="at least 64"):
        compare(load_model(tiny_path), ["F32"], "AB A", ctx=32, chunks=1, progress=False)
    with pytest.raises(ql.FormatError):
        compare(load_model(tiny_path), ["F32", "nope"], TEXT, progress=False)


def test_cli_compare(tiny_path, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out = tmp_path / "report"
    assert main(["compare", "--model", str(tiny_path), "--formats", "F32,Q8_0,nf4",
                 "--text", str(text), "-c", "16", "--chunks", "2", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "ΔPPL %" in printed and "nf4" in printed
    assert {p.name for p in out.iterdir()} == {"compare.csv", "compare.md", "ppl_vs_bpw.png"}
    assert main(["compare", "--formats", "F32,bogus"]) == 2          # refused before loading
    assert "bogus" in capsys.readouterr().err


def test_imatrix_reaches_the_ggml_quantizers(tiny_path, tmp_path, capsys):
    from quantlab.io.imatrix import load_imatrix
    from quantlab.model.imatrix import collect_imatrix
    m = load_model(tiny_path)
    path = collect_imatrix(m, TEXT, ctx=16, progress=False).save(tmp_path / "t.imatrix.gguf")
    imp = load_imatrix(path)
    ref = {n: as_float32(w) for n, w in m.tensors().items()}
    q, types = quantize_weights(ref, "Q4_0", m.metadata, imatrix=imp)
    assert types == choose_types([(n, w.shape, "F32") for n, w in ref.items()], "Q4_0",
                                 has_imatrix=True, **model_params(m.metadata))
    plain, _ = quantize_weights(ref, "Q4_0", m.metadata)
    name = "blk.0.ffn_down.weight"
    assert np.array_equal(q[name].data, by_type(types[name]).quantize(ref[name], imatrix=imp[name]).data)
    assert any(not np.array_equal(q[n].data, plain[n].data) for n in imp if types[n] == "Q4_0")
    rows = compare(m, ["F32", "Q4_0", "nf4"], TEXT, ctx=16, chunks=2, speed_tokens=1,
                   progress=False, imatrix=path)
    assert [r.kind for r in rows] == ["reference", "llama.cpp mix +imatrix", "quantlab format"]
    assert main(["compare", "--model", str(tiny_path), "--formats", "F32", "--imatrix",
                 str(tmp_path / "missing.gguf")]) == 2
    assert "missing.gguf" in capsys.readouterr().err
