"""Lesson 1's memory arithmetic and lesson 8's next-token view, against hand formulas and SciPy."""
import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from quantlab import InputError, ShapeError, viz

V = 12                                                   # a toy vocabulary


class ToyTokenizer:
    def encode(self, text):
        return [ord(c) % V for c in text]

    def decode(self, ids):
        return "".join(" " + chr(97 + i) for i in ids)   # leading space, like BPE pieces


class ToyModel:
    """logits(ids)[t] = row ids[t] of a fixed table: a 'model' whose answer we know."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)     # (V, V)
        self.tokenizer = ToyTokenizer()

    def logits(self, ids):
        return self.table[np.asarray(ids)]

    def generate(self, prompt, n=16, n_ctx=None):       # greedy, one piece per token
        self.n_ctx = n_ctx
        last = self.tokenizer.encode(prompt)[-1]
        for _ in range(n):
            last = int(np.argmax(self.table[last]))
            yield self.tokenizer.decode([last])


RNG = np.random.default_rng(1)
REF = ToyModel(RNG.normal(0, 3, (V, V)))
NOISY = ToyModel(REF.table + RNG.normal(0, 1.5, (V, V)))


# ----------------------------------------------------------------------------- memory
def test_kv_cache_and_memory_rows_follow_the_formulas():
    # Llama-2-7B shape, FP16, 4k context: 2 · 32 · 4096 · 4096 · 2 bytes = 2 GiB exactly
    assert viz.kv_cache_bytes(32, 4096, 4096, 16) == 2 * 32 * 4096 * 4096 * 2 == 2**31
    rows = viz.memory_rows(4096)
    assert rows["FP16 everything"] == (7e9 * 2 / 1e9, 2**31 / 1e9)
    assert rows["4-bit weights (weight-only)"] == (7e9 * 4.5 / 8 / 1e9, 2**31 / 1e9)
    assert rows["W8A8 (weights + KV in 8 bits)"] == (7.0, 2**30 / 1e9)
    for bad in [dict(ctx=0), dict(bits=-1)]:
        with pytest.raises(InputError):
            viz.kv_cache_bytes(**{"n_layers": 32, "kv_dim": 4096, "ctx": 4096, "bits": 16, **bad})


def test_memory_plot_and_slider():
    ax = viz.plot_memory(2048)
    assert len(ax.patches) == 6                          # 3 setups × (weights, KV)
    widths = sorted(round(p.get_width(), 9) for p in ax.patches)
    kv = viz.kv_cache_bytes(32, 4096, 2048, 16) / 1e9
    assert round(kv, 9) in widths
    ui = viz.memory_explorer()
    ui.controls["ctx"].value = 65536
    assert ui.last == viz.memory_rows(65536)
    w, k = ui.last["FP16 everything"]
    assert k > w / 2                                      # at 64k the cache rivals the weights


# ----------------------------------------------------------------------------- next token
def test_next_token_probs_is_the_softmax_of_the_last_position():
    p = viz.next_token_probs(REF, "hello")
    last = ToyTokenizer().encode("hello")[-1]
    np.testing.assert_allclose(p, softmax(REF.table[last].astype(np.float64)), rtol=1e-12)
    assert p.dtype == np.float64 and p.sum() == pytest.approx(1.0, abs=1e-15)
    huge = ToyModel(REF.table * 1e4)                      # no overflow on large logits
    assert np.isfinite(viz.next_token_probs(huge, "hello")).all()
    with pytest.raises(InputError, match="non-empty"):
        viz.next_token_probs(REF, "")


def test_kl_divergence_matches_scipy():
    for _ in range(5):
        p, q = softmax(RNG.normal(size=50)), softmax(RNG.normal(size=50))
        assert viz.kl_divergence(p, q) == pytest.approx(entropy(p, q), rel=1e-12)
    p = softmax(RNG.normal(size=50))
    assert viz.kl_divergence(p, p) == 0.0
    zero = np.array([0.5, 0.5, 0.0])
    assert viz.kl_divergence(zero, np.array([0.25, 0.25, 0.5])) == pytest.approx(np.log(2))
    assert viz.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf
    with pytest.raises(ShapeError):
        viz.kl_divergence(p, p[:-1])


def test_next_token_view_lists_the_reference_top_k_and_the_variant_choice():
    prompt = "abc"
    p_ref, p = viz.next_token_probs(REF, prompt), viz.next_token_probs(NOISY, prompt)
    view = viz.next_token_view(REF, NOISY, prompt, k=3)
    top = list(np.argsort(-p_ref)[:3])
    assert view["ids"][:3] == top
    if int(np.argmax(p)) not in top:
        assert view["ids"][3] == int(np.argmax(p))
    assert view["same_top1"] == (int(np.argmax(p)) == top[0])
    np.testing.assert_array_equal(view["p_ref"], p_ref[view["ids"]])
    np.testing.assert_array_equal(view["p"], p[view["ids"]])
    assert view["kl"] == pytest.approx(entropy(p_ref, p), rel=1e-12)
    assert view["tokens"] == [ToyTokenizer().decode([i]) for i in view["ids"]]
    same = viz.next_token_view(REF, REF, prompt, k=3)
    assert same["kl"] == 0.0 and same["same_top1"] and len(same["ids"]) == 3
    ax = viz.plot_next_token(view, names=("ref", "q4_0"))
    assert len(ax.patches) == 2 * len(view["ids"])
    assert [t.get_text() for t in ax.get_yticklabels()] == [repr(t) for t in view["tokens"]]


def test_next_token_explorer_follows_its_controls():
    ui = viz.next_token_explorer({"f32": REF, "noisy": NOISY, "same": REF}, prompt="hi")
    assert ui.controls["variant"].options == ("noisy", "same")
    assert ui.last["kl"] == pytest.approx(entropy(viz.next_token_probs(REF, "hi"),
                                                  viz.next_token_probs(NOISY, "hi")))
    ui.controls["variant"].value = "same"
    assert ui.last["kl"] == 0.0
    ui.controls["text"].value = "other prompt"
    assert ui.last["prompt"] == "other prompt"
    with pytest.raises(InputError, match="reference"):
        viz.next_token_explorer({"f32": REF}, reference="q4_0")


def test_text_generator_shows_the_greedy_continuation_escaped():
    def greedy(model, prompt, n):
        last, out = ToyTokenizer().encode(prompt)[-1], prompt
        for _ in range(n):
            last = int(np.argmax(model.table[last]))
            out += ToyTokenizer().decode([last])
        return out
    assert viz.continue_text(NOISY, "x<y", n=5) == greedy(NOISY, "x<y", 5)
    assert NOISY.n_ctx == 3 + 5 + 1                       # prompt + new tokens, not 8192
    ui = viz.text_generator({"f32": REF, "noisy": NOISY}, prompt="x<y", n=4)
    ui.controls["model"].value = "noisy"
    assert ui.generate() == greedy(NOISY, "x<y", 4)
    assert "x&lt;y" in ui.result.value and "<y" not in ui.result.value
    ui.controls["button"].click()                         # the button runs the same
    assert greedy(NOISY, "x<y", 4).replace("<", "&lt;") in ui.result.value
    with pytest.raises(InputError):
        viz.continue_text(REF, "")
