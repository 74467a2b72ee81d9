"""quantlab.kernels._quantize: ggml's scale searches (QX, Q3S, QKX, QP, IQ4) bit-identical to
their NumPy twins (themselves tested against ggml), thread invariance, bad arguments; and the
K-quant / IQ4 quantizers through the kernels give ggml's golden bytes."""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab import KernelError

_q = pytest.importorskip("quantlab.kernels._quantize", reason="kernels not compiled")


def data(nb, n, seed=0, positive=False):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((nb, n)) * rng.uniform(1e-3, 1, (nb, 1))).astype(np.float32)
    x[0] = 0.0                                           # all zero
    x[1] = 0.5                                           # constant
    x[2, ::2] = -x[2, 1::2]                              # equal magnitudes, both signs
    x[3] = np.abs(x[3])                                  # all positive (min clamps to 0)
    x[4] = np.round(x[4] * 8) / 8                        # exact ties
    x[5, 3] = -7.0                                       # an outlier
    return np.abs(x) if positive else x


def twin(fn, *args, monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("QUANTLAB_PURE_NUMPY", "1")
        return fn(*args)


def same(a, b, what):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    for u, v in zip(a, b):
        u, v = np.asarray(u), np.asarray(v)
        assert u.shape == v.shape and u.dtype == v.dtype, what
        bad = u.view(f"u{u.itemsize}") != v.view(f"u{v.itemsize}")
        assert not bad.any(), f"{what}: {int(bad.sum())} values differ, first at {np.argwhere(bad)[0]}"


@pytest.mark.parametrize("n,nmax,weighted", [(16, 32, False), (16, 32, True), (32, 8, True),
                                             (16, 4, True), (32, 16, False)])
def test_qx(n, nmax, weighted, monkeypatch):
    from quantlab.formats.ggml import search
    x = data(1500, n, nmax)
    w = np.abs(np.random.default_rng(n).standard_normal(x.shape)).astype(np.float32) if weighted else None
    same(_q.qx_quants(x, nmax, w, n_threads=2), twin(search.qx_quants, x, nmax, w, monkeypatch=monkeypatch), "qx")


def test_q3(monkeypatch):
    from quantlab.formats.ggml import search
    x = data(1500, 16, 3)
    same(_q.q3_quants(x, 4, n_threads=2), twin(search.q3_quants, x, 4, monkeypatch=monkeypatch), "q3")


@pytest.mark.parametrize("params", [(15, -1.0, 0.1, 20, False), (31, -0.5, 0.1, 15, False),
                                    (3, -0.5, 0.1, 15, True), (15, -0.9, 0.05, 36, False)])
@pytest.mark.parametrize("variant", [2, 3])
@pytest.mark.parametrize("n", [16, 32])
def test_qkx(params, variant, n, monkeypatch):
    from quantlab.formats.ggml import search
    x = data(800, n, n + variant)
    w = (np.abs(x) + np.float32(0.1)).astype(np.float32)
    same(_q.qkx_quants(x, w, *params, variant, n_threads=2),
         twin(search.qkx_quants, x, w, *params, variant, monkeypatch=monkeypatch), "qkx")


@pytest.mark.parametrize("nmax,n", [(15, 16), (63, 8)])
def test_qp(nmax, n, monkeypatch):
    from quantlab.formats.ggml import search
    x = data(1500, n, nmax, positive=True)
    w = np.abs(np.random.default_rng(1).standard_normal(x.shape)).astype(np.float32)
    same(_q.qp_quants(x, nmax, w, n_threads=2), twin(search.qp_quants, x, nmax, w, monkeypatch=monkeypatch), "qp")


def test_iq4_scales(monkeypatch):
    from quantlab.formats.ggml import iq4
    x = data(3000, 32, 7)
    for w in (x * x, np.abs(x) + np.float32(0.01)):
        w = w.astype(np.float32)
        same(_q.iq4_scales(x, w, n_threads=2), twin(iq4.iq4_scales, x, w, monkeypatch=monkeypatch), "iq4")


def test_threads_do_not_change_results():
    x = data(999, 32, 11)
    w = (np.abs(x) + np.float32(0.1)).astype(np.float32)
    one = _q.qkx_quants(x, w, 15, -1.0, 0.1, 20, False, 2, n_threads=1)
    for n in (2, 3):
        same(_q.qkx_quants(x, w, 15, -1.0, 0.1, 20, False, 2, n_threads=n), one, f"{n} threads")
    same(_q.iq4_scales(x, x * x, n_threads=3), _q.iq4_scales(x, x * x, n_threads=1), "iq4 threads")


@pytest.mark.parametrize("name", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"])
def test_quantizers_through_kernels_give_ggml_bytes(name):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ggml"))
    from ggml_golden import assert_bytes_equal, golden_cases
    from quantlab import backend
    assert backend.kernel("_quantize") is not None or backend.pure_numpy()
    fmt = ql.get(name.lower())
    for case in golden_cases(name):
        qt = fmt.quantize(case.x, imatrix=case.imatrix)
        assert_bytes_equal(qt.data, case.q, fmt.type_size, case.id)


def test_bad_arguments_raise_kernel_error():
    x = np.zeros((4, 32), np.float32)
    for call in [lambda: _q.qx_quants(np.zeros((4, 300), np.float32), 8),     # block too long
                 lambda: _q.qx_quants(x, 8, np.zeros((4, 16), np.float32)),   # weights shape
                 lambda: _q.qx_quants(x, 8, None, 2),                         # rmse_type
                 lambda: _q.qkx_quants(x, x, 15, -1.0, 0.1, 20, False, 4),    # variant
                 lambda: _q.iq4_scales(np.zeros((4, 16), np.float32), np.zeros((4, 16), np.float32)),
                 lambda: _q.qp_quants(x, 15, x, n_threads=0)]:
        with pytest.raises(KernelError):
            call()


_ql = pytest.importorskip("quantlab.kernels._quantize_legacy", reason="kernels not compiled")


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_legacy_reference_quantizers(name, monkeypatch):
    fmt = ql.get(name)
    x = data(3000, 32, 5)
    x[6] = np.float32(1e-40)                             # subnormal scale: 1/d overflows
    x[7, :16] = -0.0                                     # signed zeros
    x[8] = np.float32(-3e-39) * np.arange(32)
    with np.errstate(all="ignore"):      # as quantize_rows calls it: C arithmetic, inf allowed
        ref = twin(fmt.quantize_ref, x, monkeypatch=monkeypatch)
    for n in (1, 2, 3):
        np.testing.assert_array_equal(_ql.quantize_ref(fmt.ggml_type, x, n), ref)


def test_legacy_bad_arguments():
    for args in [(9, np.zeros((2, 32), np.float32)), (2, np.zeros((2, 16), np.float32)),
                 (2, np.zeros((2, 32), np.float32), 0)]:
        with pytest.raises(KernelError):
            _ql.quantize_ref(*args)
