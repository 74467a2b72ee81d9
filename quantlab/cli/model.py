"""Model subcommands mirroring llama.cpp's tools: tokenize, perplexity, generate, chat, imatrix.

    quantlab tokenize   [MODEL] (-f FILE | -p TEXT) [--ids] [--no-bos] [--no-parse-special]
    quantlab perplexity [MODEL] [-f TEXT] [-c 512] [--chunks N]
    quantlab generate   [MODEL] -p PROMPT [-n 64] [--temp 0] [--seed S] [--top-k 40] [--top-p 0.95]
    quantlab chat       [MODEL] [-n 256] [--temp …]
    quantlab imatrix    [MODEL] [-f TEXT] -o FILE [-c 512] [--chunks N] [--process-output]

``MODEL`` is a GGUF path; without it the embedded SmolLM2-135M-Instruct runs.  Without ``-f``
the text is quantlab's default corpus (pydoc topics).  Like llama.cpp's tools, escape sequences
(``\\n``, ``\\t``, ``\\xHH``…) in prompts and ``-f`` files are processed unless ``--no-escape``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import InputError

__all__ = ["add_parser"]


def _load(args):
    from ..model import load_model
    return load_model(args.model)


def _read_text(args, required: bool = False) -> str:
    from ..model.text import default_text, process_escapes
    if getattr(args, "prompt", None) is not None:
        text = args.prompt
    elif getattr(args, "file", None):
        path = Path(args.file)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        text = path.read_bytes().decode("utf-8", errors="replace")
    elif required:
        raise InputError("give the text with -f FILE or -p TEXT")
    else:
        return default_text(escapes=not args.no_escape)
    return text if args.no_escape else process_escapes(text)


# ----------------------------------------------------------------------------- tokenize
def run_tokenize(args) -> int:
    from ..model.tokenizer import Tokenizer
    from ..io.gguf import GGUFFile
    from ..model.model import default_model_path
    g = GGUFFile(args.model or default_model_path())     # the tokenizer alone: no weights needed
    tok = Tokenizer.from_gguf(g)
    text = _read_text(args, required=True)
    ids = tok.encode(text, parse_special=not args.no_parse_special,
                     add_bos=False if args.no_bos else None)
    if args.ids:
        print("[" + ", ".join(map(str, ids)) + "]")
    else:
        for i in ids:
            print(f"{i:6d} -> '{tok.token_bytes(i).decode('utf-8', errors='replace')}'")
    if args.show_count:
        print(f"Total number of tokens: {len(ids)}")
    return 0


# ----------------------------------------------------------------------------- perplexity
def run_perplexity(args) -> int:
    from ..model.perplexity import perplexity
    model = _load(args)
    text = _read_text(args)
    r = perplexity(model, text, ctx=args.ctx_size, chunks=args.chunks, progress=not args.quiet)
    print(r.format_running())
    print(r)
    print(f"({r.n_tokens} tokens scored in {r.chunks} chunks of {r.ctx}; "
          f"{r.tokens_per_second:.1f} tokens/s)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- generate / chat
def _sampling(args) -> dict:
    return dict(temperature=args.temp, seed=args.seed, top_k=args.top_k, top_p=args.top_p)


def run_generate(args) -> int:
    model = _load(args)
    prompt = _read_text(args, required=True)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    t0, n = time.perf_counter(), 0
    for piece in model.generate(prompt, n=args.n_predict, n_ctx=args.ctx_size, **_sampling(args)):
        sys.stdout.write(piece)
        sys.stdout.flush()
        n += 1
    dt = time.perf_counter() - t0
    print()
    print(f"({n} pieces in {dt:.1f} s)", file=sys.stderr)
    return 0


def run_chat(args) -> int:
    from ..model.generate import chat
    interactive = sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()

    def read_line() -> str:
        if sys.stdin is None or sys.stdin.closed:
            raise EOFError
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    pending: list[str] = []
    if not interactive:             # piped input: nothing to say -> done, without loading the model
        try:
            pending.append(read_line())
        except EOFError:
            return 0
    model = _load(args)
    if interactive:
        print("quantlab chat — type a message, Ctrl-D to quit", file=sys.stderr)

    def read() -> str:
        if pending:
            return pending.pop()
        return input("> ") if interactive else read_line()

    chat(model, read=read, n=args.n_predict, n_ctx=args.ctx_size, **_sampling(args))
    return 0


# ----------------------------------------------------------------------------- imatrix
def run_imatrix(args) -> int:
    from ..model.imatrix import collect_imatrix
    model = _load(args)
    text = _read_text(args)
    dataset = args.file or "pydoc_data.topics (quantlab default text)"
    r = collect_imatrix(model, text, ctx=args.ctx_size, chunks=args.chunks,
                        process_output=args.process_output, dataset=str(dataset),
                        progress=not args.quiet)
    path = r.save(args.output)
    print(r.ppl.format_running())
    print(f"stored {len(r.sums)} tensors ({r.chunks} chunks of {r.ctx} tokens) in {path}")
    return 0


# ----------------------------------------------------------------------------- parsers
def _common(p, text: bool = True, escape: bool = True) -> None:
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    if text:
        p.add_argument("-f", "--file", metavar="FILE", help="read the text from FILE")
    if escape:
        p.add_argument("--no-escape", action="store_true",
                       help="do not process escape sequences (\\n, \\t, \\xHH …), as llama.cpp's --no-escape")


def _sampling_args(p, n: int, ctx: int) -> None:
    p.add_argument("-n", "--n-predict", type=int, default=n, help=f"tokens to generate (default {n})")
    p.add_argument("-c", "--ctx-size", type=int, default=ctx, help=f"context size (default {ctx})")
    p.add_argument("--temp", type=float, default=0.0, help="temperature (default 0 = greedy)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--top-k", type=int, default=40, help="top-k sampling (default 40, 0 = off)")
    p.add_argument("--top-p", type=float, default=0.95, help="top-p sampling (default 0.95, 1 = off)")


def add_parser(sub) -> None:
    p = sub.add_parser("tokenize", help="print the token ids of a text (like llama-tokenize)",
                       description="Tokenize a text with the model's BPE tokenizer.")
    _common(p)
    p.add_argument("-p", "--prompt", help="the text to tokenize")
    p.add_argument("--ids", action="store_true", help="print only the id list, e.g. [1, 2, 3]")
    p.add_argument("--no-bos", action="store_true", help="never add a BOS token")
    p.add_argument("--no-parse-special", action="store_true",
                   help="treat special-token text like <|im_end|> as plain text")
    p.add_argument("--show-count", action="store_true", help="print the number of tokens")
    p.set_defaults(func=run_tokenize)

    p = sub.add_parser("perplexity", help="llama-perplexity's PPL on a text (default: pydoc topics)",
                       description="Perplexity by llama-perplexity's method: chunks of -c tokens, "
                                   "second half of each chunk scored.")
    _common(p)
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="stop after N chunks (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_perplexity, prompt=None)

    p = sub.add_parser("generate", help="continue a prompt, streaming tokens",
                       description="Generate text after a prompt (greedy unless --temp > 0).")
    _common(p)
    p.add_argument("-p", "--prompt", help="the prompt")
    _sampling_args(p, n=64, ctx=2048)
    p.set_defaults(func=run_generate)

    p = sub.add_parser("chat", help="interactive chat with the model's (ChatML) template",
                       description="Chat with an instruct model; Ctrl-D (end of input) quits.")
    _common(p, text=False, escape=False)
    _sampling_args(p, n=256, ctx=2048)
    p.set_defaults(func=run_chat)

    p = sub.add_parser("imatrix", help="collect an importance matrix (like llama-imatrix)",
                       description="Mean squared activation per input column of every matmul, "
                                   "saved as llama.cpp's GGUF imatrix file.")
    _common(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="imatrix file to write")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="stop after N chunks (default: all)")
    p.add_argument("--process-output", action="store_true", help="also collect the output head")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_imatrix, prompt=None)
