"""The ``lungai`` command group: commands listed in sections, developer commands imported when used.

``lungai --help`` must answer quickly and without torch: the developer commands (training,
evaluation, baselines) import heavy modules at their top, so they are registered by name and
imported only when one of them runs or shows its own help. Their one-line summaries live in
:data:`LAZY_COMMANDS`; ``tests/cli`` checks that each matches the command's own docstring.

``lungai train`` and ``lungai evaluate`` are groups of one subcommand per task
(:class:`TaskGroup`), each with only its own options; an option of another task is a usage
error that names the subcommands that take it (:class:`TaskCommand`). The commands they
replaced stay as hidden :data:`ALIASES`.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

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
                         "Train a model with its recipe: one subcommand per task."),
    "tune": LazyCommand("lungai.cli.tune:tune",
                        "Choose TASK's mask threshold and test-time scales on the validation split and record them."),
    "evaluate": LazyCommand("lungai.cli.evaluate:evaluate",
                            "Evaluate a model and write a report: one subcommand per task."),
    "baseline": LazyCommand("lungai.cli.baseline:baseline", "Baselines trained on the same data as LungAI's models."),
    "compare": LazyCommand("lungai.cli.compare:compare",
                           "Compare METHODS (LungAI checkpoint folders or nnU-Net prediction folders; the first is "
                           "the reference)."),
    "data": LazyCommand("lungai.cli.data:data", "Make datasets (simulated emphysema, simulated follow-up pairs)."),
}

#: Command names kept from before ``train`` and ``evaluate`` had subcommands: the old name, and the
#: group and subcommand it runs (same options, same behaviour). Not listed in the help.
ALIASES: dict[str, tuple[str, str]] = {
    "train-detection": ("train", "detection"),
    "evaluate-follow-up": ("evaluate", "follow-up"),
}

#: The help's sections: title and command names, in the order shown.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Commands", ("run", "follow-up", "batch", "demo", "info", "weights")),
    ("Developer commands (training and evaluation)", tuple(LAZY_COMMANDS)),
)


class SectionedGroup(click.Group):
    """A click group whose help lists commands by :data:`SECTIONS` and loads :data:`LAZY_COMMANDS` on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every listed command name: the sections' order, then any other command that is not hidden."""
        ordered = [name for _title, names in SECTIONS for name in names]
        extra = sorted(name for name in set(self.commands) - set(ordered) if not self.commands[name].hidden)
        return [name for name in ordered if name in self.commands or name in LAZY_COMMANDS] + extra

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command named ``cmd_name``, importing a developer command (or an alias's) the first time."""
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.add_command(LAZY_COMMANDS[cmd_name].load(), cmd_name)
        if cmd_name not in self.commands and cmd_name in ALIASES:
            group_name, task = ALIASES[cmd_name]
            group = self.get_command(ctx, group_name)
            command = group.commands.get(task) if isinstance(group, click.Group) else None
            if command is not None:
                self.add_command(alias_of(command, cmd_name), cmd_name)
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


def alias_of(command: click.Command, name: str) -> click.Command:
    """A hidden copy of ``command`` under the old top-level ``name`` (same options and callback)."""
    alias = copy.copy(command)
    alias.name = name
    alias.hidden = True
    return alias


class TaskCommand(click.Command):
    """One task's subcommand of a :class:`TaskGroup`, with only that task's options.

    An option that only another task takes is refused as click refuses any unknown option
    (a usage error, exit code 2), with the subcommands that take it named in the message.

    Args:
        *args: as for :class:`click.Command`.
        scope: what the subcommand works on, for that message (e.g. ``emphysema models``).
        **kwargs: as for :class:`click.Command`.
    """

    def __init__(self, *args: Any, scope: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scope = scope
        self.task_group: TaskGroup | None = None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does; an unknown option that a sibling task takes says so."""
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            owners = self._owners(exc.option_name)
            if not owners:
                raise
            raise click.NoSuchOption(exc.option_name, ctx=ctx, message=(
                f"No such option '{exc.option_name}': not supported for {self.scope}; it is an option of "
                f"{' and '.join(owners)}")) from None

    def _owners(self, option: str) -> list[str]:
        """``lungai GROUP TASK`` for each other task of the group that takes ``option``."""
        if self.task_group is None:
            return []
        return [f"`lungai {self.task_group.name} {name}`" for name, command in self.task_group.commands.items()
                if command.callback is not self.callback
                and any(option in param.opts or option in param.secondary_opts for param in command.params)]


class TaskGroup(click.Group):
    """``lungai train`` or ``lungai evaluate``: one :class:`TaskCommand` per task."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The tasks in the order they were added (nodule tasks first), not alphabetically."""
        return list(self.commands)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register ``cmd``; a :class:`TaskCommand` learns its siblings through this group."""
        if isinstance(cmd, TaskCommand):
            cmd.task_group = self
        super().add_command(cmd, name)
