"""ggml golden cases for the tests in ``tests/ggml`` (data: ``../shared/golden/ggml``, see its README).

Every ``<TYPE>.npz`` holds, per input set and mode, the bytes ``ggml_quantize_chunk`` wrote and the
floats ggml's ``to_float`` gave back for them::

    from ggml_golden import golden_params, assert_bytes_equal, assert_floats_identical

    @pytest.mark.parametrize("case", golden_params("Q4_0"))
    def test_q4_0(case):
        qt = ql.quantize(case.x, "q4_0", imatrix=case.imatrix)
        assert_bytes_equal(qt.data, case.q, 18, case.id)

The shared assertions of ``tests/qltest.py`` are re-exported here, so ggml tests have one import line.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Iterator, NamedTuple

import numpy as np
import pytest


from qltest import assert_bytes_equal, assert_floats_identical, golden  # noqa: E402,F401  re-exported

SETS = ("normal", "heavy", "edge", "real_ffn_down", "real_embd")
MODES = ("none", "imatrix")


class GoldenCase(NamedTuple):
    """One ggml reference result: input rows, importance (None for mode "none"), bytes, floats."""
    type_name: str          # ggml spelling, e.g. "Q4_0"
    set: str                # input set (see SETS)
    mode: str               # "none" (no imatrix: ggml's _ref path) or "imatrix"
    x: np.ndarray           # (rows, n) float32 input
    imatrix: np.ndarray | None  # (n,) float32 importance, or None
    q: np.ndarray           # (rows, row_bytes) uint8: what ggml_quantize_chunk wrote
    deq: np.ndarray         # (rows, n) float32: ggml's to_float of q

    @property
    def id(self) -> str:
        return f"{self.type_name}/{self.set}/{self.mode}"


@lru_cache(maxsize=None)
def _npz(name: str) -> dict[str, np.ndarray]:
    with np.load(golden(f"ggml/{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def golden_inputs() -> dict[str, np.ndarray]:
    """``inputs.npz``: ``x/<set>`` (rows, n) float32 and ``imatrix/<set>`` (n,) float32."""
    return _npz("inputs")


def golden_cases(type_name: str) -> Iterator[GoldenCase]:
    """Every (set, mode) case stored for ggml type ``type_name`` ("Q4_0", "IQ4_XS", "F16", ...)."""
    ref = _npz(type_name)
    inputs = golden_inputs()
    for s in SETS:
        for mode in MODES:
            key = f"{s}/{mode}"
            if f"q/{key}" not in ref:
                continue            # row length not a multiple of the block, or no imatrix run
            yield GoldenCase(type_name, s, mode, inputs[f"x/{s}"],
                             inputs[f"imatrix/{s}"] if mode == "imatrix" else None,
                             ref[f"q/{key}"], ref[f"deq/{key}"])


def golden_params(type_name: str) -> list:
    """``golden_cases`` as ``pytest.param``s with readable ids, for ``@pytest.mark.parametrize``."""
    return [pytest.param(c, id=c.id) for c in golden_cases(type_name)]


def random_blocks(fmt, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """``n_blocks`` blocks of random bytes for ``fmt`` whose float fields are finite.

    Every fp16 field named ``d``/``m``/``dmin``/``s``/``value`` (per ``fmt.layout``) that came out inf/NaN
    is replaced by 1.0 (0x3C00); BF16 storage likewise (0x3F80).  For fuzzing dequantizers
    against an independent decoder on *arbitrary* stored bytes.  -> (n_blocks, type_size) uint8
    """
    b = rng.integers(0, 256, (n_blocks, fmt.type_size), dtype=np.uint8)
    off = 0
    for name, size, _ in fmt.layout:
        if size == 2 and name in ("d", "m", "dmin", "s", "value"):
            h = b[:, off:off + 2].copy().view("<u2")
            exp_mask, one = (0x7F80, 0x3F80) if fmt.ggml_name == "BF16" else (0x7C00, 0x3C00)
            h[(h & exp_mask) == exp_mask] = one
            b[:, off:off + 2] = h.view(np.uint8)
        off += size
    return b


def _splitmix(k: int) -> float:
    m = 2**64
    z = (k + 1) * 0x9E3779B97F4A7C15 % m
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % m
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB % m
    return ((z ^ (z >> 31)) >> 11) / 2**53


@lru_cache(maxsize=None)
def conformance_inputs():
    """Spec §12: the 4 × 512 matrix X and imatrix QW (checksums asserted). Treat as read-only."""
    base = np.array([[((2 * _splitmix(512 * r + c) - 1) ** 3) * 2.0 for c in range(512)]
                     for r in range(4)])
    base[1] *= 0.01
    base[2][100] = 25.0
    base[3][0:64] = 0.0
    x = base.astype(np.float32)
    qw = np.array([0.5 + ((37 * j) % 11) / 4 for j in range(512)], dtype=np.float32)
    qw[np.arange(512) % 13 == 0] = 0
    assert hashlib.sha256(x.tobytes()).hexdigest().startswith("15cfe8d7e92644fc")
    assert hashlib.sha256(qw.tobytes()).hexdigest().startswith("d6b398ba016f9c6f")
    return x, qw
