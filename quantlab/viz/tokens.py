"""What a model would say next: next-token distributions of two models side by side (lesson 8).

Perplexity condenses a model's quality into one number; this shows the distribution behind
it.  For a prompt, the reference model (float32 weights) and a quantized variant each give
probabilities over the whole vocabulary for the next token::

    p = softmax(logits of the last prompt position)               (vocab,) float64
    KL(p_ref ‖ p) = Σ_t p_ref[t] · ln(p_ref[t] / p[t])             nats, 0 = identical

the same divergence ``llama-perplexity --kl-divergence`` averages over a text.  A model here
is anything with ``.tokenizer`` (``encode``/``decode``) and ``.logits(ids)`` — a
:class:`quantlab.model.Model` or a variant from ``Model.with_weights``.  :func:`text_generator`
also needs ``.generate(prompt, n=..., n_ctx=...)`` (greedy by default).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, ShapeError
from .style import format_color, new_axes, style
from .widgets import interactive

__all__ = ["next_token_probs", "kl_divergence", "next_token_view", "plot_next_token",
           "next_token_explorer", "continue_text", "text_generator"]


def next_token_probs(model, prompt: str) -> np.ndarray:
    """``softmax`` of the model's logits after ``prompt``: (vocab,) float64, sums to 1."""
    if not isinstance(prompt, str) or not prompt:
        raise InputError("the prompt must be a non-empty string")
    ids = model.tokenizer.encode(prompt)
    if len(ids) == 0:
        raise InputError(f"the prompt {prompt!r} tokenizes to no tokens")
    z = np.asarray(model.logits(ids)[-1], dtype=np.float64)          # (vocab,)
    e = np.exp(z - z.max())                                           # max-shifted: no overflow
    return e / e.sum()


def kl_divergence(p_ref, p) -> float:
    """``Σ p_ref · ln(p_ref / p)`` in nats (terms with ``p_ref = 0`` count 0; ``inf`` where
    ``p = 0 < p_ref``)."""
    p_ref = np.asarray(p_ref, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if p_ref.shape != p.shape or p_ref.ndim != 1:
        raise ShapeError(f"two 1-D distributions of equal length needed, got {p_ref.shape} "
                         f"and {p.shape}")
    on = p_ref > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p_ref[on] * (np.log(p_ref[on]) - np.log(p[on]))))


def next_token_view(reference, model, prompt: str, k: int = 8, *, p_ref=None) -> dict:
    """The numbers :func:`plot_next_token` draws.

    Tokens: the reference's ``k`` most likely (most likely first), plus the variant's top
    token if it is not among them.  Returns ``{"prompt", "ids", "tokens" (texts), "p_ref",
    "p", "kl", "top1_ref", "top1", "same_top1"}``; ``p_ref`` may be passed in precomputed.
    """
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    p_ref = next_token_probs(reference, prompt) if p_ref is None else np.asarray(p_ref)
    p = next_token_probs(model, prompt)
    if p.shape != p_ref.shape:
        raise ShapeError(f"the two models have different vocabularies ({p_ref.size} vs {p.size})")
    ids = [int(i) for i in np.argsort(-p_ref, kind="stable")[:k]]
    top1 = int(np.argmax(p))
    if top1 not in ids:
        ids.append(top1)
    decode = reference.tokenizer.decode
    return {"prompt": prompt, "ids": ids, "tokens": [decode([i]) for i in ids],
            "p_ref": p_ref[ids], "p": p[ids], "kl": kl_divergence(p_ref, p),
            "top1_ref": decode([ids[0]]), "top1": decode([top1]), "same_top1": top1 == ids[0]}


def plot_next_token(view: dict, ax=None, *, names=("f32", "variant")):
    """Paired horizontal bars: each candidate token's probability under both models."""
    y = np.arange(len(view["ids"]))
    ref_name, name = names
    with style():
        ax = new_axes(ax, figsize=(7, 3.2))
        ax.barh(y - 0.2, view["p_ref"], 0.4, color="#999999", label=ref_name)
        ax.barh(y + 0.2, view["p"], 0.4, color=format_color(name.split()[0]), label=name)
        ax.set_yticks(y, [repr(t) for t in view["tokens"]])   # quotes show leading spaces
        ax.invert_yaxis()                                        # most likely on top
        ax.set_xlabel("probability of the next token")
        ax.set_title(f"after {view['prompt']!r}: KL({ref_name} ‖ {name}) = {view['kl']:.3f} nats",
                     fontsize=9)
        ax.legend(loc="lower right")
    return ax


def next_token_explorer(models: dict, prompt: str = "The three primary colors are", *,
                        reference: str | None = None, k: int = 8):
    """Pick a variant and type a prompt (Enter to apply): :func:`plot_next_token` against the
    ``reference`` (default: the first of ``models``).  ``.last`` = the :func:`next_token_view`."""
    import ipywidgets as W
    names = list(models)
    if not names:
        raise InputError("next_token_explorer needs at least one model")
    reference = names[0] if reference is None else reference
    if reference not in models:
        raise InputError(f"reference {reference!r} is not one of {names}")
    cache: dict[str, np.ndarray] = {}                     # prompt -> reference distribution

    def draw(ax, variant, text):
        if text not in cache:
            cache[text] = next_token_probs(models[reference], text)
        view = next_token_view(models[reference], models[variant], text, k, p_ref=cache[text])
        plot_next_token(view, ax, names=(reference, variant))
        return view

    others = [n for n in names if n != reference] or names
    return interactive(draw, figsize=(7, 3.2),
                       variant=W.Dropdown(options=others, value=others[0], description="weights"),
                       text=W.Text(value=prompt, description="prompt", continuous_update=False))


def continue_text(model, prompt: str, n: int = 16) -> str:
    """``prompt`` followed by ``n`` greedily generated tokens (a context of prompt + n)."""
    if not isinstance(prompt, str) or not prompt:
        raise InputError("the prompt must be a non-empty string")
    n_ctx = len(model.tokenizer.encode(prompt)) + n + 1     # no 8192-position cache needed
    return prompt + "".join(model.generate(prompt, n=n, n_ctx=n_ctx))


def text_generator(models: dict, prompt: str = "Quantization is", n: int = 16):
    """Prompt box + model picker + "generate" button; the text appears below.

    ``.controls`` (prompt, model, button), ``.result`` (an HTML widget) and ``.generate()``
    (what a click runs; returns the text) are there for tests.
    """
    import html
    import ipywidgets as W
    names = list(models)
    if not names:
        raise InputError("text_generator needs at least one model")
    box = W.Text(value=prompt, description="prompt")
    pick = W.Dropdown(options=names, value=names[0], description="weights")
    button = W.Button(description="generate")
    result = W.HTML()
    ui = W.VBox([W.HBox([box, pick, button]), result])
    ui.controls = {"prompt": box, "model": pick, "button": button}
    ui.result = result

    def generate(_=None) -> str:
        result.value = "<i>generating…</i>"
        text = continue_text(models[pick.value], box.value, n)
        result.value = f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>"
        return text

    button.on_click(generate)
    ui.generate = generate
    return ui
