"""The TAB: `git-claim --complete COMMAND WORD...`, answered from the click tree.

Every completion script asks `git-claim --complete` for its candidates
(entry.py sends that here before any command runs). The table it walks is
read from the click commands themselves, as cli/app.py registers them, so
there is no second, hand-written copy of the command line to drift;
git_claim/completion.py adds what click cannot say and finds the candidates.
The scripts themselves, and their installation, are cli/completion_cmd.py's.
"""

from __future__ import annotations

import click

from ..completion import Command, Table, main
from .app import programs
from .group import DEFAULT_COMMAND, ClaimGroup


def command_table() -> Table:
    """Every command path of the three programs, as git_claim.completion walks them."""
    table: Table = {}
    for program, command in programs().items():
        _add(table, program.removeprefix("git-"), command)
    return table


def _add(table: Table, path: str, command: click.Command) -> None:
    context = click.Context(command, info_name=path.rsplit(" ", 1)[-1],
                            **command.context_settings)
    params = command.get_params(context)  # includes -h/--help
    options = [p for p in params if isinstance(p, click.Option) and not p.hidden]
    arguments = [p for p in params if isinstance(p, click.Argument)]

    def names(option: click.Option) -> list[str]:
        return [*option.opts, *option.secondary_opts]

    takes = [o for o in options if not o.is_flag and not o.count]
    optional = {n for o in takes if getattr(o, "_flag_needs_value", False) for n in names(o)}
    choices = {n: tuple(str(c) for c in o.type.choices) for o in options
               if isinstance(o.type, click.Choice) for n in names(o)}
    argument_choices = next((tuple(str(c) for c in a.type.choices) for a in arguments
                             if isinstance(a.type, click.Choice)), None)
    subcommands: tuple[str, ...] = ()
    if isinstance(command, click.Group):
        subcommands = tuple(name for name, sub in command.commands.items() if not sub.hidden)
    table[path] = Command(
        value_options=tuple(n for o in takes for n in names(o)),
        flags=tuple(n for o in options if o.is_flag or o.count for n in names(o)),
        repeatable=frozenset(n for o in options if o.multiple for n in names(o)),
        optional=frozenset(optional),
        choices=choices,
        arguments=argument_choices,
        most=None if any(a.nargs < 0 for a in arguments) else sum(a.nargs for a in arguments),
        subcommands=subcommands,
        default=f"{path} {DEFAULT_COMMAND}" if isinstance(command, ClaimGroup) else None)
    if isinstance(command, click.Group):
        for name in subcommands:
            _add(table, f"{path} {name}", command.commands[name])


def answer(args: list[str]) -> int:
    """`git-claim --complete COMMAND WORD...` (see git_claim/completion.py)."""
    try:
        table = command_table()
    except Exception:  # a completion never prints a traceback into the command line
        return 0
    return main(args, table)
