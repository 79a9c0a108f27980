"""Printing results and errors: one line for people, one JSON document for scripts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from ..errors import ClaimError, ExitCode
from ..safetext import clean

if TYPE_CHECKING:
    from ..board import BoardRow
    from ..history import LogEvent
    from ..ops.board import Board
    from ..ops.claim import Claimed
    from ..ops.compact import Compacted
    from ..ops.gc import GcResult
    from ..ops.hook import GuardInstalled, HookInstalled, HookRemoved, Verdict
    from ..ops.liveness import Beat, Verified
    from ..ops.log import TicketLog
    from ..ops.ready import Ready, ReadyEntry
    from ..ops.reap import Reaped
    from ..ops.release import Released, Reopened
    from ..ops.run import Drained, RunResult
    from .progress import StatusLine

DEBUG_VARIABLE = "GIT_CLAIM_DEBUG"


def emit_json(document: Any) -> None:
    import json  # here, not at the top: `-h` and the human output never need it

    click.echo(json.dumps(document, sort_keys=True, default=str))


def error_document(message: str, kind: str, code: int, **details: Any) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": kind, "message": message}, "exit_code": code,
            **details}


def emit_report(document: dict[str, Any], failure: ClaimError | None) -> None:
    """Print a command's report; when part of its work was left undone, say so and exit.

    The whole report is printed either way (what was done matters to a
    script too), with `ok`, the error and its exit code when it failed.
    """
    document["ok"] = failure is None
    if failure is not None:
        document.update(error={"kind": failure.kind, "message": failure.message},
                        exit_code=int(failure.exit_code))
    emit_json(document)
    if failure is not None:
        raise SystemExit(int(failure.exit_code))


@contextmanager
def reporting(*, as_json: bool, command: str) -> Iterator[None]:
    """Turn every failure into one line (or one JSON object) and a documented exit code."""
    try:
        yield
    except ClaimError as error:
        _fail(error.message, error.kind, int(error.exit_code), as_json, command, error.details)
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        _fail("interrupted", "interrupted", int(ExitCode.INTERRUPTED), as_json, command, {})
    except Exception as error:  # a bug: still one line, details on request
        if os.environ.get(DEBUG_VARIABLE):
            import traceback

            traceback.print_exc()
        _fail(f"internal error: {type(error).__name__}: {clean(str(error))}"
              f" (set {DEBUG_VARIABLE}=1 for details)", "internal", int(ExitCode.GIT_ERROR),
              as_json, command, {})


def _fail(message: str, kind: str, code: int, as_json: bool, command: str,
          details: dict[str, Any]) -> None:
    if os.environ.get(DEBUG_VARIABLE) and sys.exc_info()[0] is not None and kind != "internal":
        import traceback

        traceback.print_exc()
    if as_json:
        emit_json(error_document(message, kind, code, **details))
    else:
        click.echo(f"{command}: {message}", err=True)
    raise SystemExit(code)


# release, reap, board, log ----------------------------------------------------


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def emit_released(result: Released, *, as_json: bool) -> None:
    """`git release` (see git-release(1)); tracker warnings first, on stderr."""
    if as_json:
        document = {"ok": True, "ticket": result.ticket, "outcome": result.outcome.value,
                    "forced": result.forced, "holder": result.holder,
                    "worktree": list(result.worktree)}
        if result.to is not None:
            document["to"] = result.to
        emit_json(document)
        return
    _warn(result.warnings)
    if result.to is not None:
        click.echo(f"handed {result.ticket} to {clean(result.to, 80)}")
        return
    what = {"free": "released", "done": "done:", "blocked": "blocked:"}[result.outcome.value]
    click.echo(f"{what} {result.ticket}{' (forced)' if result.forced else ''}")
    for line in result.worktree:
        click.echo(line)


def emit_reopened(result: Reopened, *, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": True, "ticket": result.ticket, "was": result.was.value})
    else:
        click.echo(f"reopened {result.ticket} (was {result.was.value})")


def emit_beat(beat: Beat, *, as_json: bool) -> None:
    from ..clock import iso

    if as_json:
        emit_json({"ok": True, "ticket": beat.ticket, "seq": beat.seq, "time": iso(beat.time)})
    else:
        click.echo(f"heartbeat {beat.ticket} #{beat.seq}")


def emit_verified(result: Verified, *, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": True, "ticket": result.ticket, "ours": True})
    else:
        click.echo(f"{result.ticket} is yours")


def reap_summary(result: Reaped) -> str:
    """'reaped 1, live 3, skipped 1 (1 open pull request), 1 came back to life'."""
    summary = (f"{'would reap' if result.dry_run else 'reaped'} {len(result.reaped)},"
               f" live {len(result.live)}, skipped {len(result.skipped)}")
    if result.skips:
        summary += " (" + ", ".join(f"{n} {kind.value}" for kind, n in result.skips) + ")"
    if result.revived:
        summary += f", {len(result.revived)} came back to life"
    return summary


def emit_reaped(result: Reaped, *, as_json: bool) -> None:
    """`git reap` (see git-reap(1)); exits 5 when stale claims were left in place."""
    from ..clock import format_duration

    failure = result.failure
    if as_json:
        emit_report({"dry_run": result.dry_run, "ttl": result.ttl, "max_skew": result.max_skew,
                     "summary": reap_summary(result),
                     "reaped": [e.as_dict() for e in result.reaped],
                     "live": [e.as_dict() for e in result.live],
                     "skipped": [e.as_dict() for e in result.skipped],
                     "revived": [e.as_dict() for e in result.revived],
                     "undone": [e.as_dict() for e in result.undone],
                     "repaired": list(result.repaired), "warnings": list(result.warnings)},
                    failure)
        return
    verb = "would reap" if result.dry_run else "reaped"
    for entry in result.reaped:
        idle = format_duration(entry.idle_seconds) if entry.idle_seconds is not None else "?"
        click.echo(f"{verb} {clean(entry.ticket)} (held by {clean(entry.holder, 80)},"
                   f" silent {idle})")
    for entry in result.skipped:
        click.echo(f"skipped {clean(entry.ticket)}: {clean(entry.reason)}")
    for line in result.repaired:
        click.echo(f"repaired: {line}")
    _warn(result.warnings)
    click.echo(reap_summary(result))
    if failure is not None:
        raise failure


def emit_compacted(result: Compacted, *, as_json: bool) -> None:
    """`git claim compact`; exits 5 when the remote refused some deletes."""
    failure = result.failure
    if as_json:
        emit_report({"dry_run": result.dry_run, "tickets": result.tickets,
                     "superseded": list(result.superseded), "deleted": list(result.deleted),
                     "refused": dict(result.refused)}, failure)
        return
    verb = "would delete" if result.dry_run else "deleted"
    count = len(result.superseded) if result.dry_run else len(result.deleted)
    click.echo(f"{verb} {count} superseded claim{'s' if count != 1 else ''}"
               f" of {result.tickets} ticket{'s' if result.tickets != 1 else ''}")
    if failure is not None:
        raise failure


def emit_log(result: TicketLog, *, as_json: bool) -> None:
    if as_json:
        emit_json([event.as_dict() for event in result.events])
    else:
        click.echo(render_history(result.events), nl=False)


def render_history(events: tuple[LogEvent, ...]) -> str:
    """One line per event: when, which claim, what, who, and the event's details."""
    from ..clock import format_duration

    if not events:
        return "no history\n"
    lines = []
    for e in events:
        when = (e.time or "?").replace("T", " ").rstrip("Z")
        what = e.event.value
        detail = ""
        if what == "heartbeat":
            detail = f" #{e.seq}"
        elif what == "reaped":
            ttl = format_duration(e.ttl) if e.ttl is not None else "?"
            detail = f" (ttl {ttl}; holder {clean(e.holder or '?', 80)})"
        elif what == "released":
            detail = f" ({e.outcome or 'free'})"
            if e.forced_by:
                detail += f" forced, holder {clean(e.holder or '?', 80)}"
        elif what == "reopened" and e.outcome:
            detail = f" (was {clean(e.outcome, 20)})"
        elif what == "handed":
            detail = f" (to {clean(e.to or '?', 80)})"
        elif what == "claimed" and e.handed_from:
            detail = f" (handed from {clean(e.handed_from, 80)})"
        if e.reason:
            detail += f": {clean(e.reason, 120)}"
        claim = f"@{e.epoch}" if e.epoch else "@?"
        lines.append(f"{when}  {claim:<4} {what:<9} {clean(e.agent or '?', 80)}{detail}")
    return "\n".join(lines) + "\n"


def emit_hook_installed(result: HookInstalled, *, as_json: bool) -> None:
    if as_json:
        document: dict[str, Any] = {"ok": True, "path": result.path}
        if result.chained:
            document["chained"] = result.chained
        emit_json(document)
    else:
        chained = (f" (chained to the existing hook, kept as {result.chained})"
                   if result.chained else "")
        click.echo(f"installed {result.path}{chained}")


def emit_hook_removed(result: HookRemoved, *, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": True, "path": result.path})
    else:
        click.echo(f"removed {result.path}")


def emit_verdict(verdict: Verdict, *, prefix: str) -> None:
    """A hook's refusals on stderr, one a line; exit 1 refuses the push."""
    for line in verdict.refusals:
        click.echo(f"{prefix}{line}", err=True)
    if verdict.refusals:
        raise SystemExit(int(verdict.exit_code))


def emit_guard_installed(result: GuardInstalled, *, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": True, "path": result.path, "executable": result.executable})
    else:
        click.echo(f"installed {result.path}")


COLOURS = {"live": "32", "stale": "33", "blocked": "31", "done": "34", "unknown": "31;1"}
BOARD_HEADER = ("TICKET", "STATE", "HOLDER", "AGE", "HEARTBEAT", "REAP IN", "TITLE")
MIN_SHRINK = {2: 12, 6: 10}  # HOLDER and TITLE give way first, down to these widths


def emit_board(board: Board, *, as_json: bool, width: int | None = None,
               colour: bool = False) -> None:
    if as_json:
        emit_json([row.as_dict() for row in board.rows])
    else:
        click.echo(render_table(board.rows, width=width, colour=colour,
                                titles=dict(board.titles)), nl=False)


def render_table(rows: tuple[BoardRow, ...] | list[BoardRow], *, width: int | None = None,
                 colour: bool = False, titles: dict[str, str] | None = None) -> str:
    """A table sorted as given, fitted to `width` columns; colour only when asked."""
    from ..clock import format_duration

    if not rows:
        return "no claims\n"
    titles = titles or {}
    lines: list[tuple[str, ...]] = [BOARD_HEADER]
    for r in rows:
        mark = "*" if r.ours else " "
        lines.append((
            mark + clean(r.ticket, 64), r.state.value, _holder(r),
            format_duration(r.age_seconds) if r.age_seconds is not None else "-",
            _local_time(r.last_heartbeat) if r.last_heartbeat else "-",
            format_duration(r.reap_in_seconds) if r.reap_in_seconds is not None else "-",
            clean(titles.get(r.ticket, ""), 200),
        ))
    if not any(line[6] for line in lines[1:]):  # no tracker titles: no empty column
        lines = [line[:6] for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    if width:
        shrinkable = (6, 2) if len(widths) == len(BOARD_HEADER) else (2,)
        for column in shrinkable:  # the title first, then the holder
            excess = sum(widths) + 2 * (len(widths) - 1) - width
            if excess > 0:
                widths[column] = max(MIN_SHRINK[column], widths[column] - excess)
    text = []
    for index, line in enumerate(lines):
        cells = [_fit(cell, widths[i]) for i, cell in enumerate(line)]
        rendered = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()
        if colour and index > 0 and line[1] in COLOURS:
            state_at = len(cells[0].ljust(widths[0])) + 2
            state = cells[1].ljust(widths[1])
            rendered = (rendered[:state_at] + f"\x1b[{COLOURS[line[1]]}m{state}\x1b[0m"
                        + rendered[state_at + len(state):])
        elif colour and index == 0:
            rendered = f"\x1b[1m{rendered}\x1b[0m"
        text.append(rendered)
    return "\n".join(text) + "\n"


def _holder(r: BoardRow) -> str:
    """The holder's cell: a hand-off not yet taken up names who handed it."""
    holder = clean(r.agent or "?", 80)
    if r.handed_from is not None:
        return f"{holder} (handed by {clean(r.handed_from, 80)})"
    return holder


def _fit(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: max(0, width - 1)] + "…"


def _local_time(stamp: str) -> str:
    from datetime import datetime, timezone

    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return parsed.astimezone().strftime("%H:%M:%S")



# claim, run, gc ---------------------------------------------------------------


def claimed_document(claimed: Claimed) -> dict[str, Any]:
    """`git claim TICKET --json` and `git claim --next --json` (see git-claim(1))."""
    document: dict[str, Any] = {
        "ok": True, "ticket": claimed.ticket, "ref": claimed.ref, "tag": claimed.tag,
        "epoch": claimed.epoch, "agent": claimed.agent, "title": claimed.title,
        "labels": list(claimed.labels) if claimed.labels is not None else None,
        "warnings": list(claimed.warnings)}
    if claimed.from_backlog:
        document.update(pushes=claimed.pushes, skipped=dict(claimed.skipped),
                        resumed=claimed.resumed)
    else:
        document.update(already_ours=claimed.already_ours, refused=list(claimed.refused))
    if claimed.worktree is not None:
        document.update(worktree=str(claimed.worktree.path), branch=claimed.worktree.branch)
    if claimed.handed_from is not None:
        document["handed_from"] = claimed.handed_from
    return document


def claimed_lines(claimed: Claimed) -> list[str]:
    """What a claim says in text: refusals and warnings first, then the win."""
    lines = [f"refused: {message}" for message in claimed.refused]
    lines += [f"warning: {warning}" for warning in claimed.warnings]
    if claimed.from_backlog:
        title = f": {clean(claimed.title, 100)}" if claimed.title else ""
        verb = "resumed" if claimed.resumed else "claimed"
        handed = f" (handed off by {clean(claimed.handed_from, 80)})" \
            if claimed.handed_from is not None and not claimed.resumed else ""
        lines.append(f"{verb} {claimed.ticket} ({claimed.ref}){handed}{title}")
    else:
        note = " (already yours)" if claimed.already_ours else ""
        if claimed.handed_from is not None and not claimed.already_ours:
            note = f" (handed off by {clean(claimed.handed_from, 80)})"
        lines.append(f"claimed {claimed.ticket} ({claimed.ref}){note}")
    tree = claimed.worktree
    if tree is not None:
        lines.append(f"{'made' if tree.created else 'reusing'} worktree {tree.path}"
                     f" on {tree.branch}")
    return lines


def emit_claimed(claimed: Claimed, *, as_json: bool) -> None:
    if as_json:
        emit_json(claimed_document(claimed))
        return
    for line in claimed_lines(claimed):
        click.echo(line, err=line.startswith(("warning:", "refused:")))


RUN_PREFIX = "git claim run: "


def run_progress(status: StatusLine) -> dict[str, Any]:
    """What `run` says while it works: its claim and its messages, on stderr.

    `status` shows the reading of a long backlog, erased before anything else is said.
    """

    def report(line: str) -> None:
        status.finish()
        click.echo(f"{RUN_PREFIX}{line}", err=True)

    def on_claimed(claimed: Claimed) -> None:
        for line in claimed_lines(claimed):
            report(line)

    return {"report": report, "on_claimed": on_claimed}


def run_document(result: RunResult) -> dict[str, Any]:
    """`git claim run --json`: one run (see git-claim(1))."""
    document: dict[str, Any] = {
        "ok": result.ok, "ticket": result.ticket, "status": result.status,
        "released": result.released.value if result.released is not None else None}
    if result.handed_to is not None:
        document["handed_to"] = result.handed_to
    if result.status is None and result.not_started is None:  # interrupted before the start
        document["interrupted"] = result.interrupted
        return document
    document.update(beats=result.beats, failed_beats=result.failed_beats, lost=result.lost,
                    worktree=str(result.worktree) if result.worktree else None,
                    kept_worktree=result.kept_worktree)
    if result.release_error is not None:
        document["release_error"] = result.release_error
    if result.not_started is not None:
        document["not_started"] = result.not_started
    if result.interrupted is not None:
        document["interrupted"] = result.interrupted
    return document


def emit_run(result: RunResult, *, as_json: bool) -> int:
    """Print what one run ended with; its exit status is returned."""
    if result.claimed is None:
        message = "interrupted before anything was claimed"
        if as_json:
            emit_json(error_document(message, "interrupted", result.exit_code,
                                     interrupted=result.interrupted))
        else:
            click.echo(f"{RUN_PREFIX}{message}", err=True)
        return result.exit_code
    if as_json:
        emit_json(run_document(result))
    return result.exit_code


def drain_summary(drained: Drained) -> str:
    """'3 runs: 2 done, 1 blocked' (and what went wrong, by ticket)."""
    counts: dict[str, list[str]] = {}
    for result in drained.runs:
        if result.lost is not None:
            what = "lost"
        elif result.release_error is not None:
            what = "not released"
        elif result.not_started is not None:
            what = "not started"
        elif result.released is not None:
            what = result.released.value
        else:
            what = "kept"
        counts.setdefault(what, []).append(result.ticket or "?")
    runs = len(drained.runs)
    parts = [f"{len(tickets)} {what}" + (f" ({', '.join(tickets)})"
                                          if what not in ("done", "blocked", "free") else "")
             for what, tickets in counts.items()]
    return f"{runs} run{'' if runs == 1 else 's'}" + (": " + ", ".join(parts) if parts else "")


def emit_drained(drained: Drained, *, as_json: bool) -> int:
    """`run --until-empty`: a summary line (or one JSON document); the exit status."""
    summary = drain_summary(drained)
    if drained.interrupted is not None:
        kind, message = "interrupted", f"interrupted after {summary}"
    elif drained.stopped is not None:
        kind = drained.stopped.kind
        message = f"stopped after {summary}: {drained.stopped.message}"
    elif drained.exit_code:
        kind, message = "incomplete", (f"the backlog is drained, but not cleanly ({summary});"
                                       f" {drained.empty}")
    else:
        kind, message = "", f"the backlog is drained ({summary}); {drained.empty}"
    if as_json:
        document: dict[str, Any] = {
            "ok": drained.exit_code == 0, "until_empty": True, "drained": drained.empty is not None,
            "runs": [run_document(result) for result in drained.runs],
            "skipped": dict(drained.skipped), "exit_code": drained.exit_code}
        if drained.exit_code:
            document["error"] = {"kind": kind, "message": message}
        emit_json(document)
    else:
        click.echo(f"{RUN_PREFIX}{message}", err=True)
    return drained.exit_code


def emit_gc(result: GcResult, *, as_json: bool) -> None:
    """`git claim gc`: what was removed, or kept and why."""
    if as_json:
        emit_json({"ok": True, "dry_run": result.dry_run,
                   "worktrees": [{"ticket": item.ticket, "removed": item.removed,
                                  "message": item.message} for item in result.worktrees]})
        return
    for item in result.worktrees:
        click.echo(item.message)
    if not result.worktrees:
        click.echo("nothing to clean")


READY_WORDS = {
    "eligible": "eligible", "held": "held by", "done": "done", "blocked": "blocked",
    "closed": "closed", "already-run": "already run", "filtered": "without the wanted labels",
    "excluded": "excluded by label", "gated": "needs design approval",
    "labels-unknown": "labels unknown (gate fails closed)", "waiting": "waiting on",
    "dependencies-unknown": "dependencies unknown:", "cycle": "dependency cycle:",
    "sub-issues-open": "waiting on sub-issues", "needs-capability": "needs",
    "agent-limit": "over this agent's claim limit:", "wip-limit": "over the WIP limit of",
}


def ready_state(entry: ReadyEntry) -> str:
    """`held by alice`, `waiting on #640`, `needs frontend`: the state and its detail."""
    words = READY_WORDS.get(entry.state.value, entry.state.value)
    if entry.state.value in ("done", "blocked") and entry.detail:
        return f"{words} ({clean(entry.detail, 60)})"
    if entry.state.value == "gated" or not entry.detail:
        return words
    return f"{words} {clean(entry.detail, 120)}"


def ready_document(result: Ready) -> dict[str, Any]:
    """`git claim ready --json` (see git-claim(1))."""
    return {"ok": True, "agent": result.agent, "eligible": result.eligible,
            "counts": dict(result.counts), "source_skipped": dict(result.source_skipped),
            "tickets": [{"ticket": e.ticket, "title": e.title, "state": e.state.value,
                         "detail": e.detail, "tier": e.tier, "mine": e.mine, "url": e.url}
                        for e in result.entries]}


def emit_ready(result: Ready, *, as_json: bool) -> None:
    if as_json:
        emit_json(ready_document(result))
        return
    for entry in result.entries:
        title = f"  {clean(entry.title, 80)}" if entry.title else ""
        click.echo(f"{clean(entry.ticket, 30):<10} P{entry.tier}  {ready_state(entry)}{title}")
    counts = ", ".join(f"{n} {words}" for words, n in sorted(result.counts.items()))
    click.echo(f"{result.eligible} eligible of {len(result.entries)}"
               + (f" ({counts})" if counts else ""))
    lines = sum(result.source_skipped.values())
    if lines:
        why = ", ".join(f"{n} {clean(reason, 80)}"
                        for reason, n in sorted(result.source_skipped.items()))
        click.echo(f"skipped {lines} line{'s' if lines != 1 else ''} of the backlog ({why})")
