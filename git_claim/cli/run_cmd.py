"""`git claim run` and `git claim gc`: the agent loop and its cleanup."""

from __future__ import annotations

import signal
from typing import Any

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_json, reporting

RUN_SETTINGS = {**CONTEXT_SETTINGS, "ignore_unknown_options": False}
EARLY_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@claim_group.command("run", context_settings=RUN_SETTINGS)
@click.argument("arguments", nargs=-1, metavar="[TICKET] -- COMMAND...")
@click.option("--next", "pick_next", is_flag=True, help="Claim the next eligible ticket first.")
@click.option("--from", "source", metavar="SOURCE", help="Backlog for --next [claim.source].")
@click.option("--label", "labels", multiple=True, metavar="LABEL",
              help="--next: only tickets with this label.")
@click.option("--exclude-label", "excluded", multiple=True, metavar="LABEL",
              help="--next: skip tickets with this label.")
@click.option("--no-gate", is_flag=True, help="Skip the design gate (recorded in the claim).")
@click.option("--worktree", "worktree", is_flag=False, flag_value="", default=None,
              metavar="[PATH]", help="Run in a linked worktree on claim/<ticket> [claim.worktree].")
@click.option("--base", metavar="REV", help="Start the worktree's branch here.")
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
@remote_options
@json_option
def run_command(arguments: tuple[str, ...], pick_next: bool, source: str | None,
                labels: tuple[str, ...], excluded: tuple[str, ...], no_gate: bool,
                worktree: str | None, base: str | None, interval: str | None,
                on_failure: str, on_lost: str, grace: str, remote: str | None,
                agent: str | None, as_json: bool) -> None:
    """Claim TICKET (or --next), run COMMAND while heartbeating, then release.

    Exit 0 of COMMAND releases --done; another status releases --blocked with
    the status as reason (see --on-failure); Ctrl-C or SIGTERM to run is passed
    to COMMAND and its status (130, 143) counts the same way. `run` exits with
    COMMAND's status; before COMMAND runs: 1 nothing eligible or claimed by
    another, 2 usage, 3 git, tracker or start-up error. 4 means the claim was
    lost while COMMAND ran (reaped, forced away, replaced, or the remote
    unreachable for longer than the TTL minus a margin) or before it could be
    released; 3 after COMMAND, that the remote refused or failed the release.
    """
    status = 0
    with reporting(as_json=as_json, command="git claim run"):
        status = _run(arguments, pick_next, source, labels, excluded, no_gate, worktree, base,
                      interval, on_failure, on_lost, grace, remote, agent, as_json)
    raise SystemExit(status)


def _run(arguments: tuple[str, ...], pick_next: bool, source: str | None,
         labels: tuple[str, ...], excluded: tuple[str, ...], no_gate: bool,
         worktree: str | None, base: str | None, interval: str | None, on_failure: str,
         on_lost: str, grace: str, remote: str | None, agent: str | None,
         as_json: bool) -> int:
    from ..clock import parse_duration
    from ..errors import ClaimError, UsageError
    from ..runner import NotStarted
    from .claim_cmd import _claim_ids, _claim_next

    command = list(arguments)
    ticket_args: list[str] = []
    while command and not pick_next and not ticket_args:
        ticket_args.append(command.pop(0))
    if not command:
        raise UsageError("give the command to run after `--`, e.g. `git claim run 640 -- ./agent.sh`")
    if pick_next == bool(ticket_args):
        raise UsageError("give one ticket id or --next")
    if ticket_args and (source or labels or excluded):
        raise UsageError("--from, --label and --exclude-label go with --next")
    session = session_from(remote, agent, source=source)
    settings = session.settings
    beat_every = parse_duration(interval, what="interval") if interval else settings.heartbeat
    stop_grace = parse_duration(grace, what="grace")
    margin = max(settings.max_skew, beat_every)
    give_up = max(beat_every, settings.ttl - margin)
    # The watchdog's deadline: the tree is gone (deadline + grace) before a
    # reaper could free the claim (TTL after the last beat). A beat must be
    # able to renew it, so it is checked before anything is claimed.
    lease_for = min(give_up, settings.ttl - stop_grace)
    if on_lost == "stop" and lease_for <= beat_every:
        from ..clock import format_duration

        raise UsageError(
            f"--interval {format_duration(beat_every)} and --grace {format_duration(stop_grace)}"
            f" leave no lease within claim.ttl {format_duration(settings.ttl)}: the command"
            " would be stopped before a heartbeat could renew it (the lease is the TTL less"
            " the larger of claim.maxSkew and the interval, and less --grace; shorten the"
            " interval or the grace, or raise claim.ttl)")
    # Until the command starts, SIGINT, SIGTERM and SIGHUP are only noted: a
    # KeyboardInterrupt raised inside libgit2's callbacks would be swallowed
    # there, and the command would start after the user asked to stop.
    early: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: early.append(signum))
                for sig in EARLY_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}  # ignored stays ignored
    try:
        if pick_next:
            document, lines = _claim_next(session, labels, excluded, gate=not no_gate)
        else:
            document, lines = _claim_ids(session, parse_tickets(tuple(ticket_args)),
                                         gate=not no_gate)
    except ClaimError:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if early:
            raise SystemExit(128 + early[0])
        raise
    ticket = document["ticket"]
    for line in lines:
        click.echo(f"git claim run: {line}", err=True)
    try:
        return _start(session, document, command, early, worktree, base, beat_every,
                      stop_grace, give_up, lease_for, on_failure, on_lost, as_json)
    except NotStarted as stopped:
        return _give_back_unstarted(session, ticket, stopped.signum, as_json)
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


def _start(session: Any, document: dict[str, Any], command: list[str],
           early: list[int], worktree: str | None, base: str | None, beat_every: float,
           stop_grace: float, give_up: float, lease_for: float, on_failure: str, on_lost: str,
           as_json: bool) -> int:
    """From a won claim to the command's end: renew, worktree, run, release.

    Signals noted in `early` until the command starts mean it never starts
    (NotStarted), whichever step they arrive in.
    """
    import os

    from ..errors import ExitCode, RefusedError
    from ..runner import NotStarted, run_with_heartbeat
    from ..safetext import clean
    from .claim_cmd import worktree_or_release

    settings = session.settings
    ticket = document["ticket"]
    if early:
        raise NotStarted(early[0])
    _renew_before_start(session, ticket, document, beat_every)
    found = settings.claim_of_ref(document["ref"])
    extra = {"GIT_CLAIM_TICKET": ticket, "GIT_CLAIM_AGENT": settings.agent,
             "GIT_CLAIM_EPOCH": str(found[1] if found else 1),
             "GIT_CLAIM_TITLE": clean(document.get("title") or "", 500),
             "GIT_CLAIM_LABELS": clean(",".join(document.get("labels") or []), 2000)}
    cwd = None
    use_worktree = worktree is not None or settings.worktree
    if use_worktree:
        from ..worktree import ticket_env

        tree = worktree_or_release(session, document, worktree or None, base)
        cwd = tree.path
        extra.update(ticket_env(tree, {"title": document.get("title") or "",
                                       "labels": document.get("labels") or []}))

    def report(message: str) -> None:
        click.echo(f"git claim run: {message}", err=True)

    outcome = run_with_heartbeat(session, ticket, command, cwd=cwd,
                                 env={**os.environ, **extra}, interval=beat_every,
                                 give_up_after=give_up, grace=stop_grace,
                                 stop_on_lost=on_lost == "stop", report=report,
                                 lease_for=lease_for, early=early)
    result: dict[str, Any] = {"ok": outcome.status == 0 and outcome.lost is None,
                              "ticket": ticket, "status": outcome.status, "beats": outcome.beats,
                              "failed_beats": outcome.failed_beats, "lost": outcome.lost,
                              "worktree": str(cwd) if cwd else None, "released": None}
    if outcome.lost is not None:
        if as_json:
            emit_json(result)
        return int(ExitCode.LOST)
    release_as = "done" if outcome.status == 0 else on_failure
    if release_as != "keep":
        released, failure = _release(session, document, release_as, outcome.status, report)
        result["released"] = released
        if failure is not None:
            # Never a success when the release did not happen: a claim lost
            # meanwhile is 4, a remote that refused or failed is its own code.
            result["ok"] = False
            result["release_error"] = failure.message
            if as_json:
                emit_json(result)
            return int(ExitCode.LOST if isinstance(failure, RefusedError) else failure.exit_code)
    if as_json:
        emit_json(result)
    return outcome.status


def _give_back_unstarted(session: Any, ticket: str, signum: int, as_json: bool) -> int:
    """Interrupted while claiming: the command never starts, and the claim goes back."""
    from ..errors import ClaimError
    from ..lock import release

    try:
        release(session, ticket)
        note = f"interrupted before the command started; released {ticket}"
    except ClaimError as error:
        note = f"interrupted before the command started; could not release {ticket}: {error.message}"
    click.echo(f"git claim run: {note}", err=True)
    if as_json:
        emit_json({"ok": False, "ticket": ticket, "status": None, "interrupted": signum,
                   "released": None if "could not" in note else "free"})
    return 128 + signum


def _renew_before_start(session: Any, ticket: str, document: dict[str, Any],
                        interval: float) -> None:
    """Never start a command on an old lease: beat first.

    A claim reused from an earlier run (already ours) may have been silent
    for most of its TTL, and a win may have come late; either could be
    reaped moments after the command starts. A beat renews the lease, or
    says the claim is lost (RefusedError, exit 1) before anything runs.
    """
    from ..clock import now
    from ..liveness import heartbeat
    from ..lock import find_mine

    mine = find_mine(session, ticket, document["tag"])
    if mine is None:
        return
    if document.get("already_ours") or now() - mine.claimed_at >= interval:
        heartbeat(session, ticket, mine)


def _release(session: Any, document: dict[str, Any], how: str, status: int,
             report: Any) -> tuple[str | None, Any]:
    """Release as the command's status says: (the outcome, None) or (None, the ClaimError).

    Exactly the claim this run supervised (its tag), never a later claim of
    the same name on the same ticket.
    """
    ticket = document["ticket"]
    from ..errors import ClaimError
    from ..lock import OUTCOME_FREE, release
    from ..mirror import on_released, open_label_tracker

    outcome = {"done": "done", "blocked": "blocked", "release": OUTCOME_FREE}[how]
    reason = f"exit status {status}" if outcome == "blocked" else ""
    try:
        release(session, ticket, outcome=outcome, reason=reason, tag=document["tag"])
    except ClaimError as error:
        report(f"could not release {ticket}: {error.message}")
        return None, error
    for warning in on_released(session, open_label_tracker(session), ticket, outcome, reason):
        report(f"warning: {warning}")
    if outcome == "done":
        for line in _cleanup_worktree(session, ticket):
            report(line)
    return outcome, None


def _cleanup_worktree(session: Any, ticket: str) -> list[str]:
    from ..worktree import branch_name, our_worktrees, remove_worktree

    if not any(tree.ticket == ticket for tree in our_worktrees(session.location)):
        return []
    _, message = remove_worktree(session.location, ticket=ticket,
                                 branch=branch_name(session.settings.branch_prefix, ticket))
    return [message]


@claim_group.command("gc", context_settings=CONTEXT_SETTINGS)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@remote_options
@json_option
def gc_command(dry_run: bool, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Remove local worktrees of claims no longer held by us (never ones with unsaved work)."""
    with reporting(as_json=as_json, command="git claim gc"):
        from ..claims import read_claims
        from ..ownership import OwnershipStore
        from ..worktree import gc, git_dirs

        session = session_from(remote, agent)
        views = read_claims(session)
        records = [r for d in git_dirs(session.location) for r in OwnershipStore(d).all()]
        ours = {r.ticket for r in records
                if r.ticket in views and views[r.ticket].oid == r.tag
                and views[r.ticket].held}
        results = gc(session.location, held=ours, dry_run=dry_run)
        if as_json:
            emit_json({"ok": True, "dry_run": dry_run,
                       "worktrees": [{"ticket": t, "removed": done, "message": m}
                                     for t, done, m in results]})
        else:
            for _, _, message in results:
                click.echo(message)
            if not results:
                click.echo("nothing to clean")
