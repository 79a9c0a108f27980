"""`git release`: end a claim as free, done or blocked."""

from __future__ import annotations

import click

from .group import run_group
from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_json, reporting


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@click.option("--done", is_flag=True, help="Record the ticket as done.")
@click.option("--blocked", is_flag=True, help="Record the ticket as blocked (see --reason).")
@click.option("--reason", metavar="TEXT", default="", help="Why it is blocked (recorded).")
@click.option("--force", is_flag=True,
              help="Release a claim that is not ours; recorded with our agent name.")
@remote_options
@json_option
@click.version_option(package_name="git-claim", prog_name="git-release", message="%(prog)s %(version)s")
def release_command(ticket: str, done: bool, blocked: bool, reason: str, force: bool,
                    remote: str | None, agent: str | None, as_json: bool) -> None:
    """Release TICKET: free it, or record it --done or --blocked for everyone to see.

    Only the holder may release a claim, unless --force. Exit codes: 0 released,
    1 not the holder / not claimed / no longer ours, 2 usage, 3 git error.
    """
    with reporting(as_json=as_json, command="git release"):
        from ..errors import UsageError
        from ..lock import OUTCOME_FREE, release

        (ticket_id,) = parse_tickets((ticket,))
        if done and blocked:
            raise UsageError("--done and --blocked exclude each other")
        outcome = "done" if done else "blocked" if blocked else None
        if reason and outcome != "blocked":
            raise UsageError("--reason goes with --blocked")
        session = session_from(remote, agent)
        result = release(session, ticket_id, outcome=outcome or OUTCOME_FREE, reason=reason,
                         force=force)
        from ..mirror import on_released, open_label_tracker

        warnings = on_released(session, open_label_tracker(session), ticket_id,
                               result.outcome, reason)
        cleanup: list[str] = []
        if result.outcome == "done":
            from .run_cmd import _cleanup_worktree

            cleanup = [line for line in _cleanup_worktree(session, ticket_id) if line]
        if as_json:
            emit_json({"ok": True, "ticket": result.ticket, "outcome": result.outcome,
                       "forced": result.forced, "holder": result.holder, "worktree": cleanup})
        else:
            for warning in warnings:
                click.echo(f"warning: {warning}", err=True)
            what = {"free": "released", "done": "done:", "blocked": "blocked:"}[result.outcome]
            forced = " (forced)" if result.forced else ""
            click.echo(f"{what} {result.ticket}{forced}")
            for line in cleanup:
                click.echo(line)


def main() -> None:
    run_group(release_command, prog="git release")
