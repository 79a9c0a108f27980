"""`git claim`: claim tickets, list claims, reopen finished ones."""

from __future__ import annotations

from typing import Any

import click

from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_json, reporting

DEFAULT_COMMAND = "take"


class ClaimGroup(click.Group):
    """`git claim 640` means `git claim take 640`: tickets need no subcommand word."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("git claim", "[OPTIONS] TICKET... | COMMAND [ARGS]...")


@click.group(cls=ClaimGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=False)
@click.version_option(package_name="git-claim", prog_name="git-claim", message="%(prog)s %(version)s")
def claim_group() -> None:
    """Claim tickets atomically through the shared git remote.

    `git claim 640` creates the claim ref refs/claims/640 on the remote; of two
    agents claiming at once, the server accepts exactly one. `git claim 640 641`
    claims the first it can win. A ticket named like a command is claimed with
    `git claim -- list`.

    Exit codes: 0 success, 1 the answer is no (held by another, done, not the
    holder), 2 usage or bad input, 3 git or remote error. See git-claim(1).
    """


@claim_group.command(DEFAULT_COMMAND, context_settings=CONTEXT_SETTINGS)
@click.argument("tickets", nargs=-1, metavar="TICKET...")
@remote_options
@json_option
def take_command(tickets: tuple[str, ...], remote: str | None, agent: str | None,
                 as_json: bool) -> None:
    """Claim the first TICKET that can be won (the default command)."""
    with reporting(as_json=as_json, command="git claim"):
        from ..errors import RefusedError, UsageError
        from ..lock import claim

        ids = parse_tickets(tickets)
        if not ids:
            raise UsageError("give at least one ticket id (e.g. `git claim 640`)")
        session = session_from(remote, agent)
        refusals: list[str] = []
        for ticket in ids:
            try:
                won = claim(session, ticket)
            except RefusedError as refusal:
                refusals.append(refusal.message)
                continue
            if as_json:
                emit_json({"ok": True, "ticket": won.ticket, "ref": won.ref, "tag": won.tag,
                           "agent": won.record.agent, "already_ours": won.already_ours,
                           "refused": refusals})
            else:
                for line in refusals:
                    click.echo(line, err=True)
                note = " (already yours)" if won.already_ours else ""
                click.echo(f"claimed {won.ticket} ({won.ref}){note}")
            return
        if len(ids) == 1:
            raise RefusedError(refusals[0])
        raise RefusedError(f"none of {', '.join(ids)} could be claimed: " + "; ".join(refusals),
                           refused=refusals)


@claim_group.command("list", context_settings=CONTEXT_SETTINGS)
@remote_options
@json_option
def list_command(remote: str | None, agent: str | None, as_json: bool) -> None:
    """List every claim on the remote: ticket, state, holder, age."""
    with reporting(as_json=as_json, command="git claim list"):
        from ..board import board_rows, render_table

        session = session_from(remote, agent)
        rows = board_rows(session)
        if as_json:
            emit_json(rows)
        else:
            click.echo(render_table(rows), nl=False)


@claim_group.command("reopen", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@remote_options
@json_option
def reopen_command(ticket: str, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Make a done or blocked TICKET claimable again."""
    with reporting(as_json=as_json, command="git claim reopen"):
        from ..lock import reopen

        (ticket_id,) = parse_tickets((ticket,))
        session = session_from(remote, agent)
        view = reopen(session, ticket_id)
        if as_json:
            emit_json({"ok": True, "ticket": ticket_id, "was": view.state})
        else:
            click.echo(f"reopened {ticket_id} (was {view.state})")


def run_group(group: click.Group, args: list[str] | None = None, prog: str = "git claim") -> Any:
    """Run a click command with our exit codes: usage errors exit 2, as JSON under --json."""
    import sys

    argv = sys.argv[1:] if args is None else args
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


def main() -> None:
    from . import liveness_cmd  # noqa: F401  (registers its commands on the group)

    run_group(claim_group)
