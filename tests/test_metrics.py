import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

import quantlab as ql


def test_metrics_on_known_values():
    x = np.array([1.0, -2.0, 3.0, 0.0])
    y = np.array([1.0, -2.0, 2.0, 1.0])
    assert ql.rmse(x, y) == pytest.approx(math.sqrt(2 / 4))
    assert ql.max_abs_error(x, y) == 1.0
    assert ql.sqnr_db(x, y) == pytest.approx(10 * math.log10(14 / 2))
    assert ql.cosine(x, y) == pytest.approx(np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y))
    assert ql.sqnr_db(x, x) == math.inf and ql.rmse(x, x) == 0.0
    assert set(ql.error_report(x, y)) == {"rmse", "max_abs", "sqnr_db", "cosine"}


def test_metric_shape_errors():
    with pytest.raises(ql.ShapeError):
        ql.rmse(np.zeros(3), np.zeros(4))
    with pytest.raises(ql.ShapeError):
        ql.sqnr_db(np.zeros(0), np.zeros(0))


@given(arrays(np.float32, 16, elements=st.floats(-1e3, 1e3, width=32)),
       arrays(np.float32, 16, elements=st.floats(-1e3, 1e3, width=32)))
def test_metric_invariants(x, y):
    assert ql.rmse(x, y) == pytest.approx(ql.rmse(y, x))
    assert ql.rmse(x, y) <= ql.max_abs_error(x, y) + 1e-12
    assert -1 - 1e-9 <= ql.cosine(x, y) <= 1 + 1e-9
