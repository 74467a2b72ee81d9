"""Plot helpers: the data on the axes is the data passed in; pure helpers against brute force."""
import matplotlib as mpl
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quantlab import InputError, ShapeError
from quantlab import viz


def test_style_is_scoped_never_global():
    before = dict(mpl.rcParams)
    ax = viz.plot_number_line({"int4": np.arange(-8, 8)})
    assert not ax.spines["top"].get_visible()          # the house style was applied ...
    assert dict(mpl.rcParams) == before                 # ... and global rcParams untouched


def test_format_colors_fixed_and_distinct_within_a_family():
    assert viz.format_color("FP16") == viz.format_color("fp16")
    kq = [viz.format_color(f) for f in ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k"]]
    assert len(set(kq)) == len(kq)
    assert viz.format_color("some_new_format") == viz.format_color("some_new_format")


def test_number_line_ticks_are_the_grid_values():
    grid = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, np.inf])
    ax = viz.plot_number_line({"toy": grid}, xlim=(-1, 1))
    segs = ax.collections[0].get_segments()
    assert sorted(s[0][0] for s in segs) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    with pytest.raises(InputError):
        viz.plot_number_line({})


def test_relative_error_curve():
    x = np.array([4.0, -1.0, 0.0, 2.0])
    xh = np.array([3.0, -1.5, 7.0, 2.0])
    mag, rel = viz.relative_error_curve(x, xh)
    assert mag.tolist() == [1.0, 2.0, 4.0] and rel.tolist() == [0.5, 0.0, 0.25]
    ax = viz.plot_relative_error({"fp16": (x, xh)})
    assert ax.get_xscale() == "log"


def test_levels_on_hist_draws_every_level():
    w = np.random.default_rng(0).normal(size=1000)
    lv = np.linspace(-1, 1, 16)
    ax = viz.plot_levels_on_hist(w, lv, name="nf4", clip=(-0.9, 0.9), density=False)
    xs = [ln.get_xdata()[0] for ln in ax.lines]
    assert np.allclose(sorted(xs), lv)
    assert sum(p.get_height() for p in ax.patches if hasattr(p, "get_height")) >= 1000


def test_block_errors_against_a_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 64))
    xh = x + rng.normal(scale=0.1, size=x.shape)
    got = viz.block_errors(x, xh, 16)
    ref = [np.sqrt(np.mean((x[r, b:b + 16] - xh[r, b:b + 16]) ** 2))
           for r in range(3) for b in range(0, 64, 16)]
    assert np.allclose(got, ref, rtol=0, atol=1e-15)
    with pytest.raises(ShapeError):
        viz.block_errors(x, xh, 24)
    ax = viz.plot_block_errors(x, xh, 16, worst=2)
    heights = [p.get_height() for p in ax.patches]
    assert np.allclose(heights, got)
    assert ax.get_title().endswith(", ".join(map(str, np.argsort(got)[::-1][:2])))


def test_error_hist_counts_every_element():
    rng = np.random.default_rng(2)
    x = rng.normal(size=500)
    ax = viz.plot_error_hist(x, {"int8": x + 0.01, "int4": x - rng.uniform(-0.1, 0.1, 500)},
                             log=False)
    assert len(ax.patches) == 2
    assert "rmse 1.00e-02" in ax.get_legend().get_texts()[0].get_text()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=15))
def test_pareto_front_matches_brute_force(pairs):
    recs = [{"format": f"f{i}", "bpw": a, "ppl": b} for i, (a, b) in enumerate(pairs)]
    front = viz.pareto_front(recs, "bpw", "ppl")

    def dominated(r):
        return any(o["bpw"] <= r["bpw"] and o["ppl"] <= r["ppl"] and
                   (o["bpw"], o["ppl"]) != (r["bpw"], r["ppl"]) for o in recs)
    got = {(r["bpw"], r["ppl"]) for r in front}
    assert got == {(r["bpw"], r["ppl"]) for r in recs if not dominated(r)}


def test_pareto_and_sqnr_plots_put_points_where_the_records_say():
    recs = [{"format": "q4_0", "bits_per_weight": 4.5, "sqnr_db": 20.0, "ppl": 14.0},
            {"format": "q8_0", "bits_per_weight": 8.5, "sqnr_db": 44.0, "ppl": 12.0},
            {"format": "q4_1", "bits_per_weight": 5.0, "sqnr_db": 21.0, "ppl": 14.5}]
    ax = viz.plot_pareto(recs)
    pts = [tuple(c.get_offsets()[0]) for c in ax.collections]
    assert pts == [(4.5, 14.0), (8.5, 12.0), (5.0, 14.5)]
    assert ax.lines[0].get_xdata().tolist() == [4.5, 8.5]          # q4_1 is dominated
    ax = viz.plot_sqnr_vs_bpw(recs, highlight=("q8_0",))
    assert [tuple(c.get_offsets()[0]) for c in ax.collections] == [(4.5, 20.0), (8.5, 44.0),
                                                                  (5.0, 21.0)]
    with pytest.raises(InputError, match="ppl"):
        viz.plot_pareto([{"format": "a", "bits_per_weight": 1}])


def test_plot_sizes_bar_heights():
    sizes = {"135M": {"fp16": 0.27, "q4_k_m": 0.08}, "7B": {"fp16": 14.0, "q4_k_m": 4.1}}
    ax = viz.plot_sizes(sizes)
    assert [p.get_height() for p in ax.patches] == [0.27, 14.0, 0.08, 4.1]


def test_cmp_line(capsys):
    line = viz.cmp("fp16 round trip", np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert "exact: False" in line and "max error: 0.5" in line
    assert capsys.readouterr().out.strip() == line
