"""The ``cvaudit`` command line: one click group, its subcommands loaded on first use.

Exit codes (CLI and CI), :class:`audit.contract.errors.ExitCode`: 0 every
blocking rule passed · 1 a blocking rule failed · 2 the command could not run,
with one line on stderr naming the file and the problem. Exceptions become
exit codes only at the command boundary (:mod:`audit.cli.boundary`). Progress
and logs go to stderr; results to stdout or files.

Subcommands live in small modules (``run``, ``policy``, ``report``,
``stressors``, ``model_card``) that import their heavy dependencies (torch, WeasyPrint,
pyHanko) only when they run, so ``cvaudit --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["main"]

#: subcommand -> "module:attribute" of its click command.
COMMANDS = {
    "init": "audit.cli.init:init_command",
    "run": "audit.cli.run:run_command",
    "demo": "audit.cli.run:demo_command",
    "policy": "audit.cli.policy:policy_group",
    "report": "audit.cli.report:report_command",
    "verify": "audit.cli.report:verify_command",
    "keygen": "audit.cli.report:keygen_command",
    "stressors": "audit.cli.stressors:stressors_group",
    "model-card": "audit.cli.model_card:model_card_command",
    "queue": "audit.cli.queue:queue_command",
    "recipe": "audit.cli.recipe:recipe_command",
    "slices": "audit.cli.slices:slices_command",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported when they are listed or called."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="cvaudit", message="cvaudit %(version)s")
def main() -> None:
    """Audit an image classifier: stressors, subgroup metrics, policy gate, signed report."""
