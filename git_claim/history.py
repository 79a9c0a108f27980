"""`git claim log`: a ticket's history read from its notes ref and claim tags.

The notes ref keeps every heartbeat, release and reap as a commit, so the
history survives the claims themselves; `git log refs/notes/claims/<t>`
shows the same commits.
"""

from __future__ import annotations

from typing import Any

from .claims import read_claim
from .clock import format_duration, iso
from .record import parse_claim, parse_liveness
from .safetext import clean
from .session import Session


def history(session: Session, ticket: str, limit: int = 10000) -> list[dict[str, Any]]:
    view = read_claim(session, ticket)
    events: list[dict[str, Any]] = []
    claims_seen: set[str] = set()
    listed = {oid for _, oid in view.claims}
    if view.notes_tip:
        for commit, changed in session.local.notes_history(view.notes_tip, limit):
            for claim_oid, blob in changed.items():
                note = parse_liveness(session.local.read_blob(blob) or b"")
                if note.event == "unknown" and claim_oid not in listed:
                    continue  # a note someone put on another object: not this ticket's history
                claims_seen.add(claim_oid)
                events.append({
                    "time": iso(note.time) if note.time else None, "event": note.event,
                    "agent": note.agent, "holder": note.holder or None, "seq": note.seq,
                    "claim": claim_oid, "ttl": note.ttl, "outcome": note.outcome or None,
                    "reason": note.reason or None, "forced_by": note.forced_by or None,
                    "commit": commit,
                })
    if view.oid:
        claims_seen.add(view.oid)
    for oid in claims_seen:
        info = session.local.read_tag(oid)
        if info is None or not info.raw_message:
            continue
        record = parse_claim(ticket, info.raw_message, tagger_name=info.tagger_name,
                             tagger_time=info.tagger_time)
        event = "claimed" if record.state == "held" else record.state
        order = 0 if record.state == "held" else 10**9  # an outcome comes after its release
        events.append({"time": iso(record.time) if record.time else None, "event": event,
                       "agent": record.agent, "holder": record.agent, "seq": order, "claim": oid,
                       "ttl": None, "outcome": None, "reason": record.reason or None,
                       "forced_by": record.forced_by or None, "commit": None})
    epochs = {oid: epoch for epoch, oid in view.claims}
    for event in events:
        event["epoch"] = epochs.get(event["claim"]) or _recorded_epoch(session, event["claim"])
    # the same second: an earlier claim's events before a later claim's
    events.sort(key=lambda e: (e["time"] or "", e["epoch"] or 0, e["seq"]))
    return events


def _recorded_epoch(session: Any, oid: str) -> int | None:
    """The epoch a claim tag records (its ref may have been compacted away)."""
    info = session.local.read_tag(oid)
    if info is None or not info.raw_message:
        return None
    return parse_claim("", info.raw_message).epoch or None


def render_history(events: list[dict[str, Any]]) -> str:
    if not events:
        return "no history\n"
    lines = []
    for e in events:
        when = (e["time"] or "?").replace("T", " ").rstrip("Z")
        what = e["event"]
        who = clean(e["agent"] or "?", 80)
        detail = ""
        if what == "heartbeat":
            detail = f" #{e['seq']}"
        elif what == "reaped":
            ttl = format_duration(e["ttl"]) if e["ttl"] is not None else "?"
            detail = f" (ttl {ttl}; holder {clean(e['holder'] or '?', 80)})"
        elif what == "released":
            detail = f" ({e['outcome'] or 'free'})"
            if e["forced_by"]:
                detail += f" forced, holder {clean(e['holder'] or '?', 80)}"
        if e["reason"]:
            detail += f": {clean(e['reason'], 120)}"
        claim = f"@{e['epoch']}" if e.get("epoch") else "@?"
        lines.append(f"{when}  {claim:<4} {what:<9} {who}{detail}")
    return "\n".join(lines) + "\n"
