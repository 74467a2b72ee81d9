"""The registry and QTensor contract that every format relies on."""
import numpy as np
import pytest

import quantlab as ql
from quantlab.formats.base import Format, QTensor, register

CONTRACT_NAMES = ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz",
                  "fp4_e2m1", "mxfp4", "mxfp8_e4m3", "nvfp4", "int8", "int4", "nf4", "bnb_fp4"]


def test_contract_names_are_registered():
    names = ql.formats()
    missing = [n for n in CONTRACT_NAMES if n not in names]
    assert not missing, f"missing contract formats: {missing}"
    assert all(n == n.lower() for n in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_lookup_is_case_insensitive(name):
    assert ql.get(name.upper()) is ql.get(name)


def test_unknown_format_names_the_known_ones():
    with pytest.raises(ql.FormatError, match="unknown format 'nf5'.*nf4"):
        ql.get("nf5")
    with pytest.raises(ql.FormatError):
        ql.get(3)


def test_errors_are_quantlab_errors_and_builtin_kinds():
    for cls in (ql.FormatError, ql.ShapeError, ql.InputError, ql.GGUFError, ql.ModelError):
        assert issubclass(cls, ql.QuantlabError) and issubclass(cls, ValueError)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_bad_inputs_raise_quantlab_errors(name):
    with pytest.raises(ql.InputError, match="floating-point"):
        ql.quantize(np.arange(64, dtype=np.int32), name)
    with pytest.raises(ql.InputError, match="empty"):
        ql.quantize(np.zeros((0,), np.float32), name)
    with pytest.raises(ql.FormatError, match="does not take option"):
        ql.quantize(np.ones(64, np.float32), name, no_such_option=1)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_qtensor_contract(name):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.02, size=(8, 256)).astype(np.float32)
    x_before = x.copy()
    qt = ql.quantize(x, name)
    assert isinstance(qt, QTensor) and qt.format is ql.get(name)
    assert qt.data.dtype == np.uint8
    y = qt.dequantize()
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(x, x_before)          # inputs are never modified
    assert qt.nbytes == qt.data.nbytes + sum(np.asarray(v).nbytes for v in qt.meta.values())
    assert qt.bits_per_weight == pytest.approx(8 * qt.nbytes / x.size)
    # quantizing again what was decoded is a fixed point for every format here except
    # those that rescale per call; at least the error must be small for N(0, 0.02) data
    assert ql.sqnr_db(x, y) > 5


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_describe_mentions_name_and_bits(name):
    text = ql.describe(name)
    assert name in text and "bits/weight" in text


def test_register_refuses_duplicates_and_bad_names():
    class Dummy(Format):
        name = "fp16"

        def bits_per_weight(self, **opts):
            return 16.0

        def _quantize(self, x, **opts):
            raise AssertionError

        def _dequantize(self, qt):
            raise AssertionError

    with pytest.raises(ql.FormatError, match="twice"):
        register(Dummy())
    d = Dummy()
    d.name = "Upper"
    with pytest.raises(ql.FormatError, match="lower case"):
        register(d)
