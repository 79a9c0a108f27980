"""`git claim take`: claim named tickets, or the next one of the backlog.

The decisions behind a claim that are not the lock itself live here: which
of several ids to try, how `--next` reads the backlog and mirrors the win,
and that a worktree which cannot be made gives a fresh win back (a claim
nobody can work on would only wait for the reaper). The CLI builds a request,
calls `take` or `claim_next` and renders the frozen result; nothing here
prints or imports click.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, TextIO

from ..errors import ClaimError, ExitCode, RefusedError, UsageError

if TYPE_CHECKING:
    from ..session import Session
    from ..tracker.base import Ticket, Tracker
    from ..worktree import Worktree

__all__ = ["Claimed", "NextRequest", "NothingEligible", "TakeRequest", "WorktreeRequest",
           "claim_ids", "claim_next", "take", "worktree_or_release"]

Progress = Callable[[int, int], None]  # (tickets looked at, tickets in the backlog)


class NothingEligible(RefusedError):
    """`--next` found no ticket to claim: its own exit code (6), so a loop can tell
    an empty backlog from a refusal or from the status of an agent's command."""

    exit_code = ExitCode.EMPTY
    kind = "empty"


@dataclass(frozen=True)
class WorktreeRequest:
    """`--worktree[=PATH]` and `--base`: whether to make the claim's worktree, where, from what.

    Not `asked`, the worktree is made all the same when claim.worktree is set.
    """

    asked: bool = False
    path: str | None = None  # None: the default place
    base: str | None = None  # None: the remote's default branch as last fetched


@dataclass(frozen=True)
class TakeRequest:
    """`git claim TICKET...`: the first of `tickets` (already validated) that can be won."""

    tickets: tuple[str, ...]
    gate: bool = True  # False: a human passes the gate, dependencies and capabilities
    worktree: WorktreeRequest = WorktreeRequest()
    capabilities: frozenset[str] | None = None  # --can; None: claim.capabilities


@dataclass(frozen=True)
class NextRequest:
    """`git claim --next`: one eligible ticket of the backlog (claim.source unless `source`)."""

    labels: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    gate: bool = True
    worktree: WorktreeRequest = WorktreeRequest()
    stdin: TextIO | None = None  # the backlog when the source is `-`
    progress: Progress | None = None
    # A drain's memory: tickets it already ran are not picked again (one
    # released as free after a failure would otherwise come straight back).
    skip_ids: frozenset[str] = frozenset()
    # The backlog as read once before (standard input cannot be read twice).
    backlog: tuple[Ticket, ...] | None = None
    capabilities: frozenset[str] | None = None  # --can; None: claim.capabilities
    # Take back a live claim of ours no process works on (a run that died),
    # or one handed to this agent, before anything new.
    resume: bool = False


@dataclass(frozen=True)
class Claimed:
    """A won claim, as `take` and `run` report it."""

    ticket: str
    ref: str
    tag: str
    epoch: int
    agent: str
    already_ours: bool
    title: str | None  # known when a tracker or the backlog said
    labels: tuple[str, ...] | None
    from_backlog: bool  # won by --next: `pushes` and `skipped` are meaningful
    refused: tuple[str, ...] = ()  # the ids tried before it, why each was refused
    warnings: tuple[str, ...] = ()  # mirrors that failed; the claim stands
    pushes: int = 0
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    worktree: Worktree | None = None
    backlog: tuple[Ticket, ...] = ()  # what --next read, for a drain to read no more
    resumed: bool = False  # --next took back a claim of ours instead of a new one
    handed_from: str | None = None  # a hand-off taken up: the agent who handed it


def take(session: Session, request: TakeRequest | NextRequest) -> Claimed:
    """Claim as asked, then make the worktree when asked or configured."""
    claimed = (claim_next(session, request) if isinstance(request, NextRequest)
               else claim_ids(session, request))
    if not wants_worktree(session, request.worktree):
        return claimed
    return worktree_or_release(session, claimed, request.worktree)


def wants_worktree(session: Session, request: WorktreeRequest) -> bool:
    """--worktree, or claim.worktree."""
    return request.asked or session.settings.worktree


def claim_ids(session: Session, request: TakeRequest) -> Claimed:
    """The first ticket that can be won; RefusedError with every refusal when none can.

    A git or tracker error stops at once: the later ids are not tried, so a
    remote that fails is never mistaken for tickets held by others.
    """
    from ..backlog import check_rules, rules_for
    from ..lock import claim
    from ..mirror import on_claimed, open_label_tracker
    from ..ticket import check_id_pattern

    check_id_pattern(request.tickets, session.settings.id_pattern)  # all, before the first
    tracker = open_label_tracker(session)
    source = open_rules_source(session) if request.gate else None
    rules = rules_for(session, capabilities=request.capabilities, for_next=False)
    refusals: list[str] = []
    for ticket in request.tickets:
        try:
            info = check_rules(session, ticket, source=source, tracker=tracker,
                               rules=rules) if request.gate else None
            won = claim(session, ticket, no_gate=not request.gate)
        except RefusedError as refusal:
            refusals.append(refusal.message)
            continue
        warnings = on_claimed(session, tracker, ticket) if not won.already_ours else []
        return Claimed(ticket=won.ticket, ref=won.ref, tag=won.tag, epoch=won.epoch,
                       agent=won.record.agent, already_ours=won.already_ours,
                       title=info.title if info else None,
                       labels=tuple(info.labels) if info else None, from_backlog=False,
                       refused=tuple(refusals), warnings=tuple(warnings),
                       handed_from=won.record.handed_from or None)
    if len(request.tickets) == 1:
        raise RefusedError(refusals[0])
    raise RefusedError(f"none of {', '.join(request.tickets)} could be claimed: "
                       + "; ".join(refusals), refused=refusals)


def read_backlog(session: Session, stdin: TextIO | None) -> tuple[Ticket, ...]:
    """The backlog named by claim.source (or --from): UsageError when there is none."""
    from ..tracker.sources import open_tracker

    source = session.settings.source
    if not source:
        raise UsageError("--next needs a backlog: --from gh|FILE|- or git config claim.source")
    tracker = open_tracker(source, stdin=stdin, cwd=session.location.worktree,
                           timeout=session.settings.tracker_timeout,
                           links=session.settings.dependencies)
    return tuple(tracker.backlog())


def open_rules_source(session: Session) -> Tracker | None:
    """The backlog file of claim.source, for the rules a direct claim obeys.

    Only a file: `gh` is the label tracker already, and standard input is the
    backlog of one `--next`, not a place to look a ticket up.
    """
    source = session.settings.source
    if not source or source in ("gh", "-"):
        return None
    from ..tracker.sources import open_tracker

    return open_tracker(source, cwd=session.location.worktree,
                        timeout=session.settings.tracker_timeout)


def claim_next(session: Session, request: NextRequest) -> Claimed:
    """One eligible ticket of the backlog; NothingEligible (exit 6) when none is left."""
    from ..backlog import claim_next as pick
    from ..backlog import rules_for
    from ..mirror import on_claimed, open_label_tracker

    backlog = request.backlog if request.backlog is not None \
        else read_backlog(session, request.stdin)
    label_tracker = open_label_tracker(session)
    rules = rules_for(session, labels=request.labels, exclude=request.exclude,
                      gate=request.gate, capabilities=request.capabilities)
    try:
        result = pick(session, backlog, tracker=label_tracker, rules=rules,
                      progress=_counter(request.progress, len(backlog)),
                      skip_ids=request.skip_ids, resume=request.resume)
    except RefusedError as refusal:
        raise NothingEligible(refusal.message, **refusal.details) from None
    warnings = on_claimed(session, label_tracker, result.ticket.id) \
        if not result.claim.already_ours else []
    won = result.claim
    return Claimed(ticket=result.ticket.id, ref=won.ref, tag=won.tag, epoch=won.epoch,
                   agent=won.record.agent, already_ours=won.already_ours,
                   title=result.ticket.title, labels=tuple(result.ticket.labels),
                   from_backlog=True, warnings=tuple(warnings), pushes=result.pushes,
                   skipped=MappingProxyType(dict(result.skipped)), backlog=tuple(backlog),
                   resumed=result.resumed, handed_from=won.record.handed_from or None)


def _counter(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    """backlog.claim_next counts steps; the caller's progress wants (done, total)."""
    if progress is None:
        return None
    done = [0]

    def step(count: int) -> None:
        done[0] += count
        progress(done[0], total)

    return step


def make_worktree(session: Session, claimed: Claimed, request: WorktreeRequest) -> Worktree:
    """The worktree of a won claim; the ownership record is copied into it, so
    heartbeat, verify and release work from inside it too."""
    from pathlib import Path

    from ..worktree import branch_name, ensure_worktree

    settings = session.settings
    start = request.base or session.local.remote_default_commit(settings.remote)
    if request.base and not session.local.resolve(request.base):
        raise UsageError(f"--base {request.base!r} does not name a commit")
    tree = ensure_worktree(
        session.location, ticket=claimed.ticket,
        branch=branch_name(settings.branch_prefix, claimed.ticket),
        base=session.local.resolve(start) or start, claim_tag=claimed.tag,
        path=Path(request.path) if request.path else None,
        worktree_dir=settings.worktree_dir or None,
        ticket_info={"title": claimed.title or "", "labels": list(claimed.labels or ())})
    record = session.store.get(claimed.ticket, ref=settings.claim_ref(claimed.ticket),
                               remote_url=session.remote_url)
    if record is not None and tree.git_dir is not None:
        session.store.copy_to(tree.git_dir, record)
    return tree


def worktree_or_release(session: Session, claimed: Claimed,
                        request: WorktreeRequest) -> Claimed:
    """Make the worktree of a win; if that fails, give a fresh win back.

    A claim that was already ours stays held (it was held before this
    command); the error then says whether the ticket was given back.
    """
    from ..lock import release

    try:
        return replace(claimed, worktree=make_worktree(session, claimed, request))
    except ClaimError as error:
        if not claimed.already_ours:
            try:
                release(session, claimed.ticket, tag=claimed.tag)
                error.message += f" (the claim on {claimed.ticket} was released)"
            except ClaimError:
                error.message += f" (the claim on {claimed.ticket} is still held)"
        raise

