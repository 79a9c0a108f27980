"""`git claim ready`: the backlog as `--next` sees it for this agent.

The same rules, read from the same places, as `--next` applies them, so
what `ready` calls eligible is what `--next` would try, and every other
ticket says which rule holds it back. Nothing is claimed or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ..claims import ClaimView
    from ..picking import State
    from ..session import Session

__all__ = ["Ready", "ReadyEntry", "ReadyRequest", "ready"]


@dataclass(frozen=True)
class ReadyRequest:
    labels: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    gate: bool = True
    capabilities: frozenset[str] | None = None  # --can; None: claim.capabilities
    stdin: TextIO | None = None  # the backlog when the source is `-`


@dataclass(frozen=True)
class ReadyEntry:
    ticket: str
    title: str
    state: State
    detail: str  # the holder, the open blockers, the missing capability ...
    tier: int
    url: str = ""
    mine: bool = False  # held by this agent


@dataclass(frozen=True)
class Ready:
    """Eligible tickets first, in the order this agent would try them; then the rest."""

    agent: str
    entries: tuple[ReadyEntry, ...]
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    source_skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def eligible(self) -> int:
        return sum(1 for entry in self.entries if entry.state.value == "eligible")


def ready(session: Session, request: ReadyRequest) -> Ready:
    """Judge the whole backlog for this agent; read only, never claims."""
    from ..backlog import labels_for_gate, read_remote, rules_for
    from ..claims import read_claims
    from ..errors import UsageError
    from ..mirror import open_label_tracker
    from ..picking import State, count_words, judge_all, pick_order
    from ..tracker.sources import open_tracker

    settings = session.settings
    if not settings.source:
        raise UsageError("ready needs a backlog: --from gh|FILE|- or git config claim.source")
    tracker_of_source = open_tracker(settings.source, stdin=request.stdin,
                                     cwd=session.location.worktree,
                                     timeout=settings.tracker_timeout,
                                     links=settings.dependencies)
    backlog = list(tracker_of_source.backlog())
    label_tracker = open_label_tracker(session)
    backlog = [labels_for_gate(session, ticket, label_tracker) for ticket in backlog]
    rules = rules_for(session, labels=request.labels, exclude=request.exclude,
                      gate=request.gate, capabilities=request.capabilities)
    views = read_claims(session)
    remote = read_remote(session, views)
    judgements = judge_all(backlog, rules, remote)
    eligible = [j for j in judgements if j.state is State.ELIGIBLE]
    first = {ticket.id: index for index, ticket in enumerate(pick_order(eligible, rules, remote))}
    ordered = sorted(eligible, key=lambda j: first[j.ticket.id]) + \
        [j for j in judgements if j.state is not State.ELIGIBLE]
    agent = settings.agent
    entries = tuple(ReadyEntry(ticket=j.ticket.id, title=j.ticket.title, state=j.state,
                               detail=j.detail, tier=j.tier, url=j.ticket.url,
                               mine=j.state is State.HELD and j.detail == agent)
                    for j in ordered)
    entries = tuple(_holder_shown(entry, views.get(entry.ticket)) for entry in entries)
    return Ready(agent, entries, MappingProxyType(count_words(judgements)),
                 MappingProxyType(dict(tracker_of_source.skipped)))


def _holder_shown(entry: ReadyEntry, view: ClaimView | None) -> ReadyEntry:
    """`you` for this agent; a hand-off not yet taken up says who handed it."""
    if entry.state.value != "held":
        return entry
    who = "you" if entry.mine else entry.detail
    if view is not None and view.handed_to is not None:
        who += f" (handed off by {view.handed_from or 'another agent'}, not yet taken up)"
    return replace(entry, detail=who)
