"""How `git claim` reads its command line: which word is a subcommand, which a ticket.

Every command module registers on the group in claim_cmd; this module only
decides how argv is split between them, and runs a group with our exit codes.
"""

from __future__ import annotations

from typing import Any

import click

from .output import emit_json

DEFAULT_COMMAND = "take"


class ClaimGroup(click.Group):
    """`git claim 640` means `git claim take 640`: tickets need no subcommand word."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("git claim", "[OPTIONS] TICKET... | COMMAND [ARGS]...")


def run_group(group: click.Group, args: list[str] | None = None, prog: str = "git claim") -> Any:
    """Run a click command with our exit codes: usage errors exit 2, as JSON under --json."""
    import sys

    argv = _bare_worktree(sys.argv[1:] if args is None else args)
    try:
        return group.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help() if error.ctx else str(error))
        raise SystemExit(2)
    except click.UsageError as error:
        if "--json" in argv:
            from .output import error_document

            emit_json(error_document(error.format_message(), "usage", 2))
        else:
            click.echo(f"{prog}: {error.format_message()} (see `{prog} -h`)", err=True)
        raise SystemExit(2)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        raise SystemExit(130)
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code)


def _bare_worktree(argv: list[str]) -> list[str]:
    """`--worktree` alone means the default place: it never takes the next word as a path
    (`git claim --worktree 640`); a path is given as `--worktree=PATH`."""
    out: list[str] = []
    for index, word in enumerate(argv):
        if word == "--":
            return out + argv[index:]
        out.append("--worktree=" if word == "--worktree" else word)
    return out
