"""Picking work: `git claim --next`, eligibility and the human design gate.

The tracker only says what exists and how it is labelled; the claim ref is
still the lock. Picking is contention-aware: one listing of the remote's
claim refs removes what is taken, and each agent walks the top candidates in
its own order (a hash of its identity), so agents starting together spread
over the backlog instead of all pushing for the top ticket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from .errors import GitError, RefusedError
from .lock import ClaimResult, claim
from .safetext import clean
from .session import Session
from .tracker.base import Ticket, Tracker, TrackerError


@dataclass
class NextResult:
    ticket: Ticket
    claim: ClaimResult
    pushes: int
    skipped: dict[str, int] = field(default_factory=dict)


def gate_refusal(session: Session, ticket: Ticket) -> str | None:
    """Why the design gate refuses `ticket`, or None when it may be claimed."""
    settings = session.settings
    if not ticket.labels_known:
        return (f"{clean(ticket.id)}: its labels are unknown, and the design gate fails closed"
                " (a human may pass --no-gate)")
    labels = {label.lower() for label in ticket.labels}  # GitHub labels ignore case
    if settings.gate_label.lower() in labels and settings.approved_label.lower() not in labels:
        return (f"{clean(ticket.id)} needs design approval (labelled {settings.gate_label},"
                f" not {settings.approved_label})")
    return None


def labels_for_gate(session: Session, ticket: Ticket, tracker: Tracker | None) -> Ticket:
    """Fill in labels a plain id list cannot carry, from the configured tracker."""
    if ticket.labels_known:
        return ticket
    if tracker is None:
        # No tracker to ask: the source has no labels, so nothing says design:required.
        return Ticket(ticket.id, ticket.title, (), True, ticket.open, ticket.url)
    try:
        return tracker.ticket(ticket.id)
    except TrackerError:
        return Ticket(ticket.id, ticket.title, (), False, ticket.open, ticket.url)


def check_gate(session: Session, ticket_id: str, tracker: Tracker | None) -> Ticket | None:
    """`git claim T`: refuse a gated ticket (exit 1); fail closed when labels are unreadable."""
    if tracker is None:
        return None
    try:
        ticket = tracker.ticket(ticket_id)
    except TrackerError as error:
        raise TrackerError(f"cannot read the labels of {clean(ticket_id)} from {tracker.name}:"
                           f" {error.message}; the design gate fails closed"
                           " (a human may pass --no-gate)") from None
    refusal = gate_refusal(session, ticket)
    if refusal:
        raise RefusedError(refusal)
    return ticket


def _has_all(ticket: Ticket, wanted: Sequence[str]) -> bool:
    have = {label.lower() for label in ticket.labels}
    return all(label.lower() in have for label in wanted)


def _has_any(ticket: Ticket, unwanted: Sequence[str]) -> bool:
    have = {label.lower() for label in ticket.labels}
    return any(label.lower() in have for label in unwanted)


def spread_order(tickets: Sequence[Ticket], agent: str, spread: int) -> list[Ticket]:
    """The top `spread` candidates in this agent's own order, then the rest in order."""
    top = list(tickets[:spread])
    top.sort(key=lambda t: hashlib.sha1(f"{agent}\0{t.id}".encode()).digest())
    return top + list(tickets[spread:])


def _taken_ids(session: Session) -> set[str]:
    """Tickets whose newest claim is in force (held, done, blocked or unreadable).

    Claim refs stay after a release (each claim is a new ref), so the notes
    say which tickets are free again: one listing and one fetch of what is new.
    """
    from .claims import read_claims

    return {ticket for ticket, view in read_claims(session).items() if view.oid is not None}


def _still_free(session: Session, candidates: Sequence[Ticket], passed: set[str],
                skip: Callable[[str], None]) -> list[Ticket] | None:
    """After a lost race: the candidates not yet passed that the remote still has free.

    A loss means others are claiming from the same candidates, so most of
    this agent's next ones may be gone too. One listing (and a fetch of the
    new claims and notes) costs less than a claim push lost on each of them, and spreading
    anew over what is left, in backlog order, keeps the losers of one round
    from colliding again on the next. None when the listing fails: the agent
    then goes on in the order it had.
    """
    try:
        taken = _taken_ids(session)
    except GitError:
        return None
    free = []
    for ticket in candidates:
        if ticket.id in passed:
            continue
        if ticket.id in taken:
            passed.add(ticket.id)
            skip("claimed, done or blocked")
        else:
            free.append(ticket)
    return spread_order(free, session.settings.agent, session.settings.spread)


def claim_next(session: Session, backlog: Sequence[Ticket], *, tracker: Tracker | None,
               labels: Sequence[str] = (), exclude: Sequence[str] = (), gate: bool = True,
               progress: Callable[[int], None] | None = None,
               skip_ids: Collection[str] = ()) -> NextResult:
    """Claim one eligible ticket; on a lost race try the next; RefusedError when none is left.

    `skip_ids`: tickets a drain (`run --until-empty`) already ran, never picked again.
    """
    settings = session.settings
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    taken = _taken_ids(session)
    candidates: list[Ticket] = []
    for ticket in backlog:
        if progress is not None:
            progress(1)
        if not ticket.open:
            skip("closed")
        elif ticket.id in skip_ids:
            skip("already run by this drain")
        elif ticket.id in taken:
            skip("claimed, done or blocked")
        elif ticket.labels_known and not _has_all(ticket, labels):
            skip("without the wanted labels")
        elif ticket.labels_known and _has_any(ticket, exclude):
            skip("excluded by label")
        else:
            candidates.append(ticket)
    from . import backlog_cache

    backlog_cache.save(session.location.common_dir, candidates, backlog)
    pushes = 0
    order = spread_order(candidates, settings.agent, settings.spread)
    passed: set[str] = set()  # ids tried, or skipped for their labels
    while order:
        ticket = order.pop(0)
        passed.add(ticket.id)
        if gate or labels or exclude:
            ticket = labels_for_gate(session, ticket, tracker)
            if ticket.labels_known and (not _has_all(ticket, labels)
                                        or _has_any(ticket, exclude)):
                skip("without the wanted labels" if labels else "excluded by label")
                continue
        if gate:
            refusal = gate_refusal(session, ticket)
            if refusal:
                skip("labels unknown (gate fails closed)" if not ticket.labels_known
                     else "needs design approval")
                continue
        pushes += 1
        try:
            won = claim(session, ticket.id, no_gate=not gate, reuse=False)
        except RefusedError:
            skip("lost to another agent")
            free = _still_free(session, candidates, passed, skip)
            if free is not None:
                order = free
            continue
        return NextResult(ticket, won, pushes, skipped)
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    raise RefusedError(f"nothing eligible ({summary or 'the backlog is empty'})",
                       skipped=skipped, pushes=pushes)
