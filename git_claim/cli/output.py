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
