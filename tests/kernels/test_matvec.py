"""Integer dot products (quantlab.formats.ggml.dot) and their compiled twins (_matvec).

Oracles: (1) a scalar transliteration of ggml's generic ``vec_dot_q4_0_q8_0`` /
``_q4_1_q8_1`` / ``_q8_0_q8_0`` (ggml-cpu/quants.c) for each block's float operations, its
terms added in quantlab's documented 8-lane order (dot.py); (2) the
mathematical identity ``matmul_q8(w, a) ≈ dequantize(a) @ dequantize(w).T`` (the dequantizers
are golden-tested), which checks every type's integer parts, scales and mins; (3) kernel ==
NumPy twin bit for bit (integer mode) or within float tolerance (float mode); (4) threads.
"""
from __future__ import annotations

import numpy as np
import pytest

import quantlab as ql
from quantlab import KernelError
from quantlab.formats.ggml import dot
from qltest import golden

_matvec = pytest.importorskip("quantlab.kernels._matvec", reason="kernels not compiled")

f32 = np.float32
TYPES = list(dot.PARTNER)


def weights(name: str, n_out: int = 24, n: int = 512, seed: int = 0):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((n_out, n)) * 0.05).astype(f32)
    W[1] = 0.0                                            # an all-zero row
    W[2, :256] += 0.2                                     # positive offsets: non-trivial mins
    return np.ascontiguousarray(ql.get(name).quantize(W).data)


def activations(T: int = 3, n: int = 512, seed: int = 1):
    x = np.random.default_rng(seed).standard_normal((T, n)).astype(f32)
    x[-1, :32] = 0.0                                      # an all-zero activation block
    return x


def kernel_q8(fmt, w, a, n_threads=1):
    out = np.full((a.shape[0], w.shape[0]), np.nan, f32)
    _matvec.matmul_q8(fmt.ggml_type, w, a, out, n_threads)
    return out


def kernel_f32(fmt, w, x, n_threads=1):
    out = np.full((x.shape[0], w.shape[0]), np.nan, f32)
    _matvec.matmul_f32(fmt.ggml_type, w, x, out, n_threads)
    return out


# ---------------------------------------------------------------- scalar ggml transliterations
def _h(b, off):
    return f32(np.frombuffer(bytes(b[off:off + 2]), "<f2")[0])


def ggml_vec_dot(name, wrow, arow):
    """ggml's generic C, one weight row × one activation row, float32 scalars in C order;
    block ib's term goes to lane ib % 8, the lanes added as dot.py documents."""
    lane = [f32(0)] * 8
    for ib in range(len(wrow) // {"q4_0": 18, "q4_1": 20, "q8_0": 34}[name]):
        if name == "q8_0":
            x, y = wrow[34 * ib:34 * ib + 34], arow[34 * ib:34 * ib + 34]
            sumi = int(np.dot(x[2:].view(np.int8).astype(int), y[2:].view(np.int8).astype(int)))
            lane[ib % 8] = f32(lane[ib % 8] + f32(f32(sumi) * f32(_h(x, 0) * _h(y, 0))))
            continue
        ts = 18 if name == "q4_0" else 20
        x = wrow[ts * ib:ts * ib + ts]
        y = arow[(34 if name == "q4_0" else 36) * ib:][: 34 if name == "q4_0" else 36]
        qs, yq = x[ts - 16:], y[len(y) - 32:].view(np.int8).astype(int)
        off = 8 if name == "q4_0" else 0
        sumi = sum(((int(qs[j]) & 15) - off) * yq[j] + ((int(qs[j]) >> 4) - off) * yq[j + 16]
                   for j in range(16))
        if name == "q4_0":      # sumf += sumi*GGML_FP16_TO_FP32(x.d)*GGML_FP16_TO_FP32(y.d)
            term = f32(f32(f32(sumi) * _h(x, 0)) * _h(y, 0))
        else:                   # sumf += (d_x*d_y)*sumi + m_x*s_y
            term = f32(f32(f32(_h(x, 0) * _h(y, 0)) * f32(sumi)) + f32(_h(x, 2) * _h(y, 2)))
        lane[ib % 8] = f32(lane[ib % 8] + term)
    return f32(f32(f32(lane[0] + lane[1]) + f32(lane[2] + lane[3]))
               + f32(f32(lane[4] + lane[5]) + f32(lane[6] + lane[7])))


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_numpy_reference_equals_ggml_generic_c(name):
    fmt = ql.get(name)
    w, a = weights(name, 6), dot.quantize_activations(activations(2), fmt)
    ours = dot.matmul_q8(fmt, w, a)
    ref = np.array([[ggml_vec_dot(name, w[o], a[t]) for o in range(w.shape[0])]
                    for t in range(a.shape[0])], f32)
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("name", TYPES)
def test_integer_dot_equals_dequantized_product(name):
    fmt, act = ql.get(name), dot.partner(name)
    w, a = weights(name), dot.quantize_activations(activations(), fmt)
    n = 512
    dw = fmt.dequantize_blocks(w.reshape(-1, fmt.type_size)).reshape(-1, n).astype(np.float64)
    da = act.dequantize_blocks(a.reshape(-1, act.type_size)).reshape(-1, n).astype(np.float64)
    exact = da @ dw.T
    scale = np.abs(da) @ np.abs(dw).T
    # Q8_1's s = fp16(d·Σq) rounds d·Σq to fp16, which dequantize(a) does not see
    tol = (2e-3 if act.name == "q8_1" else 2e-6) * scale + 1e-30
    got = dot.matmul_q8(fmt, w, a)
    assert np.all(np.abs(got - exact) <= tol), f"{name}: max err {np.abs(got - exact).max():.3g}"


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("T", [1, 5])
def test_kernel_integer_mode_bit_identical(name, T):
    fmt = ql.get(name)
    w, a = weights(name, seed=T), dot.quantize_activations(activations(T), fmt)
    ref = dot.matmul_q8(fmt, w, a)
    np.testing.assert_array_equal(kernel_q8(fmt, w, a).view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("name", [t for t in TYPES if ql.get(t).block_size == 32])
@pytest.mark.parametrize("n", [224, 576, 800])
def test_kernel_integer_mode_ragged_rows(name, n):
    """Rows of 7, 18 and 25 blocks: the 8-block SIMD steps plus a scalar tail (SmolLM2's 576)."""
    fmt = ql.get(name)
    w, a = weights(name, 13, n, seed=n), dot.quantize_activations(activations(2, n), fmt)
    ref = dot.matmul_q8(fmt, w, a)
    for nt in (1, 2):
        np.testing.assert_array_equal(kernel_q8(fmt, w, a, nt).view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("name", TYPES + ["q8_k", "tq1_0", "tq2_0", "ggml_f16", "ggml_bf16", "ggml_f32"])
def test_kernel_float_mode_matches_numpy(name):
    fmt = ql.get(name)
    w, x = weights(name), activations(4)
    ref = dot.matmul_f32(fmt, w, x)
    got = kernel_f32(fmt, w, x)
    scale = np.abs(x) @ np.abs(fmt.dequantize_blocks(w.reshape(-1, fmt.type_size)).reshape(-1, 512)).T
    assert np.all(np.abs(got - ref) <= 1e-6 * scale + 1e-30)


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0", "q4_k", "q6_k", "iq4_xs"])
def test_threads_do_not_change_results(name):
    fmt = ql.get(name)
    w, x = weights(name, 67), activations(3)
    a = dot.quantize_activations(x, fmt)
    one_q, one_f = kernel_q8(fmt, w, a, 1), kernel_f32(fmt, w, x, 1)
    for n in (2, 3):
        np.testing.assert_array_equal(kernel_q8(fmt, w, a, n).view(np.uint32), one_q.view(np.uint32))
        np.testing.assert_array_equal(kernel_f32(fmt, w, x, n).view(np.uint32), one_f.view(np.uint32))


def test_real_golden_rows_as_weights():
    """ggml's own Q4_K bytes of SmolLM2 ffn_down rows, times quantized activations."""
    with np.load(golden("ggml/Q4_K.npz")) as z:
        w = np.ascontiguousarray(z["q/real_ffn_down/none"])
    fmt = ql.get("q4_k")
    a = dot.quantize_activations(activations(2, 1536), fmt)
    np.testing.assert_array_equal(kernel_q8(fmt, w, a, 2).view(np.uint32),
                                  dot.matmul_q8(fmt, w, a).view(np.uint32))


def test_bad_arguments_raise_kernel_error():
    fmt = ql.get("q4_0")
    w = weights("q4_0", 4, 64)
    a = dot.quantize_activations(activations(2, 64), fmt)
    out = np.zeros((2, 4), f32)
    _matvec.matmul_q8(2, w, a, out)
    for args in [
        (14 + 100, w, a, out),                              # unknown type
        (0, w, a, out),                                     # F32 has no integer dot
        (2, w[:, :-1], a, out),                             # partial block
        (2, w, a[:, :-2], out),                             # activations too short
        (2, w, a.astype(np.int8), out),                     # dtype
        (2, w, a, np.zeros((2, 3), f32)),                   # out too short
        (2, w, a, np.zeros((2, 4), np.float64)),
        (2, w, a, out, 0),                                  # threads
    ]:
        with pytest.raises(KernelError):
            _matvec.matmul_q8(*args)
    x = activations(2, 64)
    for args in [(2, w, x[:, :32], out), (2, w, x.astype(np.float64), out),
                 (2, w, np.zeros((2, 128), f32)[:, ::2], out),    # not contiguous
                 (2, w, x, out[:1]),                               # out too short
                 (2, np.ascontiguousarray(w.T), x, out)]:          # not whole blocks
        with pytest.raises(KernelError):
            _matvec.matmul_f32(*args)
