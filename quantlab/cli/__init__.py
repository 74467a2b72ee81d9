"""The ``quantlab`` command line: thin argparse subcommands that call the library.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``, which
registers the parser and sets ``func(args) -> int``.  Errors quantlab raises on purpose
(:class:`~quantlab.QuantlabError`) print as one line ``quantlab: error: ...`` with exit
status 2, never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import QuantlabError

# One module per subcommand, in the order `quantlab --help` lists them.
COMMANDS = ["formats", "info", "quantize", "model", "compare", "lab"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__, backend
    path = "numpy" if backend.pure_numpy() or not any(backend.compiled_kernels().values()) \
        else "compiled kernels"
    parser = argparse.ArgumentParser(
        prog="quantlab", description="LLM quantization by doing it for real.")
    parser.add_argument("--version", action="version",
                        version=f"quantlab {__version__} ({path} path)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except QuantlabError as exc:
        print(f"quantlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quantlab: interrupted", file=sys.stderr)
        return 130
