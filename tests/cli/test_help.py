"""``lungai --help``: quick (no torch imported), user commands apart from developer commands; ``lungai train`` and
``lungai evaluate``: one subcommand per task, each with only its own options."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import click
import pytest
from cli_runner import run_cli

from lungai.cli.group import ALIASES, LAZY_COMMANDS, SECTIONS, TaskGroup
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
                                        (["run", "scan.nrrd", "--device", "tpu"], 2), (["nosuchcommand"], 2),
                                        (["train", "--help"], 0), (["train", "emphysema", "--help"], 0),
                                        (["evaluate", "--help"], 0), (["evaluate", "follow-up", "--help"], 0),
                                        (["train-detection", "--help"], 0), (["train", "nosuchtask"], 2),
                                        (["train", "emphysema", "--model-config", "{}"], 2)])
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
    commands = {line.split()[0] for line in stdout.splitlines() if line.startswith("  ") and line.split()}
    assert "train" in commands and not commands & set(ALIASES)


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_each_developer_command_loads_and_its_summary_is_its_docstring(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert LAZY_COMMANDS[name].summary == " ".join((command.help or "").split("\n\n")[0].split())


def test_a_developer_command_runs_through_the_group(capsys) -> None:
    code, stdout, _ = run_cli(["data", "--help"], capsys)
    assert code == 0 and "simulate-emphysema" in stdout


#: Each task's subcommands under ``lungai train`` and ``lungai evaluate``, in their help's order.
TASKS = {"train": ["malignancy", "nodule-seg", "emphysema", "detection", "detection-ensemble"],
         "evaluate": ["malignancy", "nodule-seg", "emphysema", "detection", "follow-up"]}


def options_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The long options ``lungai ARGS --help`` lists."""
    code, stdout, _ = run_cli([*args, "--help"], capsys)
    assert code == 0, stdout
    return {word.rstrip(",") for line in stdout.split("Options:")[1].splitlines() for word in line.split()[:3]
            if word.startswith("--")}


@pytest.mark.parametrize("group", sorted(TASKS))
def test_train_and_evaluate_list_one_subcommand_per_task(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli([group, "--help"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in stdout.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]  # not a wrapped description
    assert listed == TASKS[group]
    assert "--model" not in stdout and "--data" not in stdout  # the options are the subcommands'


def test_each_training_task_shows_only_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    emphysema = options_of(["train", "emphysema"], capsys)
    malignancy = options_of(["train", "malignancy"], capsys)
    nodule_seg = options_of(["train", "nodule-seg"], capsys)
    detection = options_of(["train", "detection"], capsys)
    nodule_only = {"--model-config", "--min-diameter-mm", "--shift-fraction", "--init-weights"}
    assert nodule_only <= malignancy and nodule_only <= nodule_seg
    assert not emphysema & (nodule_only | {"--negatives", "--negatives-per-scan"})
    assert {"--negatives", "--negatives-per-scan"} <= nodule_seg
    assert not malignancy & {"--negatives", "--negatives-per-scan", "--data-root", "--steps-per-epoch", "--filters"}
    assert {"--data-root", "--steps-per-epoch", "--calibration-scans"} <= detection
    assert not detection & {"--model", "--data", "--size", "--model-config"}
    assert emphysema == {"--model", "--data", "--out", "--epochs", "--batch-size", "--lr", "--patience", "--size",
                         "--device", "--threads", "--seed", "--max-cases", "--no-augment", "--restart", "--help"}


def test_each_evaluation_task_shows_only_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    options = {task: options_of(["evaluate", task], capsys) for task in TASKS["evaluate"]}
    segmentation_only = {"--threshold", "--min-diameter-mm", "--mirror", "--tile", "--tile-mirror", "--scales"}
    assert segmentation_only <= options["nodule-seg"]
    for task in ("malignancy", "emphysema", "detection", "follow-up"):
        assert not options[task] & segmentation_only, task
    assert "--reference-data" in options["malignancy"]
    assert [task for task, found in options.items() if "--reference-data" in found] == ["malignancy"]
    assert options["follow-up"] == {"--pairs", "--results", "--split", "--output", "--help"}


def test_the_models_in_the_help_are_the_tasks_models(capsys: pytest.CaptureFixture[str]) -> None:
    from lungai.cli.train import MEASURED_MODEL, TASK_MODELS
    from lungai.training.emphysema import EMPHYSEMA_MODELS
    from lungai.training.recipes import models_for_task

    assert TASK_MODELS == {"malignancy": (MEASURED_MODEL, *models_for_task("malignancy")),
                           "nodule-seg": tuple(models_for_task("nodule-seg")), "emphysema": EMPHYSEMA_MODELS}
    for task, models in TASK_MODELS.items():
        code, stdout, _ = run_cli(["train", task, "--help"], capsys)
        assert code == 0 and all(model in " ".join(stdout.split()) for model in models)


@pytest.mark.parametrize("args, option, owners", [
    (["train", "emphysema", "--model", "convlstm_scanner", "--data", "labels.csv", "--model-config", "{}"],
     "--model-config", ["lungai train malignancy", "lungai train nodule-seg"]),
    (["train", "malignancy", "--model", "nodule_cnn2d", "--data", ".", "--negatives", "scan.nrrd"],
     "--negatives", ["lungai train nodule-seg"]),
    (["train", "detection", "--data-root", ".", "--size", "cpu"], "--size",
     ["lungai train malignancy", "lungai train nodule-seg", "lungai train emphysema"]),
    (["train-detection", "--data-root", ".", "--init-weights", "."], "--init-weights",
     ["lungai train malignancy", "lungai train nodule-seg"]),
    (["evaluate", "emphysema", "--data", ".", "-o", "out", "--threshold", "0.5"], "--threshold",
     ["lungai evaluate nodule-seg"]),
    (["evaluate", "detection", "--data", ".", "-o", "out", "--reference-data", "."], "--reference-data",
     ["lungai evaluate malignancy"]),
    (["evaluate", "follow-up", "--pairs", ".", "--results", ".", "-o", "e.json", "--weights", "."], "--weights",
     ["lungai evaluate malignancy", "lungai evaluate nodule-seg", "lungai evaluate emphysema",
      "lungai evaluate detection"]),
])
def test_an_option_of_another_task_is_a_usage_error_naming_its_tasks(args: list[str], option: str, owners: list[str],
                                                                    tmp_path, monkeypatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(args, capsys)
    assert code == 2 and stdout == ""
    assert f"No such option '{option}': not supported for" in err
    assert err.count("`lungai ") == len(owners) and all(f"`{owner}`" in err for owner in owners)
    assert not (tmp_path / "out").exists()


def test_an_option_no_task_takes_is_refused_as_click_refuses_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", "emphysema", "--model", "cnn3d", "--data", ".", "--nosuchoption"], capsys)
    assert code == 2 and "No such option '--nosuchoption'" in err and "not supported" not in err


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_old_command_name_is_a_hidden_alias_of_its_subcommand(alias: str, capsys) -> None:
    group_name, task = ALIASES[alias]
    context = click.Context(cli)
    command, group = cli.get_command(context, alias), cli.get_command(context, group_name)
    assert isinstance(group, TaskGroup) and command is not None and command.hidden
    assert command.callback is group.commands[task].callback and command.params == group.commands[task].params
    code, stdout, _ = run_cli([alias, "--help"], capsys)
    assert code == 0 and f"Usage: lungai {alias} [OPTIONS]" in stdout


def documented_command_lines() -> list[tuple[str, str, list[str]]]:
    """Each ``lungai train|evaluate TASK ...`` of the README, docs/ and the weights' model cards: file, task, words.

    A line continued with a backslash is joined; a fragment ends at a backtick, a table bar, a comment, a
    bracket or a semicolon.
    """
    from shared_data import REPO_ROOT

    files = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
             *sorted((REPO_ROOT / "weights").glob("*/README.md"))]
    found = []
    for path in files:
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
        for match in re.finditer(r"lungai (train|evaluate)([\w-]*)((?: [^`|#\n();]*)?)", text):
            words = match.group(3).split()
            found.append((f"{path.name}: {match.group(0)}", match.group(1) + match.group(2), words))
    return found


def test_the_documented_command_lines_name_a_task_and_its_options() -> None:
    lines = documented_command_lines()
    assert len(lines) > 40 and {group for _, group, _ in lines} == {"train", "evaluate"}
    context = click.Context(cli)
    checked = 0
    for where, group_name, words in lines:
        assert group_name not in ALIASES, f"{where}: write `lungai {' '.join(ALIASES.get(group_name, ()))}`"
        group = cli.get_command(context, group_name)
        assert isinstance(group, TaskGroup)
        if not words or words == ["--help"]:
            continue  # the command named in prose, or its help
        assert words[0] in group.commands, where
        known = {name for param in group.commands[words[0]].params for name in (*param.opts, *param.secondary_opts)}
        options = [word.split("=")[0] for word in words[1:] if word.startswith("-")]
        assert set(options) <= known, (where, set(options) - known)
        checked += bool(options)
    assert checked > 30
