"""quantlab.io.gguf's ggml type table against its oracle, the ``gguf`` package's table, and
the reader's promise not to import ``gguf`` (the model-run path does not need it)."""
from __future__ import annotations

import subprocess
import sys

from gguf.constants import GGML_QUANT_SIZES

from quantlab.io.gguf import GGML_TYPES


def test_type_table_is_the_gguf_packages():
    oracle = {int(t): (t.name, bs, ts) for t, (bs, ts) in GGML_QUANT_SIZES.items()}
    assert GGML_TYPES == oracle


def test_loading_a_model_does_not_import_the_gguf_package():
    code = ("import sys, quantlab; quantlab.load_model(); "
            "print(sorted(m for m in sys.modules if m == 'gguf' or m.startswith('gguf.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
