"""The tokenizer's compact tables: merge ranks keyed by the merge text (not a tuple of its two
pieces) give the textbook pair-ranked BPE, and the vocabulary's and merges' strings are the
GGUF metadata's own objects, held once."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from qltest import model_path
from quantlab.errors import ModelError
from quantlab.io.gguf import GGUFFile
from quantlab.model.tokenizer import Tokenizer, bytes_to_unicode


def pair_bpe(word: str, merges: list[str]) -> list[str]:
    """BPE as its definition reads: ranks of (a, b) pairs (first occurrence of a merge wins),
    join the lowest-ranked adjacent pair, leftmost on ties, until no pair is a merge."""
    ranks: dict[tuple[str, str], int] = {}
    for r, m in enumerate(merges):
        a, _, b = m.partition(" ")
        ranks.setdefault((a, b), r)
    byte_char = bytes_to_unicode()
    parts = [byte_char[b] for b in word.encode("utf-8")]
    while len(parts) > 1:
        r = [ranks.get(p, float("inf")) for p in zip(parts, parts[1:])]
        if min(r) == float("inf"):
            break
        i = r.index(min(r))
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


# pieces of "a", "b", "c" and space (Ġ), with merges that only the pair definition settles:
# "b c" outranks "a b"; "a b" again later (the first rank counts); "a b c" has two spaces
# (pieces (a, "b c"), which never occur); " Ġa" has an empty first piece
MERGES = ["b c", "Ġ a", "a b", "Ġa bc", "a bc", "a b", "ab c", "a b c", " Ġa", "c c", "cc c",
          "Ġ b", "Ġb c"]
TOKENS = ["a", "b", "c", "Ġ", "bc", "Ġa", "ab", "Ġabc", "abc", "cc", "ccc", "Ġb", "Ġbc"]


@settings(max_examples=200, deadline=None)
@given(st.text("abc ", max_size=40))
def test_merge_text_keys_give_pair_ranked_bpe(text):
    tok = Tokenizer(TOKENS, MERGES, pre="gpt2")
    for word in tok.words(text):
        pieces = pair_bpe(word, MERGES)
        assert [tok.tokens[i] for i in tok._encode_word(word)] == pieces, word


def test_ranks_first_occurrence_and_bad_merge():
    tok = Tokenizer(TOKENS, MERGES, pre="gpt2")
    assert tok.ranks["a b"] == 2 and len(tok.ranks) == len(set(MERGES))
    with pytest.raises(ModelError, match="not two pieces"):
        Tokenizer(TOKENS, ["a b", "abc"], pre="gpt2")


@pytest.fixture(scope="module")
def gguf_and_tok():
    g = GGUFFile(model_path())
    return g, Tokenizer.from_gguf(g)


def test_smollm2_tables_hold_the_metadata_strings(gguf_and_tok):
    g, tok = gguf_and_tok
    tokens, merges = g.metadata["tokenizer.ggml.tokens"], g.metadata["tokenizer.ggml.merges"]
    assert len(set(merges)) == len(merges) == len(tok.ranks) == 48900
    assert all(k is m for k, m in zip(tok.ranks, merges))       # the same str objects, in order
    assert list(tok.ranks.values()) == list(range(len(merges)))
    assert tok.tokens is tokens and len(tok.token_to_id) == len(tokens)
    assert all(tok.token_to_id[t] == i for i, t in enumerate(tokens))
