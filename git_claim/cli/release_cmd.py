"""`git release`: end a claim as free, done or blocked."""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_released, reporting


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@click.option("--done", is_flag=True, help="Record the ticket as done.")
@click.option("--blocked", is_flag=True, help="Record the ticket as blocked (see --reason).")
@click.option("--reason", metavar="TEXT", default="", help="Why it is blocked (recorded).")
@click.option("--to", "to", metavar="AGENT",
              help="Hand the claim to AGENT (who takes it up with `git claim TICKET`);"
                   " the worktree and branch stay.")
@click.option("--force", is_flag=True,
              help="Release a claim that is not ours; recorded with our agent name.")
@remote_options
@json_option
@click.version_option(package_name="git-claim", prog_name="git-release",
                      message="%(prog)s %(version)s")
def release_command(ticket: str, done: bool, blocked: bool, reason: str, to: str | None,
                    force: bool, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Release TICKET: free it, or record it --done or --blocked for everyone to see.

    Only the holder may release a claim, unless --force. --to AGENT hands the
    live claim to AGENT instead, in one compare-and-swap: from then on only
    AGENT may claim TICKET (it takes it up with `git claim TICKET`), and the
    reaper frees it if AGENT does not within the TTL. Exit codes: 0 released
    (or handed), 1 not the holder / not claimed / no longer ours, 2 usage,
    3 git error or a write the remote refused.
    """
    with reporting(as_json=as_json, command="git release"):
        from ..ops.release import ReleaseRequest, release

        (ticket_id,) = parse_tickets((ticket,))
        request = ReleaseRequest.from_flags(ticket_id, done=done, blocked=blocked,
                                            reason=reason, force=force, to=to)
        emit_released(release(session_from(remote, agent), request), as_json=as_json)
