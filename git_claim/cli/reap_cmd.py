"""`git reap`: free the claims of crashed agents, never a live one."""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_reaped, reporting


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--ttl", metavar="DURATION",
              help="Reap claims silent for longer than this (s, m, h, d) [claim.ttl, else 15m].")
@click.option("--max-skew", metavar="DURATION",
              help="Clock difference tolerated between agents and reaper [claim.maxSkew, else 5m].")
@click.option("--dry-run", is_flag=True, help="Report what would be reaped; change nothing.")
@click.option("--ticket", "tickets", multiple=True, metavar="TICKET",
              help="Reap only this ticket (repeatable).")
@click.option("--force", is_flag=True, help="Allow a TTL shorter than the heartbeat interval.")
@click.option("--no-pr-check", is_flag=True,
              help="Reap even claims with an open pull request (checked through the tracker).")
@remote_options
@json_option
@click.version_option(package_name="git-claim", prog_name="git-reap",
                      message="%(prog)s %(version)s")
def reap_command(ttl: str | None, max_skew: str | None, dry_run: bool, tickets: tuple[str, ...],
                 force: bool, no_pr_check: bool, remote: str | None, agent: str | None,
                 as_json: bool) -> None:
    """Free claims whose holder stopped heartbeating.

    A claim is stale when its last heartbeat (or its claim time) is older than
    TTL + max-skew by our clock, or when this reaper has seen it unchanged for
    TTL. Each reap is a compare-and-swap: a heartbeat that lands first wins.
    Exit codes: 0 done (even if nothing was stale), 2 usage, 3 git error,
    5 stale claims left in place: the remote refused a reap, open pull
    requests could not be checked, or a reap could not be written.
    """
    with reporting(as_json=as_json, command="git reap"):
        from ..ops.reap import ReapRequest, reap
        from .progress import StatusLine

        request = ReapRequest(tickets=tuple(parse_tickets(tickets)), dry_run=dry_run,
                              force=force, pr_check=not no_pr_check)
        session = session_from(remote, agent, ttl=ttl, max_skew=max_skew)
        status = StatusLine("reading claims")
        try:
            result = reap(session, request, progress=status.update)
        finally:
            status.finish()
        emit_reaped(result, as_json=as_json)
