"""``lungai --help``: quick (no torch imported), user commands apart from developer commands."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from cli_runner import run_cli

from lungai.cli.group import LAZY_COMMANDS, SECTIONS
from lungai.cli.main import cli

#: Runs the command line in a fresh interpreter and prints the heavy modules it imported.
CHILD = """
import json, sys
from lungai.cli.main import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in ("torch", "SimpleITK", "scipy") if m in sys.modules]}))
"""


def imported_by(args: list[str]) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["run", "--help"], 0), (["run"], 2),
                                        (["batch", "--help"], 0), (["batch", "scan.nrrd"], 2),
                                        (["run", "scan.nrrd", "--device", "tpu"], 2), (["nosuchcommand"], 2)])
def test_help_and_usage_errors_import_no_torch(args: list[str], code: int) -> None:
    outcome = imported_by(args)
    assert outcome == {"code": code, "heavy": []}


def test_help_lists_user_commands_apart_from_developer_commands(capsys) -> None:
    code, stdout, _ = run_cli(["--help"], capsys)
    assert code == 0
    user = stdout.index("Commands:")
    developer = stdout.index("Developer commands")
    listed = {line.split()[0]: user < stdout.index(line) < developer
              for line in stdout.splitlines() if line.startswith("  ") and line.split()
              and line.split()[0] in {name for _, names in SECTIONS for name in names}}
    assert {name for name, in_user_section in listed.items()
            if in_user_section} == {"run", "follow-up", "batch", "demo", "info", "weights"}
    assert {name for name, in_user_section in listed.items() if not in_user_section} == set(LAZY_COMMANDS)


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_each_developer_command_loads_and_its_summary_is_its_docstring(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert LAZY_COMMANDS[name].summary == " ".join((command.help or "").split("\n\n")[0].split())


def test_a_developer_command_runs_through_the_group(capsys) -> None:
    code, stdout, _ = run_cli(["data", "--help"], capsys)
    assert code == 0 and "simulate-emphysema" in stdout
