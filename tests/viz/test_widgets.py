"""Widget callbacks over their domain: what each draws is what the library computes."""
import numpy as np
import pytest

import quantlab as ql
from quantlab import InputError, ShapeError, viz
from quantlab.formats.integer import fake_quant

RNG = np.random.default_rng(0)
W = RNG.normal(0, 0.02, size=(8, 512)).astype(np.float32)
W[3, 17] = 0.5                                                   # one outlier


def test_block_view_and_explorer_slider():
    x, xh = viz.block_view(W, 3, "mxfp4", 32)
    assert np.array_equal(x, W.ravel()[96:128])
    assert np.array_equal(xh, ql.quantize(x, "mxfp4").dequantize())
    with pytest.raises(InputError):
        viz.block_view(W, 10_000, "mxfp4", 32)
    ui = viz.block_scale_explorer(W, formats=("mxfp4", "nvfp4"))
    slider = ui.controls["index"]
    assert slider.max == W.size // 32 - 1
    for i in (0, 17, slider.max):                               # drive the slider
        slider.value = i
        assert np.array_equal(ui.last["nvfp4"][1], viz.block_view(W, i, "nvfp4", 32)[1])


def test_codebook_usage_against_brute_force_nearest_level():
    lv = ql.get("nf4").code
    p, h = viz.codebook_usage(W, lv, 64)
    u = viz.block_normalize(W, 64)
    nearest = np.abs(u[:, None] - np.sort(lv)[None, :].astype(np.float64)).argmin(axis=1)
    assert np.allclose(p, np.bincount(nearest, minlength=16) / u.size)
    assert 0 < h <= 4 and np.isclose(p.sum(), 1)
    assert np.abs(u).max() == 1.0                                # every block touches ±1
    ui = viz.codebook_explorer(W, lv)
    for bs in ui.controls["blocksize"].options[:4]:              # 32 .. 256 fit W
        ui.controls["blocksize"].value = bs
        assert np.allclose(ui.last[0], viz.codebook_usage(W, lv, bs)[0])


def test_clipping_error_and_widget_match_fake_quant():
    x = RNG.standard_t(3, size=4000).astype(np.float32)
    for bits, c in [(8, 2.0), (4, 1.0), (2, 5.0)]:
        ref = np.mean((fake_quant(x, bits, clip_range=c).astype(np.float64) - x) ** 2)
        assert viz.clipping_error(x, bits, c) == pytest.approx(ref, rel=1e-12)
    clips, err = viz.clipping_curve(x, 8, [0.25, 1.0])
    assert clips[-1] == np.abs(x).max()
    with pytest.raises(InputError):
        viz.clipping_error(x, 8, 0.0)
    ui = viz.clipping_explorer(x, bits=8)
    ui.controls["fraction"].value = 0.25
    ui.controls["bits"].value = 4
    assert ui.last["bits"] == 4
    assert ui.last["mse"] == pytest.approx(viz.clipping_error(x, 4, 0.25 * np.abs(x).max()))


def test_format_records_and_error_view():
    recs = viz.format_records(W, ["int4", "nf4", "q4_0", "q4_k", "fp8_e4m3"])
    by = {r["format"]: r for r in recs}
    assert by["q4_0"]["bits_per_weight"] == 4.5
    assert by["q4_k"]["sqnr_db"] == pytest.approx(ql.sqnr_db(W, ql.quantize(W, "q4_k").dequantize()))
    odd = viz.format_records(W[:, :96], ["q4_k", "q4_0"])        # 96 is no multiple of 256
    assert odd[0]["skipped"] and not odd[1]["skipped"]
    assert viz.size_option("int4") == "group_size" and viz.size_option("q4_0") is None
    axes, info = viz.plot_error_view(W, "q4_0", records=recs)
    errs = viz.block_errors(W, ql.quantize(W, "q4_0").dequantize(), 32)
    assert info["worst_blocks"][0] == int(np.argmax(errs))
    assert info["worst_blocks"][0] == (3 * 512 + 17) // 32       # the outlier's block
    ui = viz.error_explorer({"w": W}, formats=("int4", "q4_0", "q4_k"), sizes=(32, 128))
    ui.controls["fmt"].value = "int4"
    ui.controls["size"].value = 32
    assert ui.last["bits_per_weight"] == ql.quantize(W, "int4", group_size=32).bits_per_weight


def test_block_layout_type_map_and_inspector():
    view = viz.inspect_row_block(W, "q4_k", 3)                  # row 1, block 1
    assert view.values.tolist() == ql.quantize(W[1:2], "q4_k").dequantize()[0, 256:].tolist()
    ax = viz.plot_block_layout(view)
    assert len(ax.patches) == 144                                # one box per byte
    assert viz.field_role("qh") == "high bits" and viz.field_role("dmin") == "min"
    with pytest.raises(ShapeError):
        viz.inspect_row_block(W[:, :96], "q4_k", 0)
    types = {"blk.0.attn_q.weight": "Q5_0", "blk.1.attn_q.weight": "Q4_K",
             "blk.0.ffn_down.weight": "Q6_K", "output_norm.weight": "F32"}
    layers, kinds, grid = viz.type_grid(types)
    assert layers == [0, 1] and kinds == ["attn_q", "ffn_down"]
    assert grid == [["Q5_0", "Q6_K"], ["Q4_K", ""]]
    viz.plot_type_map(types)
    ui = viz.block_inspector({"w": W, "narrow": W[:, :96]}, formats=("q4_0", "q6_k"))
    ui.controls["fmt"].value = "q6_k"
    ui.controls["block"].value = 2
    assert ui.last.format.name == "q6_k" and ui.last.index == 0  # block 2 = row 1, block 0
    ui.controls["tensor"].value = "narrow"                       # rows of 96: no Q6_K blocks
    assert ui.last is None
    ui.controls["fmt"].value = "q4_0"                            # 96 = 3 blocks of 32
    assert ui.last.format.name == "q4_0" and ui.last.index == 2
