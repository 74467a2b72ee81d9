"""Tokenizer: llama.cpp's ids on the whole golden corpus, lossless round trips, special tokens,
the smollm pre-tokenizer rules, and llama.cpp's escape processing."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quantlab.errors import InputError, ModelError
from quantlab.io.gguf import GGUFFile
from quantlab.model import default_model_path, default_text, process_escapes
from quantlab.model.tokenizer import Tokenizer, bytes_to_unicode

from model_helpers import golden


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_gguf(GGUFFile(default_model_path()))


def test_golden_corpus_ids_identical_to_llama_cpp(tok):
    ref = np.load(golden("tokens-pydoc-topics.npz"))["ids"]
    t0 = time.perf_counter()
    ids = np.array(tok.encode(default_text(), parse_special=False))
    seconds = time.perf_counter() - t0
    assert ids.shape == ref.shape == (112_906,), (ids.shape, ref.shape)
    bad = np.flatnonzero(ids != ref)
    assert bad.size == 0, (f"{bad.size} ids differ; first at {bad[0]}: ours {ids[bad[0]-3:bad[0]+3]} "
                           f"llama.cpp {ref[bad[0]-3:bad[0]+3]}")
    assert seconds < 30, f"encoding the corpus took {seconds:.1f} s"


def test_corpus_round_trip(tok):
    text = default_text(escapes=False)          # the raw corpus: every character valid
    assert tok.decode(tok.encode(text)) == text


def test_smollm2_tokenizer_facts(tok):
    assert tok.vocab_size == 49152 and tok.pre == "smollm"
    assert tok.add_bos is False and tok.bos_id == 1 and tok.eos_id == 2
    assert tok.special_ids["<|im_start|>"] == 1 and tok.special_ids["<|im_end|>"] == 2
    assert len(set(bytes_to_unicode().values())) == 256


def test_special_tokens_parsed_or_plain(tok):
    text = "<|im_start|>user\nHi<|im_end|>"
    ids = tok.encode(text)
    assert ids[0] == 1 and ids[-1] == 2 and 1 not in ids[1:-1]
    plain = tok.encode(text, parse_special=False)
    assert 1 not in plain and 2 not in plain          # spelled out as ordinary text
    assert tok.decode(ids) == tok.decode(plain) == text


def test_digits_are_single_words_and_words_never_merge(tok):
    # smollm: \p{N} splits every digit; the GPT-2 regex then keeps " 12" apart from "12"
    assert tok.words("ab 123x") == ["ab", " ", "1", "2", "3", "x"]
    assert tok.words("it's  ok\n\n") == ["it", "'s", " ", " ok", "\n\n"]
    for i in tok.encode("In 2024 it was 365 days, 10x more"):
        digits = sum(chr(c).isdigit() for c in tok.token_bytes(i))
        assert digits <= 1, tok.token_bytes(i)


def test_non_ascii_letters_numbers_and_spaces(tok):
    # ß is a letter, ² a number, U+3000 white space: the collapse keeps llama.cpp's classes
    assert tok.words("straße x²\u3000y") == ["straße", " x", "²", "\u3000", "y"]


# characters whose UTF-8 bytes SmolLM2's vocabulary cannot spell (llama.cpp drops them too)
_UNSPELLABLE = "\x04\x06\x13\x14\x16\x1d"
_SPELLABLE = st.characters(exclude_characters=_UNSPELLABLE, exclude_categories=("Cs",),
                           max_codepoint=0x3FFFF)


@settings(max_examples=60, deadline=None)
@given(st.text(_SPELLABLE, max_size=60))
def test_round_trip_any_text(tok, s):
    assert tok.decode(tok.encode(s, parse_special=False)) == s


def test_unspellable_bytes_are_dropped_like_llama_cpp(tok):
    assert tok.unspellable() == [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2,
                                 *range(0xF5, 0x100)]
    assert tok.decode(tok.encode("a\x04b")) == "ab"
    assert tok.decode(tok.encode("\U00040000")) == "\ufffd" * 3      # 0xF1 lost, 3 bytes left


@given(st.lists(st.integers(0, 49151), max_size=20))
def test_decode_never_raises(tok, ids):
    assert isinstance(tok.decode(ids), str)


def test_bad_input(tok):
    with pytest.raises(InputError):
        tok.encode(b"bytes")
    with pytest.raises(InputError):
        tok.decode([49152])
    with pytest.raises(InputError, match="not valid Unicode"):
        tok.encode("lone \ud800 surrogate")
    with pytest.raises(ModelError):
        Tokenizer(["a"], [], pre="no-such-pre")
    with pytest.raises(ModelError):
        Tokenizer(["a", "b"], ["ab"])                 # a merge needs two pieces


@pytest.mark.parametrize("raw, expected", [
    (r"tab\there", "tab\there"), (r"a\nb\r", "a\nb\r"), (r"q\'\"\\", "q'\"\\"),
    (r"\x41\x7a", "Az"), (r"\x4", r"\x4"), (r"\xZZ", r"\xZZ"),
    (r"\a\u00e9", r"\a\u00e9"),              # unknown escapes stay as written
    (r"\x85", "\ufffd"),                       # a lone byte 0x85 is not UTF-8 -> U+FFFD
    ("end\\", "end\\"), ("", ""),
])
def test_process_escapes_like_llama_cpp(raw, expected):
    assert process_escapes(raw) == expected


def test_default_text_is_the_pydoc_corpus():
    from pydoc_data.topics import topics
    raw = default_text(escapes=False)
    assert raw == "\n\n".join(topics[k] for k in sorted(topics))
    assert default_text() == process_escapes(raw)
