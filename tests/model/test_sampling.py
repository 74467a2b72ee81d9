"""Sampling: greedy is argmax, seeds reproduce, top-k / top-p keep exactly the tokens they should,
and the empirical distribution follows softmax(logits / T)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from quantlab.errors import InputError
from quantlab.model.sampling import Sampler, greedy

logits_st = arrays(np.float32, st.integers(2, 40), elements=st.floats(-30, 30, width=32))


@given(logits_st)
def test_temperature_zero_is_argmax(logits):
    assert Sampler(0.0)(logits) == int(np.argmax(logits)) == greedy(logits)


@settings(deadline=None)
@given(logits_st, st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_top_k_only_draws_from_the_k_best(logits, k, seed):
    s = Sampler(1.5, top_k=k, seed=seed)
    allowed = set(np.argsort(-logits.astype(np.float64), kind="stable")[:k].tolist())
    assert all(s(logits) in allowed for _ in range(5))


def test_top_p_keeps_the_nucleus():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    s = Sampler(1.0, top_p=0.8, seed=0)               # 0.5 + 0.3 reaches 0.8: keep {0, 1}
    assert {s(logits) for _ in range(300)} == {0, 1}
    s = Sampler(1.0, top_p=0.81, seed=0)              # needs the third token too
    assert {s(logits) for _ in range(300)} == {0, 1, 2}


def test_same_seed_same_draws_and_distribution():
    logits = np.array([2.0, 1.0, 0.0, -1.0], np.float32)
    a = [Sampler(0.7, top_k=0, top_p=1.0, seed=7)(logits) for _ in range(1)]
    s1, s2 = Sampler(0.7, top_k=0, seed=7), Sampler(0.7, top_k=0, seed=7)
    d1 = [s1(logits) for _ in range(4000)]
    assert d1 == [s2(logits) for _ in range(4000)] and a[0] == d1[0]
    p = np.exp(logits / 0.7) / np.exp(logits / 0.7).sum()
    np.testing.assert_allclose(np.bincount(d1, minlength=4) / 4000, p, atol=0.03)


@pytest.mark.parametrize("kw", [dict(temperature=-1), dict(temperature=float("nan")),
                                dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_parameters(kw):
    with pytest.raises(InputError):
        Sampler(**kw)
