"""Run quantlab's CuPy checks and one timing on a GPU machine.

    python benchmarks/gpu_check.py

1. the GPU equality tests (``tests/kernels/test_gpu.py``: ggml dequantizers bit-identical on
   CuPy arrays, the model's math within float tolerance) — they skip without CuPy / a GPU;
2. a timing: Q4_0 dequantize of 64M weights and one attention step, NumPy (CPU) vs CuPy
   (GPU, synchronized), medians of 5 repetitions.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def median(fn, reps=5, sync=None):
    fn()
    if sync:
        sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-rs", str(ROOT / "tests/kernels/test_gpu.py")])
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:
        print(f"gpu_check: no timing ({exc})")
        return rc
    import quantlab as ql
    from quantlab.model.llama import attention
    sync = cupy.cuda.Device().synchronize
    fmt = ql.get("q4_0")
    x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
    blocks = np.tile(np.ascontiguousarray(fmt.quantize(x).data).reshape(-1, fmt.type_size), (256, 1))
    gblocks = cupy.asarray(blocks)
    n = blocks.shape[0] * 32
    t_np = median(lambda: fmt.dequantize_blocks(blocks))
    t_cp = median(lambda: fmt.dequantize_blocks(gblocks), sync=sync)
    print(f"Q4_0 dequantize {n / 1e6:.0f}M weights: NumPy {4 * n / t_np / 1e9:.1f} GB/s, "
          f"CuPy {4 * n / t_cp / 1e9:.1f} GB/s ({t_np / t_cp:.0f}x)")
    rng = np.random.default_rng(1)
    q = rng.standard_normal((512, 9, 64)).astype(np.float32)
    k = rng.standard_normal((512, 3, 64)).astype(np.float32)
    t_np = median(lambda: attention(q, k, k, 0))
    gq, gk = cupy.asarray(q), cupy.asarray(k)
    t_cp = median(lambda: attention(gq, gk, gk, 0), sync=sync)
    print(f"attention, 512 tokens, 9 heads: NumPy {t_np * 1e3:.1f} ms, CuPy {t_cp * 1e3:.2f} ms")
    return rc


if __name__ == "__main__":
    sys.exit(main())
