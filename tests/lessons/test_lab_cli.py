"""``quantlab lab``: the command line it builds (a real server is not started in tests)."""
import sys
from pathlib import Path

import pytest

from quantlab import InputError
from quantlab.cli import build_parser, main
from quantlab.cli import lab

ROOT = Path(__file__).resolve().parents[2]


def _args(*argv):
    return build_parser().parse_args(["lab", *argv])


def test_lab_is_a_subcommand_and_defaults_to_the_repo_lessons(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                       # no ./lessons here: falls back to the repo's
    args = _args()
    assert args.func is lab.run
    cmd = lab.lab_command(args)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert cmd[3] == f"--ServerApp.root_dir={(ROOT / 'lessons').resolve()}"
    assert "--no-browser" not in cmd


def test_lab_port_dir_and_no_browser(tmp_path):
    cmd = lab.lab_command(_args("--dir", str(tmp_path), "--port", "8899", "--no-browser"))
    assert cmd[3:] == [f"--ServerApp.root_dir={tmp_path.resolve()}", "--ServerApp.port=8899",
                       "--no-browser"]


def test_lab_refuses_bad_arguments(tmp_path, capsys):
    with pytest.raises(InputError, match="not a directory"):
        lab.lab_command(_args("--dir", str(tmp_path / "missing")))
    with pytest.raises(InputError, match="1..65535"):
        lab.lab_command(_args("--dir", str(tmp_path), "--port", "70000"))
    assert main(["lab", "--dir", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_find_lessons_prefers_the_current_folder(tmp_path):
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "01-x.ipynb").write_text("{}")
    assert lab.find_lessons(tmp_path) == tmp_path / "lessons"
