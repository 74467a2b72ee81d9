"""Byte-level BPE from a GGUF's ``tokenizer.ggml.*`` metadata, token-for-token with llama.cpp.

    tok = Tokenizer.from_gguf(g)                 # g: quantlab.io.gguf.GGUFFile
    ids = tok.encode("Hello<|im_end|>")          # special tokens are parsed by default
    tok.decode(ids) == "Hello<|im_end|>"

Encoding is the three steps of llama.cpp's ``llm_tokenizer_bpe`` (``src/llama-vocab.cpp``):

1. **Special tokens.** With ``parse_special=True`` the text is cut at every occurrence of a
   control / user-defined token (``<|im_start|>`` …), longest token text first; each becomes
   its id directly.  (llama.cpp always cuts user-defined tokens; so do we.)
2. **Pre-tokenizer** (``tokenizer.ggml.pre``): regular expressions cut each fragment into
   *words*; every word is encoded on its own, so no token ever crosses a word boundary.
   For ``smollm`` (also starcoder, refact, command-r, codeshell, exaone, minerva) the
   expressions are, applied one after the other::

       \\p{N}                                   every digit is its own word
       's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+   (GPT-2)

   and ``gpt2`` (also mpt, olmo, jais) uses the GPT-2 expression alone.
3. **Byte-level BPE.** A word's UTF-8 bytes are spelled with GPT-2's printable byte alphabet
   (byte 0x20 -> ``Ġ``, 0x0A -> ``Ċ``); then, repeatedly, the adjacent pair with the lowest
   merge rank (leftmost on ties) is joined, until no pair is in ``tokenizer.ggml.merges``.
   The resulting pieces are looked up in ``tokenizer.ggml.tokens``.

How the regex runs without the third-party ``regex`` package: like llama.cpp's own
``unicode_regex_split`` we *collapse* the text first, replacing each non-ASCII character by an
ASCII stand-in of its class (letter -> ``a``, number -> ``0``, white space -> ``\\v``, anything
else -> ``#``; none of these can start or continue a contraction like ``'s``).  The collapsed
string has the same length, so the ASCII regex's match offsets cut the real text.

Bytes the vocabulary cannot spell are dropped, as llama.cpp drops them: SmolLM2's vocabulary
lacks 21 of the 256 byte tokens (controls 0x04 0x06 0x13 0x14 0x16 0x1D, lead bytes 0xF1 0xF2 of
code points U+40000…U+BFFFF, and bytes that never occur in UTF-8), so ``decode(encode(s)) == s``
holds for every text without those characters (:meth:`Tokenizer.unspellable` lists them).

Limits (honest doubt): character classes come from Python's ``unicodedata`` (Unicode 14 on
Python 3.11) while llama.cpp ships its own tables (newer Unicode): characters assigned in
between may split differently.  The whole golden corpus (ASCII plus a few quotes/dashes)
gives llama.cpp's 112,906 ids exactly (``tests/model/test_tokenizer.py``).
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from ..errors import InputError, ModelError

__all__ = ["Tokenizer", "bytes_to_unicode"]

_NO_MERGE = 1 << 62      # rank of a pair that is not in the merge list

# token types stored in tokenizer.ggml.token_type (llama.cpp's LLAMA_TOKEN_TYPE_*)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# the GPT-2 word regex on *collapsed* (ASCII) text; re.ASCII makes \s exactly llama.cpp's
# ASCII white space (0x09-0x0D, 0x20)
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
_DIGIT = r"[0-9]"

# pre-tokenizer name -> the regexes applied in turn (llama-vocab.cpp, llm_tokenizer_bpe)
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    **{name: (_DIGIT, _GPT2) for name in ("smollm", "starcoder", "refact", "command-r",
                                           "codeshell", "exaone", "minerva")},
    **{name: (_GPT2,) for name in ("gpt2", "mpt", "olmo", "jais", "default")},
}

# white space as llama.cpp's unicode tables define it (the Unicode White_Space property)
_WHITESPACE = {0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}


class _Collapse(dict):
    """``str.translate`` table: ASCII maps to itself, other code points to a class stand-in."""

    def __init__(self):
        super().__init__((c, c) for c in range(128))

    def __missing__(self, cp: int) -> int:
        cat = unicodedata.category(chr(cp))
        stand_in = ("a" if cat[0] == "L" else "0" if cat[0] == "N" else
                    "\v" if cp in _WHITESPACE else "#")
        self[cp] = ord(stand_in)
        return self[cp]


_COLLAPSE = _Collapse()


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (printable Latin-1 bytes map to themselves).

    The other 68 bytes (controls, space, 0x7F-0xA0, 0xAD) get the characters U+0100, U+0101, …
    in byte order, so that every token text in the vocabulary is printable.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Tokenizer:
    """Byte-level BPE tokenizer (llama.cpp ``gpt2`` model type) from GGUF metadata."""

    def __init__(self, tokens: list[str], merges: list[str], token_types: list[int] | None = None,
                 pre: str = "default", bos_id: int | None = None, eos_id: int | None = None,
                 add_bos: bool = False):
        if pre not in PRE_TOKENIZERS:
            raise ModelError(f"pre-tokenizer {pre!r} is not supported; supported: "
                             f"{', '.join(sorted(PRE_TOKENIZERS))}")
        # lists (as GGUF metadata gives them) are kept, not copied: the vocabulary's 49k strings
        # and the merges' are each held once, by the file's metadata and by this tokenizer
        self.tokens = tokens if isinstance(tokens, list) else list(tokens)
        if token_types is None:
            token_types = [NORMAL] * len(self.tokens)
        self.token_types = token_types if isinstance(token_types, list) else list(token_types)
        if len(self.token_types) != len(self.tokens):
            raise ModelError(f"{len(self.tokens)} tokens but {len(self.token_types)} token types")
        self.pre = pre
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        numbers = list(range(max(len(self.tokens), len(merges))))   # one int per id / rank,
                                                                      # shared by both tables
        self.token_to_id = dict(zip(self.tokens, numbers))
        # merge "a b" of rank r: the pair (a, b) is joined before any pair of larger rank.  The
        # table is keyed by the merge's own text: pieces never contain a space (they are joined
        # from the byte alphabet, where space is "Ġ"), so the pair (a, b) is the key a + " " + b
        # exactly, and a merge with a second space can never apply (nor could it as a pair).
        self.ranks: dict[str, int] = {}
        for m, r in zip(merges, numbers):
            if " " not in m:
                raise ModelError(f"tokenizer merge #{r} {m!r} is not two pieces separated by a space")
            self.ranks.setdefault(m, r)
        del numbers
        self._byte_char = bytes_to_unicode()
        self._char_byte = {c: b for b, c in self._byte_char.items()}
        self._word_regexes = [re.compile(p, re.ASCII) for p in PRE_TOKENIZERS[pre]]
        special = [i for i, t in enumerate(self.token_types) if t in (CONTROL, USER_DEFINED)]
        self.special_ids = {self.tokens[i]: i for i in special}
        self._user_defined = {self.tokens[i]: i for i in special
                              if self.token_types[i] == USER_DEFINED}
        self._special_re = self._alternation(self.special_ids)
        self._user_re = self._alternation(self._user_defined)
        self._cache: dict[str, tuple[int, ...]] = {}

    @staticmethod
    def _alternation(texts):
        # longest first, as llama.cpp's tokenizer_st_partition sorts its special tokens
        texts = sorted((t for t in texts if t), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, texts))) if texts else None

    @classmethod
    def from_gguf(cls, g) -> "Tokenizer":
        """Build from a :class:`~quantlab.io.gguf.GGUFFile` (``tokenizer.ggml.model == "gpt2"``)."""
        md = g.metadata
        kind = md.get("tokenizer.ggml.model")
        if kind is None or "tokenizer.ggml.tokens" not in md:
            raise ModelError(f"{g.path}: no tokenizer metadata (tokenizer.ggml.model / "
                             "tokenizer.ggml.tokens); quantlab needs a GGUF with an embedded tokenizer")
        if kind != "gpt2":
            raise ModelError(f"{g.path}: tokenizer model {kind!r} is not supported; quantlab "
                             "implements byte-level BPE ('gpt2', used by SmolLM, Llama 3, Qwen …)")
        if "tokenizer.ggml.merges" not in md:
            raise ModelError(f"{g.path}: BPE tokenizer without tokenizer.ggml.merges")
        return cls(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.merges"],
                   md.get("tokenizer.ggml.token_type"), md.get("tokenizer.ggml.pre", "default"),
                   md.get("tokenizer.ggml.bos_token_id"), md.get("tokenizer.ggml.eos_token_id"),
                   bool(md.get("tokenizer.ggml.add_bos_token", False)))

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # -- encode ------------------------------------------------------------------------------
    def encode(self, text: str, parse_special: bool = True, add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text`` (``add_bos=None`` follows the model's ``add_bos_token``)."""
        if not isinstance(text, str):
            raise InputError(f"text to encode must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:     # lone surrogates have no UTF-8 bytes to tokenize
            raise InputError(f"text is not valid Unicode: {exc.reason} at index {exc.start} "
                             f"({text[exc.start]!r})") from None
        ids: list[int] = []
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids.append(self.bos_id)
        specials = self._special_re if parse_special else self._user_re
        start = 0
        if specials is not None:
            for m in specials.finditer(text):
                ids += self._encode_text(text[start:m.start()])
                ids.append(self.special_ids[m.group()])
                start = m.end()
        ids += self._encode_text(text[start:])
        return ids

    def words(self, text: str) -> list[str]:
        """The pre-tokenizer's words (step 2), each encoded on its own."""
        collapsed = text.translate(_COLLAPSE)     # same length, ASCII stand-ins
        spans = [(0, len(text))] if text else []
        for regex in self._word_regexes:
            # keep the matches *and* the gaps between them (llama.cpp keeps unmatched text)
            cut = []
            for a, b in spans:
                pos = a
                for m in regex.finditer(collapsed, a, b):
                    if m.start() > pos:
                        cut.append((pos, m.start()))
                    cut.append(m.span())
                    pos = m.end()
                if pos < b:
                    cut.append((pos, b))
            spans = cut
        return [text[a:b] for a, b in spans]

    def _encode_text(self, text: str) -> list[int]:
        out: list[int] = []
        for word in self.words(text):
            ids = self._cache.get(word)
            if ids is None:
                ids = self._cache[word] = self._encode_word(word)
            out += ids
        return out

    def _encode_word(self, word: str) -> tuple[int, ...]:
        # spell the UTF-8 bytes with the printable byte alphabet, one symbol per byte
        parts = [self._byte_char[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            # join the adjacent pair with the lowest merge rank, the leftmost on ties
            ranks = [self.ranks.get(a + " " + b, _NO_MERGE) for a, b in zip(parts, parts[1:])]
            best = min(ranks)
            if best == _NO_MERGE:
                break
            i = ranks.index(best)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids = []
        for p in parts:
            if p in self.token_to_id:
                ids.append(self.token_to_id[p])
            else:
                # llama.cpp's fallback looks up each UTF-8 *byte* of the piece's text as a token:
                # only ASCII byte-characters can match, anything else is silently dropped
                ids += [self.token_to_id[c] for c in p if c < "\x80" and c in self.token_to_id]
        return tuple(ids)

    def unspellable(self) -> list[int]:
        """Byte values that have no token of their own in this vocabulary (dropped when encoding)."""
        return [b for b, c in self._byte_char.items() if c not in self.token_to_id]

    # -- decode ------------------------------------------------------------------------------
    def token_bytes(self, i: int) -> bytes:
        """The bytes token ``i`` stands for (special tokens render as their text)."""
        if not 0 <= i < len(self.tokens):
            raise InputError(f"token id {i} is out of range (vocabulary of {len(self.tokens)})")
        text, kind = self.tokens[i], self.token_types[i]
        if kind == NORMAL:
            return bytes(self._char_byte[c] for c in text if c in self._char_byte)
        if kind == BYTE:                            # "<0x41>"
            return bytes([int(text[3:-1], 16)])
        return text.encode("utf-8")

    def decode(self, ids) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 on their own become U+FFFD."""
        return b"".join(self.token_bytes(int(i)) for i in ids).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return (f"Tokenizer(byte-level BPE, pre={self.pre!r}, {len(self.tokens)} tokens, "
                f"{len(self.ranks)} merges, {len(self.special_ids)} special)")
