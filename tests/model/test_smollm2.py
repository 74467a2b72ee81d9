"""The embedded SmolLM2-135M-Instruct against llama.cpp: perplexity (golden running values of
llama-perplexity on the F32 model), the importance matrix of llama-imatrix, KV-cache invariants,
deterministic generation, and the CLI.  Real model: marked slow (still run in CI, ~1-2 min)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import quantlab as ql
from quantlab.cli import main
from quantlab.io.imatrix import read_imatrix
from quantlab.model import default_text, process_escapes
from quantlab.model.imatrix import collect_imatrix

from model_helpers import golden, smollm2

pytestmark = pytest.mark.slow

# llama-perplexity -c 512 on the F32 model (golden README), first 10 chunks
GOLDEN_RUNNING = [17.7365, 12.6063, 11.2305, 12.9969, 15.2533, 14.9142, 12.7019, 11.9375, 12.3684,
                  11.9344]


@pytest.fixture(scope="module")
def imatrix_run():
    """One pass over 10 chunks of 512 tokens: llama-imatrix's run that made the golden file."""
    return collect_imatrix(smollm2(), default_text(), ctx=512, chunks=10, progress=False)


def test_running_perplexity_matches_llama_cpp(imatrix_run):
    got = imatrix_run.ppl.running
    rel = np.abs(np.array(got) / GOLDEN_RUNNING - 1)
    assert rel.max() < 1e-3, "\n".join(f"[{i + 1}] ours {g:.4f} llama.cpp {r:.4f}"
                                      for i, (g, r) in enumerate(zip(got, GOLDEN_RUNNING)))
    assert imatrix_run.ppl.n_tokens == 10 * 255


def test_perplexity_api_first_chunk(imatrix_run):
    r = ql.perplexity(smollm2(), default_text(), ctx=512, chunks=1, progress=False)
    assert r.running == imatrix_run.ppl.running[:1]      # hooks observe, never change
    assert r.running[0] == pytest.approx(GOLDEN_RUNNING[0], rel=1e-3)
    assert r.format_running().startswith("[1]17.73")
    assert str(r).startswith("Final estimate: PPL = 17.73") and r.stderr > 0


def test_imatrix_matches_llama_imatrix(imatrix_run):
    ref = read_imatrix(golden("imatrix-smollm2-pydoc.gguf"))
    assert set(imatrix_run.sums) == set(ref.sums)        # every blk.* matmul, nothing else
    worst = 0.0
    for name, s in imatrix_run.sums.items():
        assert imatrix_run.counts[name] == ref.counts[name][0] == 5120, name
        r = ref.sums[name].reshape(-1)
        worst = max(worst, float(np.max(np.abs(s - r) / np.maximum(r, 1e-6))))
    assert worst < 1e-2, f"worst relative difference of in_sum2 to llama-imatrix: {worst:.2e}"
    s = imatrix_run.sums
    assert np.array_equal(s["blk.3.attn_q.weight"], s["blk.3.attn_k.weight"])   # same input


def test_imatrix_file_round_trip(imatrix_run, tmp_path):
    path = imatrix_run.save(tmp_path / "m.imatrix.gguf")
    back = read_imatrix(path)
    assert back.chunk_count == 10 and back.chunk_size == 512
    for name, s in imatrix_run.sums.items():
        np.testing.assert_array_equal(back.sums[name].reshape(-1), s)


def test_kv_cache_invariants():
    m = smollm2()
    ids = np.array(m.tokenizer.encode(default_text()[:400])[:40])
    full = m.logits(ids)
    assert full.shape == (40, 49152) and full.dtype == np.float32
    np.testing.assert_allclose(m.logits(ids[:16]), full[:16], rtol=1e-4, atol=1e-4)
    cache = m.new_cache(40)
    steps = [m.forward(ids[:30], 0, cache)] + [m.forward(ids[i:i + 1], i, cache) for i in range(30, 40)]
    np.testing.assert_allclose(np.concatenate(steps), full, rtol=1e-4, atol=1e-4)


def test_generation_is_deterministic():
    m = smollm2()
    prompt = "The capital of France is"
    greedy = "".join(m.generate(prompt, n=4))
    assert greedy == "".join(m.generate(prompt, n=4)) and "Paris" in greedy
    sampled = "".join(m.generate(prompt, n=4, temperature=0.8, seed=1))
    assert sampled == "".join(m.generate(prompt, n=4, temperature=0.8, seed=1))


def test_bad_requests():
    m = smollm2()
    with pytest.raises(ql.InputError, match="needs at least 1024 tokens"):
        ql.perplexity(m, "too short", ctx=512)
    with pytest.raises(ql.InputError):
        ql.perplexity(m, "")
    with pytest.raises(ql.InputError, match="context holds 8"):
        m.generate("a prompt that is much longer than eight tokens, surely", n_ctx=8)
    with pytest.raises(ql.InputError):
        m.logits([])
    with pytest.raises(ql.InputError):
        m.logits(list(range(8193)))


def test_chat_template_is_chatml_with_default_system():
    from quantlab.model.generate import chat_prompt
    text = chat_prompt(smollm2(), [{"role": "user", "content": "Hi"}])
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                    "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_cli_tokenize_ids(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("Hello world<|im_end|> 42\\n")
    assert main(["tokenize", "-f", str(f), "--ids"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(smollm2().tokenizer.encode("Hello world<|im_end|> 42\n"))   # escape processed


def test_cli_perplexity_and_imatrix(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text(default_text(escapes=False)[:3000])
    assert main(["perplexity", "-f", str(f), "-c", "64", "--chunks", "2", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    text = process_escapes(default_text(escapes=False)[:3000])      # what the CLI reads
    r = ql.perplexity(smollm2(), text, ctx=64, chunks=2, progress=False)
    assert out == [r.format_running(), str(r)]
    o = tmp_path / "x.imatrix.gguf"
    assert main(["imatrix", "-f", str(f), "-o", str(o), "-c", "64", "--chunks", "2", "-q"]) == 0
    im = read_imatrix(o)
    assert im.chunk_count == 2 and im.counts["blk.0.ffn_down.weight"][0] == 128


def test_cli_chat_streams_and_exits_cleanly_at_end_of_input():
    cmd = [sys.executable, "-m", "quantlab", "chat", "-n", "4"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    p = subprocess.run(cmd, input="What is 2+2?\n", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    p = subprocess.run([sys.executable, "-m", "quantlab", "perplexity", "-f", "/no/such/file"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("quantlab: error:") and "Traceback" not in p.stderr
