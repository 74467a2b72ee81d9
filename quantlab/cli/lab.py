"""``quantlab lab``: open JupyterLab on the lessons.

    quantlab lab                 # JupyterLab on ./lessons (or the repository's lessons/)
    quantlab lab --port 8899 --no-browser

Thin on purpose: :func:`lab_command` builds the command line (tested), :func:`run` execs it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError


def find_lessons(start: str | os.PathLike | None = None) -> Path:
    """The lessons folder: ``./lessons`` if it exists, else the one beside the package source."""
    here = Path(start or os.getcwd())
    for cand in (here / "lessons", here, Path(__file__).resolve().parents[2] / "lessons"):
        if cand.is_dir() and any(cand.glob("[0-9]*.ipynb")):
            return cand
    raise InputError("no lessons folder found (looked for ./lessons and the repository's "
                     "lessons/); pass --dir PATH")


def lab_command(args) -> list[str]:
    """The JupyterLab command line for the parsed ``args`` (no side effects)."""
    folder = Path(args.dir) if args.dir else find_lessons()
    if not folder.is_dir():
        raise InputError(f"--dir {folder}: not a directory")
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder.resolve()}"]
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise InputError(f"--port must be 1..65535, got {args.port}")
        cmd.append(f"--ServerApp.port={args.port}")
    if args.no_browser:
        cmd.append("--no-browser")
    return cmd


def run(args) -> int:
    cmd = lab_command(args)
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        raise InputError("JupyterLab is not installed; pip install 'quantlab[lab]'") from None
    print("quantlab: " + " ".join(cmd), file=sys.stderr)
    os.execv(cmd[0], cmd)        # replaces this process: Ctrl-C stops JupyterLab itself
    return 0  # pragma: no cover


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="open JupyterLab on the lessons",
                       description="Start JupyterLab with the lessons folder as its root.")
    p.add_argument("--dir", metavar="PATH", help="lessons folder (default: ./lessons or the repo's)")
    p.add_argument("--port", type=int, default=None, help="port for the server")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(func=run)
