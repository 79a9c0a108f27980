"""Compaction: delete superseded claims, so listings do not grow with history.

Each claim of a ticket is a new ref (refs/claims/640, 640@2, ...), and only
the newest counts. The older ones are history: `git claim compact` deletes
them, all but two per ticket. It needs the right to delete under the claim
namespace, which agents do not need: run it as a maintenance identity
(docs/hosting.md). It is safe while agents claim: the newest claim of a
ticket is never touched (a claimer reads it to choose the next epoch), nor
the first (the bare ref: a claimer that read the ticket before it was ever
claimed creates it with no other check, so it must never become free
again), and each delete is a compare-and-swap on the superseded tag. Notes stay:
`git claim log` keeps the whole history.
This module never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .gateway.transport import RefUpdate
from .liveness import push_all
from .safetext import clean
from .session import Session


@dataclass
class CompactReport:
    superseded: list[str] = field(default_factory=list)  # refs judged superseded
    deleted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # ref -> the host's words
    tickets: int = 0  # tickets with claims
    kept: int = 0  # newest claims, one per ticket


def compact(session: Session, *, dry_run: bool = False) -> CompactReport:
    """Delete every claim ref between its ticket's first and newest; one listing, one push."""
    settings = session.settings
    listed = session.transport.list_refs([settings.ref_prefix])
    by_ticket: dict[str, dict[int, tuple[str, str]]] = {}
    for ref, oid in listed.items():
        found = settings.claim_of_ref(ref)
        if found is not None:
            by_ticket.setdefault(found[0], {})[found[1]] = (ref, oid)
    report = CompactReport(tickets=len(by_ticket), kept=len(by_ticket))
    updates = []
    for epochs in by_ticket.values():
        newest = max(epochs)
        for epoch, (ref, oid) in sorted(epochs.items()):
            if 1 < epoch < newest:
                report.superseded.append(ref)
                updates.append(RefUpdate(ref, None, oid))
    if dry_run or not updates:
        return report
    for update, result in zip(updates, push_all(session, updates), strict=True):
        if result.ok:
            report.deleted.append(update.ref)
        elif result.current is None and result.current_known:
            report.deleted.append(update.ref)  # someone else compacted it first
        else:
            report.refused[update.ref] = clean(result.message or result.status.value, 300)
    return report
