"""`git claim`: claim tickets, list claims, reopen finished ones."""

from __future__ import annotations

from typing import Any

import click

from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .group import DEFAULT_COMMAND, ClaimGroup, run_group
from .output import emit_json, reporting

@click.group(cls=ClaimGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=False)
@click.version_option(package_name="git-claim", prog_name="git-claim", message="%(prog)s %(version)s")
def claim_group() -> None:
    """Claim tickets atomically through the shared git remote.

    `git claim 640` creates the claim ref refs/claims/640 on the remote (a later
    claim of 640: refs/claims/640@2, ...); of two agents claiming at once, the
    server accepts exactly one. `git claim 640 641` claims the first it can win.

    No word becomes a claim by accident: a ticket word that looks like a
    command (a subcommand or one slip from one, as `lsit`; `status`, `release`,
    `push`, ...) is refused with exit 2 and a "did you mean". Such a ticket is
    claimed with `git claim take list` or `git claim -- list`. Options may come
    before a subcommand (`git claim --json list`); `git claim help [COMMAND]`
    prints the help.

    `git claim --next` claims from the backlog instead (see --from).

    Exit codes: 0 success, 1 the answer is no (held by another, done, not the
    holder, nothing eligible), 2 usage or bad input, 3 git, remote or tracker
    error, 4 `run`: the claim was lost. See git-claim(1).
    """


@claim_group.command(DEFAULT_COMMAND, context_settings=CONTEXT_SETTINGS)
@click.argument("tickets", nargs=-1, metavar="TICKET...")
@click.option("--next", "pick_next", is_flag=True,
              help="Claim the next eligible ticket of the backlog (see --from).")
@click.option("--from", "source", metavar="SOURCE",
              help="Backlog for --next: gh, a file (ids or JSON lines), or - for stdin"
                   " [claim.source].")
@click.option("--label", "labels", multiple=True, metavar="LABEL",
              help="--next: only tickets with this label (repeatable).")
@click.option("--exclude-label", "excluded", multiple=True, metavar="LABEL",
              help="--next: skip tickets with this label (repeatable).")
@click.option("--no-gate", is_flag=True,
              help="Skip the design gate (for humans; recorded in the claim).")
@click.option("--worktree", "worktree", is_flag=False, flag_value="", default=None,
              metavar="[PATH]",
              help="After a win, make a linked worktree on claim/<ticket> [claim.worktree].")
@click.option("--base", metavar="REV",
              help="The worktree branch starts here [the remote's default branch as last"
                   " fetched].")
@remote_options
@json_option
def take_command(tickets: tuple[str, ...], pick_next: bool, source: str | None,
                 labels: tuple[str, ...], excluded: tuple[str, ...], no_gate: bool,
                 worktree: str | None, base: str | None,
                 remote: str | None, agent: str | None, as_json: bool) -> None:
    """Claim the first TICKET that can be won, or --next from the backlog (the default command)."""
    with reporting(as_json=as_json, command="git claim"):
        from ..errors import UsageError

        ids = parse_tickets(tickets)
        if pick_next and ids:
            raise UsageError("give ticket ids or --next, not both")
        if not pick_next and (labels or excluded or source):
            raise UsageError("--from, --label and --exclude-label go with --next")
        if not ids and not pick_next:
            raise UsageError("give at least one ticket id (e.g. `git claim 640`) or --next")
        session = session_from(remote, agent, source=source)
        if pick_next:
            document, lines = _claim_next(session, labels, excluded, gate=not no_gate)
        else:
            document, lines = _claim_ids(session, ids, gate=not no_gate)
        if worktree is not None or session.settings.worktree:
            tree = worktree_or_release(session, document, worktree or None, base)
            document["worktree"] = str(tree.path)
            document["branch"] = tree.branch
            lines.append(f"{'made' if tree.created else 'reusing'} worktree {tree.path}"
                         f" on {tree.branch}")
        if as_json:
            emit_json(document)
        else:
            for line in lines:
                click.echo(line, err=line.startswith(("warning:", "refused:")))


def make_worktree(session: Any, ticket: str, path: str | None, base: str | None,
                  document: dict[str, Any]) -> Any:
    """A worktree for a won claim; the ownership record goes with it."""
    from pathlib import Path

    from ..errors import UsageError
    from ..worktree import branch_name, ensure_worktree

    settings = session.settings
    start = base or session.local.remote_default_commit(settings.remote)
    if base and not session.local.resolve(base):
        raise UsageError(f"--base {base!r} does not name a commit")
    tree = ensure_worktree(
        session.location, ticket=ticket, branch=branch_name(settings.branch_prefix, ticket),
        base=session.local.resolve(start) or start, claim_tag=document["tag"],
        path=Path(path) if path else None, worktree_dir=settings.worktree_dir or None,
        ticket_info={"title": document.get("title") or "", "labels": document.get("labels") or []})
    record = session.store.get(ticket, ref=settings.claim_ref(ticket),
                               remote_url=session.remote_url)
    if record is not None and tree.git_dir is not None:
        session.store.copy_to(tree.git_dir, record)
    return tree


def worktree_or_release(session: Any, document: dict[str, Any], path: str | None,
                        base: str | None) -> Any:
    """Make the worktree of a fresh win; if that fails, give the ticket back."""
    from ..errors import ClaimError
    from ..lock import release

    try:
        return make_worktree(session, document["ticket"], path, base, document)
    except ClaimError as error:
        if not document.get("already_ours"):
            try:
                release(session, document["ticket"])
                error.message += f" (the claim on {document['ticket']} was released)"
            except ClaimError:
                error.message += f" (the claim on {document['ticket']} is still held)"
        raise


def _claim_ids(session: Any, ids: list[str], *, gate: bool) -> tuple[dict[str, Any], list[str]]:
    from ..backlog import check_gate
    from ..errors import RefusedError
    from ..lock import claim
    from ..mirror import on_claimed, open_label_tracker

    tracker = open_label_tracker(session)
    refusals: list[str] = []
    for ticket in ids:
        try:
            info = check_gate(session, ticket, tracker) if gate else None
            won = claim(session, ticket, no_gate=not gate)
        except RefusedError as refusal:
            refusals.append(refusal.message)
            continue
        warnings = on_claimed(session, tracker, ticket) if not won.already_ours else []
        note = " (already yours)" if won.already_ours else ""
        document = {"ok": True, "ticket": won.ticket, "ref": won.ref, "tag": won.tag,
                    "epoch": won.epoch,
                    "agent": won.record.agent, "already_ours": won.already_ours,
                    "title": info.title if info else None,
                    "labels": list(info.labels) if info else None,
                    "refused": refusals, "warnings": warnings}
        lines = [f"refused: {r}" for r in refusals] + [f"warning: {w}" for w in warnings]
        return document, lines + [f"claimed {won.ticket} ({won.ref}){note}"]
    if len(ids) == 1:
        raise RefusedError(refusals[0])
    raise RefusedError(f"none of {', '.join(ids)} could be claimed: " + "; ".join(refusals),
                       refused=refusals)


def _claim_next(session: Any, labels: tuple[str, ...], excluded: tuple[str, ...], *,
                gate: bool) -> tuple[dict[str, Any], list[str]]:
    import sys

    from ..backlog import claim_next
    from ..errors import UsageError
    from ..mirror import on_claimed, open_label_tracker
    from ..safetext import clean
    from ..tracker.base import open_tracker

    source = session.settings.source
    if not source:
        raise UsageError("--next needs a backlog: --from gh|FILE|- or git config claim.source")
    backlog_tracker = open_tracker(source, stdin=sys.stdin, cwd=session.location.worktree,
                                   timeout=session.settings.tracker_timeout)
    label_tracker = open_label_tracker(session)
    from .progress import StatusLine, counter

    backlog = backlog_tracker.backlog()
    line = StatusLine("reading the backlog")
    try:
        result = claim_next(session, backlog, tracker=label_tracker, labels=labels,
                            exclude=excluded, gate=gate, progress=counter(line, len(backlog)))
    finally:
        line.finish()
    warnings = on_claimed(session, label_tracker, result.ticket.id)
    document = {"ok": True, "ticket": result.ticket.id, "title": result.ticket.title,
                "labels": list(result.ticket.labels), "ref": result.claim.ref,
                "epoch": result.claim.epoch,
                "tag": result.claim.tag, "agent": result.claim.record.agent,
                "pushes": result.pushes, "skipped": result.skipped, "warnings": warnings}
    title = f": {clean(result.ticket.title, 100)}" if result.ticket.title else ""
    return document, [f"warning: {w}" for w in warnings] + [
        f"claimed {result.ticket.id} ({result.claim.ref}){title}"]


def main() -> None:
    from . import (  # noqa: F401  (they register their commands)
        board_cmd, compact_cmd, completion_cmd, guard_cmd, liveness_cmd, run_cmd)

    run_group(claim_group)
