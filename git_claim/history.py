"""`git claim log`: a ticket's history read from its notes ref and claim tags.

The notes ref keeps every heartbeat, release, hand-off and reap as a commit, so the
history survives the claims themselves; `git log refs/notes/claims/<t>`
shows the same commits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .claims import fetch_every_epoch, read_claim
from .clock import iso
from .record import STATE_HELD, parse_claim, parse_liveness
from .session import Session
from .states import Event


@dataclass(frozen=True)
class LogEvent:
    """One event of a ticket's history; `as_dict` is its `--json` form."""

    time: str | None
    event: Event
    agent: str
    holder: str | None
    seq: int
    claim: str  # the claim tag the event is about
    ttl: float | None = None  # a reap's TTL
    outcome: str | None = None  # a release's (free, done, blocked); a reopening's former state
    reason: str | None = None
    forced_by: str | None = None
    commit: str | None = None  # the notes commit; None for the claim itself
    epoch: int | None = None
    to: str | None = None  # a hand-off: the agent it was handed to
    handed_from: str | None = None  # a claim that took up a hand-off: who handed it

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "event": self.event.value, "agent": self.agent,
                "holder": self.holder, "seq": self.seq, "claim": self.claim, "ttl": self.ttl,
                "outcome": self.outcome, "reason": self.reason, "forced_by": self.forced_by,
                "commit": self.commit, "epoch": self.epoch, "to": self.to,
                "handed_from": self.handed_from}


def history(session: Session, ticket: str, limit: int = 10000) -> list[LogEvent]:
    """Every event of `ticket`, oldest first: claims, heartbeats, releases, hand-offs,
    reaps, reopenings."""
    view = read_claim(session, ticket)
    fetch_every_epoch(session, view)
    events: list[LogEvent] = []
    claims_seen: set[str] = set()
    listed = {oid for _, oid in view.claims}
    if view.notes_tip:
        for commit, changed in session.local.notes_history(view.notes_tip, limit):
            for claim_oid, blob in changed.items():
                note = parse_liveness(session.local.read_blob(blob) or b"")
                event = Event.of(note.event)
                if event is Event.UNKNOWN and claim_oid not in listed:
                    continue  # a note someone put on another object: not this ticket's history
                claims_seen.add(claim_oid)
                events.append(LogEvent(
                    time=iso(note.time) if note.time else None, event=event,
                    agent=note.agent, holder=note.holder or None, seq=note.seq,
                    claim=claim_oid, ttl=note.ttl, outcome=note.outcome or None,
                    reason=note.reason or None, forced_by=note.forced_by or None,
                    commit=commit, to=note.to or None))
    if view.oid:
        claims_seen.add(view.oid)
    for oid in claims_seen:
        info = session.local.read_tag(oid)
        if info is None or not info.raw_message:
            continue
        record = parse_claim(ticket, info.raw_message, tagger_name=info.tagger_name,
                             tagger_time=info.tagger_time)
        held = record.state == STATE_HELD
        events.append(LogEvent(
            time=iso(record.time) if record.time else None,
            event=Event.CLAIMED if held else Event.of(record.state), agent=record.agent,
            holder=record.agent,
            seq=0 if held else 10**9,  # an outcome comes after its release
            claim=oid, reason=record.reason or None, forced_by=record.forced_by or None,
            handed_from=record.handed_from or None))
    epochs = {oid: epoch for epoch, oid in view.claims}
    events = [replace(e, epoch=epochs.get(e.claim) or _recorded_epoch(session, e.claim))
              for e in events]
    # the same second: an earlier claim's events before a later claim's
    events.sort(key=lambda e: (e.time or "", e.epoch or 0, e.seq))
    return events


def _recorded_epoch(session: Session, oid: str) -> int | None:
    """The epoch a claim tag records (its ref may have been compacted away)."""
    info = session.local.read_tag(oid)
    if info is None or not info.raw_message:
        return None
    return parse_claim("", info.raw_message).epoch or None
