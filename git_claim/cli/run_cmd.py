"""`git claim run` and `git claim gc`: the agent loop and its cleanup (adapters only)."""

from __future__ import annotations

import click

from .claim_cmd import claim_group
from .common import (
    CONTEXT_SETTINGS,
    claim_options,
    claim_request,
    json_option,
    parse_tickets,
    remote_options,
    session_from,
    worktree_request,
)
from .output import emit_drained, emit_gc, emit_run, reporting, run_progress

RUN_SETTINGS = {**CONTEXT_SETTINGS, "ignore_unknown_options": False}


@claim_group.command("run", context_settings=RUN_SETTINGS)
@click.argument("arguments", nargs=-1, metavar="[TICKET] -- COMMAND...")
@claim_options
@click.option("--until-empty", is_flag=True,
              help="With --next: run ticket after ticket, failures included, until nothing"
                   " is eligible (exit 0; see above).")
@click.option("--interval", metavar="DURATION",
              help="Heartbeat interval [claim.heartbeat, else 5m].")
@click.option("--on-failure", type=click.Choice(["blocked", "release", "keep"]),
              default="blocked", show_default=True,
              help="What a non-zero exit does to the claim.")
@click.option("--on-lost", type=click.Choice(["stop", "warn"]), default="stop",
              show_default=True,
              help="When the claim is lost: stop the command, or only warn (no lease enforced).")
@click.option("--grace", metavar="DURATION", default="10s", show_default=True,
              help="Time between SIGTERM and SIGKILL when stopping the command.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="With --next: first take back a live claim of this agent that no process"
                   " works on (a run that died), or one handed to it.")
@click.option("--hand-off-to", "hand_off_to", metavar="AGENT",
              help="Exit 0 of COMMAND hands the claim to AGENT instead of releasing it"
                   " --done; the worktree and branch stay.")
@remote_options
@json_option
def run_command(arguments: tuple[str, ...], pick_next: bool, source: str | None,
                labels: tuple[str, ...], excluded: tuple[str, ...], no_gate: bool,
                capabilities: str | None, worktree: str | None, base: str | None,
                until_empty: bool, interval: str | None, on_failure: str, on_lost: str,
                grace: str, resume: bool, hand_off_to: str | None, remote: str | None,
                agent: str | None,
                as_json: bool) -> None:
    """Claim TICKET (or --next), run COMMAND while heartbeating, then release.

    Exit 0 of COMMAND releases --done (with --hand-off-to AGENT: hands the
    claim to AGENT, who takes it up with `git claim TICKET`, and leaves the
    worktree and branch for it); another status releases --blocked with
    the status as reason (see --on-failure); Ctrl-C or SIGTERM to run is passed
    to COMMAND and its status (130, 143) counts the same way. `run` exits with
    COMMAND's status; before COMMAND runs: 1 claimed by another or refused,
    6 nothing eligible (--next), 2 usage, 3 git, tracker or start-up error.
    4 means the claim was lost while COMMAND ran (reaped, forced away,
    replaced, or the remote unreachable for longer than the TTL minus a
    margin) or before it could be released; 3 after COMMAND, that the remote
    refused or failed the release (or the hand-off).

    With --next --until-empty, run takes ticket after ticket: a failing
    COMMAND is ended as --on-failure says and the drain goes on. It exits 0
    when nothing eligible is left and every claim was ended as its COMMAND's
    status said; 5 when nothing eligible is left but a claim was lost, a
    release refused or a ticket given back before its COMMAND ran; 3 when a
    git, remote or tracker error stopped it early; 128+N on signal N.
    """
    status = 0
    with reporting(as_json=as_json, command="git claim run"):
        import sys

        from ..clock import parse_duration
        from ..errors import UsageError
        from ..ops.release import check_receiver
        from ..ops.run import OnFailure, OnLost, RunRequest, drain, run
        from .progress import StatusLine

        command = list(arguments)
        tickets = [command.pop(0)] if command and not pick_next else []
        if not command:
            raise UsageError("give the command to run after `--`, e.g."
                             " `git claim run 640 -- ./agent.sh`")
        if pick_next == bool(tickets):
            raise UsageError("give one ticket id or --next")
        if until_empty and not pick_next:
            raise UsageError("--until-empty goes with --next")
        line = StatusLine("reading the backlog")
        claim = claim_request(parse_tickets(tuple(tickets)), pick_next=pick_next,
                              labels=labels, excluded=excluded, source=source,
                              no_gate=no_gate, worktree=None, base=None,
                              capabilities=capabilities,
                              **({"stdin": sys.stdin, "progress": line.update,
                                  "resume": resume} if pick_next else {}))
        request = RunRequest(
            command=tuple(command), claim=claim, worktree=worktree_request(worktree, base),
            interval=parse_duration(interval, what="interval") if interval else None,
            grace=parse_duration(grace, what="grace"), on_failure=OnFailure(on_failure),
            on_lost=OnLost(on_lost), until_empty=until_empty,
            hand_off_to=(check_receiver(hand_off_to, "--hand-off-to")
                         if hand_off_to is not None else None),
            **run_progress(line))
        session = session_from(remote, agent, source=source)
        try:
            if until_empty:
                status = emit_drained(drain(session, request), as_json=as_json)
            else:
                status = emit_run(run(session, request), as_json=as_json)
        finally:
            line.finish()
    raise SystemExit(status)


@claim_group.command("gc", context_settings=CONTEXT_SETTINGS)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@remote_options
@json_option
def gc_command(dry_run: bool, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Remove local worktrees of claims no longer held by us (never ones with unsaved work)."""
    with reporting(as_json=as_json, command="git claim gc"):
        from ..ops.gc import GcRequest, gc

        emit_gc(gc(session_from(remote, agent), GcRequest(dry_run=dry_run)), as_json=as_json)
