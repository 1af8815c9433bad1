"""The ``lungai`` command group: commands listed in sections, developer commands imported when used.

``lungai --help`` must answer quickly and without torch: the developer commands (training,
evaluation, baselines) import heavy modules at their top, so they are registered by name and
imported only when one of them runs or shows its own help. Their one-line summaries live in
:data:`LAZY_COMMANDS`; ``tests/cli`` checks that each matches the command's own docstring.
"""

from __future__ import annotations

import importlib

import click


class LazyCommand:
    """A command known by where it lives and its one-line summary, imported on first use.

    Args:
        target: ``module:attribute`` of the click command.
        summary: the line ``lungai --help`` shows for it (the first line of its docstring).
    """

    def __init__(self, target: str, summary: str) -> None:
        self.target = target
        self.summary = summary

    def load(self) -> click.Command:
        """Import the command."""
        module, attribute = self.target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


#: Developer commands: training, evaluation, baselines and datasets.
LAZY_COMMANDS: dict[str, LazyCommand] = {
    "train": LazyCommand("lungai.cli.train:train",
                         "Train MODEL for TASK (malignancy or nodule-seg) on the committed patient split."),
    "train-detection": LazyCommand("lungai.cli.train_detection:train_detection",
                                   "Train convlstm_nodule as the false-positive classifier on inserted nodules "
                                   "and real lung tissue."),
    "tune": LazyCommand("lungai.cli.tune:tune",
                        "Choose TASK's mask threshold and test-time scales on the validation split and record them."),
    "evaluate": LazyCommand("lungai.cli.evaluate:evaluate",
                            "Evaluate TASK (malignancy or nodule-seg): writes metrics.json, report.md (and roc.png)."),
    "baseline": LazyCommand("lungai.cli.baseline:baseline", "Baselines trained on the same data as LungAI's models."),
    "compare": LazyCommand("lungai.cli.compare:compare",
                           "Compare METHODS (LungAI checkpoint folders or nnU-Net prediction folders; the first is "
                           "the reference)."),
    "data": LazyCommand("lungai.cli.data:data", "Make datasets (simulated emphysema, simulated follow-up pairs)."),
    "evaluate-follow-up": LazyCommand("lungai.cli.evaluate_follow_up:evaluate_follow_up",
                                      "Score lungai follow-up on simulated pairs: matching, registration residual, "
                                      "volume change, VDT, growth flag."),
}

#: The help's sections: title and command names, in the order shown.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Commands", ("run", "follow-up", "batch", "demo", "info", "weights")),
    ("Developer commands (training and evaluation)", tuple(LAZY_COMMANDS)),
)


class SectionedGroup(click.Group):
    """A click group whose help lists commands by :data:`SECTIONS` and loads :data:`LAZY_COMMANDS` on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name: the sections' order, then any command no section names."""
        ordered = [name for _title, names in SECTIONS for name in names]
        extra = sorted(set(self.commands) - set(ordered))
        return [name for name in ordered if name in self.commands or name in LAZY_COMMANDS] + extra

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command named ``cmd_name``, importing a developer command the first time."""
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.add_command(LAZY_COMMANDS[cmd_name].load(), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One definition list per section; developer commands are not imported for it."""
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        listed: set[str] = set()
        for title, names in SECTIONS:
            rows = [(name, self._summary(name, limit)) for name in names
                    if name in self.commands or name in LAZY_COMMANDS]
            listed.update(name for name, _ in rows)
            self._section(formatter, title, rows)
        others = [(name, self._summary(name, limit)) for name in self.list_commands(ctx) if name not in listed]
        self._section(formatter, "Other commands", others)

    def _summary(self, name: str, limit: int) -> str:
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        return click.Command(name, help=LAZY_COMMANDS[name].summary).get_short_help_str(limit)

    @staticmethod
    def _section(formatter: click.HelpFormatter, title: str, rows: list[tuple[str, str]]) -> None:
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)
