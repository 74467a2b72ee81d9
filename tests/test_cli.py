"""The CLI is one program: console script == python -m quantlab; every subcommand has --help."""
import subprocess
import sys

import pytest

import quantlab as ql
from quantlab.cli import COMMANDS, build_parser, main
from quantlab.cli.formats import rows


def test_formats_table_lists_every_format_with_bits(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for name in ql.formats():
        assert name in out
    recs = {r["name"]: r for r in rows()}
    assert recs.keys() == set(ql.formats())
    for name, r in recs.items():
        assert r["bits_per_weight"] == ql.get(name).bits_per_weight()


def test_formats_describe(capsys):
    assert main(["formats", "--describe", "nf4"]) == 0
    assert capsys.readouterr().out.startswith("nf4")


def test_errors_are_one_line_not_tracebacks(capsys):
    assert main(["formats", "--describe", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quantlab: error: unknown format 'nope'") and "Traceback" not in err


def _subcommands():
    import argparse
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_every_command_module_registers_a_subcommand():
    assert len(_subcommands()) >= len(COMMANDS)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: quantlab " + command in capsys.readouterr().out


def test_version_names_the_active_path():
    proc = subprocess.run([sys.executable, "-m", "quantlab", "--version"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.startswith(f"quantlab {ql.__version__} (")
    assert "path)" in proc.stdout


def test_python_m_and_parser_agree():
    proc = subprocess.run([sys.executable, "-m", "quantlab", "--help"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout == build_parser().format_help().replace(
        build_parser().prog, "quantlab")
