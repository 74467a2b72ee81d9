"""Texts for perplexity/imatrix runs, and llama.cpp's escape processing of prompts and files.

``default_text()`` is quantlab's evaluation corpus: every topic of CPython's ``pydoc_data.topics``
(the help pages of the language reference), joined by blank lines — ~465k characters, shipped
with Python itself, so tests and lessons never download anything.

llama.cpp's tools (``llama-perplexity``, ``llama-imatrix``, ``llama-cli``…) run
``string_process_escapes`` on the prompt *and on the text of ``-f FILE``* unless given
``--no-escape``: ``\\n \\r \\t \\' \\" \\\\`` and ``\\xHH`` become the characters/bytes they name.
The corpus contains such sequences (it documents string literals), so the golden token ids and
perplexities were computed on the processed text: ``default_text()`` applies the same
processing by default (``escapes=False`` gives the raw corpus).
"""
from __future__ import annotations

import re

__all__ = ["default_text", "process_escapes"]

_SIMPLE = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("'"): b"'", ord('"'): b'"',
           ord("\\"): b"\\"}
# strtol(2 chars, base 16) must consume both: "HH", or one white space/sign before one hex digit
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}|[ \t\n\v\f\r+-][0-9A-Fa-f]")


def process_escapes(text: str) -> str:
    """llama.cpp's ``string_process_escapes`` on the UTF-8 bytes of ``text``.

    Unknown escapes (``\\a``, ``\\u``…) are kept as written.  ``\\xHH`` yields the raw byte,
    which is decoded afterwards as llama.cpp's tokenizer would see it: a byte that is not
    valid UTF-8 becomes U+FFFD.
    """
    src = text.encode("utf-8")
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c != 0x5C or i + 1 >= n:          # not a backslash (or a trailing one)
            out.append(c)
            i += 1
            continue
        e = src[i + 1]
        if e in _SIMPLE:
            out += _SIMPLE[e]
            i += 2
        elif e == ord("x") and i + 3 < n and _HEX2.fullmatch(src[i + 2:i + 4]):
            out.append(int(src[i + 2:i + 4].strip(), 16) & 0xFF)   # "-1" -> 0xFF, like char(strtol)
            i += 4
        else:
            out += src[i:i + 2]
            i += 2
    return out.decode("utf-8", errors="replace")


def default_text(escapes: bool = True) -> str:
    """``"\\n\\n".join(topics[k] for k in sorted(topics))`` from ``pydoc_data.topics``.

    With ``escapes=True`` (default) the text llama.cpp's tools evaluate for this file
    (:func:`process_escapes`); the golden ids and perplexities refer to it.
    """
    from pydoc_data.topics import topics
    text = "\n\n".join(topics[k] for k in sorted(topics))
    return process_escapes(text) if escapes else text
