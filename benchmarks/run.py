"""quantlab benchmarks: validate every path against its reference, then time it.

    python benchmarks/run.py                 # everything (~10 min on 2 cores)
    python benchmarks/run.py --only dequant matvec --reps 7
    python benchmarks/run.py --markdown out.md

Sections (each validates before it times; numbers are medians of ``--reps`` repetitions, and
ratios are taken inside one run because they survive a noisy machine better than GB/s):

bandwidth  this machine's memory bandwidth: a 256 MB ``np.copyto`` (bytes read + written / s)
dequant    GB/s of float32 produced per ggml type: quantlab's NumPy reference, gguf-py's NumPy
           dequantizer, the Cython kernel on 1 and N threads (all checked bit-identical first)
matvec     effective GB/s of weight bytes read by one mat-vec (8192 × 8192, float32 and
           integer-activation modes), and that as a share of the copy bandwidth
model      SmolLM2-135M decode and prompt tokens/s per GGUF file: NumPy reference vs fast path
           (and act_quant), llama.cpp (llama-cpp-python, if installed) on the same files and
           thread count, peak RSS from /usr/bin/time -v; GGUF files are made once with
           ``quantlab quantize`` into ``$QUANTLAB_BENCH_DIR`` (default /tmp/qlbench)
quantize   wall time of ``quantlab quantize`` F32 -> Q4_K_M vs llama-quantize (llama-cpp-python)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BENCH_DIR = Path(os.environ.get("QUANTLAB_BENCH_DIR", "/tmp/qlbench"))
MODEL_TYPES = ["F32", "F16", "Q8_0", "Q4_K_M", "Q4_0", "IQ4_NL"]
DEQ_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
             "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4"]
MATVEC_TYPES = ["Q4_0", "Q4_1", "IQ4_NL", "Q4_K", "IQ4_XS", "Q5_K", "Q6_K", "Q8_0"]


def median_time(fn, reps: int) -> float:
    fn()                                                     # warm-up (and first-touch)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def pure(fn):
    """Run ``fn`` with the NumPy reference forced (QUANTLAB_PURE_NUMPY=1)."""
    def wrapped():
        old = os.environ.get("QUANTLAB_PURE_NUMPY")
        os.environ["QUANTLAB_PURE_NUMPY"] = "1"
        try:
            return fn()
        finally:
            if old is None:
                del os.environ["QUANTLAB_PURE_NUMPY"]
            else:
                os.environ["QUANTLAB_PURE_NUMPY"] = old
    return wrapped


def table(title, header, rows):
    out = [f"\n### {title}\n", "| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(out)
    print(text, flush=True)
    return text


# ---------------------------------------------------------------- sections
def bench_bandwidth(reps):
    src = np.ones(256 << 20, np.uint8)
    dst = np.empty_like(src)
    t = median_time(lambda: np.copyto(dst, src), reps)
    bw = 2 * src.nbytes / t / 1e9
    return bw, table("Memory bandwidth (copy test)", ["test", "GB/s"],
                     [["np.copyto 256 MB (read + write)", f"{bw:.1f}"]])


def _tiled_blocks(fmt, rows, n, seed=0):
    """(rows, row bytes): a few rows quantized by quantlab, tiled (fast to build, realistic)."""
    x = (np.random.default_rng(seed).standard_normal((16, n)) * 0.02).astype(np.float32)
    q = np.ascontiguousarray(fmt.quantize(x).data)
    return np.ascontiguousarray(np.tile(q, (rows // 16, 1)))


def bench_dequant(reps, threads):
    import gguf
    from quantlab.formats.ggml import by_type
    from quantlab.kernels import _dequant
    rows = []
    for name in DEQ_TYPES:
        fmt = by_type(name)
        raw = _tiled_blocks(fmt, 256, 4096)                   # 1M values, 4 MB of float32
        blocks = raw.reshape(-1, fmt.type_size)
        out = np.empty((blocks.shape[0], fmt.block_size), np.float32)
        ref = pure(lambda: fmt.dequantize_blocks(blocks))()
        _dequant.dequantize(fmt.ggml_type, blocks, out, 1)
        assert np.array_equal(out.view(np.uint32), ref.view(np.uint32)), name
        qtype = gguf.GGMLQuantizationType[name]
        try:
            g = gguf.quants.dequantize(raw, qtype).reshape(out.shape)
            assert np.array_equal(g.view(np.uint32), ref.view(np.uint32)), f"gguf-py {name}"
            t_gguf = median_time(lambda: gguf.quants.dequantize(raw, qtype), reps)
        except NotImplementedError:
            t_gguf = None
        t_np = median_time(pure(lambda: fmt.dequantize_blocks(blocks)), reps)
        t_k = {n: median_time(lambda: _dequant.dequantize(fmt.ggml_type, blocks, out, n), reps)
               for n in sorted({1, threads})}
        gb = out.nbytes / 1e9
        rows.append([name, f"{gb / t_np:.2f}", f"{gb / t_gguf:.2f}" if t_gguf else "n/a"]
                    + [f"{gb / t_k[n]:.1f}" for n in sorted(t_k)]
                    + [f"{t_np / t_k[n]:.0f}×" for n in sorted(t_k)])
    head = ["type", "NumPy ref", "gguf-py"] + [f"Cython {n}T" for n in sorted({1, threads})] + \
           [f"speed-up {n}T" for n in sorted({1, threads})]
    return table("Dequantize, GB/s of float32 produced (1M values)", head, rows)


def bench_matvec(reps, threads, bandwidth):
    import quantlab as ql
    from quantlab.formats.ggml import dot
    from quantlab.kernels import _actquant, _matvec
    n_out, n = 8192, 8192
    x = np.random.default_rng(1).standard_normal((1, n)).astype(np.float32)
    rows = []
    for name in MATVEC_TYPES:
        fmt = ql.get(name.lower())
        w = _tiled_blocks(fmt, n_out, n)
        act = dot.partner(fmt)
        a = np.empty((1, act.row_bytes(n)), np.uint8)
        _actquant.quantize_rows(act.ggml_type, x, a, 1)
        out = np.empty((1, n_out), np.float32)
        _matvec.matmul_q8(fmt.ggml_type, w[:64], a, out[:, :64], 1)       # validate on 64 rows
        assert np.array_equal(out[:, :64], dot.matmul_q8(fmt, w[:64], a)), name
        res = [name, f"{w.nbytes / 1e6:.0f}"]
        for nt in sorted({1, threads}):
            tf = median_time(lambda: _matvec.matmul_f32(fmt.ggml_type, w, x, out, nt), reps)
            tq = median_time(lambda: _matvec.matmul_q8(fmt.ggml_type, w, a, out, nt), reps)
            res += [f"{w.nbytes / tf / 1e9:.1f}", f"{w.nbytes / tq / 1e9:.1f}"]
        best = max(float(v) for v in res[2:])
        rows.append(res + [f"{100 * best / bandwidth:.0f} %"])
    head = ["type", "MB"]
    for nt in sorted({1, threads}):
        head += [f"f32 act {nt}T", f"q8 act {nt}T"]
    return table(f"Mat-vec 8192×8192, effective GB/s of weight bytes (copy test {bandwidth:.1f} GB/s)",
                 head + ["best / copy bw"], rows)


# ---------------------------------------------------------------- model (child processes)
def make_models():
    """GGUF files of SmolLM2 in each MODEL_TYPE, made once with `quantlab quantize`."""
    from quantlab.model import default_model_path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    f32 = BENCH_DIR / "smollm2-F32.gguf"
    cli = [sys.executable, "-m", "quantlab", "quantize", "-q"]
    if not f32.exists():
        subprocess.run(cli + [str(default_model_path()), str(f32), "F32"], check=True)
    for t in MODEL_TYPES[1:]:
        p = BENCH_DIR / f"smollm2-{t}.gguf"
        if not p.exists():
            subprocess.run(cli + [str(f32), str(p), t], check=True)
    return {t: BENCH_DIR / f"smollm2-{t}.gguf" for t in MODEL_TYPES}


def child_model(path, mode, prompt, decode, threads, weights="gguf"):
    """Runs in a subprocess: prompt tokens/s (one forward of `prompt` tokens) and decode tok/s.

    ``weights="nf4"``: the GGUF's projection matrices re-quantized to NF4 (blocks of 64) with
    ``quantlab.quantize``, run through ``Model.with_weights`` (+ the packed path unless numpy).
    """
    ids = np.load(HERE.parent.parent / "shared/golden/tokens-pydoc-topics.npz")["ids"][:prompt]
    if mode == "llama.cpp":
        from llama_cpp import Llama
        llm = Llama(str(path), n_ctx=prompt + decode + 8, n_threads=threads,
                    n_threads_batch=threads, n_batch=prompt, verbose=False, logits_all=False)
        llm.eval(ids.tolist())                       # warm-up: page the weights in
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids.tolist())
        tp = time.perf_counter() - t0
        tok = int(ids[-1])
        t0 = time.perf_counter()
        for _ in range(decode):
            llm.eval([tok])
        td = time.perf_counter() - t0
    else:
        import quantlab as ql
        m = ql.load_model(path, act_quant=(mode == "act_quant"))
        if weights == "nf4":
            from quantlab.model.packed import pack
            nf4 = {lin.name: ql.quantize(lin.source.dequantize(), "nf4")
                   for lin in m.linears() if lin.name != "output.weight"}
            m = m.with_weights(nf4)
            if mode != "numpy":
                pack(m.weights)
        m.forward(ids, 0, m.new_cache(prompt), logits_from=prompt - 1)    # warm-up, as above
        cache = m.new_cache(prompt + decode + 1)
        t0 = time.perf_counter()
        logits = m.forward(ids, 0, cache, logits_from=prompt - 1)
        tp = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(decode):
            tok = int(np.argmax(logits[-1]))
            logits = m.forward(np.array([tok]), prompt + i, cache)
        td = time.perf_counter() - t0
        kv_bytes = cache.key.nbytes + cache.value.nbytes
    print(json.dumps({"prompt_tps": prompt / tp, "decode_tps": decode / td,
                      "kv_mb": kv_bytes / 2**20 if mode != "llama.cpp" else 0.0}))


def run_child(path, mode, prompt, decode, threads, weights="gguf"):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    if mode == "numpy":
        env["QUANTLAB_PURE_NUMPY"] = "1"
    cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", str(path), mode,
           str(prompt), str(decode), str(threads), weights]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{mode} on {path.name} failed:\n{r.stderr[-2000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["rss_mb"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1]) / 1024
    return res


def bench_model(threads, prompt, decode):
    files = make_models()
    try:
        import llama_cpp  # noqa: F401
        modes = ["numpy", "fast", "act_quant", "llama.cpp"]
    except ImportError:
        modes = ["numpy", "fast", "act_quant"]
    rows = []
    for t, path in [*files.items(), ("NF4", files["F32"])]:
        weights = "nf4" if t == "NF4" else "gguf"
        todo = ["numpy", "fast"] if t == "NF4" else modes          # no NF4 in llama.cpp
        res = {m: run_child(path, m, prompt, decode, threads, weights) for m in todo}
        size = path.stat().st_size / 2**20
        row = [t, f"{size:.0f}" if t != "NF4" else "(F32 file)"]
        for m in modes:
            row.append(f"{res[m]['decode_tps']:.1f} / {res[m]['prompt_tps']:.0f}" if m in res else "n/a")
        if "llama.cpp" in modes:
            best = max(res["fast"]["decode_tps"], res.get("act_quant", res["fast"])["decode_tps"])
            row.append(f"{best / res['llama.cpp']['decode_tps']:.2f}" if "llama.cpp" in res else "n/a")
        rss, kv = res["fast"]["rss_mb"], res["fast"]["kv_mb"]
        rows.append(row + ([f"{rss:.0f} ({rss / size:.2f}×)", f"{1.25 * size + kv:.0f}"] if t != "NF4"
                           else [f"{rss:.0f}", "n/a"]))
    head = ["file", "MB"] + [f"{m} decode / prompt tok/s" for m in modes]
    if "llama.cpp" in modes:
        head.append("best quantlab decode ÷ llama.cpp")
    head += ["fast peak RSS MB (÷ file)", "target 1.25 × file + KV cache, MB"]
    return table(f"SmolLM2-135M, {threads} threads, prompt {prompt} tokens, decode {decode} tokens",
                 head, rows)


def bench_quantize(threads):
    files = make_models()
    src = files["F32"]
    out = BENCH_DIR / "bench-Q4_K_M.gguf"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "quantlab", "quantize", "-q", str(src), str(out), "Q4_K_M"],
                   check=True, env=env)
    t_ql = time.perf_counter() - t0
    rows = [["quantlab quantize", f"{t_ql:.1f}"]]
    try:
        import llama_cpp
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
        params.nthread = threads
        t0 = time.perf_counter()
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(BENCH_DIR / "llama-Q4_K_M.gguf").encode(),
                                            params)
        t_ll = time.perf_counter() - t0
        if rc == 0:
            rows.append(["llama-quantize (llama-cpp-python)", f"{t_ll:.1f}"])
            rows.append(["ratio quantlab ÷ llama.cpp", f"{t_ql / t_ll:.1f}"])
    except ImportError:
        pass
    return table(f"Quantize SmolLM2 F32 -> Q4_K_M, {threads} threads, seconds", ["tool", "s"], rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=["bandwidth", "dequant", "matvec", "model", "quantize"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--markdown", help="also write the tables to this file")
    a = p.parse_args(argv)
    import quantlab as ql
    cfg = ql.config()
    header = (f"## {date.today()} — {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, {a.threads} threads\n\n"
              f"quantlab {cfg['quantlab']}, NumPy {cfg['numpy']}, build flags `{cfg['build flags']}`")
    print(header)
    parts = [header]
    bw, text = bench_bandwidth(a.reps)
    parts.append(text)
    if "dequant" in a.only:
        parts.append(bench_dequant(a.reps, a.threads))
    if "matvec" in a.only:
        parts.append(bench_matvec(a.reps, a.threads, bw))
    if "model" in a.only:
        parts.append(bench_model(a.threads, a.prompt, a.decode))
    if "quantize" in a.only:
        parts.append(bench_quantize(a.threads))
    if a.markdown:
        Path(a.markdown).write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        path, mode, prompt, decode, threads, weights = sys.argv[2:8]
        child_model(Path(path), mode, int(prompt), int(decode), int(threads), weights)
    else:
        main()
