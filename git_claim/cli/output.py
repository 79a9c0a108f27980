"""Printing results and errors: one line for people, one JSON document for scripts."""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import click

from ..errors import ClaimError, ExitCode
from ..safetext import clean

if TYPE_CHECKING:
    from ..ops.claim import Claimed
    from ..ops.gc import GcResult
    from ..ops.run import Drained, RunResult

DEBUG_VARIABLE = "GIT_CLAIM_DEBUG"


def emit_json(document: Any) -> None:
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
            traceback.print_exc()
        _fail(f"internal error: {type(error).__name__}: {clean(str(error))}"
              f" (set {DEBUG_VARIABLE}=1 for details)", "internal", int(ExitCode.GIT_ERROR),
              as_json, command, {})


def _fail(message: str, kind: str, code: int, as_json: bool, command: str,
          details: dict[str, Any]) -> None:
    if os.environ.get(DEBUG_VARIABLE) and sys.exc_info()[0] is not None and kind != "internal":
        traceback.print_exc()
    if as_json:
        emit_json(error_document(message, kind, code, **details))
    else:
        click.echo(f"{command}: {message}", err=True)
    raise SystemExit(code)


# claim, run, gc ---------------------------------------------------------------


def claimed_document(claimed: Claimed) -> dict[str, Any]:
    """`git claim TICKET --json` and `git claim --next --json` (see git-claim(1))."""
    document: dict[str, Any] = {
        "ok": True, "ticket": claimed.ticket, "ref": claimed.ref, "tag": claimed.tag,
        "epoch": claimed.epoch, "agent": claimed.agent, "title": claimed.title,
        "labels": list(claimed.labels) if claimed.labels is not None else None,
        "warnings": list(claimed.warnings)}
    if claimed.from_backlog:
        document.update(pushes=claimed.pushes, skipped=dict(claimed.skipped))
    else:
        document.update(already_ours=claimed.already_ours, refused=list(claimed.refused))
    if claimed.worktree is not None:
        document.update(worktree=str(claimed.worktree.path), branch=claimed.worktree.branch)
    return document


def claimed_lines(claimed: Claimed) -> list[str]:
    """What a claim says in text: refusals and warnings first, then the win."""
    lines = [f"refused: {message}" for message in claimed.refused]
    lines += [f"warning: {warning}" for warning in claimed.warnings]
    if claimed.from_backlog:
        title = f": {clean(claimed.title, 100)}" if claimed.title else ""
        lines.append(f"claimed {claimed.ticket} ({claimed.ref}){title}")
    else:
        note = " (already yours)" if claimed.already_ours else ""
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


def run_progress() -> dict[str, Any]:
    """What `run` says while it works: its claim and its messages, on stderr."""

    def report(line: str) -> None:
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
