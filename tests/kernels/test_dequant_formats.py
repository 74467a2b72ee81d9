"""quantlab.kernels._dequant_tables (via quantlab.kernels.formats): the dequantizers of the
non-ggml formats, bit-identical to each format's NumPy code (itself tested against ml_dtypes,
torchao and bitsandbytes), thread invariance and bad arguments."""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab import KernelError

_t = pytest.importorskip("quantlab.kernels._dequant_tables", reason="kernels not compiled")


def both(qt, monkeypatch):
    fast = qt.dequantize()
    with monkeypatch.context() as m:
        m.setenv("QUANTLAB_PURE_NUMPY", "1")
        ref = qt.dequantize()
    assert fast.dtype == ref.dtype == np.float32 and fast.shape == ref.shape
    same = (fast.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(fast) & np.isnan(ref))
    assert same.all(), f"{qt}: {int((~same).sum())} values differ, first at {np.argwhere(~same)[0]}"


def x_of(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * np.exp(rng.uniform(-4, 4, shape[:-1] + (1,)))).astype(np.float32)
    x.reshape(-1)[:7] = [0.0, -0.0, 1e-30, -1e-30, 3e4, -3e4, 0.5]
    return x


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "fp4_e2m1"])
@pytest.mark.parametrize("scaling", ["none", "tensor", "channel"])
def test_minifloats(name, scaling, monkeypatch):
    both(ql.quantize(x_of((7, 96)), name, scaling=scaling), monkeypatch)
    both(ql.quantize(x_of((3, 5)), name, scaling=scaling), monkeypatch)     # odd count of nibbles


def test_every_fp8_code(monkeypatch):
    from quantlab.formats.base import QTensor
    for name in ("fp8_e4m3", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz"):
        fmt = ql.get(name)
        both(QTensor(fmt, (256,), np.arange(256, dtype=np.uint8), {}, {"scaling": "none"}), monkeypatch)


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "nvfp4"])
def test_mx(name, monkeypatch):
    both(ql.quantize(x_of((5, 128)), name), monkeypatch)
    both(ql.quantize(x_of((3, 96)), name), monkeypatch)


@pytest.mark.parametrize("name", ["nf4", "bnb_fp4"])
@pytest.mark.parametrize("shape", [(8, 128), (8, 48), (300,), (3, 7)])
@pytest.mark.parametrize("dq", [False, True])
def test_bnb4(name, shape, dq, monkeypatch):
    both(ql.quantize(x_of(shape), name, blocksize=64, double_quant=dq), monkeypatch)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("opts", [dict(), dict(symmetric=False), dict(granularity="channel"),
                                  dict(granularity="tensor", symmetric=False),
                                  dict(group_size=32, scale_dtype="float32")])
def test_integers(bits, opts, monkeypatch):
    both(ql.quantize(x_of((6, 256)), f"int{bits}", **opts), monkeypatch)


def test_threads_do_not_change_results():
    codes = np.random.default_rng(0).integers(0, 256, 5001, dtype=np.uint8)
    table = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    scale = np.random.default_rng(2).standard_normal(157).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        out = np.empty(5001, np.float32)
        _t.lookup(codes, 8, False, table, scale, 32, False, out, n)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_bad_arguments_raise_kernel_error():
    codes = np.zeros(8, np.uint8)
    table = np.zeros(16, np.float32)
    out = np.empty(16, np.float32)
    _t.lookup(codes, 4, False, table, None, 1, False, out)
    for args in [(codes, 3, False, table, None, 1, False, out),              # width
                 (codes[:7], 4, False, table, None, 1, False, out),          # too few bytes
                 (codes, 4, False, table[:8], None, 1, False, out),          # table size
                 (codes, 4, False, table, np.zeros(3, np.float32), 8, False, out),   # scales
                 (codes, 4, False, table, None, 1, False, out.astype(np.float64)),
                 (codes, 4, False, table, None, 1, False, out, 0)]:
        with pytest.raises(KernelError):
            _t.lookup(*args)
    s = np.ones(2, np.float64)
    _t.affine(codes, 4, True, s, None, 8, out)
    for args in [(codes, 9, True, s, None, 8, out), (codes[:3], 4, True, s, None, 8, out),
                 (codes, 4, True, s[:1], None, 8, out), (codes, 4, False, s, np.zeros(2, np.int32), 8, out),
                 (codes, 4, True, s, None, 0, out)]:
        with pytest.raises(KernelError):
            _t.affine(*args)


@pytest.mark.parametrize("name,opts", [("nf4", {}), ("nf4", {"double_quant": True}),
                                       ("bnb_fp4", {"blocksize": 128}), ("int4", {}),
                                       ("int4", {"symmetric": False, "group_size": 32}),
                                       ("int8", {}), ("int3", {"granularity": "channel"})])
@pytest.mark.parametrize("T", [1, 3, 20])
def test_fused_matmul_on_codes(name, opts, T, monkeypatch):
    """PackedTableLinear (matmul_lookup / matmul_affine) == x @ dequantize(W).T, any threads."""
    from quantlab.model.packed import PackedTableLinear
    W = x_of((40, 256), 3)
    qt = ql.quantize(W, name, **opts)
    x = np.random.default_rng(T).standard_normal((T, 256)).astype(np.float32)
    ref = x.astype(np.float64) @ qt.dequantize().astype(np.float64).T
    lin = PackedTableLinear("w", qt)
    outs = []
    for n in ("1", "2"):
        with monkeypatch.context() as m:
            m.setenv("OMP_NUM_THREADS", n)
            outs.append(lin(x))
    np.testing.assert_array_equal(outs[0], outs[1])
    scale = np.abs(x) @ np.abs(qt.dequantize()).T
    assert np.all(np.abs(outs[0] - ref) <= 1e-6 * scale + 1e-30)
    from quantlab import backend
    if backend.kernel("_dequant_tables") is not None:
        assert lin._w is None                              # never a float32 copy of W


def test_fused_matmul_bad_arguments():
    codes = np.zeros(64, np.uint8)
    x = np.zeros((2, 16), np.float32)
    out = np.zeros((2, 8), np.float32)
    t16, s = np.zeros(16, np.float32), np.ones(2, np.float32)
    _t.matmul_lookup(codes, 4, True, t16, s, 64, x, out)
    for args in [(codes[:10], 4, True, t16, s, 64, x, out), (codes, 4, True, t16, s[:1], 64, x, out),
                 (codes, 4, True, t16, s, 64, x.astype(np.float64), out), (codes, 4, True, t16, s, 64, x, out[:1])]:
        with pytest.raises(KernelError):
            _t.matmul_lookup(*args)
    with pytest.raises(KernelError):
        _t.matmul_affine(codes, 4, True, np.ones(1, np.float64), None, 64, x, out)
