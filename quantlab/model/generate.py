"""Streaming generation and chat with the ChatML template from the GGUF metadata.

    for piece in generate(model, "The capital of France is", n=16):   # greedy by default
        print(piece, end="", flush=True)
    text = chat_prompt(model, [{"role": "user", "content": "Hi!"}])    # ChatML, ready to generate

Generation = prompt pre-fill (one forward over all prompt tokens) then one token at a time
against the growing KV cache (llama2.c's loop).  It stops after ``n`` tokens, at an
end-of-generation token (EOS, ``<|im_end|>``, ``<|endoftext|>``, ``<|eot_id|>``…) or when the
context is full.  Pieces are valid UTF-8 text: bytes of a character split across tokens are held
back until the character is complete.

Chat templates.  GGUF stores the Hugging Face Jinja template in ``tokenizer.chat_template``.
quantlab does not embed a Jinja engine: it recognizes the **ChatML family**
(``<|im_start|>{role}\\n{content}<|im_end|>\\n``, used by SmolLM, Qwen, …) and renders it
directly, including the default system message a template inserts when the conversation has
none (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
Other templates (Llama 3, Gemma, Mistral…) raise :class:`~quantlab.ModelError`; a GGUF with no
template gets ChatML, as llama.cpp falls back to it.
"""
from __future__ import annotations

import codecs
import re
import sys
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError, ModelError
from .sampling import Sampler

__all__ = ["generate", "chat_prompt", "render_chatml", "stop_ids", "chat"]

# token texts that end a turn in common vocabularies (llama.cpp's end-of-generation detection)
_EOG_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>",
              "<|end|>", "</s>")


def stop_ids(tokenizer) -> set[int]:
    """End-of-generation ids: EOS plus the turn-ending special tokens the vocabulary has."""
    ids = {tokenizer.special_ids[t] for t in _EOG_TEXTS if t in tokenizer.special_ids}
    if tokenizer.eos_id is not None:
        ids.add(tokenizer.eos_id)
    return ids


def generate(model, prompt, n: int = 64, temperature: float = 0.0, seed: int | None = None,
             top_k: int = 40, top_p: float = 0.95, n_ctx: int | None = None, stop=None,
             cache=None, on_token: Callable[[int], None] | None = None) -> Iterator[str]:
    """Text pieces of up to ``n`` tokens continuing ``prompt`` (a str, parsed with special
    tokens and the model's BOS rule, or a list of ids).

    ``temperature=0`` is greedy (deterministic); otherwise top-k, top-p and temperature sampling
    with ``seed`` (same seed, same text).  ``n_ctx`` bounds prompt + generation (default: the
    trained context).  Bad arguments raise at call time, before the first piece.
    """
    tok = model.tokenizer
    ids = tok.encode(prompt) if isinstance(prompt, str) else list(prompt)
    if not ids:
        raise InputError("the prompt is empty: give at least one token of text")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n (tokens to generate) must be an integer >= 0, got {n!r}")
    n_ctx = int(n_ctx or model.config.seq_len)
    if n_ctx > model.config.seq_len:
        raise InputError(f"n_ctx {n_ctx} exceeds the model's trained context {model.config.seq_len}")
    if len(ids) >= n_ctx:
        raise InputError(f"the prompt is {len(ids)} tokens long; the context holds {n_ctx} "
                         "(prompt + at least one generated token must fit)")
    ids = model._check_ids(ids, n_ctx)
    sampler = Sampler(temperature, top_k, top_p, seed)
    stops = stop_ids(tok) if stop is None else set(stop)
    cache = model.new_cache(n_ctx) if cache is None else cache
    return _stream(model, ids, n, sampler, stops, cache, on_token)


def _stream(model, ids, n, sampler, stops, cache, on_token) -> Iterator[str]:
    tok = model.tokenizer
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # pre-fill: reuse whatever prefix the cache already holds (chat turns share their history)
    start = min(cache.pos, len(ids) - 1)
    logits = model.forward(ids[start:], start, _rewound(cache, start), logits_from=len(ids) - start - 1)
    for _ in range(n):
        next_id = sampler(logits[-1])
        if on_token is not None:
            on_token(next_id)
        if next_id in stops:
            break
        piece = utf8.decode(tok.token_bytes(next_id))
        if piece:
            yield piece
        if cache.pos >= cache.n_ctx:
            break
        logits = model.forward(np.array([next_id]), cache.pos, cache)
    tail = utf8.decode(b"", final=True)
    if tail:
        yield tail


def _rewound(cache, pos: int):
    """Forget positions >= pos (their keys/values are simply overwritten later)."""
    cache.pos = pos
    return cache


# ----------------------------------------------------------------------------- chat template
_CHATML_SYSTEM = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.S)


def render_chatml(messages: list[dict], add_generation_prompt: bool = True,
                  default_system: str | None = None) -> str:
    """``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message (+ the assistant header).

    ``default_system`` is inserted first when the conversation does not start with a system
    message (what SmolLM2's template does).
    """
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not {"role", "content"} <= set(msg):
            raise InputError(f"message {i} must be a dict with 'role' and 'content', got {msg!r}")
        if i == 0 and msg["role"] != "system" and default_system is not None:
            out.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
        out.append(f"<|im_start|>{msg['role']}\n{msg['content']}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def chat_prompt(model, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The model's chat template applied to ``messages`` (ChatML family only, see module doc)."""
    template = model.chat_template
    if template is None:
        return render_chatml(messages, add_generation_prompt)
    if "<|im_start|>" not in template:
        raise ModelError("this model's chat template is not ChatML (<|im_start|>role …); quantlab "
                         "renders only the ChatML family — format the prompt yourself and use generate")
    m = _CHATML_SYSTEM.search(template)
    default_system = m.group(1) if m and "!= 'system'" in template else None
    return render_chatml(messages, add_generation_prompt, default_system)


def chat(model, read: Callable[[], str] | None = None, write: Callable[[str], None] | None = None,
         n: int = 256, n_ctx: int = 2048, **sampling) -> list[dict]:
    """Interactive chat: read user lines, stream the assistant's replies; returns the history.

    ``read`` raises EOFError at the end of input (``input`` does) — the chat then ends cleanly.
    The KV cache is kept across turns, so only the new turn is pre-filled.
    """
    read = read or (lambda: input("> "))
    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    messages: list[dict] = []
    cache = model.new_cache(min(n_ctx, model.config.seq_len))
    ids: list[int] = []
    while True:
        try:
            line = read()
        except (EOFError, KeyboardInterrupt):
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        new_ids = model.tokenizer.encode(chat_prompt(model, messages))
        # keep the cached prefix that is still identical, re-run the rest
        same = 0
        for a, b in zip(ids, new_ids):
            if a != b:
                break
            same += 1
        cache.pos = min(same, cache.pos)
        if len(new_ids) + 1 >= cache.n_ctx:
            write("\n[context full: the conversation is longer than "
                  f"{cache.n_ctx} tokens; start a new chat]\n")
            break
        produced: list[int] = []
        reply = []
        for piece in generate(model, new_ids, n=min(n, cache.n_ctx - len(new_ids) - 1),
                              n_ctx=cache.n_ctx, cache=cache, on_token=produced.append, **sampling):
            reply.append(piece)
            write(piece)
        write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
        ids = new_ids + produced
    return messages
