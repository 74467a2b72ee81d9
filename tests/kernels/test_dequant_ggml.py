"""quantlab.kernels._dequant against two oracles: ggml's own to_float (golden files) and the
NumPy reference ``dequantize_blocks`` of each ggml format; thread invariance; bad arguments."""
from __future__ import annotations

import numpy as np
import pytest

from quantlab import KernelError
from quantlab.formats.ggml import by_type

_dequant = pytest.importorskip("quantlab.kernels._dequant",
                               reason="kernels not compiled (pure-NumPy install)")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ggml"))
from ggml_golden import assert_floats_identical, golden_cases  # noqa: E402

GOLDEN_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
                "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4"]
ALL_IDS = sorted(_dequant.GGML_TYPES)


def kernel_deq(type_id: int, raw: np.ndarray, n_threads: int = 1) -> np.ndarray:
    _, bs, ts = _dequant.GGML_TYPES[type_id]
    blocks = np.ascontiguousarray(raw).reshape(-1, ts)
    out = np.full((blocks.shape[0], bs), np.nan, dtype=np.float32)
    _dequant.dequantize(type_id, blocks, out, n_threads)
    return out


def numpy_deq(fmt, raw: np.ndarray, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setenv("QUANTLAB_PURE_NUMPY", "1")
        return fmt.dequantize_blocks(np.ascontiguousarray(raw).reshape(-1, fmt.type_size))


def valid_blocks(fmt, rng, n_rows: int = 8) -> np.ndarray:
    """Bytes made by quantlab's NumPy quantizer from random rows (finite scales)."""
    n = 4 * 256
    x = (rng.standard_normal((n_rows, n)) * rng.uniform(1e-3, 2.0, (n_rows, 1))).astype(np.float32)
    x[0, :256] = 0.0                        # an all-zero block
    with np.errstate(all="ignore"):
        return np.ascontiguousarray(fmt.quantize(x).data).reshape(-1, fmt.type_size)


@pytest.mark.parametrize("name", GOLDEN_TYPES)
def test_equals_ggml_and_numpy_on_golden(name, monkeypatch):
    fmt = by_type(name)
    for case in golden_cases(name):
        ours = kernel_deq(fmt.ggml_type, case.q).reshape(case.deq.shape)
        assert_floats_identical(ours, case.deq, f"kernel vs ggml {case.id}")
        ref = numpy_deq(fmt, case.q, monkeypatch).reshape(case.deq.shape)
        assert_floats_identical(ours, ref, f"kernel vs NumPy {case.id}")


@pytest.mark.parametrize("type_id", [t for t in ALL_IDS if _dequant.GGML_TYPES[t][1] > 1])
def test_equals_numpy_on_random_rows(type_id, monkeypatch):
    fmt = by_type(type_id)
    blocks = valid_blocks(fmt, np.random.default_rng(type_id))
    assert_floats_identical(kernel_deq(type_id, blocks), numpy_deq(fmt, blocks, monkeypatch),
                            f"kernel vs NumPy {fmt.ggml_name}")


@pytest.mark.parametrize("type_id", ALL_IDS)
def test_threads_do_not_change_result(type_id):
    _, _, ts = _dequant.GGML_TYPES[type_id]
    raw = np.random.default_rng(1).integers(0, 256, (301, ts), dtype=np.uint8)
    one = kernel_deq(type_id, raw, 1)
    assert_floats_identical(kernel_deq(type_id, raw, 2), one, "2 threads")
    assert_floats_identical(kernel_deq(type_id, raw, 3), one, "3 threads")


def test_bad_arguments_raise_kernel_error():
    good_b = np.zeros((4, 18), np.uint8)
    good_o = np.zeros((4, 32), np.float32)
    _dequant.dequantize(2, good_b, good_o, 1)
    bad = [
        (99, good_b, good_o, 1),                                   # unknown type
        (2, good_b.astype(np.int8), good_o, 1),                    # dtype
        (2, np.zeros((4, 20), np.uint8), good_o, 1),               # wrong block bytes
        (2, good_b, np.zeros((3, 32), np.float32), 1),             # out too short
        (2, good_b, np.zeros((4, 32), np.float64), 1),             # out dtype
        (2, good_b, np.zeros((4, 64), np.float32)[:, ::2], 1),     # not contiguous
        (2, good_b.tolist(), good_o, 1),                           # not an array
        (2, good_b, good_o, 0),                                    # threads
    ]
    ro = np.zeros((4, 32), np.float32)
    ro.flags.writeable = False
    bad.append((2, good_b, ro, 1))
    unaligned = np.zeros(4 * 32 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(4, 32)
    bad.append((2, good_b, unaligned, 1))
    for args in bad:
        with pytest.raises(KernelError):
            _dequant.dequantize(*args)
